// The bad input rule: validate before any work, TypeError (wrong type / missing) or RangeError
// (wrong value / length / range), the message names the argument and the expected vs actual
// value, nothing is written to any input, the process never crashes, forward() rejects.
import { describe, expect, test } from 'vitest';
import {
  MoeLayer,
  deinterleaveW13,
  fromBf16,
  geluAndMul,
  interleaveW13,
  selectExperts,
  siluAndMul,
  swigluoai,
  toBf16,
} from '../lib/index';
import { detach, expectDisposed, expectRejects, expectThrows, mulberry32, randF32, randLogits, snapshot, unchanged } from './helpers';
import { refToBf16 } from './reference';

type ErrClass = ErrorConstructor | ErrorConstructor[];
const EITHER: ErrClass = [TypeError, RangeError];

/** Every typed array reachable in `args` (one level into plain objects), to snapshot. */
function typedArraysIn(args: unknown[]): ArrayBufferView[] {
  const out: ArrayBufferView[] = [];
  const visit = (v: unknown, depth: number) => {
    if (ArrayBuffer.isView(v)) out.push(v);
    else if (v && typeof v === 'object' && depth < 2) Object.values(v).forEach((x) => visit(x, depth + 1));
  };
  args.forEach((a) => visit(a, 0));
  return out;
}

/** Calls fn(...args), expects the error, then checks no typed array among args changed. */
function bad(fn: (...a: any[]) => unknown, args: unknown[], cls: ErrClass, contains: (string | number)[]) {
  const arrays = typedArraysIn(args);
  const before = arrays.map(snapshot);
  const err = expectThrows(() => fn(...args), cls, contains);
  arrays.forEach((a, i) => expect(unchanged(a, before[i]), `argument array ${i} was modified`).toBe(true));
  return err;
}

// A valid configuration; every test below breaks exactly one thing.
const E = 5, H = 17, I = 33, K = 2;
const LEN = { w13: E * 2 * I * H, w2: E * H * I, w13Bias: E * 2 * I, w2Bias: E * H };

function goodOptions(): Record<string, unknown> {
  const rng = mulberry32(1);
  return {
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K,
    activation: 'silu', isW13Interleaved: false, weightDtype: 'f32',
    w13: randF32(rng, LEN.w13), w2: randF32(rng, LEN.w2),
    w13Bias: randF32(rng, LEN.w13Bias), w2Bias: randF32(rng, LEN.w2Bias),
  };
}

function newLayer(opts: Record<string, unknown>) {
  return new MoeLayer(opts as never);
}

