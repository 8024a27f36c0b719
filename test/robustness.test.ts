// Defects of the adversarial run that are not bad input as such: dispose() with forwards in
// flight (routers and blocks included), misleading messages, arrays from another context or on
// a SharedArrayBuffer.
import * as vm from 'node:vm';
import { describe, expect, test } from 'vitest';
import { MoeBlock, MoeLayer } from '../lib/index';
import { bitsEqual, expectDisposed, expectRejects, mulberry32, randF32 } from './helpers';

const E = 4, H = 64, I = 32, K = 2, T = 5;

function options(seed: number, extra: Record<string, unknown> = {}) {
  const rng = mulberry32(seed);
  return {
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu' as const, isW13Interleaved: false,
    weightDtype: 'f32' as const, w13: randF32(rng, E * 2 * I * H), w2: randF32(rng, E * H * I), routerWeight: randF32(rng, E * H),
    ...extra,
  };
}

function sharedBlock(seed: number): MoeBlock {
  const rng = mulberry32(seed + 100);
  const shared = new MoeLayer({
    numExperts: 1, hiddenSize: H, intermediateSize: I, topK: 1, activation: 'silu', isW13Interleaved: false,
    weightDtype: 'f32', w13: randF32(rng, 2 * I * H), w2: randF32(rng, H * I),
  });
  return new MoeBlock({ experts: new MoeLayer(options(seed)), sharedExperts: shared, sharedExpertGate: randF32(rng, H) });
}

describe('dispose() with forwards in flight', () => {
  test('a layer with a router: the forwards in flight finish with the right output, then the memory goes', async () => {
    const hidden = randF32(mulberry32(3), T * H);
    const reference = new MoeLayer(options(1));
    const expected = reference.forwardSync(hidden);
    reference.dispose();

    const layer = new MoeLayer(options(1));
    const inflight = [layer.forward(hidden), layer.forward(hidden), layer.forward(hidden)];
    layer.dispose();
    expect(layer.disposed).toBe(true);
    expect(layer.bytes).toBe(0);
    for (const out of await Promise.all(inflight)) expect(bitsEqual(out, expected)).toBe(true);
    expectDisposed(await expectRejects(() => layer.forward(hidden), Error, []));
    expect(() => layer.forwardSync(hidden)).toThrow(/disposed/);
  });

  test('a MoeBlock with a shared expert and its gate: the same', async () => {
    const hidden = randF32(mulberry32(4), T * H);
    const reference = sharedBlock(2);
    const expected = reference.forwardSync(hidden);
    reference.dispose();

    const block = sharedBlock(2);
    const inflight = [block.forward(hidden), block.forward(hidden)];
    block.dispose();
    expect(block.disposed).toBe(true);
    expect(block.bytes).toBe(0);
    for (const out of await Promise.all(inflight)) expect(bitsEqual(out, expected)).toBe(true);
    expect(block.experts.disposed).toBe(true);
    expect(block.sharedExperts!.disposed).toBe(true);
    expectDisposed(await expectRejects(() => block.forward(hidden), Error, []));
  });
});

describe('messages name what the caller passed', () => {
  test('async MoeBlock.forward with NaN in hidden blames hidden, not route.weights', async () => {
    const block = sharedBlock(5);
    const hidden = randF32(mulberry32(6), T * H);
    hidden[H + 7] = NaN;
    const err = await expectRejects(() => block.forward(hidden), RangeError, ['hidden']);
    expect(err.message).not.toContain('route');
    expect(() => block.forwardSync(hidden)).toThrow(/^hidden: /);
    block.dispose();
  });
});

