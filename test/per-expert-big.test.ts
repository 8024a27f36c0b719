// A layer past the 2^32 elements a Node 20 typed array can hold, built from per-expert arrays.
//
// DeepSeek-V3's MoE layer (256 experts, hidden 7168, intermediate 2048): W13 is 256 · 4096 · 7168
// = 7.5 G weights, more than any one typed array of Node 20 holds, so it can only be given per
// expert. Here as pre-quantized mxfp4, the way a checkpoint converted to mxfp4 would hand it over
// (6 GB packed). To keep the caller's side small, the expert e's blocks reuse one of 32 distinct
// block buffers (e mod 32) while every expert has scales of its own: no two experts have the same
// weights, so an expert read from the wrong array — or from a wrong offset past 2^32 bytes —
// changes the output. The forward is checked against a float64 reference of the routed experts.
//
// It needs ~8 GB of memory; where less is available, it is skipped (and reported as skipped).
import { describe, expect, test } from 'vitest';
import { MoeLayer } from '../lib/index';
import { availableMemory, peakRss } from '../lib/checkpoint/memory';
import { F32_TOL, expectClose, mulberry32 } from './helpers';
import { e2m1Value } from './quant-reference';

const E = 256, H = 7168, I = 2048, K = 8;
const DISTINCT_BLOCKS = 32;
const W13_ELEMENTS = E * 2 * I * H, W2_ELEMENTS = E * H * I;
// mxfp4: 16 bytes of codes and 1 scale byte per 32 weights.
const PACKED_BYTES = (W13_ELEMENTS + W2_ELEMENTS) / 32 * 17;
const NEEDED_BYTES = PACKED_BYTES + 2.2e9;   // + the caller's arrays (1.1 GB) and headroom
const available = availableMemory();
const fits = available.bytes >= NEEDED_BYTES;
if (!fits) {
  console.log(`per-expert-big: skipped, needs ${(NEEDED_BYTES / 1e9).toFixed(1)} GB, ${available.source} says ${(available.bytes / 1e9).toFixed(1)} GB`);
}

function randomBytes(rng: () => number, n: number, lo: number, hi: number): Uint8Array {
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + Math.floor(rng() * (hi - lo + 1));
  return a;
}

/** Expert e's weights as mxfp4 fields: blocks [rows, depth/32, 16] shared mod 32, scales [rows, depth/32] its own. */
function mxfp4PerExpert(rng: () => number, rows: number, depth: number) {
  const pool = Array.from({ length: DISTINCT_BLOCKS }, () => randomBytes(rng, rows * depth / 2, 0, 255));
  // Scales 2^-8 .. 2^-4: with e2m1 codes up to ±6, weights up to ~0.4 in magnitude.
  const scales = Array.from({ length: E }, () => randomBytes(rng, rows * depth / 32, 119, 123));
  return { blocks: Array.from({ length: E }, (_, e) => pool[e % DISTINCT_BLOCKS]), scales };
}

const E2M1 = Float64Array.from({ length: 16 }, (_, c) => e2m1Value(c));
const POW2 = Float64Array.from({ length: 256 }, (_, s) => 2 ** (s - 127));

/** Row r of an mxfp4 matrix (depth values) · x, in float64. */
function dotRow(blocks: Uint8Array, scales: Uint8Array, r: number, depth: number, x: Float64Array): number {
  const nb = depth / 32;
  let sum = 0;
  for (let b = 0; b < nb; b++) {
    const scale = POW2[scales[r * nb + b]];
    const base = (r * nb + b) * 16;
    let block = 0;
    for (let j = 0; j < 16; j++) {
      const byte = blocks[base + j];
      block += E2M1[byte & 15] * x[b * 32 + 2 * j] + E2M1[byte >> 4] * x[b * 32 + 2 * j + 1];
    }
    sum += block * scale;
  }
  return sum;
}

describe.skipIf(!fits)('a layer over 2^32 elements from per-expert arrays (DeepSeek-V3 shape, mxfp4)', () => {
  test('packs 256 per-expert tensors off the main thread and matches the float64 reference', async () => {
    expect(W13_ELEMENTS).toBeGreaterThan(2 ** 32);
    const rng = mulberry32(0xdee9);
    const w13 = mxfp4PerExpert(rng, 2 * I, H);
    const w2 = mxfp4PerExpert(rng, H, I);
    const rssBefore = process.memoryUsage().rss;
    const t0 = performance.now();
    const layer = await MoeLayer.create({
      numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu',
      isW13Interleaved: false, weightDtype: 'mxfp4', w13, w2, routing: { mode: 'topk-softmax' },
    });
    const packSeconds = (performance.now() - t0) / 1000;
    try {
      // What the layer holds is the packed mxfp4 weights (panels may pad a little), nothing more.
      expect(layer.bytes).toBeGreaterThanOrEqual(PACKED_BYTES);
      expect(layer.bytes).toBeLessThan(PACKED_BYTES * 1.02);
      console.log(`per-expert-big: packed ${(layer.bytes / 1e9).toFixed(2)} GB in ${packSeconds.toFixed(1)} s; `
        + `RSS ${(rssBefore / 1e9).toFixed(2)} → ${(process.memoryUsage().rss / 1e9).toFixed(2)} GB, peak ${(peakRss() / 1e9).toFixed(2)} GB`);

      // Three tokens whose routes take the first and last experts and pairs sharing a block buffer.
      const T = 3;
      const ids = Int32Array.from([
        0, 255, 32, 1, 33, 224, 100, 7,
        31, 63, 95, 127, 159, 191, 223, 254,
        128, 129, 160, 5, 37, 69, 250, 16,
      ]);
      const weights = new Float32Array(T * K).map(() => 0.05 + rng() * 0.3);
      const hidden = new Float32Array(T * H).map(() => rng() * 2 - 1);
      const out = await layer.forward(hidden, { ids, weights });

      const ref = new Float64Array(T * H);
      const x = new Float64Array(H), act = new Float64Array(I);
      for (let t = 0; t < T; t++) {
        for (let i = 0; i < H; i++) x[i] = hidden[t * H + i];
        for (let k = 0; k < K; k++) {
          const e = ids[t * K + k];
          for (let c = 0; c < I; c++) {
            // Halves layout: gate rows 0..I-1, up rows I..2I-1.
            const g = dotRow(w13.blocks[e], w13.scales[e], c, H, x);
            const u = dotRow(w13.blocks[e], w13.scales[e], I + c, H, x);
            act[c] = (g / (1 + Math.exp(-g))) * u;
          }
          for (let r = 0; r < H; r++) ref[t * H + r] += weights[t * K + k] * dotRow(w2.blocks[e], w2.scales[e], r, I, act);
        }
      }
      expectClose(out, ref, F32_TOL, 'DeepSeek-V3 shape, per-expert mxfp4');
    } finally {
      layer.dispose();
    }
  }, 600_000);
});