describe('MoeLayer constructor', () => {
  test('sanity: the good options construct', () => {
    newLayer(goodOptions()).dispose();
  });

  test('isW13Interleaved missing -> TypeError naming it', () => {
    const o = goodOptions();
    delete o.isW13Interleaved;
    bad(newLayer, [o], TypeError, ['isW13Interleaved']);
  });

  test.each([1, 'true', null, undefined])('isW13Interleaved = %j (not a boolean) -> TypeError', (v) => {
    bad(newLayer, [{ ...goodOptions(), isW13Interleaved: v }], TypeError, ['isW13Interleaved']);
  });

  test.each(['w13', 'w2', 'w13Bias', 'w2Bias'] as const)('%s of the wrong length -> RangeError with expected and actual length', (k) => {
    const o = goodOptions();
    o[k] = new Float32Array(LEN[k] + 1);
    bad(newLayer, [o], RangeError, [k, LEN[k], LEN[k] + 1]);
  });

  test('transposed: w2 of the wrong length -> RangeError', () => {
    bad(newLayer, [{ ...goodOptions(), transposed: true, w2: new Float32Array(LEN.w2 - 1) }], RangeError, ['w2', LEN.w2, LEN.w2 - 1]);
  });

  test('bf16 layer given a Float32Array w13 -> TypeError', () => {
    const o: Record<string, unknown> = { ...goodOptions(), weightDtype: 'bf16' };
    o.w2 = refToBf16(o.w2 as Float32Array);
    delete o.w13Bias;
    delete o.w2Bias;
    bad(newLayer, [o], TypeError, ['w13']);
  });

  test('f32 layer given a Uint16Array w2 -> TypeError', () => {
    const o = goodOptions();
    bad(newLayer, [{ ...o, w2: refToBf16(o.w2 as Float32Array) }], TypeError, ['w2']);
  });

  test('f32 layer given a bf16 (Uint16Array) w13Bias -> TypeError', () => {
    const o = goodOptions();
    bad(newLayer, [{ ...o, w13Bias: refToBf16(o.w13Bias as Float32Array) }], TypeError, ['w13Bias']);
  });

  test('w13 missing -> TypeError', () => {
    const o = goodOptions();
    delete o.w13;
    bad(newLayer, [o], TypeError, ['w13']);
  });

  test('w13 as a plain array -> TypeError', () => {
    const o = goodOptions();
    bad(newLayer, [{ ...o, w13: Array.from(o.w13 as Float32Array) }], TypeError, ['w13']);
  });

  test('w13 as a Float64Array -> TypeError', () => {
    bad(newLayer, [{ ...goodOptions(), w13: new Float64Array(LEN.w13) }], TypeError, ['w13']);
  });

  test.each<[string, unknown]>([
    ['numExperts', 0],
    ['numExperts', -5],
    ['hiddenSize', 16.5],
    ['hiddenSize', NaN],
    ['intermediateSize', -33],
    ['intermediateSize', Infinity],
    ['topK', 0],
    ['topK', 1.5],
  ])('%s = %s (not a positive integer) -> RangeError', (k, v) => {
    bad(newLayer, [{ ...goodOptions(), [k]: v }], RangeError, [k, String(v)]);
  });

  test.each(['numExperts', 'hiddenSize', 'intermediateSize', 'topK'])('%s as a string -> TypeError', (k) => {
    const o = goodOptions();
    bad(newLayer, [{ ...o, [k]: String(o[k]) }], TypeError, [k]);
  });

  test('topK > numExperts -> RangeError naming topK', () => {
    bad(newLayer, [{ ...goodOptions(), topK: E + 1 }], RangeError, ['topK', E + 1, E]);
  });

  test('unknown activation -> RangeError', () => {
    bad(newLayer, [{ ...goodOptions(), activation: 'relu' }], RangeError, ['activation', 'relu']);
  });

  test('unknown weightDtype -> RangeError', () => {
    bad(newLayer, [{ ...goodOptions(), weightDtype: 'int4' }], RangeError, ['weightDtype', 'int4']);
  });

  test.each([0, 1.5, -1])('threads = %s -> RangeError', (v) => {
    bad(newLayer, [{ ...goodOptions(), threads: v }], RangeError, ['threads', String(v)]);
  });

  test('unknown routing mode -> RangeError', () => {
    bad(newLayer, [{ ...goodOptions(), routing: { mode: 'top-p' } }], RangeError, ['mode', 'top-p']);
  });

  test('softmax-topk without renormalize -> TypeError', () => {
    bad(newLayer, [{ ...goodOptions(), routing: { mode: 'softmax-topk' } }], TypeError, ['renormalize']);
  });

  test('sigmoid-grouped: numGroups does not divide numExperts -> RangeError', () => {
    bad(newLayer, [{ ...goodOptions(), routing: { mode: 'sigmoid-grouped', numGroups: 2, topkGroups: 1, renormalize: true } }], RangeError, ['numGroups', 2]);
  });

  test('sigmoid-grouped: topkGroups > numGroups -> RangeError', () => {
    const o = { ...goodOptions(), numExperts: 5 };
    bad(newLayer, [{ ...o, routing: { mode: 'sigmoid-grouped', numGroups: 1, topkGroups: 2, renormalize: true } }], RangeError, ['topkGroups', 2]);
  });

  test('sigmoid-grouped: correctionBias of the wrong length -> RangeError', () => {
    const routing = { mode: 'sigmoid-grouped', numGroups: 1, topkGroups: 1, renormalize: true, correctionBias: new Float32Array(E + 2) };
    bad(newLayer, [{ ...goodOptions(), routing }], RangeError, ['correctionBias', E, E + 2]);
  });

  test('options missing -> TypeError', () => {
    expectThrows(() => new (MoeLayer as any)(), TypeError, []);
  });

  test('a detached w13 -> error naming w13', () => {
    const o = goodOptions();
    detach(o.w13 as Float32Array);
    bad(newLayer, [o], EITHER, ['w13']);
  });
});

// ---------------------------------------------------------------------------------------------

