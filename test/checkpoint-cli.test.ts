// The CLI on synthetic checkpoints: `moe-cpu inspect <dir>` and `moe-cpu run <dir> --layer N`.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { writeSafetensors } from './checkpoint/safetensors-writer';
import { makeCheckpoint, removeDir, type Synthetic } from './checkpoint/synthetic';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const made: Synthetic[] = [];
afterAll(() => made.forEach((s) => removeDir(s.dir)));
const gptOss = makeCheckpoint('gpt-oss-mxfp4', { seed: 31, shards: 2 });
const qwen2 = makeCheckpoint('qwen2-moe', { seed: 32 });
made.push(gptOss, qwen2);

describe('moe-cpu inspect', () => {
  test('family, MoE layers, tensors, W13 layout and how it was decided, bytes', () => {
    const r = cli('inspect', gptOss.dir);
    expect(r.status, r.stderr).toBe(0);
    for (const s of [
      "family       gpt-oss (config.json model_type 'gpt_oss')", 'MoE layers   0-1 (2 of 2 layers)', 'topk-softmax',
      'model.layers.0.mlp.experts.gate_up_proj_blocks', 'U8', '[8, 64, 3, 16]', 'model-00001-of-00002.safetensors',
      'W13 layout   interleaved: gpt-oss stores gate and up fused', 'orientation  W13 [E, 2I, H]', 'MXFP4', 'loaded', '(bf16)',
      'all 2 MoE layers: tensors present',
    ]) expect(r.stdout).toContain(s);
  });

  test('per-expert tensors grouped, shared expert, --layer, --json', () => {
    const r = cli('inspect', qwen2.dir, '--layer', '1');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('model.layers.1.mlp.experts.{e}.gate_proj.weight ×12');
    expect(r.stdout).toContain('W13 layout   halves:');
    expect(r.stdout).toContain('sigmoid(shared_expert_gate · x)');
    const j = JSON.parse(cli('inspect', qwen2.dir, '--json').stdout);
    expect(j.family).toBe('qwen-moe');
    expect(j.moeLayers).toEqual([1]);
    expect(j.layer.isW13Interleaved).toBe(false);
    expect(j.layer.sharedExpert).toEqual({ intermediateSize: 48, gated: true });
    expect(j.problems).toEqual([]);
    const dense = cli('inspect', qwen2.dir, '--layer', '0');
    expect(dense.status).toBe(1);
    expect(dense.stdout).toContain('layer 0 is in mlp_only_layers');
  });

  test('a broken layer: listed with the tensor at fault, exit code 1', () => {
    const s = makeCheckpoint('mixtral', { seed: 33 });
    made.push(s);
    const missing = 'model.layers.1.block_sparse_moe.experts.4.w2.weight';
    writeSafetensors(path.join(s.dir, 'model.safetensors'), s.tensors.filter((t) => t.name !== missing));
    const r = cli('inspect', s.dir);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('1 of 2 MoE layers cannot be loaded');
    expect(r.stdout).toContain(missing);
    const bad = cli('inspect', path.join(s.dir, 'nope'));
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('not a folder');
  });
});

describe('moe-cpu run', () => {
  test('loads a layer, prints times, memory and a checksum that does not depend on the thread count; --verify passes', () => {
    const sums = ['1', '2'].map((threads) => {
      const r = cli('run', gptOss.dir, '--layer', '1', '--tokens', '3', '--threads', threads, '--iters', '2', '--verify');
      expect(r.status, r.stderr + r.stdout).toBe(0);
      for (const s of ['layer 1 (gpt-oss: E=8 K=4 H=96 I=32)', 'load: ', 'MXFP4 -> bf16', 'layer holds', 'RSS', 'forward: T=3', 'median']) {
        expect(r.stdout).toContain(s);
      }
      expect(r.stdout).toMatch(/verify: scalar kernels .*: ok/);
      return /checksum: (.*)/.exec(r.stdout)![1];
    });
    expect(sums[0]).toBe(sums[1]);
  });

  test('--dtype, --hidden, --seed and --out', () => {
    const out = path.join(qwen2.dir, 'out.bin');
    const r = cli('run', qwen2.dir, '--layer', '1', '--tokens', '4', '--dtype', 'f32', '--hidden', 'bf16', '--seed', '9', '--iters', '1', '--out', out);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('BF16 -> f32');
    expect(fs.statSync(out).size).toBe(4 * qwen2.dims.H * 2);
    const again = cli('run', qwen2.dir, '--layer', '1', '--tokens', '4', '--dtype', 'f32', '--hidden', 'bf16', '--seed', '10', '--iters', '1');
    expect(/checksum: (.*)/.exec(again.stdout)![1]).not.toBe(/checksum: (.*)/.exec(r.stdout)![1]);
  });

  test('bad arguments: a message and exit code 1', () => {
    for (const [args, message] of [
      [['run', qwen2.dir], '--layer: required'],
      [['run', qwen2.dir, '--layer', '0'], 'layer 0 is in mlp_only_layers'],
      [['run', qwen2.dir, '--layer', '1', '--tokens', '0'], '--tokens: expected a positive integer'],
      [['run', qwen2.dir, '--layer', '1', '--dtype', 'f16'], '--dtype: expected f32 or bf16'],
    ] as const) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr).toContain(message);
    }
    expect(cli('--help').stdout).toMatch(/moe-cpu inspect <dir>[\s\S]*moe-cpu run <dir> --layer N/);
  });
});
