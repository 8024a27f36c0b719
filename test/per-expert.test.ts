// Per-expert weight arrays and Float16Array inputs through the public API.
//
// w13 / w2 given as one typed array per expert (or, pre-quantized, per field) must pack to the
// very layer the whole tensors pack to: every weightDtype, every source type it takes, both W13
// layouts, transposed and not, with and without biases, through the constructor and through
// MoeLayer.create; compared bit for bit on decode and prefill forwards (and the whole form
// against the float64 reference, so that both cannot be wrong alike). Bad per-expert input is a
// TypeError / RangeError naming the element, before any native call, changing nothing.
//
// Float16Array (a global of Node >= 24) is taken wherever f16 values make sense (weights, biases,
// router weights); these tests are skipped, and reported as such, where the runtime has none.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import {
  ForwardBatcher, MoeBlock, MoeLayer, dequantize, quantize, swigluoai, toBf16, type WeightDtype,
} from '../lib/index';
import { binding } from '../lib/binding';
import { F32_TOL, bitsEqual, expectClose, expectRejects, expectThrows, mulberry32, randF32, snapshot, unchanged } from './helpers';
import { randomRoute } from './moe-case';
import { refMoeForward } from './reference';
import { refFromF16, refToF16 } from './quant-reference';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HAS_FLOAT16 = typeof (globalThis as { Float16Array?: unknown }).Float16Array === 'function';
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const F16 = (globalThis as any).Float16Array as { new (values: ArrayLike<number> | number): ArrayBufferView & { length: number } };

const E = 4, H = 64, I = 96, K = 2;
const W13 = E * 2 * I * H, W2 = E * H * I;
type Arr = Float32Array | Uint16Array | Uint8Array | Int8Array;

/** `a` cut into E per-expert copies (separate buffers, as a loader would make them). */
function perExpert<T extends Arr>(a: T): T[] {
  const n = a.length / E;
  return Array.from({ length: E }, (_, e) => a.slice(e * n, (e + 1) * n) as T);
}

/** A tensor input cut per expert: typed arrays per expert, pre-quantized tensors per field. */
function split(w: unknown): unknown {
  if (ArrayBuffer.isView(w)) {
    if (HAS_FLOAT16 && w instanceof (F16 as unknown as Function)) {
      const n = (w as { length: number }).length / E;
      return Array.from({ length: E }, (_, e) => (w as unknown as Float32Array).slice(e * n, (e + 1) * n));
    }
    return perExpert(w as Arr);
  }
  const o = w as Record<string, Arr>;
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, perExpert(v)]));
}

const rng = mulberry32(0x9e11);
// Weights of a realistic magnitude, so that silu and swigluoai see varied pre-activations.
const v13 = randF32(rng, W13, -0.3, 0.3), v2 = randF32(rng, W2, -0.2, 0.2);
const b13 = randF32(rng, E * 2 * I, -0.5, 0.5), b2 = randF32(rng, E * H, -0.5, 0.5);

interface Source {
  label: string;
  /** The caller's w13 / w2 as given (whole), and their exact values [E, 2I, H] / [E, H, I] in the caller's orientation. */
  w13: unknown; w2: unknown;
  transposable: boolean;
}

/** Every source type a layer of `dtype` takes, with its values (the caller's orientation is whatever `transposed` says). */
function sources(dtype: WeightDtype): Source[] {
  const f32: Source = { label: 'Float32Array', w13: v13, w2: v2, transposable: true };
  const bf16: Source = { label: 'Uint16Array bf16', w13: toBf16(v13), w2: toBf16(v2), transposable: true };
  switch (dtype) {
    case 'f32': return [f32];
    case 'bf16': return [bf16];
    case 'f16': return [f32, { label: 'Uint16Array f16', w13: refToF16(v13), w2: refToF16(v2), transposable: true }];
    case 'mxfp4': return [f32, bf16, {
      label: 'pre-quantized', w13: quantize(v13, [E * 2 * I, H], 'mxfp4'), w2: quantize(v2, [E * H, I], 'mxfp4'), transposable: false,
    }];
    case 'int8': return [f32, bf16, {
      label: 'pre-quantized', w13: quantize(v13, [E * 2 * I, H], 'int8'), w2: quantize(v2, [E * H, I], 'int8'), transposable: false,
    }];
  }
}

