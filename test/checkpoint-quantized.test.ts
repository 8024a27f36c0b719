// Checkpoints loaded into the packed weight formats (mxfp4, int8, f16): gpt-oss MXFP4 blocks and
// scales straight into the layer, float checkpoints quantized or rounded while packing, against
// a float64 reference on the weights the layer holds; whole models (loadMoeLayers), estimate(),
// and the memory check that runs before anything is read.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, test, vi } from 'vitest';
import { binding } from '../lib/binding';
import { CheckpointError, MoeLayer, dequantize, openCheckpoint, quantize, type MoeBlock, type WeightDtype } from '../lib/index';
import { BF16_TOL, F32_TOL, bitsEqual, expectClose, valuesOf } from './helpers';
import { writeSafetensors, type StTensor } from './checkpoint/safetensors-writer';
import {
  makeCheckpoint, randomHidden, referenceForward, removeDir, roundTo, type Dims, type FloatDtype, type Kind, type LayerWeights, type Synthetic,
} from './checkpoint/synthetic';

const made: Synthetic[] = [];
function make(kind: Kind, options: Parameters<typeof makeCheckpoint>[1] = {}): Synthetic {
  const s = makeCheckpoint(kind, options);
  made.push(s);
  return s;
}
afterAll(() => made.forEach((s) => removeDir(s.dir)));
afterEach(() => {
  vi.restoreAllMocks();
});

/** Dimensions with blocks of 32 along both input axes (the synthetic defaults of some families have none). */
const BLOCKED: Partial<Record<Kind, Partial<Dims>>> = {
  mixtral: { H: 64, I: 32 },
  'qwen3-moe': { H: 64, I: 32 },
  'qwen2-moe': { H: 64, I: 32, Is: 64 },
  'deepseek-v3': { H: 64, I: 32, Is: 32 },
};

// ---------------------------------------------------------------------------------------------
// The weights a layer of each format holds, from the values it was given

/** rows × depth values as the packer converts them to `dtype` (quantize/dequantize: the layer's own rules). */
function held(values: Float64Array, rows: number, depth: number, dtype: WeightDtype): Float64Array {
  const f32 = Float32Array.from(values);
  if (dtype === 'mxfp4' || dtype === 'int8') {
    return Float64Array.from(dequantize(quantize(f32, [rows, depth], dtype) as never, [rows, depth], dtype));
  }
  if (dtype === 'f16') return roundTo(f32, 'F16');
  if (dtype === 'bf16') return roundTo(f32, 'BF16');
  return Float64Array.from(f32);
}

/** A copy of `s` whose reference uses the weights a `dtype` layer holds. */
function asHeld(s: Synthetic, dtype: WeightDtype): Synthetic {
  const { H, I, E, Is } = s.dims;
  const layers = new Map<number, LayerWeights>();
  for (const [n, w] of s.layers) {
    layers.set(n, {
      ...w,
      w13: held(w.w13, E * 2 * I, H, dtype),
      w2: held(w.w2, E * H, I, dtype),
      shared: w.shared && { ...w.shared, w13: held(w.shared.w13, 2 * Is, H, dtype), w2: held(w.shared.w2, H, Is, dtype) },
    });
  }
  return { ...s, layers };
}

/** Decode (T = 1..3, f32 hidden) at the all-f32 tolerance, bf16 hidden and prefill (T = 64) at the bf16 one. */
async function checkAgainst(ref: Synthetic, block: MoeBlock, layer: number, label: string) {
  for (const [T, bf16, tol] of [[1, false, F32_TOL], [2, false, F32_TOL], [3, false, F32_TOL], [3, true, BF16_TOL], [64, false, BF16_TOL]] as const) {
    const { hidden, values } = randomHidden(1000 + T + layer, T, ref.dims.H, bf16);
    const out = block.forwardSync(hidden);
    expectClose(valuesOf(out), referenceForward(ref, layer, values, bf16), tol, `${label} layer ${layer} T=${T}${bf16 ? ' bf16 hidden' : ''}`);
    expect(bitsEqual(await block.forward(hidden), out), 'forward = forwardSync').toBe(true);
  }
}

