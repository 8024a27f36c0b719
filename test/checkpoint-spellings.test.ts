// config.json spells the expert count as transformers' config classes read it (issue 13): the
// attribute or its attribute_map alias, either one (transformers 5 writes Qwen3-MoE's as
// num_local_experts, Qwen's releases num_experts); both present must agree.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { CheckpointError, openCheckpoint } from '../lib/index';
import { bitsEqual } from './helpers';
import { checkpointMaker, randomHidden, type Kind, type Synthetic } from './checkpoint/synthetic';

const { make } = checkpointMaker();

/** Per synthetic kind: the spelling its writer uses and the other one transformers 5.17 reads. */
const SPELLINGS: { kind: Kind; usual: string; other: string }[] = [
  { kind: 'gpt-oss-mxfp4', usual: 'num_local_experts', other: 'num_experts' },
  { kind: 'gpt-oss-bf16', usual: 'num_local_experts', other: 'num_experts' },
  { kind: 'mixtral', usual: 'num_local_experts', other: 'num_experts' },
  { kind: 'qwen3-moe', usual: 'num_experts', other: 'num_local_experts' },
  { kind: 'deepseek-v3', usual: 'n_routed_experts', other: 'num_local_experts' },
];

function writeConfig(s: Synthetic, config: Record<string, unknown>): void {
  fs.writeFileSync(path.join(s.dir, 'config.json'), JSON.stringify(config));
}

function respelled(s: Synthetic, from: string, to: string): Record<string, unknown> {
  const { [from]: value, ...rest } = s.config;
  expect(value, `the writer's config has ${from}`).toBe(s.dims.E);
  return { ...rest, [to]: value };
}

/** One forward of the checkpoint's first MoE layer on fixed input, as bytes. */
async function forwardOnce(s: Synthetic): Promise<Float32Array> {
  const block = await (await openCheckpoint(s.dir)).loadMoeLayer(s.moeLayers[0]);
  try {
    return block.forwardSync(randomHidden(7, 3, s.dims.H, false).hidden) as Float32Array;
  } finally {
    block.dispose();
  }
}

async function configError(s: Synthetic): Promise<CheckpointError> {
  const caught = await openCheckpoint(s.dir).then(() => undefined, (e: unknown) => e);
  expect(caught, 'expected a CheckpointError').toBeInstanceOf(CheckpointError);
  const err = caught as CheckpointError;
  expect(err.code, err.message).toBe('ERR_MOE_CHECKPOINT_CONFIG');
  expect(err.file).toBe(path.join(s.dir, 'config.json'));
  return err;
}

describe('expert count: either spelling transformers reads', () => {
  for (const { kind, usual, other } of SPELLINGS) {
    test(`${kind}: ${other} alone reads as ${usual}, the same layer`, async () => {
      const s = make(kind, { seed: 91 });
      const expected = await forwardOnce(s);
      writeConfig(s, respelled(s, usual, other));
      const ckpt = await openCheckpoint(s.dir);
      expect(ckpt.config.numExperts).toBe(s.dims.E);
      expect(ckpt.config.defaulted.join(' ')).not.toMatch(/experts/);
      expect(bitsEqual(await forwardOnce(s), expected)).toBe(true);
    });

    test(`${kind}: both spellings, equal: read; different: a CheckpointError naming both`, async () => {
      const s = make(kind, { seed: 92 });
      writeConfig(s, { ...s.config, [other]: s.dims.E });
      expect((await openCheckpoint(s.dir)).config.numExperts).toBe(s.dims.E);
      writeConfig(s, { ...s.config, [other]: 2 * s.dims.E });
      const err = await configError(s);
      expect(err.message).toContain(`${other}: expected the value of ${usual} (${s.dims.E}): both spell one setting, transformers reads either, got ${2 * s.dims.E}`);
      // Which spelling comes first in the file changes nothing.
      writeConfig(s, { [other]: 2 * s.dims.E, ...s.config });
      expect((await configError(s)).message).toBe(err.message);
    });

    test(`${kind}: neither spelling: missing, naming both`, async () => {
      const s = make(kind, { seed: 93 });
      const { [usual]: _dropped, ...rest } = s.config;
      writeConfig(s, rest);
      const err = await configError(s);
      expect(err.message).toContain(`${usual} (or ${other}: the same setting): expected a positive integer, got nothing (missing)`);
    });

    test(`${kind}: the other spelling is validated like the usual one`, async () => {
      const s = make(kind, { seed: 94 });
      for (const bad of [0, -8, 2.5, '8', 1e6]) {
        writeConfig(s, { ...respelled(s, usual, other), [other]: bad });
        expect((await configError(s)).message).toContain(`${other}: expected`);
      }
    });
  }

  test('qwen2-moe: num_experts only (its transformers config class has no alias); num_local_experts alone is missing', async () => {
    const s = make('qwen2-moe', { seed: 95 });
    writeConfig(s, respelled(s, 'num_experts', 'num_local_experts'));
    const err = await configError(s);
    expect(err.message).toContain('num_experts: expected a positive integer, got nothing (missing)');
    expect(err.message).not.toContain('(or ');
  });

  test('a config recognised by architectures alone reads the spellings of that class', async () => {
    const s = make('qwen3-moe', { seed: 96 });
    const { model_type: _mt, ...rest } = respelled(s, 'num_experts', 'num_local_experts');
    writeConfig(s, rest);
    const ckpt = await openCheckpoint(s.dir);
    expect(ckpt.familyReason).toContain('Qwen3MoeForCausalLM');
    expect(ckpt.config.numExperts).toBe(s.dims.E);
  });
});