describe('arrays as services have them', () => {
  test('typed arrays from another vm context give the same output as local ones', async () => {
    const layer = new MoeLayer(options(7));
    const hidden = randF32(mulberry32(8), T * H);
    const foreign = vm.runInNewContext('new Float32Array(n)', { n: hidden.length }) as Float32Array;
    foreign.set(hidden);
    expect(foreign instanceof Float32Array).toBe(false);
    expect(bitsEqual(layer.forwardSync(foreign), layer.forwardSync(hidden))).toBe(true);
    expect(bitsEqual(await layer.forward(foreign), layer.forwardSync(hidden))).toBe(true);
    const o = options(7);
    const w13 = vm.runInNewContext('new Float32Array(n)', { n: o.w13.length }) as Float32Array;
    w13.set(o.w13);
    const layer2 = new MoeLayer({ ...o, w13 });
    expect(bitsEqual(layer2.forwardSync(hidden), layer.forwardSync(hidden))).toBe(true);
    layer.dispose();
    layer2.dispose();
  });

  test('SharedArrayBuffer-backed weights, hidden and routes work (Node 20 included)', async () => {
    const o = options(9);
    const shared = <T extends Float32Array | Int32Array>(a: T): T => {
      const s = new (a.constructor as new (b: SharedArrayBuffer) => T)(new SharedArrayBuffer(a.byteLength));
      s.set(a as never);
      return s;
    };
    const local = new MoeLayer(o);
    const sab = new MoeLayer({ ...o, w13: shared(o.w13), w2: shared(o.w2), routerWeight: shared(o.routerWeight) });
    const hidden = randF32(mulberry32(10), T * H);
    const ids = new Int32Array(T * K).map((_, i) => i % E), weights = new Float32Array(T * K).fill(0.5);
    const expected = local.forwardSync(hidden, { ids, weights });
    expect(bitsEqual(sab.forwardSync(shared(hidden), { ids: shared(ids), weights: shared(weights) }), expected)).toBe(true);
    expect(bitsEqual(await sab.forward(shared(hidden), { ids: shared(ids), weights: shared(weights) }), expected)).toBe(true);
    expect(bitsEqual(await sab.forward(shared(hidden)), local.forwardSync(hidden))).toBe(true);
    local.dispose();
    sab.dispose();
  });
});

describe('forward(hidden, route, { signal })', () => {
  test('queued calls are dropped with AbortError / ERR_MOE_ABORTED, the running one finishes, later calls work', async () => {
    const big = { ...options(11), hiddenSize: 1024, intermediateSize: 1024, numExperts: 8 };
    const rng = mulberry32(12);
    big.w13 = randF32(rng, 8 * 2 * 1024 * 1024);
    big.w2 = randF32(rng, 8 * 1024 * 1024);
    big.routerWeight = randF32(rng, 8 * 1024);
    const layer = new MoeLayer(big);
    const hidden = randF32(rng, 64 * 1024);
    const ctl = new AbortController();
    const calls = Array.from({ length: 6 }, () => layer.forward(hidden, undefined, { signal: ctl.signal }));
    await new Promise((r) => setTimeout(r, 5));
    ctl.abort(new Error('client went away'));
    const results = await Promise.allSettled(calls);
    const rejected = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    const fulfilled = results.filter((r) => r.status === 'fulfilled');
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of rejected) {
      expect(r.reason.name).toBe('AbortError');
      expect(r.reason.code).toBe('ERR_MOE_ABORTED');
      expect(r.reason.cause.message).toBe('client went away');
    }
    const expected = layer.forwardSync(hidden);
    for (const r of fulfilled) expect(bitsEqual((r as PromiseFulfilledResult<Float32Array>).value, expected)).toBe(true);
    // an already-aborted signal rejects at once; the layer goes on working
    await expect(layer.forward(hidden, undefined, { signal: ctl.signal })).rejects.toMatchObject({ code: 'ERR_MOE_ABORTED' });
    expect(bitsEqual(await layer.forward(hidden), expected)).toBe(true);
    await expectRejects(() => layer.forward(hidden, undefined, { signal: 1 as never }), TypeError, ['options.signal']);
    layer.dispose();
  });
});