describe('gpt-oss MXFP4 checkpoints load as mxfp4', () => {
  test('by default: blocks and scales go into the layer as stored (no MXFP4 decode), forward = reference on the exact weights', async () => {
    const s = make('gpt-oss-mxfp4', { seed: 51 });
    const ckpt = await openCheckpoint(s.dir);
    const info = ckpt.layerInfo(0);
    expect(info.weightFormat).toBe('mxfp4');
    expect(info.defaultWeightDtype).toBe('mxfp4');
    expect(info.defaultReason).toMatch(/as stored/);
    const decode = vi.spyOn(binding, 'decodeMxfp4Async');
    for (const n of s.moeLayers) {
      const block = await ckpt.loadMoeLayer(n, { threads: 2 });
      expect(block.weightDtype).toBe('mxfp4');
      expect(block.experts.isW13Interleaved).toBe(true);
      expect(block.experts.kernels.decode).toMatch(/mxfp4/);
      expect(block.experts.kernels.prefill).toMatch(/mxfp4/);
      await checkAgainst(s, block, n, 'gpt-oss-mxfp4 as mxfp4');
      block.dispose();
    }
    expect(decode).not.toHaveBeenCalled();
    // bf16 on request: the decode path (on the dispatcher thread).
    const bf16 = await ckpt.loadMoeLayer(0, { weightDtype: 'bf16' });
    expect(decode).toHaveBeenCalled();
    expect(bf16.weightDtype).toBe('bf16');
    bf16.dispose();
  });

  test('both gpt-oss variants: the BF16 (transposed) checkpoint quantized to mxfp4 holds the same weights and gives the same bits', async () => {
    const a = make('gpt-oss-mxfp4', { seed: 52 });
    const b = make('gpt-oss-bf16', { seed: 52 });
    const x = await (await openCheckpoint(a.dir)).loadMoeLayer(1);
    const y = await (await openCheckpoint(b.dir)).loadMoeLayer(1, { weightDtype: 'mxfp4' });
    expect(y.weightDtype).toBe('mxfp4');
    // MXFP4 values re-quantize to themselves (scale rule floor(log2 max) - 2): the reference is the file's weights.
    await checkAgainst(b, y, 1, 'gpt-oss-bf16 as mxfp4');
    for (const T of [1, 3, 64]) {
      const { hidden } = randomHidden(7 + T, T, a.dims.H, false);
      expect(bitsEqual(x.forwardSync(hidden), y.forwardSync(hidden)), `T=${T}`).toBe(true);
    }
    expect(y.bytes).toBe(x.bytes);
    x.dispose();
    y.dispose();
  });

  test('MXFP4 -> int8 and f16 on request', async () => {
    const s = make('gpt-oss-mxfp4', { seed: 53 });
    const ckpt = await openCheckpoint(s.dir);
    for (const dtype of ['int8', 'f16'] as const) {
      const block = await ckpt.loadMoeLayer(0, { weightDtype: dtype });
      expect(block.weightDtype).toBe(dtype);
      await checkAgainst(asHeld(s, dtype), block, 0, `gpt-oss-mxfp4 as ${dtype}`);
      block.dispose();
    }
  });
});

describe.each<[Kind, FloatDtype, WeightDtype]>([
  ['mixtral', 'BF16', 'int8'],
  ['mixtral', 'BF16', 'mxfp4'],
  ['qwen3-moe', 'BF16', 'int8'],
  ['qwen3-moe', 'BF16', 'mxfp4'],
  ['qwen3-moe', 'F32', 'int8'],
  ['qwen2-moe', 'BF16', 'mxfp4'],
  ['deepseek-v3', 'BF16', 'int8'],
  ['gpt-oss-bf16', 'F32', 'int8'],
  ['mixtral', 'F16', 'f16'],
  ['mixtral', 'BF16', 'f16'],
  ['qwen3-moe', 'F16', 'mxfp4'],
])('%s %s checkpoint loaded as %s', (kind, dtype, weightDtype) => {
  test('forward = reference on the weights decoded from the layer\'s own quantization (rounding)', async () => {
    const s = make(kind, { dtype, seed: 61, dims: BLOCKED[kind] });
    const ckpt = await openCheckpoint(s.dir);
    const ref = asHeld(s, weightDtype);
    for (const n of s.moeLayers) {
      const block = await ckpt.loadMoeLayer(n, { weightDtype, threads: 2 });
      expect(block.weightDtype).toBe(weightDtype);
      expect(block.sharedExperts?.weightDtype ?? weightDtype).toBe(weightDtype);
      expect(block.experts.kernels.decode).toContain(weightDtype);
      await checkAgainst(ref, block, n, `${kind} ${dtype} as ${weightDtype}`);
      const estimate = ckpt.estimate({ layers: [n], weightDtype });
      expect(Math.abs(estimate.bytes - block.bytes) / block.bytes).toBeLessThanOrEqual(0.01);
      block.dispose();
    }
  });
});

