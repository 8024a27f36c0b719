import { describe, expect, test } from 'vitest';
import { geluAndMul, siluAndMul, swigluoai } from '../lib/index';
import {
  BF16_TOL,
  Dtype,
  F32_TOL,
  asDtype,
  bitsEqual,
  expectClose,
  mulberry32,
  randF32,
  snapshot,
  unchanged,
  valuesOf,
} from './helpers';
import { ActParams, ActivationName, Layout, gateIndex, refErf, refGatedActivation, upIndex } from './reference';

type Arr = Float32Array | Uint16Array;
interface ActOpts {
  tokens: number;
  intermediateSize: number;
  isInterleaved: boolean;
}

/** Calls the package's function for one activation kind. */
function run(kind: ActivationName, x: Arr, o: ActOpts, p: ActParams = {}): Arr {
  switch (kind) {
    case 'swigluoai': {
      const extra: Record<string, number> = {};
      if (p.alpha !== undefined) extra.alpha = p.alpha;
      if (p.limit !== undefined) extra.limit = p.limit;
      return swigluoai(x, { ...o, ...extra });
    }
    case 'silu':
      return siluAndMul(x, o);
    case 'gelu':
      return geluAndMul(x, { ...o, approximate: 'none' });
    case 'gelu_tanh':
      return geluAndMul(x, { ...o, approximate: 'tanh' });
  }
}

const KINDS: ActivationName[] = ['swigluoai', 'silu', 'gelu', 'gelu_tanh'];
const LAYOUTS: Layout[] = ['halves', 'interleaved'];
const DTYPES: Dtype[] = ['f32', 'bf16'];
const SIZES = [1, 3, 17, 33, 4097];
/** Inputs span [-9, 9]: past swigluoai's default limit 7 on both sides. */
const INPUT_RANGE = 9;

/**
 * Random [tokens, 2I] input. Channel 0 of token 0 is fixed to (g, u) = (1.5, 1.25) so that
 * max|ref| is of order 1 even for one channel (the contract's error is relative to max|ref|).
 */
function input(tokens: number, I: number, layout: Layout, dtype: Dtype, seed: number): Arr {
  const x = randF32(mulberry32(seed), tokens * 2 * I, -INPUT_RANGE, INPUT_RANGE);
  x[gateIndex(layout, 0)] = 1.5;
  x[upIndex(layout, 0, I)] = 1.25;
  return asDtype(x, dtype);
}

function tolOf(dtype: Dtype): number {
  return dtype === 'f32' ? F32_TOL : BF16_TOL;
}

test('the reference erf matches tabulated values to 1e-15', () => {
  const table: [number, number][] = [
    [0, 0],
    [0.1, 0.1124629160182849],
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [1.5, 0.9661051464753108],
    [2, 0.9953222650189527],
    [2.5, 0.999593047982555],
    [3, 0.9999779095030014],
    [4, 0.9999999845827421],
    [-1, -0.8427007929497149],
  ];
  for (const [x, v] of table) expect(Math.abs(refErf(x) - v), `erf(${x})`).toBeLessThanOrEqual(1e-15);
});

