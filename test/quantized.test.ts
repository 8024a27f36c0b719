// Packed weight formats through the public API: quantize / dequantize against an independent
// reference (test/quant-reference.ts, written from OCP MX v1.0 and the stated rules), MoeLayer
// with weightDtype 'f16', 'mxfp4' and 'int8' against the float64 reference on the exactly
// decoded weights, the kernels a layer picks, bad input, and the bytes a layer holds.
// Runs under every MOE_CPU_ISA (the expected kernel names come from cpuInfo()).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { MoeLayer, cpuInfo, dequantize, quantize, type Int8Tensor, type Mxfp4Tensor } from '../lib/index';
import { binding } from '../lib/binding';
import {
  BF16_TOL, F32_TOL, bitsEqual, detach, expectClose, expectDisposed, expectRejects, expectThrows, mulberry32, randF32, snapshot, unchanged,
  type Rng,
} from './helpers';
import { randomRoute } from './moe-case';
import {
  ActivationName, refFromBf16, refMoeForward, refSelectExperts, refToBf16, refTranspose, type RefMoeConfig,
} from './reference';
import {
  BLOCK, e2m1Encode, e2m1Value, e8m0Value, refDequantizeInt8, refDequantizeMxfp4, refF16Value, refFromF16,
  refInt8Block, refMxfp4Block, refQuantizeInt8, refQuantizeMxfp4, refRoundF16, refToF16, refToF16Bits,
} from './quant-reference';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
type QFormat = 'mxfp4' | 'int8';
type Format = 'f16' | QFormat;
const FORMATS: Format[] = ['f16', 'mxfp4', 'int8'];
type ErrClass = ErrorConstructor | ErrorConstructor[];

const f32 = (xs: number[]) => Float32Array.from(xs);

