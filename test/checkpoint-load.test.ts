// Loading synthetic checkpoints of every family (written in the exact on-disk format) and
// checking the loaded block against a float64 reference computed from the written tensors.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { Checkpoint, MoeBlock, loadMoeLayer, openCheckpoint } from '../lib/index';
import { BF16_TOL, F32_TOL, bitsEqual, expectClose, relErr, valuesOf } from './helpers';
import { writeSafetensors } from './checkpoint/safetensors-writer';
import { encode, makeCheckpoint, randomHidden, referenceForward, removeDir, type FloatDtype, type Kind, type Synthetic } from './checkpoint/synthetic';

const T = 5;
const made: Synthetic[] = [];
function make(kind: Kind, options: Parameters<typeof makeCheckpoint>[1] = {}): Synthetic {
  const s = makeCheckpoint(kind, options);
  made.push(s);
  return s;
}
afterAll(() => made.forEach((s) => removeDir(s.dir)));

const FAMILY: Record<Kind, string> = {
  'gpt-oss-mxfp4': 'gpt-oss', 'gpt-oss-bf16': 'gpt-oss', mixtral: 'mixtral', 'qwen3-moe': 'qwen-moe', 'qwen2-moe': 'qwen-moe', 'deepseek-v3': 'deepseek-v3',
};

/** forwardSync and forward against the reference, f32 and bf16 hidden. */
async function checkBlock(s: Synthetic, block: MoeBlock, layer: number, tolF32: number) {
  for (const bf16 of [false, true]) {
    const { hidden, values } = randomHidden(100 + layer, T, s.dims.H, bf16);
    const ref = referenceForward(s, layer, values, bf16);
    const out = block.forwardSync(hidden);
    expect(out.constructor).toBe(hidden.constructor);
    expectClose(valuesOf(out), ref, bf16 ? BF16_TOL : tolF32, `${s.kind} layer ${layer} hidden ${bf16 ? 'bf16' : 'f32'}`);
    const asyncOut = await block.forward(hidden);
    expect(bitsEqual(asyncOut, out), 'forward and forwardSync give the same bits').toBe(true);
  }
}

describe.each<[Kind, FloatDtype]>([
  ['gpt-oss-mxfp4', 'BF16'],
  ['gpt-oss-bf16', 'BF16'],
  ['gpt-oss-bf16', 'F32'],
  ['mixtral', 'BF16'],
  ['mixtral', 'F16'],
  ['qwen3-moe', 'BF16'],
  ['qwen3-moe', 'F32'],
  ['qwen2-moe', 'BF16'],
  ['deepseek-v3', 'BF16'],
  ['deepseek-v3', 'F32'],
])('%s checkpoint, %s tensors', (kind, dtype) => {
  const s = make(kind, { dtype, seed: 7 });

  test('openCheckpoint: family, MoE layers, config', async () => {
    const ckpt = await openCheckpoint(s.dir);
    expect(ckpt).toBeInstanceOf(Checkpoint);
    expect(ckpt.family).toBe(FAMILY[kind]);
    expect(ckpt.moeLayers).toEqual(s.moeLayers);
    expect(ckpt.config.hiddenSize).toBe(s.dims.H);
    expect(ckpt.config.intermediateSize).toBe(s.dims.I);
    expect(ckpt.config.numExperts).toBe(s.dims.E);
    expect(ckpt.config.topK).toBe(s.dims.K);
    expect(ckpt.config.routing.mode).toBe(s.routing.mode);
    const info = ckpt.layerInfo(s.moeLayers[0]);
    expect(info.isW13Interleaved).toBe(kind.startsWith('gpt-oss'));
    expect(info.transposed).toBe(kind === 'gpt-oss-bf16');
    expect(info.weightFormat).toBe(kind === 'gpt-oss-mxfp4' ? 'mxfp4' : dtype.toLowerCase());
    expect(info.layoutReason.length).toBeGreaterThan(20);
    expect(info.sharedExpert !== null).toBe(s.dims.Is > 0);
  });

  test.each(['f32', 'bf16'] as const)('every MoE layer, weightDtype %s, matches the reference', async (weightDtype) => {
    const ckpt = await openCheckpoint(s.dir);
    for (const n of s.moeLayers) {
      const block = await ckpt.loadMoeLayer(n, { weightDtype, threads: 2 });
      expect(block).toBeInstanceOf(MoeBlock);
      expect(block.layer).toBe(n);
      expect(block.family).toBe(FAMILY[kind]);
      expect(block.weightDtype).toBe(weightDtype);
      // The header-only estimate is the weights' size; packed panels may pad a little on top.
      const estimate = ckpt.layerInfo(n).loadedBytes[weightDtype];
      expect(block.bytes).toBeGreaterThanOrEqual(estimate);
      expect(block.bytes).toBe(block.experts.bytes + (block.sharedExperts?.bytes ?? 0) + (s.kind === 'qwen2-moe' ? s.dims.H * (dtype === 'BF16' ? 2 : 4) : 0));
      // f32 weights of a BF16/F16/MXFP4 file hold the exact values: the all-f32 tolerance applies.
      const exact = weightDtype === 'f32' || dtype !== 'F32';
      await checkBlock(s, block, n, exact && weightDtype === 'f32' ? F32_TOL : BF16_TOL);
      block.dispose();
      expect(block.bytes).toBe(0);
    }
  });
});