describe.each(['forwardSync', 'forward'] as const)('layer.%s', (method) => {
  const T = 3;
  const rng = mulberry32(5);
  const layer = newLayer(goodOptions());
  const hidden = () => randF32(rng, T * H);
  const logits = () => randLogits(rng, T, E);
  const ids = () => new Int32Array([0, 1, 2, 3, 4, 0]);
  const weights = () => new Float32Array([0.5, 0.5, 0.7, 0.3, 1, 0]);

  async function badCall(h: unknown, route: unknown, cls: ErrClass, contains: (string | number)[]) {
    const arrays = typedArraysIn([h, route]);
    const before = arrays.map(snapshot);
    if (method === 'forwardSync') expectThrows(() => layer.forwardSync(h as never, route as never), cls, contains);
    else await expectRejects(() => layer.forward(h as never, route as never), cls, contains);
    arrays.forEach((a, i) => expect(unchanged(a, before[i]), `argument array ${i} was modified`).toBe(true));
  }

  test('sanity: a good call works', async () => {
    const out = await layer[method](hidden(), { logits: logits() });
    expect(out.length).toBe(T * H);
    await layer[method](hidden(), { ids: ids(), weights: weights() });
  });

  test('hidden length not a multiple of hiddenSize -> RangeError', async () => {
    await badCall(randF32(rng, T * H + 1), { logits: logits() }, RangeError, ['hidden', H, T * H + 1]);
  });

  test('hidden as a Float64Array -> TypeError', async () => {
    await badCall(new Float64Array(T * H), { logits: logits() }, TypeError, ['hidden']);
  });

  test('hidden as a plain array -> TypeError', async () => {
    await badCall(Array.from(hidden()), { logits: logits() }, TypeError, ['hidden']);
  });

  test('logits of the wrong length -> RangeError', async () => {
    await badCall(hidden(), { logits: randF32(rng, T * E - 1) }, RangeError, ['logits', T * E, T * E - 1]);
  });

  test('logits as a Float64Array -> TypeError', async () => {
    await badCall(hidden(), { logits: new Float64Array(T * E) }, TypeError, ['logits']);
  });

  test.each([NaN, Infinity, -Infinity])('a logit = %s -> RangeError', async (v) => {
    const l = logits();
    l[T * E - 1] = v;
    await badCall(hidden(), { logits: l }, RangeError, ['logits', String(v)]);
  });

  test.each([E, -1, 1000])('an id = %s (outside [0, numExperts)) -> RangeError', async (v) => {
    const i = ids();
    i[T * K - 1] = v;
    await badCall(hidden(), { ids: i, weights: weights() }, RangeError, ['ids', String(v)]);
  });

  test('ids as a Float32Array -> TypeError', async () => {
    await badCall(hidden(), { ids: new Float32Array(T * K), weights: weights() }, TypeError, ['ids']);
  });

  test('ids as a Uint32Array -> TypeError', async () => {
    await badCall(hidden(), { ids: new Uint32Array(T * K), weights: weights() }, TypeError, ['ids']);
  });

  test('ids of the wrong length -> RangeError', async () => {
    await badCall(hidden(), { ids: new Int32Array(T * K + 1), weights: weights() }, RangeError, ['ids', T * K, T * K + 1]);
  });

  test('weights of the wrong length -> RangeError', async () => {
    await badCall(hidden(), { ids: ids(), weights: new Float32Array(T * K - 1) }, RangeError, ['weights', T * K, T * K - 1]);
  });

  test('weights as a Float64Array -> TypeError', async () => {
    await badCall(hidden(), { ids: ids(), weights: new Float64Array(T * K) }, TypeError, ['weights']);
  });

  test.each([NaN, Infinity])('a routing weight = %s -> RangeError', async (v) => {
    const w = weights();
    w[2] = v;
    await badCall(hidden(), { ids: ids(), weights: w }, RangeError, ['weights', String(v)]);
  });

  test('ids without weights -> TypeError', async () => {
    await badCall(hidden(), { ids: ids() }, TypeError, ['weights']);
  });

  test('route without logits or ids -> TypeError', async () => {
    await badCall(hidden(), {}, TypeError, ['route']);
  });

  test('route missing -> TypeError', async () => {
    await badCall(hidden(), undefined, TypeError, ['route']);
  });

  test('a detached hidden -> error naming hidden', async () => {
    const h = hidden();
    detach(h);
    await badCall(h, { logits: logits() }, EITHER, ['hidden']);
  });

  test('detached logits -> error naming logits', async () => {
    const l = logits();
    detach(l);
    await badCall(hidden(), { logits: l }, EITHER, ['logits']);
  });

  test('detached ids -> error naming ids', async () => {
    const i = ids();
    detach(i);
    await badCall(hidden(), { ids: i, weights: weights() }, EITHER, ['ids']);
  });

  test('a disposed layer -> error that says so', async () => {
    const l2 = newLayer(goodOptions());
    l2.dispose();
    let err: Error;
    if (method === 'forwardSync') err = expectThrows(() => l2.forwardSync(hidden(), { logits: logits() }), Error, []);
    else err = await expectRejects(() => l2.forward(hidden(), { logits: logits() }), Error, []);
    expectDisposed(err);
  });
});