/** Equal element by element, NaN equal to NaN, +0 and −0 told apart. */
function expectSameValues(actual: Float32Array, expected: Float32Array, label: string) {
  expect(actual.length, label).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) {
      expect.fail(`${label}: element ${i}: got ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

function expectSameBytes(actual: ArrayBufferView, expected: ArrayBufferView, label: string) {
  const a = new Uint8Array(actual.buffer, actual.byteOffset, actual.byteLength);
  const e = new Uint8Array(expected.buffer, expected.byteOffset, expected.byteLength);
  expect(a.length, label).toBe(e.length);
  for (let i = 0; i < e.length; i++) if (a[i] !== e[i]) expect.fail(`${label}: byte ${i}: got ${a[i]}, expected ${e[i]}`);
}

// ---------------------------------------------------------------------------------------------
// Test data: blocks of 32 values covering the cases the rules single out.

/** Random values of random magnitude per block: uniform, wide dynamic range, tiny, huge, zeros. */
function specialBlocks(rng: Rng, format: QFormat): number[][] {
  const blocks: number[][] = [];
  const block = (f: (i: number) => number) => blocks.push(Array.from({ length: BLOCK }, (_, i) => Math.fround(f(i))));
  for (let b = 0; b < 24; b++) block(() => 2 * rng() - 1);
  for (let b = 0; b < 8; b++) block(() => (2 * rng() - 1) * 2 ** Math.floor(40 * rng() - 20)); // wide range in a block
  block(() => 0); // all zero
  block((i) => (i % 2 ? -0 : 0)); // signed zeros
  block((i) => (i === 7 ? 1 : 0)); // one non-zero value
  block((i) => (i === 31 ? -1e-3 : 0));
  block(() => 2 ** -149 * Math.floor(8 * rng())); // f32 subnormals (mxfp4 scale clamps at 2^-127)
  block(() => (2 * rng() - 1) * 1e-30); // tiny normals
  block(() => (2 * rng() - 1) * 1e-6);
  if (format === 'mxfp4') {
    block(() => (2 * rng() - 1) * 3e38); // huge: near the f32 maximum
    block((i) => (i === 0 ? 3.4028234663852886e38 : -rng() * 1e38));
    // Ties at scale 2^0 (max 4 -> s = 127): exactly halfway on the e2m1 grid -> the even code.
    block((i) => [4, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, -0.25, -0.75, -1.25, -1.75, -2.5, -3.5, -5, 0.5][i % 16]);
    // The same at scale 2^-10 and 2^20.
    block((i) => [4, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5][i % 8] * 2 ** -10);
    block((i) => -[4, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5][i % 8] * 2 ** 20);
    // Just off the ties.
    block((i) => (i === 0 ? 4 : [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5][i % 7] * (i % 2 ? 1 + 2 ** -20 : 1 - 2 ** -20)));
    // Saturation: max in [6, 8) with scale 1 -> codes ±6.
    block((i) => [7.99, 6.5, 6, -7.5, -6.01, 5.5, 1, -3][i % 8]);
  } else {
    // Scale 1 exactly (max 127): ties at .5 go away from zero.
    block((i) => [127, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5, 3, -100.25, 0.49999997][i % 12]);
    // Scale exactly representable in f16 and not: max 100 -> d = f16(100/127).
    block((i) => [100, -100, 50, 0.3937, -1e-3, 99.99][i % 6]);
    // f16 subnormal scale (max / 127 below 2^-14): codes against the rounded d, clamped at ±127.
    block((i) => [1e-5, -1e-5, 3e-6, 7e-6][i % 4]);
    block((i) => [2e-6, -2e-6][i % 2]);
    // Large, still a finite f16 scale (max / 127 < 65504).
    block(() => (2 * rng() - 1) * 8e6);
    // max/127 below half the smallest f16 subnormal: d = 0, every code 0.
    block(() => (2 * rng() - 1) * 1e-10);
  }
  return blocks;
}

function flat(blocks: number[][]): Float32Array {
  return Float32Array.from(blocks.flat());
}

// ---------------------------------------------------------------------------------------------

describe('the reference itself (hand-computed values from the rules)', () => {
  test('e2m1 values by code', () => {
    expect(Array.from({ length: 16 }, (_, c) => e2m1Value(c))).toEqual([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6]);
  });

  test('e2m1 rounding: ties to the even code, saturation at 6, sign kept', () => {
    const cases: [number, number][] = [
      [0.25, 0], [0.26, 1], [0.75, 2], [0.74, 1], [1.25, 2], [1.26, 3], [1.75, 4], [2.5, 4], [2.51, 5],
      [3.5, 6], [3.49, 5], [5, 6], [5.01, 7], [6, 7], [7.99, 7], [100, 7], [-0.25, 8], [-0.1, 8], [-0, 8], [-5, 14], [-7, 15],
    ];
    for (const [x, code] of cases) expect(e2m1Encode(x), `e2m1(${x})`).toBe(code);
  });

  test('mxfp4 scale: floor(log2(max)) - 2 + 127, zero block 0, NaN/Inf block 0xFF, clamped at 0', () => {
    const b = (max: number) => refMxfp4Block(Array.from({ length: 32 }, (_, i) => (i === 5 ? max : 0))).scale;
    expect(b(4)).toBe(127);
    expect(b(7.99)).toBe(127);
    expect(b(8)).toBe(128);
    expect(b(1)).toBe(125);
    expect(b(0.999)).toBe(124);
    expect(b(0)).toBe(0);
    expect(b(2 ** -125)).toBe(0);
    expect(b(2 ** -140)).toBe(0);
    expect(b(3.4e38)).toBe(127 + 127 - 2);
    expect(b(NaN)).toBe(0xff);
    expect(b(-Infinity)).toBe(0xff);
    expect(e8m0Value(0xff)).toBeNaN();
    expect(e8m0Value(127)).toBe(1);
    expect(e8m0Value(0)).toBe(2 ** -127);
  });

  test('f16: rounding to nearest even, subnormals, overflow', () => {
    expect(refToF16Bits(1)).toBe(0x3c00);
    expect(refToF16Bits(-2)).toBe(0xc000);
    expect(refToF16Bits(65504)).toBe(0x7bff);
    expect(refToF16Bits(65519.99)).toBe(0x7bff);
    expect(refToF16Bits(65520)).toBe(0x7c00);
    expect(refToF16Bits(2 ** -24)).toBe(0x0001);
    expect(refToF16Bits(2 ** -25)).toBe(0x0000); // tie -> even (0)
    expect(refToF16Bits(3 * 2 ** -25)).toBe(0x0002); // tie 1.5 ulp -> 2
    expect(refToF16Bits(2 ** -14)).toBe(0x0400);
    expect(refToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(refToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(refToF16Bits(-0)).toBe(0x8000);
    expect(refF16Value(0x7c00)).toBe(Infinity);
    expect(refF16Value(0x7e00)).toBeNaN();
    expect(refF16Value(0x03ff)).toBe(1023 * 2 ** -24);
  });

  test('int8: d = f16(max/127), round half away from zero, clamp', () => {
    const r = refInt8Block(Array.from({ length: 32 }, (_, i) => [127, 0.5, -0.5, 2.5, -2.5, 0][i % 6]));
    expect(r.scale).toBe(0x3c00);
    expect(r.codes.slice(0, 6)).toEqual([127, 1, -1, 3, -3, 0]);
    expect(refInt8Block(new Array(32).fill(0)).codes).toEqual(new Array(32).fill(0));
  });
});

// ---------------------------------------------------------------------------------------------

describe('quantize / dequantize vs the independent reference, bit for bit', () => {
  for (const format of ['mxfp4', 'int8'] as const) {
    test(`${format}: codes and scales on random and special blocks, several row shapes`, () => {
      const rng = mulberry32(format === 'mxfp4' ? 17 : 18);
      const blocks = specialBlocks(rng, format);
      // Shuffle the blocks into rows of 3 blocks (depth 96), and as one row of all of them.
      const values = flat(blocks);
      const n = blocks.length;
      for (const [rows, depth] of [[n, 32], [1, 32 * n], [n / (n % 3 === 0 ? 3 : 1), 32 * (n % 3 === 0 ? 3 : 1)]] as const) {
        if (format === 'mxfp4') {
          const got = quantize(values, [rows, depth], 'mxfp4');
          const want = refQuantizeMxfp4(values, rows, depth);
          expect(got.blocks).toBeInstanceOf(Uint8Array);
          expect(got.scales).toBeInstanceOf(Uint8Array);
          expectSameBytes(got.scales, want.scales, `scales [${rows}, ${depth}]`);
          expectSameBytes(got.blocks, want.blocks, `blocks [${rows}, ${depth}]`);
          expectSameValues(dequantize(got, [rows, depth], 'mxfp4'), refDequantizeMxfp4(want, rows, depth), 'dequantize');
        } else {
          const got = quantize(values, [rows, depth], 'int8');
          const want = refQuantizeInt8(values, rows, depth);
          expect(got.codes).toBeInstanceOf(Int8Array);
          expect(got.scales).toBeInstanceOf(Uint16Array);
          expectSameBytes(got.scales, want.scales, `scales [${rows}, ${depth}]`);
          expectSameBytes(got.codes, want.codes, `codes [${rows}, ${depth}]`);
          expectSameValues(dequantize(got, [rows, depth], 'int8'), refDequantizeInt8(want, rows, depth), 'dequantize');
        }
      }
    });
  }

  test('mxfp4 ties: exactly halfway values get the even code', () => {
    const values = f32([4, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, ...new Array(24).fill(0)]);
    const t = quantize(values, [1, 32], 'mxfp4');
    expect(t.scales[0]).toBe(127);
    const codes = Array.from(t.blocks.subarray(0, 4), (b) => [b & 0xf, b >> 4]).flat();
    expect(codes).toEqual([6, 0, 2, 2, 4, 4, 6, 6]); // 4 | 0.25->0, 0.75->1.0, 1.25->1.0, 1.75->2, 2.5->2, 3.5->4, 5->4
  });

  test('mxfp4 saturation: a block max in [6, 8) at scale 1 decodes to ±6', () => {
    const values = f32([7.99, -7.5, 6.5, ...new Array(29).fill(1)]);
    const t = quantize(values, [1, 32], 'mxfp4');
    expect(t.scales[0]).toBe(127);
    expect(Array.from(dequantize(t, [1, 32], 'mxfp4').subarray(0, 4))).toEqual([6, -6, 6, 1]);
  });

  test('mxfp4: a block holding NaN or Inf gets scale 0xFF and decodes to NaN; other blocks are unaffected', () => {
    const values = randF32(mulberry32(3), 96);
    values[40] = NaN;
    values[70] = -Infinity;
    const t = quantize(values, [1, 96], 'mxfp4');
    expect(Array.from(t.scales)).toEqual([refQuantizeMxfp4(values.subarray(0, 32), 1, 32).scales[0], 0xff, 0xff]);
    const out = dequantize(t, [1, 96], 'mxfp4');
    for (let i = 32; i < 96; i++) expect(out[i]).toBeNaN();
    expectSameValues(out.subarray(0, 32), refDequantizeMxfp4(refQuantizeMxfp4(values.subarray(0, 32), 1, 32), 1, 32), 'first block');
  });

  test('mxfp4 decode: every scale byte x every code (e8m0 0xFF is NaN, 6 * 2^127 overflows to Inf)', () => {
    const scales = Uint8Array.from({ length: 256 }, (_, s) => s);
    const blocks = new Uint8Array(256 * 16);
    for (let b = 0; b < 256; b++) for (let j = 0; j < 16; j++) blocks[b * 16 + j] = (j & 0xf) | (((j + b) & 0xf) << 4);
    const t = { blocks, scales };
    const out = dequantize(t, [256, 32], 'mxfp4');
    expectSameValues(out, refDequantizeMxfp4(t, 256, 32), 'all scales');
    for (let i = 0; i < 32; i++) expect(out[255 * 32 + i]).toBeNaN();
    expect(out[254 * 32 + 14]).toBe(Infinity); // code 7 (6.0) * 2^127
    expect(out[0 * 32 + 2]).toBe(2 ** -128); // element 2: low nibble of byte 1, code 1 (0.5), times 2^-127
  });

  test('int8: ties away from zero and the f16 scale', () => {
    const values = f32([127, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5, ...new Array(23).fill(0)]);
    const t = quantize(values, [1, 32], 'int8');
    expect(t.scales[0]).toBe(0x3c00); // f16(1.0)
    expect(Array.from(t.codes.subarray(0, 9))).toEqual([127, 1, -1, 2, -2, 3, -3, 127, -127]);
    const u = quantize(f32([100, ...new Array(31).fill(-50)]), [1, 32], 'int8');
    expect(u.scales[0]).toBe(refToF16Bits(Math.fround(100 / 127)));
    expect(u.scales[0]).not.toBe(0);
  });

  test('int8 decode: codes times every f16 scale pattern, exactly', () => {
    const rng = mulberry32(9);
    const rows = 2048;
    const scales = Uint16Array.from({ length: rows }, (_, i) => (i * 32 + Math.floor(rng() * 32)) & 0xffff);
    const codes = Int8Array.from({ length: rows * 32 }, () => Math.floor(rng() * 256) - 128);
    const t = { codes, scales };
    expectSameValues(dequantize(t, [rows, 32], 'int8'), refDequantizeInt8(t, rows, 32), 'int8 decode');
  });

  test("dequantize of 'f32', 'bf16' and 'f16' (every 16-bit pattern): the exact values, a new array", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    expectSameValues(dequantize(all, [256, 256], 'f16'), refFromF16(all), 'f16');
    expectSameValues(dequantize(all, [65536, 1], 'bf16'), refFromBf16(all), 'bf16');
    const v = randF32(mulberry32(2), 51);
    const out = dequantize(v, [3, 17], 'f32');
    expect(out).not.toBe(v);
    expectSameValues(out, v, 'f32');
  });

  test('the outputs are fresh arrays, the input is untouched', () => {
    const v = randF32(mulberry32(4), 64);
    const before = snapshot(v);
    const a = quantize(v, [2, 32], 'mxfp4');
    const b = quantize(v, [2, 32], 'mxfp4');
    expect(a.blocks).not.toBe(b.blocks);
    expect(unchanged(v, before)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// MoeLayer with packed weights vs the float64 reference on the exactly decoded weights.

/** The exact values a layer of `format` holds for f32 `values` of `rows` rows of `depth`. */
function decodedOf(format: Format, values: Float32Array, rows: number, depth: number): Float32Array {
  if (format === 'f16') return Float32Array.from(values, refRoundF16);
  if (format === 'mxfp4') return refDequantizeMxfp4(refQuantizeMxfp4(values, rows, depth), rows, depth);
  return refDequantizeInt8(refQuantizeInt8(values, rows, depth), rows, depth);
}

/** The weight as a pre-quantized tensor (f16: bit patterns), from the reference quantizer. */
function preQuantized(format: Format, values: Float32Array, rows: number, depth: number): unknown {
  if (format === 'f16') return refToF16(values);
  if (format === 'mxfp4') return refQuantizeMxfp4(values, rows, depth);
  return refQuantizeInt8(values, rows, depth);
}

interface QCase {
  E: number; H: number; I: number; K: number;
  options: Record<string, unknown>;
  ref: Omit<RefMoeConfig, 'bf16Activations'>;
  decoded: { w13: Float32Array; w2: Float32Array; w13Bias?: Float32Array; w2Bias?: Float32Array };
  values: { w13: Float32Array; w2: Float32Array };
  rng: Rng;
}

function qCase(p: { format: Format; E: number; H: number; I: number; K: number; interleaved: boolean; bias: boolean; seed: number }): QCase {
  const { E, H, I, K } = p;
  const rng = mulberry32(p.seed);
  const s13 = 6 / Math.sqrt(H), s2 = 3 / Math.sqrt(I);
  const w13 = randF32(rng, E * 2 * I * H, -s13, s13);
  const w2 = randF32(rng, E * H * I, -s2, s2);
  const w13Bias = p.bias ? randF32(rng, E * 2 * I, -0.5, 0.5) : undefined;
  const w2Bias = p.bias ? randF32(rng, E * H, -0.5, 0.5) : undefined;
  const activation: ActivationName = p.interleaved ? 'swigluoai' : 'silu';
  const options: Record<string, unknown> = {
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation, isW13Interleaved: p.interleaved,
    weightDtype: p.format, w13, w2,
  };
  if (w13Bias) options.w13Bias = w13Bias;
  if (w2Bias) options.w2Bias = w2Bias;
  return {
    E, H, I, K, options, rng,
    ref: { numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation, layout: p.interleaved ? 'interleaved' : 'halves', transposed: false },
    decoded: { w13: decodedOf(p.format, w13, E * 2 * I, H), w2: decodedOf(p.format, w2, E * H, I), w13Bias, w2Bias },
    values: { w13, w2 },
  };
}

function reference(c: QCase, hidden: Float32Array | Uint16Array, route: { ids: Int32Array; weights: Float32Array }): Float64Array {
  const bf16 = hidden instanceof Uint16Array;
  return refMoeForward({ ...c.ref, bf16Activations: bf16 }, c.decoded, bf16 ? refFromBf16(hidden) : hidden, route.ids, route.weights);
}

function valuesOf(a: Float32Array | Uint16Array): Float32Array {
  return a instanceof Uint16Array ? refFromBf16(a) : a;
}

/** Experts hit by a route: a forward decodes while T·K < 4·(experts hit). */
function expertsHit(ids: Int32Array): number {
  return new Set(ids).size;
}

const GRID: [Format, boolean, boolean][] = [];
for (const format of FORMATS) for (const interleaved of [false, true]) for (const bias of [false, true]) GRID.push([format, interleaved, bias]);

describe('MoeLayer with packed weights vs the reference on the exactly decoded weights', () => {
  test.each(GRID)('%s, interleaved %s, bias %s: from f32, pre-quantized and transposed f32 alike', async (format, interleaved, bias) => {
    const shape = interleaved ? { E: 5, H: 96, I: 160, K: 3 } : { E: 7, H: 160, I: 96, K: 2 };
    const c = qCase({ format, ...shape, interleaved, bias, seed: 100 + GRID.findIndex((g) => g[0] === format && g[1] === interleaved && g[2] === bias) });
    const { E, H, I, K } = c;
    const fromValues = new MoeLayer(c.options as never);
    const fromPacked = new MoeLayer({
      ...c.options, w13: preQuantized(format, c.values.w13, E * 2 * I, H), w2: preQuantized(format, c.values.w2, E * H, I),
    } as never);
    const fromLibrary = format === 'f16' ? null : new MoeLayer({
      ...c.options, w13: quantize(c.values.w13, [E * 2 * I, H], format), w2: quantize(c.values.w2, [E * H, I], format),
    } as never);
    const transposed = new MoeLayer({
      ...c.options, transposed: true, w13: refTranspose(c.values.w13, E, 2 * I, H), w2: refTranspose(c.values.w2, E, H, I),
    } as never);
    const layers = [fromValues, fromPacked, transposed, ...(fromLibrary ? [fromLibrary] : [])];
    expect(fromValues.weightDtype).toBe(format);

    const run = async (hidden: Float32Array | Uint16Array, route: { ids: Int32Array; weights: Float32Array }, tol: number, label: string) => {
      const out = fromValues.forwardSync(hidden, route);
      expect(out.constructor, label).toBe(hidden.constructor);
      for (const [i, layer] of layers.entries()) {
        expect(bitsEqual(layer.forwardSync(hidden, route), out), `${label}: layer ${i} forwardSync differs`).toBe(true);
        expect(bitsEqual(await layer.forward(hidden, route), out), `${label}: layer ${i} forward differs`).toBe(true);
      }
      expectClose(valuesOf(out), reference(c, hidden, route), tol, label);
    };

    for (const T of [1, 3]) {
      const route = randomRoute(c.rng, T, E, K);
      expect(T * K, 'decode regime').toBeLessThan(4 * expertsHit(route.ids));
      await run(randF32(c.rng, T * H), route, F32_TOL, `decode T=${T}`);
      await run(refToBf16(randF32(c.rng, T * H)), route, BF16_TOL, `bf16 hidden T=${T}`);
    }
    const T = 64;
    const route = randomRoute(c.rng, T, E, K);
    expect(T * K, 'prefill regime').toBeGreaterThanOrEqual(4 * expertsHit(route.ids));
    await run(randF32(c.rng, T * H), route, BF16_TOL, `prefill T=${T}`);
    await run(refToBf16(randF32(c.rng, T * H)), route, BF16_TOL, `prefill bf16 hidden T=${T}`);
    for (const l of layers) l.dispose();
  });

  test.each(['mxfp4', 'int8'] as const)('%s from bf16 weights (Uint16Array) = from their f32 values, and 16-bit biases', (format) => {
    const c = qCase({ format, E: 5, H: 96, I: 160, K: 3, interleaved: true, bias: true, seed: 7 });
    const { E, H, I } = c;
    const w13 = refToBf16(c.values.w13), w2 = refToBf16(c.values.w2);
    const b13 = refToBf16(c.options.w13Bias as Float32Array), b2 = refToBf16(c.options.w2Bias as Float32Array);
    const fromBf16 = new MoeLayer({ ...c.options, w13, w2, w13Bias: b13, w2Bias: b2 } as never);
    const fromF32 = new MoeLayer({ ...c.options, w13: refFromBf16(w13), w2: refFromBf16(w2), w13Bias: refFromBf16(b13), w2Bias: refFromBf16(b2) } as never);
    const decoded = {
      w13: decodedOf(format, refFromBf16(w13), E * 2 * I, H), w2: decodedOf(format, refFromBf16(w2), E * H, I),
      w13Bias: refFromBf16(b13), w2Bias: refFromBf16(b2),
    };
    for (const T of [1, 64]) {
      const hidden = randF32(c.rng, T * H);
      const route = randomRoute(c.rng, T, E, c.K);
      const out = fromBf16.forwardSync(hidden, route);
      expect(bitsEqual(out, fromF32.forwardSync(hidden, route))).toBe(true);
      const ref = refMoeForward({ ...c.ref, bf16Activations: false }, decoded, hidden, route.ids, route.weights);
      expectClose(out, ref, T === 1 ? F32_TOL : BF16_TOL, `T=${T}`);
    }
    fromBf16.dispose();
    fromF32.dispose();
  });

  test('f16: f16 biases (Uint16Array), and hiddenSize/intermediateSize need not be multiples of 32', () => {
    const E = 5, H = 17, I = 33, K = 2;
    const c = qCase({ format: 'f16', E, H, I, K, interleaved: false, bias: true, seed: 8 });
    const b13 = refToF16(c.options.w13Bias as Float32Array), b2 = refToF16(c.options.w2Bias as Float32Array);
    const layer = new MoeLayer({ ...c.options, w13Bias: b13, w2Bias: b2 } as never);
    const decoded = { ...c.decoded, w13Bias: refFromF16(b13), w2Bias: refFromF16(b2) };
    for (const T of [1, 33]) {
      const hidden = randF32(c.rng, T * H);
      const route = randomRoute(c.rng, T, E, K);
      const ref = refMoeForward({ ...c.ref, bf16Activations: false }, decoded, hidden, route.ids, route.weights);
      expectClose(layer.forwardSync(hidden, route), ref, T === 1 ? F32_TOL : BF16_TOL, `T=${T}`);
    }
    layer.dispose();
  });

  test('a router on a quantized layer: forward(hidden) routes by itself', async () => {
    const c = qCase({ format: 'mxfp4', E: 5, H: 96, I: 64, K: 2, interleaved: true, bias: true, seed: 9 });
    const routerWeight = randF32(c.rng, c.E * c.H);
    const layer = new MoeLayer({ ...c.options, routerWeight } as never);
    const hidden = randF32(c.rng, 3 * c.H);
    const logits = new Float32Array(3 * c.E);
    for (let t = 0; t < 3; t++) for (let e = 0; e < c.E; e++) {
      let s = 0;
      for (let h = 0; h < c.H; h++) s += hidden[t * c.H + h] * routerWeight[e * c.H + h];
      logits[t * c.E + e] = s;
    }
    const sel = refSelectExperts(logits, 3, c.E, c.K, { mode: 'topk-softmax' });
    const ref = refMoeForward({ ...c.ref, bf16Activations: false }, c.decoded, hidden, sel.ids, sel.weights);
    expectClose(await layer.forward(hidden), ref, F32_TOL);
    layer.dispose();
  });

  test('results do not depend on the thread count (mxfp4, int8, f16; decode and prefill)', () => {
    for (const format of FORMATS) {
      const c = qCase({ format, E: 5, H: 96, I: 160, K: 3, interleaved: true, bias: true, seed: 11 });
      for (const T of [2, 40]) {
        const hidden = randF32(c.rng, T * c.H);
        const route = randomRoute(c.rng, T, c.E, c.K);
        const outs = [1, 2, 3].map((threads) => {
          const l = new MoeLayer({ ...c.options, threads } as never);
          const o = l.forwardSync(hidden, route);
          l.dispose();
          return o;
        });
        expect(bitsEqual(outs[1], outs[0]) && bitsEqual(outs[2], outs[0]), `${format} T=${T}`).toBe(true);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('layer.kernels', () => {
  const info = cpuInfo();

  // The set whose kernels decode and prefill: amx (tiles) extends avx512 (ukernel.h).
  const vectorSet = info.kernel === 'amx' ? 'avx512' : info.kernel;
  /** The registry's choice as ukernel.h states it: first runnable entry of the kernel set (else scalar). */
  function expected(format: string, regime: 'decode' | 'prefill', set = vectorSet) {
    const pick = (s: string) => info.ukernels.find((k) =>
      k.weights === format && k.kernelSet === s && k.runnable && (k.regime === regime || k.regime === 'any') &&
      (regime === 'prefill' || k.activations === 'f32'));
    return pick(set) ?? pick('scalar');
  }

  test('cpuInfo().ukernels: the registry, typed, with a scalar kernel for every format', () => {
    expect(info.ukernels.length).toBeGreaterThan(0);
    for (const k of info.ukernels) {
      expect(typeof k.name).toBe('string');
      expect(['f32', 'bf16', 'f16', 'mxfp4', 'int8']).toContain(k.weights);
      expect(['f32', 'bf16']).toContain(k.activations);
      expect(['decode', 'prefill', 'any']).toContain(k.regime);
      expect(typeof k.runnable).toBe('boolean');
      expect(k.name.startsWith(`gemm_${k.weights}_${k.activations}__`), k.name).toBe(true);
    }
    for (const f of ['f32', 'bf16', 'f16', 'mxfp4', 'int8']) {
      expect(info.ukernels.some((k) => k.weights === f && k.kernelSet === 'scalar' && k.runnable), f).toBe(true);
    }
  });

  test.each(['f32', 'bf16', 'f16', 'mxfp4', 'int8'] as const)(`%s layer: the format and the kernel set in use (${info.kernel})`, (format) => {
    const E = 3, H = 64, I = 32;
    const w = format === 'bf16' ? new Uint16Array(E * 2 * I * H) : new Float32Array(E * 2 * I * H);
    const w2 = format === 'bf16' ? new Uint16Array(E * H * I) : new Float32Array(E * H * I);
    const layer = new MoeLayer({
      numExperts: E, hiddenSize: H, intermediateSize: I, topK: 1, activation: 'silu', isW13Interleaved: false, weightDtype: format, w13: w, w2,
    });
    const k = layer.kernels;
    expect(Object.keys(k).sort()).toEqual(['decode', 'prefill', 'prefillMinTokensPerExpert', 'tiles', 'tilesMinTokensPerExpert']);
    expect(k.decode).toMatch(new RegExp(`^gemm_${format}_f32__${vectorSet}_`));
    expect(k.prefill).toMatch(new RegExp(`^gemm_${format}_(f32|bf16)__${vectorSet}`));
    expect(k.decode).toBe(expected(format, 'decode')?.name);
    expect(k.prefill).toBe(expected(format, 'prefill')?.name);
    expect(Number.isInteger(k.prefillMinTokensPerExpert) && k.prefillMinTokensPerExpert >= 1).toBe(true);
    // Tiles: the amx set's bf16-row kernel for every format but f32; none elsewhere.
    if (info.kernel === 'amx' && format !== 'f32') {
      expect(k.tiles).toBe(`gemm_${format}_bf16__amx_32x32`);
      expect(k.tiles).toBe(expected(format, 'prefill', 'amx')?.name);
      expect(k.tilesMinTokensPerExpert).toBeGreaterThan(k.prefillMinTokensPerExpert);
    } else {
      expect(k.tiles).toBeNull();
      expect(k.tilesMinTokensPerExpert).toBe(0);
    }
    layer.dispose();
    const err = expectThrows(() => layer.kernels, Error, ['disposed']);
    expectDisposed(err);
    expect(err.message).toBe('MoeLayer: this layer was disposed; create a new one');
  });
});

// ---------------------------------------------------------------------------------------------

describe('bytes: the packed size of each format', () => {
  test('mxfp4 ≈ 4.25/16 and int8 ≈ 8.5/16 of the bf16 layer; f16 = bf16', () => {
    const E = 4, H = 512, I = 512;
    const rng = mulberry32(1);
    const w13 = randF32(rng, E * 2 * I * H), w2 = randF32(rng, E * H * I);
    const base = { numExperts: E, hiddenSize: H, intermediateSize: I, topK: 2, activation: 'silu' as const, isW13Interleaved: false };
    const bytes = (weightDtype: 'bf16' | Format, bias: boolean) => {
      const extra = bias ? { w13Bias: new Float32Array(E * 2 * I), w2Bias: new Float32Array(E * H) } : {};
      const opts = weightDtype === 'bf16'
        ? { ...base, weightDtype, w13: refToBf16(w13), w2: refToBf16(w2), ...(bias ? { w13Bias: new Uint16Array(E * 2 * I), w2Bias: new Uint16Array(E * H) } : {}) }
        : { ...base, weightDtype, w13, w2, ...extra };
      const layer = new MoeLayer(opts);
      const b = layer.bytes;
      layer.dispose();
      expect(layer.bytes).toBe(0);
      return b;
    };
    for (const bias of [false, true]) {
      const bf16 = bytes('bf16', bias);
      const weights16 = E * 3 * I * H * 2;
      expect(bf16).toBeGreaterThanOrEqual(weights16);
      expect(bytes('f16', bias)).toBe(bf16);
      expect(Math.abs(bytes('mxfp4', bias) / bf16 / (4.25 / 16) - 1), `mxfp4, bias ${bias}`).toBeLessThan(0.03);
      expect(Math.abs(bytes('int8', bias) / bf16 / (8.5 / 16) - 1), `int8, bias ${bias}`).toBeLessThan(0.03);
    }
    // Without biases the panels hold exactly the caller's bits.
    expect(bytes('mxfp4', false)).toBe(E * 3 * I * H * 4.25 / 8);
    expect(bytes('int8', false)).toBe(E * 3 * I * H * 8.5 / 8);
  });
});

// ---------------------------------------------------------------------------------------------
// Bad input: the facade throws before any native call; no argument array changes.

type Counted = 'NativeLayer' | 'quantize' | 'dequantize';
const COUNTED: Counted[] = ['NativeLayer', 'quantize', 'dequantize'];

/** Runs fn with the binding's constructors/functions wrapped, returns how often they were called. */
function nativeCalls(fn: () => void): number {
  const b = binding as unknown as Record<Counted, unknown>;
  const saved = COUNTED.map((k) => b[k]);
  let calls = 0;
  try {
    for (const [i, k] of COUNTED.entries()) {
      const orig = saved[i] as (...a: unknown[]) => unknown;
      b[k] = k === 'NativeLayer'
        ? new Proxy(orig, { construct(target, args) { calls++; return Reflect.construct(target, args); } })
        : (...a: unknown[]) => { calls++; return orig(...a); };
    }
    fn();
  } finally {
    COUNTED.forEach((k, i) => { b[k] = saved[i]; });
  }
  return calls;
}

function typedArraysIn(args: unknown[]): ArrayBufferView[] {
  const out: ArrayBufferView[] = [];
  const visit = (v: unknown, depth: number) => {
    if (ArrayBuffer.isView(v)) out.push(v);
    else if (v && typeof v === 'object' && depth < 3) Object.values(v).forEach((x) => visit(x, depth + 1));
  };
  args.forEach((a) => visit(a, 0));
  return out;
}

/** fn(...args) throws cls naming every string; no native call; no argument array modified. */
function bad(fn: (...a: any[]) => unknown, args: unknown[], cls: ErrClass, contains: (string | number)[]): Error {
  const arrays = typedArraysIn(args);
  const before = arrays.map(snapshot);
  let err: Error | undefined;
  const calls = nativeCalls(() => { err = expectThrows(() => fn(...args), cls, contains); });
  expect(calls, 'native calls before the error').toBe(0);
  arrays.forEach((a, i) => expect(unchanged(a, before[i]), `argument array ${i} was modified`).toBe(true));
  return err!;
}

const newLayer = (o: unknown) => new MoeLayer(o as never);

describe('bad input to MoeLayer with packed formats', () => {
  const E = 3, H = 64, I = 96, K = 2;
  const LEN = { w13: E * 2 * I * H, w2: E * H * I };
  /** NaN-filled weights: a test that saw them packed would see NaN; none may touch them. */
  const nanF32 = (n: number) => new Float32Array(n).fill(NaN);
  const base = (weightDtype: string): Record<string, unknown> => ({
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', isW13Interleaved: false,
    weightDtype, w13: nanF32(LEN.w13), w2: nanF32(LEN.w2),
  });
  const mx = (rows: number, depth: number): Mxfp4Tensor => ({ blocks: new Uint8Array(rows * depth / 2).fill(0x77), scales: new Uint8Array(rows * depth / 32).fill(0xff) });
  const i8 = (rows: number, depth: number): Int8Tensor => ({ codes: new Int8Array(rows * depth).fill(-1), scales: new Uint16Array(rows * depth / 32).fill(0x7e00) });
  const good = (f: QFormat) => ({ ...base(f), w13: f === 'mxfp4' ? mx(E * 2 * I, H) : i8(E * 2 * I, H), w2: f === 'mxfp4' ? mx(E * H, I) : i8(E * H, I) });

  afterEach(() => {
    expect((binding as { NativeLayer: unknown }).NativeLayer).toBeTypeOf('function');
  });

  test('sanity: the good options construct, from NaN f32 weights (f16, mxfp4) and from pre-quantized tensors', () => {
    for (const f of ['f16', 'mxfp4'] as const) newLayer(base(f)).dispose();
    for (const f of ['mxfp4', 'int8'] as const) newLayer(good(f)).dispose();
    newLayer({ ...base('int8'), w13: new Float32Array(LEN.w13), w2: new Float32Array(LEN.w2) }).dispose();
  });

  test('int8 refuses NaN and infinity in f32 or bf16 weights: RangeError naming the first one; quantize() too', () => {
    const w13 = new Float32Array(LEN.w13), w2 = new Float32Array(LEN.w2);
    w13[1000] = Infinity;
    w13[2000] = NaN;
    expectThrows(() => newLayer({ ...base('int8'), w13, w2 }), RangeError, ['w13[1000]', 'Infinity', 'int8']);
    const b2 = new Uint16Array(LEN.w2);
    b2[77] = 0x7fc0; // bf16 NaN
    expectThrows(() => newLayer({ ...base('int8'), w13: new Uint16Array(LEN.w13), w2: b2 }), RangeError, ['w2[77]', 'NaN']);
    const v = randF32(mulberry32(1), 96);
    v[50] = -Infinity;
    expectThrows(() => quantize(v, [1, 96], 'int8'), RangeError, ['values[50]', '-Infinity']);
    // A block whose f16 scale would overflow (max > 127 · 65504) is refused too, naming the value.
    const huge = new Float32Array(LEN.w13);
    huge[3] = 1e7;
    expectThrows(() => newLayer({ ...base('int8'), w13: huge, w2: new Float32Array(LEN.w2) }), RangeError, ['w13[3]', '10000000', 'int8']);
    const hv = new Float32Array(32).fill(1);
    hv[0] = 1e7;
    expectThrows(() => quantize(hv, [1, 32], 'int8'), RangeError, ['values[0]']);
    // mxfp4 keeps them as NaN blocks.
    const mx = newLayer({ ...base('mxfp4'), w13, w2 });
    const out = mx.forwardSync(new Float32Array(H).fill(1), { ids: new Int32Array([0, 1]), weights: new Float32Array([1, 1]) });
    expect(out.some(Number.isNaN)).toBe(true);
    mx.dispose();
  });

  test.each(['mxfp4', 'int8'] as const)('%s: hiddenSize / intermediateSize not a multiple of 32 -> RangeError naming it', (f) => {
    bad(newLayer, [{ ...base(f), hiddenSize: 48, w13: nanF32(E * 2 * I * 48), w2: nanF32(E * 48 * I) }], RangeError, ['hiddenSize', '32', '48', f]);
    bad(newLayer, [{ ...base(f), intermediateSize: 80, w13: nanF32(E * 2 * 80 * H), w2: nanF32(E * H * 80) }], RangeError, ['intermediateSize', '32', '80', f]);
    bad(newLayer, [{ ...good(f), hiddenSize: 17 }], RangeError, ['hiddenSize', '17']);
  });

  test.each(['mxfp4', 'int8'] as const)('%s: a pre-quantized tensor with transposed: true -> RangeError naming transposed', (f) => {
    bad(newLayer, [{ ...good(f), transposed: true }], RangeError, ['transposed', 'w13', f]);
    bad(newLayer, [{ ...good(f), w13: nanF32(LEN.w13), transposed: true }], RangeError, ['transposed', 'w2']);
  });

  test('mxfp4: blocks and scales of the wrong length -> RangeError with the name, expected length and shape', () => {
    const g = good('mxfp4');
    const w13 = g.w13 as Mxfp4Tensor, w2 = g.w2 as Mxfp4Tensor;
    const nb13 = E * 2 * I * (H / 32) * 16, ns13 = E * 2 * I * (H / 32), nb2 = E * H * (I / 32) * 16, ns2 = E * H * (I / 32);
    bad(newLayer, [{ ...g, w13: { ...w13, blocks: new Uint8Array(nb13 - 16) } }], RangeError, ['w13.blocks', nb13, nb13 - 16, `[E=${E}, 2I=${2 * I}, H/32=${H / 32}, 16]`]);
    bad(newLayer, [{ ...g, w13: { ...w13, scales: new Uint8Array(ns13 + 1) } }], RangeError, ['w13.scales', ns13, ns13 + 1, `[E=${E}, 2I=${2 * I}, H/32=${H / 32}]`]);
    bad(newLayer, [{ ...g, w2: { ...w2, blocks: new Uint8Array(nb2 + 16) } }], RangeError, ['w2.blocks', nb2, nb2 + 16, `[E=${E}, H=${H}, I/32=${I / 32}, 16]`]);
    bad(newLayer, [{ ...g, w2: { ...w2, scales: new Uint8Array(0) } }], RangeError, ['w2.scales', ns2, `[E=${E}, H=${H}, I/32=${I / 32}]`]);
  });

  test('int8: codes and scales of the wrong length -> RangeError with the name, expected length and shape', () => {
    const g = good('int8');
    const w13 = g.w13 as Int8Tensor, w2 = g.w2 as Int8Tensor;
    bad(newLayer, [{ ...g, w13: { ...w13, codes: new Int8Array(LEN.w13 - 1) } }], RangeError, ['w13.codes', LEN.w13, LEN.w13 - 1, `[E=${E}, 2I=${2 * I}, H=${H}]`]);
    bad(newLayer, [{ ...g, w2: { ...w2, scales: new Uint16Array(E * H * 4) } }], RangeError, ['w2.scales', E * H * 3, E * H * 4, `[E=${E}, H=${H}, I/32=3]`]);
  });

  test('pre-quantized tensors with fields of the wrong type or missing -> TypeError naming the field', () => {
    const m = good('mxfp4'), q = good('int8');
    const m13 = m.w13 as Mxfp4Tensor, q13 = q.w13 as Int8Tensor;
    bad(newLayer, [{ ...m, w13: { ...m13, blocks: new Int8Array(m13.blocks.length) } }], TypeError, ['w13.blocks', 'Uint8Array', 'Int8Array']);
    bad(newLayer, [{ ...m, w13: { ...m13, scales: new Uint16Array(m13.scales.length) } }], TypeError, ['w13.scales', 'Uint8Array']);
    bad(newLayer, [{ ...m, w13: { scales: m13.scales } }], TypeError, ['w13.blocks', 'undefined']);
    bad(newLayer, [{ ...q, w2: { ...(q.w2 as Int8Tensor), codes: new Uint8Array(LEN.w2) } }], TypeError, ['w2.codes', 'Int8Array']);
    bad(newLayer, [{ ...q, w13: { ...q13, scales: new Uint8Array(q13.scales.length) } }], TypeError, ['w13.scales', 'Uint16Array']);
    bad(newLayer, [{ ...q, w13: { codes: q13.codes } }], TypeError, ['w13.scales']);
  });

  test('a tensor of another format than weightDtype -> TypeError naming the weight and the dtype', () => {
    bad(newLayer, [{ ...good('int8'), w13: good('mxfp4').w13 }], TypeError, ['w13', "'int8'", 'mxfp4']);
    bad(newLayer, [{ ...good('mxfp4'), w2: good('int8').w2 }], TypeError, ['w2', "'mxfp4'", 'int8']);
    bad(newLayer, [{ ...base('f16'), w13: good('mxfp4').w13 }], TypeError, ['w13', "'f16'", 'Float32Array', 'Uint16Array (f16 bit patterns)']);
    // f32 and bf16 layers keep their own messages.
    bad(newLayer, [{ ...base('bf16'), w13: good('mxfp4').w13, w2: new Uint16Array(LEN.w2) }], TypeError, ['w13', 'Uint16Array (bf16 bit patterns)']);
    bad(newLayer, [{ ...base('f32'), w2: good('int8').w2 }], TypeError, ['w2', 'Float32Array (f32)']);
  });

  test.each(FORMATS)('%s: weights of the wrong type or length -> TypeError / RangeError naming them', (f) => {
    bad(newLayer, [{ ...base(f), w13: new Float64Array(LEN.w13) }], TypeError, ['w13', 'Float64Array']);
    bad(newLayer, [{ ...base(f), w2: new Int8Array(LEN.w2) }], TypeError, ['w2']);
    bad(newLayer, [{ ...base(f), w2: null }], TypeError, ['w2']);
    bad(newLayer, [{ ...base(f), w13: nanF32(LEN.w13 + 1) }], RangeError, ['w13', LEN.w13, LEN.w13 + 1, `[E=${E}, 2I=${2 * I}, H=${H}]`]);
    bad(newLayer, [{ ...base(f), w2: new Uint16Array(LEN.w2 - 1) }], RangeError, ['w2', LEN.w2, LEN.w2 - 1]);
    bad(newLayer, [{ ...base(f), transposed: true, w2: nanF32(LEN.w2 - 1) }], RangeError, ['w2', `[E=${E}, I=${I}, H=${H}]`]);
  });

  test.each(FORMATS)('%s: biases of the wrong type or length -> TypeError / RangeError naming them', (f) => {
    const half = f === 'f16' ? 'f16' : 'bf16';
    bad(newLayer, [{ ...base(f), w13Bias: new Int8Array(E * 2 * I) }], TypeError, ['w13Bias', `Uint16Array (${half} bit patterns)`]);
    bad(newLayer, [{ ...base(f), w2Bias: new Float64Array(E * H) }], TypeError, ['w2Bias']);
    bad(newLayer, [{ ...base(f), w13Bias: new Uint16Array(E * 2 * I + 1) }], RangeError, ['w13Bias', E * 2 * I, E * 2 * I + 1]);
    bad(newLayer, [{ ...base(f), w2Bias: nanF32(E * H - 1) }], RangeError, ['w2Bias', E * H, E * H - 1]);
  });

  test('a detached blocks, codes or weight array -> TypeError naming it', () => {
    const m = good('mxfp4');
    detach((m.w13 as Mxfp4Tensor).blocks);
    bad(newLayer, [m], TypeError, ['w13.blocks', 'detached']);
    const q = good('int8');
    detach((q.w2 as Int8Tensor).scales);
    bad(newLayer, [q], TypeError, ['w2.scales', 'detached']);
    const o = base('f16');
    detach(o.w2 as Float32Array);
    bad(newLayer, [o], TypeError, ['w2', 'detached']);
  });

  test("an unknown weightDtype lists the five formats", () => {
    const err = bad(newLayer, [base('fp8')], RangeError, ['weightDtype', 'fp8']);
    for (const f of ['f32', 'bf16', 'f16', 'mxfp4', 'int8']) expect(err.message).toContain(`'${f}'`);
  });

  test.each(['forwardSync', 'forward'] as const)('%s on a quantized layer: bad routes are errors and no input changes', async (method) => {
    const layer = newLayer({ ...base('mxfp4'), w13: randF32(mulberry32(1), LEN.w13), w2: randF32(mulberry32(2), LEN.w2) });
    const hidden = new Float32Array(2 * H).fill(NaN);
    const route = { ids: new Int32Array([0, 1, 2, E]), weights: new Float32Array(4).fill(0.5) };
    const before = [hidden, route.ids, route.weights].map(snapshot);
    if (method === 'forwardSync') expectThrows(() => layer.forwardSync(hidden, route), RangeError, ['route.ids[3]', String(E)]);
    else await expectRejects(() => layer.forward(hidden, route), RangeError, ['route.ids[3]']);
    [hidden, route.ids, route.weights].forEach((a, i) => expect(unchanged(a, before[i])).toBe(true));
    layer.dispose();
  });
});

describe('bad input to quantize / dequantize', () => {
  const v = () => new Float32Array(64).fill(NaN);

  test('quantize: values, shape, format', () => {
    bad(quantize, [new Float64Array(64), [2, 32], 'mxfp4'], TypeError, ['values', 'Float32Array']);
    bad(quantize, [refToBf16(new Float32Array(64)), [2, 32], 'int8'], TypeError, ['values']);
    bad(quantize, [v(), [2, 32], 'f16'], RangeError, ['format', "'f16'", "'mxfp4'", "'int8'"]);
    bad(quantize, [v(), [2, 32], undefined], TypeError, ['format']);
    bad(quantize, [v(), 64, 'mxfp4'], TypeError, ['shape']);
    bad(quantize, [v(), [64], 'mxfp4'], RangeError, ['shape', '2']);
    bad(quantize, [v(), [0, 32], 'mxfp4'], RangeError, ['shape[0]', '0']);
    bad(quantize, [v(), [2, 32.5], 'int8'], RangeError, ['shape[1]', '32.5']);
    bad(quantize, [v(), ['1', 64], 'int8'], TypeError, ['shape[0]']);
    bad(quantize, [new Float32Array(80), [2, 40], 'mxfp4'], RangeError, ['shape[1]', '32', '40']);
    bad(quantize, [v(), [3, 32], 'int8'], RangeError, ['values', 96, 64, '[rows=3, depth=32]']);
    const d = v();
    detach(d);
    bad(quantize, [d, [2, 32], 'mxfp4'], TypeError, ['values', 'detached']);
  });

  test('dequantize: tensor, shape, format', () => {
    const m = { blocks: new Uint8Array(64), scales: new Uint8Array(4).fill(0xff) };
    const q = { codes: new Int8Array(128), scales: new Uint16Array(4).fill(0x7e00) };
    bad(dequantize, [m, [4, 32], 'fp4'], RangeError, ['format', 'fp4']);
    bad(dequantize, [m, [4, 32], 'int8'], TypeError, ['tensor', 'int8', 'mxfp4']);
    bad(dequantize, [q, [4, 32], 'mxfp4'], TypeError, ['tensor', 'mxfp4', 'int8']);
    bad(dequantize, [new Uint8Array(64), [4, 32], 'mxfp4'], TypeError, ['tensor', 'Uint8Array']);
    bad(dequantize, [{ ...m, blocks: new Uint8Array(63) }, [4, 32], 'mxfp4'], RangeError, ['tensor.blocks', 64, 63, '[rows=4, depth/32=1, 16]']);
    bad(dequantize, [{ ...m, scales: new Uint8Array(5) }, [4, 32], 'mxfp4'], RangeError, ['tensor.scales', 4, 5, '[rows=4, depth/32=1]']);
    bad(dequantize, [{ ...q, codes: new Int8Array(127) }, [4, 32], 'int8'], RangeError, ['tensor.codes', 128, 127]);
    bad(dequantize, [{ ...q, scales: new Int16Array(4) }, [4, 32], 'int8'], TypeError, ['tensor.scales', 'Uint16Array']);
    bad(dequantize, [m, [2, 48], 'mxfp4'], RangeError, ['shape[1]', '32', '48']);
    bad(dequantize, [new Float32Array(10), [2, 4], 'f32'], RangeError, ['tensor', 8, 10]);
    bad(dequantize, [new Float32Array(8), [2, 4], 'f16'], TypeError, ['tensor', 'Uint16Array (f16 bit patterns)']);
    bad(dequantize, [new Uint16Array(8), [2, 4], 'f32'], TypeError, ['tensor', 'Float32Array']);
    bad(dequantize, [new Uint16Array(8), [2, 4, 1], 'bf16'], RangeError, ['shape']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('package entry points', () => {
  test("quantize and dequantize from require('moe-cpu') and import 'moe-cpu'", () => {
    const script = (imp: string) => `${imp}
const v = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
const t = quantize(v, [2, 32], 'mxfp4');
console.log(JSON.stringify(Array.from(dequantize(t, [2, 32], 'mxfp4'))));`;
    const run = (args: string[]) => {
      const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as number[];
    };
    const cjs = run(['-e', script("const { quantize, dequantize } = require('moe-cpu');")]);
    const esm = run(['--input-type=module', '-e', script("import { quantize, dequantize } from 'moe-cpu';")]);
    expect(esm).toEqual(cjs);
    const v = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
    expect(cjs).toEqual(JSON.parse(JSON.stringify(Array.from(refDequantizeMxfp4(refQuantizeMxfp4(v, 2, 32), 2, 32)))));
  });
});