/** The biases in a type the layer of `dtype` takes. */
function biases(dtype: WeightDtype): { w13Bias: Float32Array | Uint16Array; w2Bias: Float32Array | Uint16Array } {
  return dtype === 'bf16' ? { w13Bias: toBf16(b13), w2Bias: toBf16(b2) } : { w13Bias: b13, w2Bias: b2 };
}

function options(dtype: WeightDtype, interleaved: boolean, transposed: boolean, bias: boolean, w13: unknown, w2: unknown) {
  return {
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: interleaved ? 'swigluoai' : 'silu',
    isW13Interleaved: interleaved, transposed, weightDtype: dtype, w13, w2, ...(bias ? biases(dtype) : {}), threads: 2,
  } as never;
}

const hidden = (T: number) => randF32(mulberry32(T), T * H);
// Decode (1 and 3 tokens) and prefill (48 tokens: 24 per expert) forwards.
const CALLS = [1, 3, 48].map((T) => ({ T, x: hidden(T), route: randomRoute(mulberry32(100 + T), T, E, K) }));

function outputs(layer: MoeLayer): Float32Array[] {
  return CALLS.map(({ x, route }) => layer.forwardSync(x, route));
}

const DTYPES: WeightDtype[] = ['f32', 'bf16', 'f16', 'mxfp4', 'int8'];
const cases = DTYPES.flatMap((dtype) => sources(dtype).flatMap((src) =>
  [false, true].flatMap((interleaved) => [false, true].filter((t) => !t || src.transposable).flatMap((transposed) =>
    [false, true].map((bias) => ({ dtype, src, interleaved, transposed, bias }))))));

describe('per-expert w13 / w2 pack to the layer the whole tensors pack to, bit for bit', () => {
  test.each(cases.map((c) => [
    `${c.dtype} from ${c.src.label}, ${c.interleaved ? 'interleaved' : 'halves'}, ${c.transposed ? 'transposed' : 'out x in'}, ${c.bias ? 'biases' : 'no bias'}`, c,
  ] as const))('%s', async (_label, c) => {
    const whole = options(c.dtype, c.interleaved, c.transposed, c.bias, c.src.w13, c.src.w2);
    const split13 = split(c.src.w13), split2 = split(c.src.w2);
    const forms = {
      sync: () => new MoeLayer(whole),
      'per expert, sync': () => new MoeLayer(options(c.dtype, c.interleaved, c.transposed, c.bias, split13, split2)),
      'per expert W13 only': () => new MoeLayer(options(c.dtype, c.interleaved, c.transposed, c.bias, split13, c.src.w2)),
      'per expert, create': () => MoeLayer.create(options(c.dtype, c.interleaved, c.transposed, c.bias, split13, split2)),
    };
    const ref = new MoeLayer(whole);
    const expected = outputs(ref);
    // The whole form against the float64 reference on the layer's exact weights (dequantized,
    // so both forms cannot be wrong the same way unnoticed).
    if (c.dtype === 'f32') {
      const cfg = { numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: c.interleaved ? 'swigluoai' : 'silu',
        layout: c.interleaved ? 'interleaved' : 'halves', transposed: c.transposed, bf16Activations: false } as const;
      CALLS.forEach(({ x, route }, i) => expectClose(expected[i],
        refMoeForward(cfg, { w13: v13, w2: v2, ...(c.bias ? { w13Bias: b13, w2Bias: b2 } : {}) }, x, route.ids, route.weights), F32_TOL, `T=${CALLS[i].T}`));
    }
    for (const [form, make] of Object.entries(forms)) {
      const layer = await make();
      expect(layer.bytes, form).toBe(ref.bytes);
      outputs(layer).forEach((out, i) => expect(bitsEqual(out, expected[i]), `${form}, T=${CALLS[i].T}`).toBe(true));
      layer.dispose();
    }
    ref.dispose();
  });

  test('the comparison can fail: a per-expert list in another expert order packs to another layer', () => {
    const list = perExpert(v13);
    const swapped = [list[1], list[0], list[2], list[3]];
    const a = new MoeLayer(options('f32', false, false, false, v13, v2));
    const b = new MoeLayer(options('f32', false, false, false, swapped, v2));
    const route = { ids: new Int32Array([0, 2]), weights: new Float32Array([1, 1]) };
    expect(bitsEqual(a.forwardSync(CALLS[0].x, route), b.forwardSync(CALLS[0].x, route))).toBe(false);
    a.dispose();
    b.dispose();
  });

  test('subarray views of one buffer and the same array repeated work as per-expert arrays', () => {
    const n = 2 * I * H;
    const views = Array.from({ length: E }, (_, e) => v13.subarray(e * n, (e + 1) * n));
    const a = new MoeLayer(options('bf16', true, false, false, toBf16(v13), toBf16(v2)));
    const b = new MoeLayer(options('bf16', true, false, false, views.map((v) => toBf16(v)), perExpert(toBf16(v2))));
    // One array for every expert (what bench does): the layer of the whole tensor of E copies.
    const one13 = toBf16(v13.subarray(0, n)), one2 = toBf16(v2.subarray(0, H * I));
    const copies = (a: Uint16Array) => { const w = new Uint16Array(E * a.length); for (let e = 0; e < E; e++) w.set(a, e * a.length); return w; };
    const c = new MoeLayer(options('bf16', true, false, false, [one13, one13, one13, one13], [one2, one2, one2, one2]));
    const d = new MoeLayer(options('bf16', true, false, false, copies(one13), copies(one2)));
    const route = { ids: new Int32Array([3, 1]), weights: new Float32Array([0.4, 0.6]) };
    expect(bitsEqual(a.forwardSync(CALLS[0].x, route), b.forwardSync(CALLS[0].x, route))).toBe(true);
    expect(bitsEqual(c.forwardSync(CALLS[0].x, route), d.forwardSync(CALLS[0].x, route))).toBe(true);
    expect(bitsEqual(c.forwardSync(CALLS[0].x, route), a.forwardSync(CALLS[0].x, route))).toBe(false);
    for (const l of [a, b, c, d]) l.dispose();
  });
});