// ---------------------------------------------------------------------------------------------

describe.each([
  ['swigluoai', swigluoai],
  ['siluAndMul', siluAndMul],
  ['geluAndMul', geluAndMul],
] as const)('%s', (_name, fn) => {
  const T = 3, Iv = 17;
  const good = () => ({ tokens: T, intermediateSize: Iv, isInterleaved: true });
  const x = () => randF32(mulberry32(3), T * 2 * Iv);

  test('sanity: a good call works', () => {
    expect(fn(x(), good()).length).toBe(T * Iv);
  });

  test('input of the wrong length -> RangeError with expected and actual length', () => {
    bad(fn, [randF32(mulberry32(3), T * 2 * Iv - 1), good()], RangeError, [T * 2 * Iv, T * 2 * Iv - 1]);
  });

  test.each([0, 2.5, -1])('tokens = %s -> RangeError', (v) => {
    bad(fn, [x(), { ...good(), tokens: v }], RangeError, ['tokens', String(v)]);
  });

  test.each([0, 0.5])('intermediateSize = %s -> RangeError', (v) => {
    bad(fn, [x(), { ...good(), intermediateSize: v }], RangeError, ['intermediateSize', String(v)]);
  });

  test('isInterleaved missing -> TypeError', () => {
    bad(fn, [x(), { tokens: T, intermediateSize: Iv }], TypeError, ['isInterleaved']);
  });

  test('isInterleaved not a boolean -> TypeError', () => {
    bad(fn, [x(), { ...good(), isInterleaved: 0 }], TypeError, ['isInterleaved']);
  });

  test('a Float64Array input -> TypeError', () => {
    bad(fn, [new Float64Array(T * 2 * Iv), good()], TypeError, []);
  });

  test('options missing -> TypeError', () => {
    bad(fn, [x()], TypeError, []);
  });

  test('a detached input -> error, no crash', () => {
    const a = x();
    detach(a);
    bad(fn, [a, good()], EITHER, []);
  });
});

describe('activation options', () => {
  test("geluAndMul approximate: 'fast' -> RangeError", () => {
    bad(geluAndMul, [randF32(mulberry32(1), 6), { tokens: 1, intermediateSize: 3, isInterleaved: false, approximate: 'fast' }], RangeError, ['approximate', 'fast']);
  });
});

// ---------------------------------------------------------------------------------------------

describe.each([
  ['deinterleaveW13', deinterleaveW13],
  ['interleaveW13', interleaveW13],
] as const)('%s', (_name, fn) => {
  const shape = { numExperts: 3, intermediateSize: 5, hiddenSize: 7 };
  const n = 3 * 2 * 5 * 7;

  test('wrong length, in place -> RangeError, input untouched', () => {
    bad(fn, [randF32(mulberry32(1), n + 1), { ...shape, inPlace: true }], RangeError, [n, n + 1]);
  });

  test('wrong length, bf16, out of place -> RangeError', () => {
    bad(fn, [refToBf16(randF32(mulberry32(1), n - 1)), shape], RangeError, [n, n - 1]);
  });

  test('transposed changes nothing about the total length check', () => {
    bad(fn, [randF32(mulberry32(1), n + 2), { ...shape, transposed: true, inPlace: true }], RangeError, [n, n + 2]);
  });

  test.each<[string, number]>([
    ['numExperts', 0],
    ['intermediateSize', 2.5],
    ['hiddenSize', -7],
  ])('%s = %s -> RangeError, input untouched', (k, v) => {
    bad(fn, [randF32(mulberry32(1), n), { ...shape, [k]: v, inPlace: true }], RangeError, [k, String(v)]);
  });

  test('a Float64Array -> TypeError', () => {
    bad(fn, [new Float64Array(n), shape], TypeError, []);
  });

  test('a detached array in place -> error, no crash', () => {
    const a = randF32(mulberry32(1), n);
    detach(a);
    bad(fn, [a, { ...shape, inPlace: true }], EITHER, []);
  });
});