describe('estimate', () => {
  test('bytes each layer will hold once packed, per weightDtype, within 1% of block.bytes (in fact equal)', async () => {
    for (const [kind, dtype] of [['gpt-oss-mxfp4', 'BF16'], ['gpt-oss-bf16', 'F32'], ['qwen2-moe', 'BF16'], ['deepseek-v3', 'F16']] as const) {
      const s = make(kind, { dtype, seed: 71, dims: BLOCKED[kind] });
      const ckpt = await openCheckpoint(s.dir);
      for (const weightDtype of ['mxfp4', 'int8', 'bf16', 'f16', 'f32'] as const) {
        const e = ckpt.estimate({ weightDtype });
        expect(e.layers.map((l) => l.layer)).toEqual(s.moeLayers);
        expect(e.bytes).toBe(e.layers.reduce((a, l) => a + l.bytes, 0));
        expect(e.peakBytes).toBe(e.bytes + e.stagingBytes);
        const blocks = await ckpt.loadMoeLayers({ weightDtype });
        blocks.forEach((b, i) => {
          expect(e.layers[i].weightDtype).toBe(weightDtype);
          expect(Math.abs(e.layers[i].bytes - b.bytes) / b.bytes, `${kind} ${weightDtype} layer ${b.layer}`).toBeLessThanOrEqual(0.01);
          expect(e.layers[i].bytes).toBe(b.bytes);
          expect(ckpt.layerInfo(b.layer!).loadedBytes[weightDtype]).toBe(b.bytes);
          b.dispose();
        });
      }
    }
  });

  test('the format\'s bits a weight: mxfp4 4.25, int8 8.5, bf16 and f16 16, f32 32 (panels padded to 64 bytes on top)', async () => {
    // H = I = 512: quantized panel rows fill whole 64-byte lines, so no padding at all. (gpt-oss-20b,
    // H = I = 2880: mxfp4 panels of 6120 bytes are padded to 6144, +0.4%.)
    const s = make('gpt-oss-mxfp4', { seed: 72, dims: { H: 512, I: 512, E: 2, K: 1, L: 1 } });
    const { H, I, E } = s.dims;
    const ckpt = await openCheckpoint(s.dir);
    const small = E * (2 * I + H) * 4 + E * H * 2 + E * 4; // biases f32, router bf16, router bias f32
    for (const [d, bits] of [['mxfp4', 4.25], ['int8', 8.5], ['bf16', 16], ['f16', 16], ['f32', 32]] as const) {
      const formula = (3 * E * I * H * bits) / 8 + small;
      const { bytes } = ckpt.estimate({ weightDtype: d });
      expect(bytes, d).toBe(formula);
      const block = await ckpt.loadMoeLayer(0, { weightDtype: d });
      expect(block.bytes, d).toBe(bytes);
      block.dispose();
    }
  });

  test('available memory: MemAvailable (Linux) or os.freemem(), MOE_CPU_AVAILABLE_MEMORY, options.availableBytes', async () => {
    const s = make('mixtral', { seed: 73 });
    const ckpt = await openCheckpoint(s.dir);
    const real = ckpt.estimate();
    expect(real.available).toBeGreaterThan(0);
    expect(real.availableSource).toMatch(process.platform === 'linux' ? /MemAvailable/ : /freemem/);
    expect(real.fits).toBe(true);
    vi.stubEnv('MOE_CPU_AVAILABLE_MEMORY', '12345');
    expect(ckpt.estimate()).toMatchObject({ available: 12345, availableSource: 'MOE_CPU_AVAILABLE_MEMORY', fits: false });
    vi.stubEnv('MOE_CPU_AVAILABLE_MEMORY', 'lots');
    expect(() => ckpt.estimate()).toThrow(/MOE_CPU_AVAILABLE_MEMORY: expected a number of bytes/);
    vi.unstubAllEnvs();
    expect(ckpt.estimate({ availableBytes: 1e15 })).toMatchObject({ available: 1e15, availableSource: 'options.availableBytes', fits: true });
    expect(() => ckpt.estimate({ availableBytes: -1 })).toThrow(RangeError);
    expect(() => ckpt.estimate({ availableBytes: '1' as never })).toThrow(TypeError);
  });
});