// ---------------------------------------------------------------------------------------------
// Bad per-expert input: a clear error naming the element, no native call, nothing changed.

type Counted = 'NativeLayer' | 'createNativeLayer';
function nativeCalls(fn: () => unknown): { calls: number; result: unknown } {
  const b = binding as unknown as Record<Counted, unknown>;
  const saved = { NativeLayer: b.NativeLayer, createNativeLayer: b.createNativeLayer };
  let calls = 0;
  b.NativeLayer = new Proxy(saved.NativeLayer as object, { construct(t, a) { calls++; return Reflect.construct(t as never, a); } });
  b.createNativeLayer = (...a: unknown[]) => { calls++; return (saved.createNativeLayer as (...x: unknown[]) => unknown)(...a); };
  try {
    return { calls, result: fn() };
  } finally {
    Object.assign(b, saved);
  }
}

function arraysIn(v: unknown, depth = 0): ArrayBufferView[] {
  if (ArrayBuffer.isView(v)) return [v];
  if (v && typeof v === 'object' && depth < 3) return Object.values(v).flatMap((x) => arraysIn(x, depth + 1));
  return [];
}

function refused(patch: Record<string, unknown>, dtype: WeightDtype, cls: ErrorConstructor, contains: string[]): void {
  const o = { ...options(dtype, false, false, false, perExpert(v13), perExpert(v2)) as object, ...patch };
  const arrays = arraysIn(o);
  const before = arrays.map(snapshot);
  let calls = 0;
  ({ calls } = nativeCalls(() => expectThrows(() => new MoeLayer(o as never), cls, contains)));
  expect(calls, 'native calls before the error').toBe(0);
  arrays.forEach((a, i) => expect(unchanged(a, before[i]), `input ${i} changed`).toBe(true));
}