// ---------------------------------------------------------------------------------------------

describe('selectExperts', () => {
  const T = 3, Ev = 8;
  const good = () => ({ tokens: T, numExperts: Ev, topK: 2, routing: { mode: 'topk-softmax' } });
  const logits = () => randLogits(mulberry32(4), T, Ev);

  test('sanity: a good call works', () => {
    expect(selectExperts(logits(), good() as never).ids.length).toBe(T * 2);
  });

  test.each([NaN, -Infinity])('a logit = %s -> RangeError', (v) => {
    const l = logits();
    l[5] = v;
    bad(selectExperts, [l, good()], RangeError, ['logits', String(v)]);
  });

  test('logits of the wrong length -> RangeError', () => {
    bad(selectExperts, [randF32(mulberry32(1), T * Ev + 1), good()], RangeError, ['logits', T * Ev, T * Ev + 1]);
  });

  test('logits as a Float64Array -> TypeError', () => {
    bad(selectExperts, [new Float64Array(T * Ev), good()], TypeError, ['logits']);
  });

  test('topK > numExperts -> RangeError', () => {
    bad(selectExperts, [logits(), { ...good(), topK: Ev + 1 }], RangeError, ['topK', Ev + 1]);
  });

  test('topK = 0 -> RangeError', () => {
    bad(selectExperts, [logits(), { ...good(), topK: 0 }], RangeError, ['topK', '0']);
  });

  test('tokens = 1.5 -> RangeError', () => {
    bad(selectExperts, [logits(), { ...good(), tokens: 1.5 }], RangeError, ['tokens', '1.5']);
  });

  test('routing missing -> TypeError', () => {
    const o: Record<string, unknown> = good();
    delete o.routing;
    bad(selectExperts, [logits(), o], TypeError, ['routing']);
  });

  test('numGroups does not divide numExperts -> RangeError', () => {
    bad(selectExperts, [logits(), { ...good(), routing: { mode: 'sigmoid-grouped', numGroups: 3, topkGroups: 1, renormalize: false } }], RangeError, ['numGroups', 3]);
  });

  test('correctionBias as a Float64Array -> TypeError', () => {
    const routing = { mode: 'sigmoid-grouped', numGroups: 2, topkGroups: 1, renormalize: false, correctionBias: new Float64Array(Ev) };
    bad(selectExperts, [logits(), { ...good(), routing }], TypeError, ['correctionBias']);
  });

  test('a NaN in correctionBias -> RangeError', () => {
    const correctionBias = new Float32Array(Ev);
    correctionBias[3] = NaN;
    const routing = { mode: 'sigmoid-grouped', numGroups: 2, topkGroups: 1, renormalize: false, correctionBias };
    bad(selectExperts, [logits(), { ...good(), routing }], RangeError, ['correctionBias', 'NaN']);
  });

  test('a detached logits array -> error naming logits', () => {
    const l = logits();
    detach(l);
    bad(selectExperts, [l, good()], EITHER, ['logits']);
  });
});

describe('toBf16 / fromBf16', () => {
  test('toBf16(Uint16Array) -> TypeError', () => {
    bad(toBf16, [new Uint16Array(4)], TypeError, []);
  });
  test('toBf16(Float64Array) -> TypeError', () => {
    bad(toBf16, [new Float64Array(4)], TypeError, []);
  });
  test('fromBf16(Float32Array) -> TypeError', () => {
    bad(fromBf16, [new Float32Array(4)], TypeError, []);
  });
  test('toBf16(undefined) -> TypeError', () => {
    bad(toBf16, [undefined], TypeError, []);
  });
  test('a detached array -> error, no crash', () => {
    const a = new Float32Array(4);
    detach(a);
    bad(toBf16, [a], EITHER, []);
  });
});