/** Each MoE layer's tensors in a shard of its own (model-0000n-of-…), so one layer's file can be changed alone. */
function shardByLayer(s: Synthetic): string[] {
  const byLayer = new Map<string, StTensor[]>();
  for (const t of s.tensors) {
    const m = /^model\.layers\.(\d+)\./.exec(t.name);
    const key = m ? m[1] : 'rest';
    byLayer.set(key, [...(byLayer.get(key) ?? []), t]);
  }
  const keys = [...byLayer.keys()];
  const name = (i: number) => `model-${String(i + 1).padStart(5, '0')}-of-${String(keys.length).padStart(5, '0')}.safetensors`;
  const weightMap: Record<string, string> = {};
  keys.forEach((k, i) => {
    writeSafetensors(path.join(s.dir, name(i)), byLayer.get(k)!);
    for (const t of byLayer.get(k)!) weightMap[t.name] = name(i);
  });
  fs.rmSync(path.join(s.dir, 'model.safetensors'));
  fs.writeFileSync(path.join(s.dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return keys.map((k, i) => path.join(s.dir, name(i)));
}

describe('loadMoeLayers', () => {
  test('every MoE layer, or a list in its order; onProgress after each; the same blocks as loadMoeLayer', async () => {
    const s = make('gpt-oss-mxfp4', { seed: 81, dims: { L: 4 } });
    const ckpt = await openCheckpoint(s.dir);
    const calls: unknown[] = [];
    const all = await ckpt.loadMoeLayers({ threads: 2, onProgress: (p) => calls.push(p) });
    expect(all.map((b) => b.layer)).toEqual([0, 1, 2, 3]);
    const e = ckpt.estimate();
    let done = 0;
    expect(calls).toEqual(e.layers.map((l, index) => ({ layer: l.layer, index, count: 4, bytesDone: (done += l.bytes), bytesTotal: e.bytes })));
    expect(done).toBe(all.reduce((a, b) => a + b.bytes, 0));

    const some = await ckpt.loadMoeLayers({ layers: [3, 1], weightDtype: 'int8' });
    expect(some.map((b) => [b.layer, b.weightDtype])).toEqual([[3, 'int8'], [1, 'int8']]);
    const { hidden } = randomHidden(3, 4, s.dims.H, false);
    for (const b of [...all, ...some]) {
      const one = await ckpt.loadMoeLayer(b.layer!, { weightDtype: b.weightDtype });
      expect(bitsEqual(one.forwardSync(hidden), b.forwardSync(hidden)), `layer ${b.layer} ${b.weightDtype}`).toBe(true);
      one.dispose();
      b.dispose();
    }
    expect(await ckpt.loadMoeLayers({ layers: [] })).toEqual([]);
  });

  test('shared experts (Qwen2-MoE, DeepSeek-V3): the staging arrays serve every layer', async () => {
    const s = make('deepseek-v3', { seed: 82, dims: { ...BLOCKED['deepseek-v3'], L: 4 } });
    const ckpt = await openCheckpoint(s.dir);
    const blocks = await ckpt.loadMoeLayers({ weightDtype: 'int8' });
    const ref = asHeld(s, 'int8');
    for (const b of blocks) {
      const { hidden, values } = randomHidden(b.layer!, 2, s.dims.H, false);
      expectClose(valuesOf(b.forwardSync(hidden)), referenceForward(ref, b.layer!, values, false), F32_TOL, `layer ${b.layer}`);
      b.dispose();
    }
  });

  test('bad options: TypeError / RangeError before anything is loaded', async () => {
    const s = make('qwen2-moe', { seed: 83 });
    const ckpt = await openCheckpoint(s.dir);
    const layer = vi.spyOn(MoeLayer.prototype, 'dispose');
    await expect(ckpt.loadMoeLayers({ layers: [0] })).rejects.toThrow(/layer: layer 0 is in mlp_only_layers/);
    await expect(ckpt.loadMoeLayers({ layers: [1, 1] })).rejects.toThrow(/layers\[1\]: layer 1 is listed twice/);
    await expect(ckpt.loadMoeLayers({ layers: 1 as never })).rejects.toThrow(TypeError);
    await expect(ckpt.loadMoeLayers({ layers: ['1'] as never })).rejects.toThrow(/layers\[0\]: expected a layer index/);
    await expect(ckpt.loadMoeLayers({ onProgress: 'yes' as never })).rejects.toThrow(/onProgress: expected a function/);
    await expect(ckpt.loadMoeLayers({ weightDtype: 'fp4' as never })).rejects.toThrow(/^weightDtype: expected one of/);
    await expect(ckpt.loadMoeLayers({ weightDtype: 'fp4' as never })).rejects.toThrow(RangeError);
    await expect(ckpt.loadMoeLayers({ weightDtype: 'mxfp4' })).rejects.toThrow(/weightDtype: 'mxfp4' packs blocks of 32/);
    expect(() => ckpt.estimate({ weightDtype: 'int4' as never })).toThrow(/^weightDtype: expected one of/);
    expect(layer).not.toHaveBeenCalled();
  });

  test('a layer that fails to load: the blocks already built are disposed, and the error says which file', async () => {
    const s = make('mixtral', { seed: 84, dims: { L: 3 } });
    const files = shardByLayer(s);
    const ckpt = await openCheckpoint(s.dir);
    const layer2 = files.find((f) => ckpt.layerInfo(2).tensors.every((g) => g.files.includes(f)))!;
    fs.utimesSync(layer2, new Date(), new Date(Date.now() + 10_000));
    const dispose = vi.spyOn(MoeLayer.prototype, 'dispose');
    const progress: number[] = [];
    const err = await ckpt.loadMoeLayers({ onProgress: (p) => progress.push(p.layer) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as CheckpointError).file).toBe(layer2);
    expect((err as Error).message).toMatch(/changed since openCheckpoint/);
    expect(progress).toEqual([0, 1]);
    expect(dispose).toHaveBeenCalledTimes(2);
    expect(dispose.mock.contexts.every((l) => (l as MoeLayer).bytes === 0)).toBe(true);
  });

  test('onProgress throwing stops the load: its error, built blocks disposed', async () => {
    const s = make('gpt-oss-mxfp4', { seed: 85, dims: { L: 3 } });
    const ckpt = await openCheckpoint(s.dir);
    const dispose = vi.spyOn(MoeLayer.prototype, 'dispose');
    const stop = new Error('stop');
    await expect(ckpt.loadMoeLayers({ onProgress: (p) => { if (p.index === 1) throw stop; } })).rejects.toBe(stop);
    expect(dispose).toHaveBeenCalledTimes(2);
  });

  test('too large for the memory available: a CheckpointError before anything is read or allocated', async () => {
    const s = make('gpt-oss-mxfp4', { seed: 86, dims: { L: 3 } });
    const ckpt = await openCheckpoint(s.dir);
    const mxfp4 = ckpt.estimate();
    const bf16 = ckpt.estimate({ weightDtype: 'bf16' });
    expect(bf16.peakBytes).toBeGreaterThan(2 * mxfp4.peakBytes);
    // Nothing to read any more: a load that got as far as reading would fail differently.
    fs.rmSync(path.join(s.dir, 'model.safetensors'));
    const created = vi.spyOn(binding, 'NativeLayer');
    const progress = vi.fn();
    const availableBytes = Math.floor((mxfp4.peakBytes + bf16.peakBytes) / 2);
    const err = await ckpt.loadMoeLayers({ weightDtype: 'bf16', availableBytes, onProgress: progress }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    const message = (err as Error).message;
    expect(message).toContain(s.dir);
    expect(message).toMatch(/loading MoE layers 0-2 \(3\) as bf16 needs [\d.]+ [kMG]?B \([\d.]+ [kMG]?B packed \+ [\d.]+ [kMG]?B of staging .*\), but [\d.]+ [kMG]?B is available \(options\.availableBytes\); nothing was loaded/);
    expect(message).toMatch(/fits as weightDtype 'mxfp4'/);
    expect(message).not.toMatch(/'f32'/);
    expect(progress).not.toHaveBeenCalled();
    expect(created).not.toHaveBeenCalled();
    // The default (mxfp4) fits the same budget; it gets as far as reading, which now fails.
    await expect(ckpt.loadMoeLayers({ availableBytes })).rejects.toThrow(/cannot open/);
    vi.stubEnv('MOE_CPU_AVAILABLE_MEMORY', '1000');
    await expect(ckpt.loadMoeLayers()).rejects.toThrow(/is available \(MOE_CPU_AVAILABLE_MEMORY\); nothing was loaded\. Load fewer layers/);
    vi.unstubAllEnvs();
  });
});