describe.each(DTYPES)('gated activations, %s', (dtype) => {
  describe.each(KINDS)('%s', (kind) => {
    describe.each(LAYOUTS)('%s', (layout) => {
      test.each(SIZES)('I = %i, tokens 1 and 3: matches the reference', (I) => {
        for (const tokens of [1, 3]) {
          const x = input(tokens, I, layout, dtype, I * 7 + tokens);
          const before = snapshot(x);
          const out = run(kind, x, { tokens, intermediateSize: I, isInterleaved: layout === 'interleaved' });
          expect(out.constructor).toBe(x.constructor);
          expect(out.length).toBe(tokens * I);
          expect(unchanged(x, before)).toBe(true);
          const ref = refGatedActivation(kind, valuesOf(x), tokens, I, layout);
          expectClose(valuesOf(out), ref, tolOf(dtype), `${kind} ${layout} ${dtype} T=${tokens} I=${I}`);
        }
      });

      test('NaN in gate or up gives NaN (also where a clamp applies to the other input)', () => {
        const I = 17;
        const x = valuesOf(input(1, I, layout, 'f32', 42)).slice();
        const g = (j: number) => gateIndex(layout, j);
        const u = (j: number) => upIndex(layout, j, I);
        x[g(3)] = NaN;
        x[u(5)] = NaN;
        x[g(7)] = NaN;
        x[u(7)] = 100;
        x[g(9)] = 100;
        x[u(9)] = NaN;
        x[g(11)] = NaN;
        x[u(11)] = NaN;
        x[g(13)] = -100;
        x[u(13)] = NaN;
        const xs = asDtype(x, dtype);
        const out = valuesOf(run(kind, xs, { tokens: 1, intermediateSize: I, isInterleaved: layout === 'interleaved' }));
        for (const j of [3, 5, 7, 9, 11, 13]) expect(Number.isNaN(out[j]), `channel ${j}: ${out[j]}`).toBe(true);
        const ref = refGatedActivation(kind, valuesOf(xs), 1, I, layout);
        expectClose(out, ref, tolOf(dtype), 'finite channels');
      });
    });
  });

  describe('swigluoai specifics', () => {
    const I = 8;
    // (g, u) pairs; channel k's expected relation is commented.
    const pairs: [number, number][] = [
      [10, 2], // 0: g clamped to 7 -> equals channel 1
      [7, 2], // 1
      [3, 10], // 2: u clamped to 7 -> equals channel 3
      [3, 7], // 3
      [3, -10], // 4: u clamped to -7 -> equals channel 5
      [3, -7], // 5
      [-10, 2], // 6: no lower clamp on g -> differs from channel 7
      [-7, 2], // 7
    ];

    function build(layout: Layout): Arr {
      const x = new Float32Array(2 * I);
      pairs.forEach(([gv, uv], j) => {
        x[gateIndex(layout, j)] = gv;
        x[upIndex(layout, j, I)] = uv;
      });
      return asDtype(x, dtype);
    }

    test.each(LAYOUTS)('clamps: gate from above only, up on both sides (%s)', (layout) => {
      const x = build(layout);
      const out = valuesOf(swigluoai(x, { tokens: 1, intermediateSize: I, isInterleaved: layout === 'interleaved' }));
      expect(out[0]).toBe(out[1]);
      expect(out[2]).toBe(out[3]);
      expect(out[4]).toBe(out[5]);
      const ref = refGatedActivation('swigluoai', valuesOf(x), 1, I, layout);
      expectClose(out, ref, tolOf(dtype));
      // g = -10 is not clamped to -7: out[6] is near ref[6], far from ref[7].
      expect(Math.abs(out[6] - ref[6])).toBeLessThan(Math.abs(ref[7] - ref[6]) / 2);
    });

    test.each(LAYOUTS)('custom alpha and limit (alpha 1.0, limit 3.0, %s)', (layout) => {
      const p = { alpha: 1.0, limit: 3.0 };
      for (const I2 of [1, 33]) {
        const x = input(3, I2, layout, dtype, 77 + I2);
        const out = run('swigluoai', x, { tokens: 3, intermediateSize: I2, isInterleaved: layout === 'interleaved' }, p);
        const ref = refGatedActivation('swigluoai', valuesOf(x), 3, I2, layout, p);
        expectClose(valuesOf(out), ref, tolOf(dtype), `I=${I2}`);
        const dflt = refGatedActivation('swigluoai', valuesOf(x), 3, I2, layout);
        if (I2 > 1) expect(Math.abs(dflt[1] - ref[1]) + Math.abs(dflt[2] - ref[2])).toBeGreaterThan(0);
      }
      const x = build(layout);
      const out = valuesOf(run('swigluoai', x, { tokens: 1, intermediateSize: I, isInterleaved: layout === 'interleaved' }, p));
      // limit 3: (3, 10) and (3, 7) are both clamped to u = 3.
      expect(out[2]).toBe(out[3]);
    });

    test('default alpha and limit are 1.702 and 7.0', () => {
      const x = input(3, 33, 'interleaved', dtype, 5);
      const o = { tokens: 3, intermediateSize: 33, isInterleaved: true };
      expect(bitsEqual(swigluoai(x, o), swigluoai(x, { ...o, alpha: 1.702, limit: 7.0 }))).toBe(true);
    });
  });

  test('geluAndMul defaults to the erf form', () => {
    const x = input(3, 33, 'halves', dtype, 6);
    const o = { tokens: 3, intermediateSize: 33, isInterleaved: false };
    expect(bitsEqual(geluAndMul(x, o), geluAndMul(x, { ...o, approximate: 'none' }))).toBe(true);
  });
});