describe('loading', () => {
  test('both gpt-oss variants (MXFP4 and BF16 transposed) give the same bits for the same weights', async () => {
    const a = make('gpt-oss-mxfp4', { seed: 99 });
    const b = make('gpt-oss-bf16', { seed: 99 });
    for (const weightDtype of ['bf16', 'f32'] as const) {
      const x = await loadMoeLayer(a.dir, 1, { weightDtype });
      const y = await loadMoeLayer(b.dir, 1, { weightDtype });
      const { hidden } = randomHidden(5, T, a.dims.H, false);
      expect(bitsEqual(x.forwardSync(hidden), y.forwardSync(hidden))).toBe(true);
      x.dispose();
      y.dispose();
    }
  });

  test('unquantized gpt-oss stored out × in ([E, 2I, H]) is recognised by its shape; H = 2I is ambiguous and read as transformers stores it', async () => {
    const a = make('gpt-oss-bf16', { seed: 44 });
    const { H, I, E } = a.dims;
    const tensors = a.tensors.map((t) => {
      const w = a.layers.get(Number(t.name.split('.')[2]));
      if (t.name.endsWith('experts.gate_up_proj')) return { ...t, shape: [E, 2 * I, H], data: encode(w!.w13, 'BF16') };
      if (t.name.endsWith('experts.down_proj')) return { ...t, shape: [E, H, I], data: encode(w!.w2, 'BF16') };
      return t;
    });
    writeSafetensors(path.join(a.dir, 'model.safetensors'), tensors);
    const ckpt = await openCheckpoint(a.dir);
    expect(ckpt.layerInfo(0).transposed).toBe(false);
    expect(ckpt.layerInfo(0).orientationReason).toContain('out × in');
    const block = await ckpt.loadMoeLayer(0, { weightDtype: 'f32' });
    await checkBlock(a, block, 0, F32_TOL);
    block.dispose();

    const square = make('gpt-oss-bf16', { seed: 45, dims: { H: 64, I: 32 } });
    const info = (await openCheckpoint(square.dir)).layerInfo(0);
    expect(info.transposed).toBe(true);
    expect(info.orientationReason).toContain('ambiguous');
    const b = await loadMoeLayer(square.dir, 0, { weightDtype: 'f32' });
    await checkBlock(square, b, 0, F32_TOL);
    b.dispose();
  });

  test('sharded checkpoints (model.safetensors.index.json) load the same as single files', async () => {
    for (const kind of ['gpt-oss-mxfp4', 'deepseek-v3'] as const) {
      const single = make(kind, { seed: 3 });
      const sharded = make(kind, { seed: 3, shards: 3 });
      const ckpt = await openCheckpoint(sharded.dir);
      expect(ckpt.files.length).toBe(3);
      const n = single.moeLayers[0];
      const x = await loadMoeLayer(single.dir, n);
      const y = await ckpt.loadMoeLayer(n);
      const { hidden } = randomHidden(6, T, single.dims.H, true);
      expect(bitsEqual(x.forwardSync(hidden), y.forwardSync(hidden)), kind).toBe(true);
      expect(ckpt.layerInfo(n).tensors.flatMap((g) => g.files).filter((f, i, all) => all.indexOf(f) === i).length).toBeGreaterThan(1);
      x.dispose();
      y.dispose();
    }
  });

  test('default weightDtype is lossless: mxfp4 for MXFP4 (as stored), bf16 for BF16, f32 for F32 and F16', async () => {
    for (const [kind, dtype, expected] of [
      ['gpt-oss-mxfp4', 'BF16', 'mxfp4'], ['mixtral', 'BF16', 'bf16'], ['mixtral', 'F16', 'f32'], ['qwen3-moe', 'F32', 'f32'],
    ] as const) {
      const s = make(kind, { dtype, seed: 11 });
      const block = await loadMoeLayer(s.dir, s.moeLayers[0]);
      expect(block.weightDtype, `${kind} ${dtype}`).toBe(expected);
      block.dispose();
    }
  });

  test('a loaded block routes by itself; an explicit route still works and overrides it', async () => {
    const s = make('mixtral', { seed: 21 });
    const block = await loadMoeLayer(s.dir, 0, { weightDtype: 'f32' });
    const { hidden } = randomHidden(8, T, s.dims.H, false);
    const ids = Int32Array.from({ length: T * s.dims.K }, (_, i) => i % s.dims.E);
    const weights = new Float32Array(T * s.dims.K).fill(0.5);
    const explicit = block.forwardSync(hidden, { ids, weights });
    expect(relErr(explicit, block.forwardSync(hidden))).toBeGreaterThan(1e-3);
    expect(bitsEqual(explicit, block.experts.forwardSync(hidden, { ids, weights }))).toBe(true);
    block.dispose();
  });

  test('DeepSeek-V3 with n_shared_experts null has no shared expert; config gaps take transformers defaults', async () => {
    const s = make('deepseek-v3', { seed: 17 });
    const config = { ...s.config, n_shared_experts: null } as Record<string, unknown>;
    delete config.moe_layer_freq;
    fs.writeFileSync(path.join(s.dir, 'config.json'), JSON.stringify(config));
    const ckpt = await openCheckpoint(s.dir);
    expect(ckpt.config.sharedExpert).toBeNull();
    expect(ckpt.config.defaulted).toEqual(['moe_layer_freq = 1']);
    const block = await ckpt.loadMoeLayer(1);
    expect(block.sharedExperts).toBeNull();
    block.dispose();
  });

  test('the block owns its layers: dispose() frees the shared expert too', async () => {
    const s = make('qwen2-moe', { seed: 5 });
    const block = await loadMoeLayer(s.dir, 1);
    expect(block.sharedExperts).not.toBeNull();
    expect(block.sharedExperts!.bytes).toBeGreaterThan(0);
    block.dispose();
    expect(block.sharedExperts!.bytes).toBe(0);
    await expect(block.forward(randomHidden(1, 1, s.dims.H, false).hidden)).rejects.toThrow(/dispos/);
  });
});
