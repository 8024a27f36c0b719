import { describe, expect, test } from 'vitest';
import { deinterleaveW13, interleaveW13 } from '../lib/index';
import { Dtype, asDtype, bitsEqual, mulberry32, randF32, snapshot, unchanged } from './helpers';
import { LayoutShape, refDeinterleave, refInterleave } from './reference';

interface Case {
  name: string;
  E: number;
  I: number;
  H: number;
  transposed: boolean;
}

const CASES: Case[] = [
  { name: 'W13 [E,2I,H] E=1 I=1 H=1', E: 1, I: 1, H: 1, transposed: false },
  { name: 'W13 [E,2I,H] E=3 I=17 H=33', E: 3, I: 17, H: 33, transposed: false },
  { name: 'W13 [E,2I,H] E=2 I=33 H=3', E: 2, I: 33, H: 3, transposed: false },
  { name: 'W13 transposed [E,H,2I] E=3 I=17 H=5', E: 3, I: 17, H: 5, transposed: true },
  { name: 'W13 transposed [E,H,2I] E=1 I=33 H=1', E: 1, I: 33, H: 1, transposed: true },
  { name: 'bias [E,2I] (hiddenSize 1) E=5 I=33', E: 5, I: 33, H: 1, transposed: false },
  { name: 'bias [E,2I] E=3 I=4097', E: 3, I: 4097, H: 1, transposed: false },
];

const DTYPES: Dtype[] = ['f32', 'bf16'];

function shapeOf(c: Case): LayoutShape {
  return c.transposed
    ? { outer: c.E * c.H, intermediate: c.I, inner: 1 }
    : { outer: c.E, intermediate: c.I, inner: c.H };
}

function opts(c: Case, inPlace?: boolean) {
  const o: Record<string, unknown> = { numExperts: c.E, intermediateSize: c.I, hiddenSize: c.H };
  if (c.transposed) o.transposed = true;
  if (inPlace !== undefined) o.inPlace = inPlace;
  return o as { numExperts: number; intermediateSize: number; hiddenSize: number };
}

function data(c: Case, dtype: Dtype, seed: number) {
  return asDtype(randF32(mulberry32(seed), c.E * 2 * c.I * c.H, -3, 3), dtype);
}

describe.each(DTYPES)('W13 layout, %s', (dtype) => {
  describe.each(CASES)('$name', (c) => {
    const shape = shapeOf(c);

    test('deinterleaveW13 out of place: matches the reference, input untouched', () => {
      const w = data(c, dtype, 1);
      const before = snapshot(w);
      const out = deinterleaveW13(w, opts(c));
      expect(out).not.toBe(w);
      expect(out.constructor).toBe(w.constructor);
      expect(bitsEqual(out, refDeinterleave(w, shape))).toBe(true);
      expect(unchanged(w, before)).toBe(true);
    });

    test('interleaveW13 out of place: matches the reference, input untouched', () => {
      const w = data(c, dtype, 2);
      const before = snapshot(w);
      const out = interleaveW13(w, opts(c, false));
      expect(out).not.toBe(w);
      expect(bitsEqual(out, refInterleave(w, shape))).toBe(true);
      expect(unchanged(w, before)).toBe(true);
    });

    test('deinterleaveW13 in place: returns the same array, contents equal out of place', () => {
      const w = data(c, dtype, 3);
      const expected = deinterleaveW13(w.slice(), opts(c));
      const out = deinterleaveW13(w, opts(c, true));
      expect(out).toBe(w);
      expect(bitsEqual(w, expected)).toBe(true);
      expect(bitsEqual(w, refDeinterleave(data(c, dtype, 3), shape))).toBe(true);
    });

    test('interleaveW13 in place: returns the same array, contents equal out of place', () => {
      const w = data(c, dtype, 4);
      const expected = interleaveW13(w.slice(), opts(c));
      const out = interleaveW13(w, opts(c, true));
      expect(out).toBe(w);
      expect(bitsEqual(w, expected)).toBe(true);
      expect(bitsEqual(w, refInterleave(data(c, dtype, 4), shape))).toBe(true);
    });

    test('de-interleave then interleave is the identity (out of place and in place)', () => {
      const w = data(c, dtype, 5);
      const original = w.slice();
      expect(bitsEqual(interleaveW13(deinterleaveW13(w, opts(c)), opts(c)), original)).toBe(true);
      interleaveW13(deinterleaveW13(w, opts(c, true)), opts(c, true));
      expect(bitsEqual(w, original)).toBe(true);
    });
  });

  test('a subarray view is permuted in place without touching its neighbours', () => {
    const c = CASES[1];
    const n = c.E * 2 * c.I * c.H;
    const whole = asDtype(randF32(mulberry32(9), n + 10, -3, 3), dtype);
    const view = whole.subarray(5, 5 + n);
    const expected = refDeinterleave(view.slice(), shapeOf(c));
    const head = whole.slice(0, 5);
    const tail = whole.slice(5 + n);
    expect(deinterleaveW13(view, opts(c, true))).toBe(view);
    expect(bitsEqual(view, expected)).toBe(true);
    expect(bitsEqual(whole.slice(0, 5), head)).toBe(true);
    expect(bitsEqual(whole.slice(5 + n), tail)).toBe(true);
  });

  test('gate j is row 2j and up j is row 2j+1 when interleaved (explicit small example)', () => {
    // E=1, I=2, H=1: interleaved [g0, u0, g1, u1] -> halves [g0, g1, u0, u1].
    const inter = asDtype(new Float32Array([1, 2, 3, 4]), dtype);
    const halves = deinterleaveW13(inter, { numExperts: 1, intermediateSize: 2, hiddenSize: 1 });
    expect(Array.from(halves)).toEqual(Array.from(asDtype(new Float32Array([1, 3, 2, 4]), dtype)));
  });
});