describe('bad per-expert input', () => {
  const list13 = () => perExpert(v13);

  test('an expert of the wrong length: RangeError naming the element, its expected length and shape', () => {
    const l = list13();
    l[3] = new Float32Array(5);
    refused({ w13: l }, 'f32', RangeError, ['w13[3]: expected length 12288 ([2I=192, H=64]), got 5']);
    refused({ w13: l, transposed: true }, 'f32', RangeError, ['w13[3]: expected length 12288 ([H=64, 2I=192]), got 5']);
    const l2 = perExpert(v2);
    l2[0] = new Float32Array(H * I + 1);
    refused({ w2: l2 }, 'f32', RangeError, [`w2[0]: expected length ${H * I} ([H=64, I=96]), got ${H * I + 1}`]);
  });

  test('the wrong number of experts: RangeError', () => {
    refused({ w13: list13().slice(1) }, 'f32', RangeError, ['w13: expected 4 per-expert arrays (numExperts), got an array of 3']);
    refused({ w2: [] }, 'f32', RangeError, ['w2: expected 4 per-expert arrays']);
  });

  test('experts of different dtypes, or of a type the layer does not take: TypeError naming the element', () => {
    const l: unknown[] = list13();
    l[2] = toBf16(l[2] as Float32Array);
    refused({ w13: l }, 'mxfp4', TypeError, ['w13[2]: expected Float32Array like w13[0] (every expert has the same dtype), got Uint16Array']);
    refused({ w13: [...list13().slice(0, 3), new Float64Array(2 * I * H)] }, 'f32', TypeError, ['w13[3]', 'Float64Array']);
    refused({ w13: list13() }, 'bf16', TypeError, ['w13[0]', 'Uint16Array (bf16 bit patterns)', 'Float32Array']);
    refused({ w13: [1, 2, 3, 4] }, 'f32', TypeError, ['w13[0]']);
  });

  test('pre-quantized experts as an array of tensors: TypeError saying to give them per field', () => {
    const tensors = list13().map((v) => quantize(v, [2 * I, H], 'mxfp4'));
    refused({ w13: tensors }, 'mxfp4', TypeError, ['w13[0]', '{ blocks: Uint8Array[], scales: Uint8Array[] }', 'not as an array of tensors']);
    const i8 = list13().map((v) => quantize(v, [2 * I, H], 'int8'));
    refused({ w13: i8 }, 'int8', TypeError, ['w13[0]', '{ codes: Int8Array[], scales: Uint16Array[] }']);
  });

  test('pre-quantized per field: both fields per expert, each element of the right type and length', () => {
    const whole = quantize(v13, [E * 2 * I, H], 'mxfp4');
    const blocks = perExpert(whole.blocks), scales = perExpert(whole.scales);
    refused({ w13: { blocks, scales: whole.scales } }, 'mxfp4', TypeError, ['w13.scales: expected an Array of 4 per-expert Uint8Arrays']);
    refused({ w13: { blocks: whole.blocks, scales } }, 'mxfp4', TypeError, ['w13.blocks: expected an Array of 4 per-expert Uint8Arrays']);
    refused({ w13: { blocks: blocks.slice(1), scales } }, 'mxfp4', RangeError, ['w13.blocks: expected 4 per-expert arrays']);
    const short = [...blocks];
    short[1] = new Uint8Array(7);
    refused({ w13: { blocks: short, scales } }, 'mxfp4', RangeError, [`w13.blocks[1]: expected length ${2 * I * (H / 32) * 16} ([2I=192, H/32=2, 16]), got 7`]);
    const wrongType: unknown[] = [...scales];
    wrongType[2] = new Int8Array(scales[2].length);
    refused({ w13: { blocks, scales: wrongType } }, 'mxfp4', TypeError, ['w13.scales[2]', 'Int8Array']);
    const q8 = quantize(v13, [E * 2 * I, H], 'int8');
    const codes = perExpert(q8.codes), s8 = perExpert(q8.scales);
    s8[3] = new Uint16Array(1);
    refused({ w13: { codes, scales: s8 } }, 'int8', RangeError, [`w13.scales[3]: expected length ${2 * I * (H / 32)} ([2I=192, H/32=2]), got 1`]);
    refused({ w13: { blocks, scales }, transposed: true }, 'mxfp4', RangeError, ['transposed']);
  });

  test('biases are single arrays: a per-expert bias is a TypeError saying so', () => {
    refused({ w13Bias: perExpert(b13) }, 'f32', TypeError, ['w13Bias', 'not given per expert']);
    refused({ w2Bias: perExpert(b2) }, 'mxfp4', TypeError, ['w2Bias', 'not given per expert']);
  });

  test('int8 refuses a NaN in a per-expert array, naming expert and index', () => {
    const l = list13();
    l[2][17] = NaN;
    expectThrows(() => new MoeLayer(options('int8', false, false, false, l, v2)), RangeError, ['w13[2][17]', 'NaN', 'int8']);
  });

  test('MoeLayer.create rejects bad per-expert input (no synchronous throw)', async () => {
    const l = list13();
    l[1] = new Float32Array(3);
    await expectRejects(() => MoeLayer.create(options('f32', false, false, false, l, v2)), RangeError, ['w13[1]']);
  });

  test('the addon itself checks per-expert arrays (a direct call cannot read out of bounds)', () => {
    const config = { numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', isW13Interleaved: false, transposed: false,
      swigluAlpha: 1.702, swigluLimit: 7, threads: 1, weightDtype: 'f32' };
    const w2 = { format: 'f32', data: v2 };
    const call = (w13: unknown) => () => new binding.NativeLayer(config, w13 as never, w2 as never, null, null);
    expectThrows(call({ format: 'f32', data: perExpert(v13).slice(1) }), RangeError, ['w13.data: expected 4 per-expert arrays']);
    const l: unknown[] = perExpert(v13);
    l[2] = new Float32Array(10);
    expectThrows(call({ format: 'f32', data: l }), RangeError, ['w13.data[2]: expected length 12288, got 10']);
    l[2] = new Uint16Array(2 * I * H);
    expectThrows(call({ format: 'f32', data: l }), TypeError, ['w13.data[2]']);
    const q = quantize(v13, [E * 2 * I, H], 'mxfp4');
    expectThrows(call({ format: 'mxfp4', data: perExpert(q.blocks), scales: q.scales }), TypeError, ['w13.scales']);
    expectThrows(() => new binding.NativeLayer(config, { format: 'f32', data: v13 } as never, w2 as never,
      { format: 'f32', data: perExpert(b13) } as never, null), TypeError, ['w13Bias.data']);
  });

  test('createNativeLayer holds every per-expert array while it packs (collected meanwhile, the layer is still right)', () => {
    // A child with --expose-gc: per-expert arrays referenced by nothing but the pending call, big
    // enough to be unmapped when freed, and garbage collections while the dispatcher packs them.
    const script = `
const { binding } = require('./dist/binding.js');
const E = 8, H = 1024, I = 1024;
const fill = (n, s) => { const a = new Float32Array(n); for (let i = 0; i < n; i += 97) a[i] = Math.sin(i + s); return a; };
const config = { numExperts: E, hiddenSize: H, intermediateSize: I, topK: 2, activation: 'silu', isW13Interleaved: false,
  transposed: false, swigluAlpha: 1.702, swigluLimit: 7, threads: 1, weightDtype: 'f32' };
const whole = new binding.NativeLayer(config, { format: 'f32', data: fill(E * 2 * I * H, 1) }, { format: 'f32', data: fill(E * H * I, 2) }, null, null);
const expert = (n, s, e) => fill(E * n, s).slice(e * n, (e + 1) * n);
const pending = binding.createNativeLayer(config,
  { format: 'f32', data: Array.from({ length: E }, (_, e) => expert(2 * I * H, 1, e)) },
  { format: 'f32', data: Array.from({ length: E }, (_, e) => expert(H * I, 2, e)) }, null, null);
for (let i = 0; i < 5; i++) { gc(); new Float32Array(16 << 20).fill(i); }
pending.then((layer) => {
  const x = fill(H, 3), ids = new Int32Array([7, 0]), w = new Float32Array([0.5, 0.5]);
  const router = new binding.NativeRouter(null, E, H, null,
    { mode: 'topk-softmax', renormalize: false, numGroups: 1, topkGroups: 1, correctionBias: null, routedScalingFactor: 1 }, 2);
  const run = (l) => binding.forwardBlockSync(l, router, null, null, x, 1, null, ids, w, new Float32Array(H));
  const a = run(whole), b = run(layer);
  console.log(Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer)) === 0 ? 'same' : 'differs');
});`;
    const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.stdout.trim(), r.stderr).toBe('same');
  });
});

