import { describe, expect, test } from 'vitest';
import { MoeLayer } from '../lib/index';
import { Dtype, asDtype, bitsEqual, expectRejects, expectThrows, mulberry32, randF32, randLogits } from './helpers';
import { moeCase, randomRoute } from './moe-case';

function smallLayer(weightDtype: Dtype = 'f32', extra: Record<string, unknown> = {}) {
  const c = moeCase({ E: 8, H: 64, I: 48, K: 4, activation: 'swigluoai', interleaved: true, bias: true, weightDtype, seed: 31 });
  return { c, layer: new MoeLayer({ ...c.options, ...extra } as never) };
}

/** A disposed layer: an error whose message says so (its class is checked in errors.test.ts). */
function checkDisposedError(err: Error) {
  expect(err.message.toLowerCase()).toContain('dispos');
}

describe('forward (async)', () => {
  test.each<[Dtype, Dtype]>([
    ['f32', 'f32'],
    ['f32', 'bf16'],
    ['bf16', 'f32'],
    ['bf16', 'bf16'],
  ])('resolves to the same bits as forwardSync (weights %s, hidden %s)', async (wd, hd) => {
    const { c, layer } = smallLayer(wd);
    const hidden = asDtype(randF32(c.rng, 13 * 64), hd);
    for (const route of [{ logits: randLogits(c.rng, 13, 8, 3) }, randomRoute(c.rng, 13, 8, 4)]) {
      const p = layer.forward(hidden, route);
      expect(p).toBeInstanceOf(Promise);
      const a = await p;
      expect(a.constructor).toBe(hidden.constructor);
      expect(bitsEqual(a, layer.forwardSync(hidden, route))).toBe(true);
    }
    layer.dispose();
  });

  test('many concurrent forwards on one layer and on two layers each give their own correct result', async () => {
    const one = smallLayer('f32');
    const two = smallLayer('bf16', { threads: 1 });
    const jobs = Array.from({ length: 8 }, (_, i) => {
      const { c, layer } = i % 2 === 0 ? one : two;
      const T = 1 + 4 * i;
      const hidden = randF32(c.rng, T * 64);
      const route = { logits: randLogits(c.rng, T, 8, 3) };
      return { layer, hidden, route, expected: layer.forwardSync(hidden, route) };
    });
    const outs = await Promise.all(jobs.map((j) => j.layer.forward(j.hidden, j.route)));
    outs.forEach((o, i) => expect(bitsEqual(o, jobs[i].expected), `job ${i}`).toBe(true));
    one.layer.dispose();
    two.layer.dispose();
  });

  // Timing on a shared 2-core machine: up to 3 attempts (retry), since one stall of the OS or of
  // another process can fail a single one; a real regression fails every attempt.
  test('does not block the event loop (setInterval keeps ticking while a long forward runs)', { retry: 2 }, async () => {
    const E = 8, H = 1024, I = 2048, K = 2;
    const rng = mulberry32(77);
    const block = randF32(rng, 1 << 20, -0.03, 0.03);
    const tile = (n: number) => {
      const a = new Float32Array(n);
      for (let o = 0; o < n; o += block.length) a.set(block.subarray(0, Math.min(block.length, n - o)), o);
      return a;
    };
    const layer = new MoeLayer({
      numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', isW13Interleaved: false,
      weightDtype: 'f32', w13: tile(E * 2 * I * H), w2: tile(E * H * I), threads: 1,
    });
    // Size the work so that one call takes at least TARGET_MS on this machine.
    const TARGET_MS = 350;
    let T = 64;
    const probe = randF32(rng, T * H);
    let t0 = performance.now();
    layer.forwardSync(probe, randomRoute(rng, T, E, K));
    const probeMs = performance.now() - t0;
    if (probeMs < TARGET_MS) T = Math.min(8192, Math.ceil((T * TARGET_MS) / Math.max(probeMs, 1)));
    const hidden = randF32(rng, T * H);
    const route = randomRoute(rng, T, E, K);

    let ticks = 0;
    const interval = setInterval(() => ticks++, 5);
    t0 = performance.now();
    const out = await layer.forward(hidden, route);
    const elapsed = performance.now() - t0;
    clearInterval(interval);
    expect(out.length).toBe(T * H);
    expect(elapsed, `T=${T}, probe ${probeMs.toFixed(0)} ms`).toBeGreaterThan(100);
    expect(ticks, `${ticks} ticks in ${elapsed.toFixed(0)} ms (T=${T})`).toBeGreaterThanOrEqual(5);
    layer.dispose();
  });
});

describe('life cycle', () => {
  test('layer.bytes > 0 and at least the size of the weights in their dtype', () => {
    for (const wd of ['f32', 'bf16'] as const) {
      const { layer } = smallLayer(wd);
      const weights = 8 * 3 * 48 * 64 + 8 * (2 * 48 + 64);
      expect(typeof layer.bytes).toBe('number');
      expect(layer.bytes).toBeGreaterThanOrEqual(weights * (wd === 'f32' ? 4 : 2));
      layer.dispose();
    }
  });

  test('dispose, then forwardSync throws and forward rejects', async () => {
    const { c, layer } = smallLayer();
    const hidden = randF32(c.rng, 64);
    const route = { logits: randLogits(c.rng, 1, 8, 3) };
    layer.forwardSync(hidden, route);
    layer.dispose();
    checkDisposedError(expectThrows(() => layer.forwardSync(hidden, route), Error, []));
    checkDisposedError(await expectRejects(() => layer.forward(hidden, route), Error, []));
  });

  test('dispose is idempotent', () => {
    const { layer } = smallLayer();
    layer.dispose();
    expect(() => layer.dispose()).not.toThrow();
    expect(() => layer[Symbol.dispose]()).not.toThrow();
  });

  test('[Symbol.dispose] disposes the layer', () => {
    const { c, layer } = smallLayer();
    expect(typeof layer[Symbol.dispose]).toBe('function');
    layer[Symbol.dispose]();
    const err = expectThrows(() => layer.forwardSync(randF32(c.rng, 64), { logits: randLogits(c.rng, 1, 8, 3) }), Error, []);
    checkDisposedError(err);
  });

  test('dispose while a forward is in flight: the promise settles (result or error), no crash', async () => {
    const { c, layer } = smallLayer('f32', { threads: 1 });
    const T = 257;
    const hidden = randF32(c.rng, T * 64);
    const route = { logits: randLogits(c.rng, T, 8, 3) };
    const expected = layer.forwardSync(hidden, route);
    const p = layer.forward(hidden, route);
    layer.dispose();
    const settled = await p.then((v) => ({ v }), (e: unknown) => ({ e }));
    if ('v' in settled) expect(bitsEqual(settled.v, expected)).toBe(true);
    else expect(settled.e).toBeInstanceOf(Error);
  });

  test('inputs changed after forward() returns do not crash the process', async () => {
    const { c, layer } = smallLayer();
    const hidden = randF32(c.rng, 33 * 64);
    const route = { logits: randLogits(c.rng, 33, 8, 3) };
    const p = layer.forward(hidden, route);
    hidden.fill(0);
    route.logits.fill(0);
    const out = await p;
    expect(out.length).toBe(33 * 64);
    layer.dispose();
  });
});