// ---------------------------------------------------------------------------------------------
// Float16Array: f16 values for weights, biases and router weights; never for activations.

describe.skipIf(!HAS_FLOAT16)('Float16Array inputs (Node >= 24)', () => {
  const f16 = (v: Float32Array) => new F16(v) as unknown as Float32Array; // typed loosely: Node 20's types have none
  const bitsOf = (a: Float32Array) => new Uint16Array(a.buffer, a.byteOffset, a.length);
  const route = CALLS[1].route, x = CALLS[1].x;
  const run = (o: object) => {
    const layer = new MoeLayer(o as never);
    try {
      return CALLS.map((c) => layer.forwardSync(c.x, c.route));
    } finally {
      layer.dispose();
    }
  };
  const same = (a: Float32Array[], b: Float32Array[], label: string) => a.forEach((o, i) => expect(bitsEqual(o, b[i]), `${label} T=${CALLS[i].T}`).toBe(true));
  // Made only where the runtime has Float16Array (the describe body runs while collecting, skipped or not).
  const [h13, h2, hb13, hb2] = HAS_FLOAT16 ? [v13, v2, b13, b2].map(f16) : [v13, v2, b13, b2];
  const wide = (a: Float32Array) => Float32Array.from(a); // the exact f32 values of f16 ones

  test("an 'f16' layer keeps Float16Array values: the same layer as from their f16 bit patterns (whole and per expert)", () => {
    const bits = { w13: bitsOf(h13), w2: bitsOf(h2), w13Bias: bitsOf(hb13), w2Bias: bitsOf(hb2) };
    for (const interleaved of [false, true]) {
      for (const transposed of [false, true]) {
        const base = options('f16', interleaved, transposed, false, bits.w13, bits.w2) as object;
        const expected = run({ ...base, w13Bias: bits.w13Bias, w2Bias: bits.w2Bias });
        same(run({ ...base, w13: h13, w2: h2, w13Bias: hb13, w2Bias: hb2 }), expected, `whole ${interleaved} ${transposed}`);
        same(run({ ...base, w13: split(h13), w2: split(h2), w13Bias: hb13, w2Bias: hb2 }), expected, `per expert ${interleaved} ${transposed}`);
      }
    }
    // And right: against the float64 reference on the f16 values.
    const cfg = { numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', layout: 'halves', transposed: false, bf16Activations: false } as const;
    const out = run({ ...(options('f16', false, false, true, h13, h2) as object), w13Bias: hb13, w2Bias: hb2 });
    expectClose(out[1], refMoeForward(cfg, { w13: refFromF16(bits.w13), w2: refFromF16(bits.w2), w13Bias: refFromF16(bits.w13Bias), w2Bias: refFromF16(bits.w2Bias) }, x, route.ids, route.weights), F32_TOL);
  });

  test.each(['f32', 'bf16', 'mxfp4', 'int8'] as const)("a '%s' layer converts Float16Array values while packing: the layer of their exact f32 values", (dtype) => {
    // f32 sources where the layer takes them; a bf16 layer takes bf16 bits (the same rounding of
    // the same values). Biases are held in f32: a Float16Array bias is exact there, where a bf16
    // layer's own bias type would round it, so the bf16 layer is compared without biases.
    const asSource = (a: Float32Array) => (dtype === 'bf16' ? toBf16(wide(a)) : wide(a));
    const withBias = dtype !== 'bf16';
    for (const transposed of [false, true]) {
      const expected = run({ ...(options(dtype, true, transposed, false, asSource(h13), asSource(h2)) as object),
        ...(withBias ? { w13Bias: wide(hb13), w2Bias: wide(hb2) } : {}) });
      const bias = withBias ? { w13Bias: hb13, w2Bias: hb2 } : {};
      same(run({ ...(options(dtype, true, transposed, false, h13, h2) as object), ...bias }), expected, `${dtype} whole`);
      same(run({ ...(options(dtype, true, transposed, false, split(h13), split(h2)) as object), ...bias }), expected, `${dtype} per expert`);
    }
  });

  test('router weights and the shared expert gate as Float16Array: widened to f32 exactly', async () => {
    const rw = f16(randF32(mulberry32(5), E * H)), rb = f16(randF32(mulberry32(6), E));
    const base = options('f32', false, false, false, v13, v2) as object;
    const a = new MoeLayer({ ...base, routerWeight: rw, routerBias: rb } as never);
    const b = new MoeLayer({ ...base, routerWeight: wide(rw), routerBias: wide(rb) } as never);
    expect(bitsEqual(await a.forward(x), await b.forward(x))).toBe(true);
    expect(bitsEqual(a.forwardSync(x), b.forwardSync(x))).toBe(true);
    const shared = () => new MoeLayer({ ...options('f32', false, false, false, v13.subarray(0, 2 * I * H), v2.subarray(0, H * I)) as object, numExperts: 1, topK: 1 } as never);
    const gate = f16(randF32(mulberry32(7), H));
    const blockA = new MoeBlock({ experts: a, sharedExperts: shared(), sharedExpertGate: gate as never });
    const blockB = new MoeBlock({ experts: b, sharedExperts: shared(), sharedExpertGate: wide(gate) });
    expect(bitsEqual(await blockA.forward(x), await blockB.forward(x))).toBe(true);
    blockA.dispose();
    blockB.dispose();
  });

  test('int8 refuses a NaN or infinity in Float16Array weights, naming the element', () => {
    const w = wide(h13);
    w[300] = Infinity;
    expectThrows(() => new MoeLayer(options('int8', false, false, false, f16(w), v2)), RangeError, ['w13[300]', 'Infinity', 'int8']);
    const l = split(f16(w)) as Float32Array[];
    expectThrows(() => new MoeLayer(options('int8', false, false, false, l, v2)), RangeError, ['w13[0][300]', 'Infinity']);
  });

  test('dequantize takes a Float16Array for format f16', () => {
    const bits = bitsOf(h13).subarray(0, 64 * 32);
    expect(bitsEqual(dequantize(f16(wide(h13).subarray(0, 64 * 32)), [64, 32], 'f16'), dequantize(bits, [64, 32], 'f16'))).toBe(true);
  });

  test('a Float16Array hidden is a TypeError naming hidden, everywhere activations go in', async () => {
    const layer = new MoeLayer({ ...(options('f32', false, false, false, v13, v2) as object), routerWeight: randF32(mulberry32(8), E * H) } as never);
    const h = f16(x);
    expectThrows(() => layer.forwardSync(h, route), TypeError, ['hidden', 'Float16Array', 'f32 or bf16']);
    await expectRejects(() => layer.forward(h, route), TypeError, ['hidden', 'Float16Array']);
    await expectRejects(() => layer.forward(h), TypeError, ['hidden', 'Float16Array']);
    await expectRejects(() => new ForwardBatcher(layer).forward(h, route), TypeError, ['hidden', 'Float16Array']);
    const block = new MoeBlock({ experts: layer });
    await expectRejects(() => block.forward(h), TypeError, ['hidden', 'Float16Array']);
    expectThrows(() => swigluoai(f16(randF32(mulberry32(9), 2 * I)), { tokens: 1, intermediateSize: I, isInterleaved: true }), TypeError, ['x', 'Float16Array']);
    // What the addon sees of one (Node-API reports a type it does not take): a TypeError, not a crash.
    expectThrows(() => binding.convertBf16(h as never, new Uint16Array(h.length)), TypeError, ['src']);
    block.dispose();
  });

  test('Float16Array per-expert lists must not mix with Uint16Array ones', () => {
    const l: unknown[] = split(h13) as unknown[];
    l[1] = bitsOf(l[1] as Float32Array);
    expectThrows(() => new MoeLayer(options('f16', false, false, false, l, v2)), TypeError, ['w13[1]', 'Float16Array like w13[0]']);
  });
});
