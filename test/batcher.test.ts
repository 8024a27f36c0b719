// ForwardBatcher: concurrent forward calls coalesced into one native call, each caller getting
// its own rows — equal to separate calls, within its bounds, one bad call failing alone.
import { describe, expect, test } from 'vitest';
import { ForwardBatcher, MoeLayer, toBf16 } from '../lib/index';
import { bitsEqual, expectRejects, expectThrows, mulberry32, randF32 } from './helpers';

const E = 8, H = 256, I = 128, K = 2;
const rng = mulberry32(21);
const layer = new MoeLayer({
  numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'swigluoai', isW13Interleaved: true,
  weightDtype: 'bf16', w13: toBf16(randF32(rng, E * 2 * I * H)), w2: toBf16(randF32(rng, E * H * I)), routerWeight: randF32(rng, E * H),
});

/** The native calls the batcher makes: tokens of each. */
function spy(l: MoeLayer): number[] {
  const calls: number[] = [];
  const forward = l.forward.bind(l);
  l.forward = ((hidden: Float32Array, ...rest: unknown[]) => {
    calls.push(hidden.length / H);
    return (forward as (...a: unknown[]) => Promise<Float32Array>)(hidden, ...rest);
  }) as typeof l.forward;
  return calls;
}

describe('ForwardBatcher', () => {
  test('8 concurrent one-token calls: one native call, each result equal bit for bit to a separate call', async () => {
    const b = new ForwardBatcher(layer, { maxTokens: 64 });
    const calls = spy(layer);
    const inputs = Array.from({ length: 8 }, (_, i) => randF32(mulberry32(100 + i), H));
    const outs = await Promise.all(inputs.map((x) => b.forward(x)));
    expect(calls).toEqual([8]);
    delete (layer as { forward?: unknown }).forward; // back to the prototype's
    inputs.forEach((x, i) => expect(bitsEqual(outs[i], layer.forwardSync(x)), `call ${i}`).toBe(true));
  });

  test('bounds: no native call above maxTokens; a larger call runs alone; routes of each kind are joined', async () => {
    const b = new ForwardBatcher(layer, { maxTokens: 4 });
    const calls = spy(layer);
    const x = (i: number, t = 1) => randF32(mulberry32(200 + i), t * H);
    const logits = (i: number) => randF32(mulberry32(300 + i), E);
    const ids = (i: number) => ({ ids: Int32Array.of(i % E, (i + 3) % E), weights: Float32Array.of(0.7, 0.3) });
    const jobs = [
      ...Array.from({ length: 10 }, (_, i) => b.forward(x(i), { logits: logits(i) }).then((o) => [o, layer.forwardSync(x(i), { logits: logits(i) })])),
      ...Array.from({ length: 3 }, (_, i) => b.forward(x(i), ids(i)).then((o) => [o, layer.forwardSync(x(i), ids(i))])),
      b.forward(x(50, 6)).then((o) => [o, layer.forwardSync(x(50, 6))]),
    ];
    const results = await Promise.all(jobs);
    delete (layer as { forward?: unknown }).forward;
    expect(Math.max(...calls.filter((t) => t !== 6))).toBeLessThanOrEqual(4);
    expect(calls.reduce((a, t) => a + t, 0)).toBe(10 + 3 + 6);
    expect(calls.length).toBeLessThan(14);
    results.forEach(([o, r], i) => expect(bitsEqual(o, r), `job ${i}`).toBe(true));
  });

  test('bf16 and f32 hidden are never mixed; maxDelayMs gathers calls made within it', async () => {
    const b = new ForwardBatcher(layer, { maxDelayMs: 20 });
    const calls = spy(layer);
    const f = randF32(mulberry32(7), H);
    const p1 = b.forward(f);
    await new Promise((r) => setTimeout(r, 2));
    const p2 = b.forward(f);
    const p3 = b.forward(toBf16(f));
    const [o1, o2, o3] = await Promise.all([p1, p2, p3]);
    delete (layer as { forward?: unknown }).forward;
    expect(calls.sort()).toEqual([1, 2]);
    expect(o3).toBeInstanceOf(Uint16Array);
    expect(bitsEqual(o1, o2)).toBe(true);
  });

  test('a bad call fails alone with its own error; the others of its batch succeed', async () => {
    const b = new ForwardBatcher(layer);
    const good = randF32(mulberry32(8), H);
    const bad = { logits: new Float32Array(E).fill(NaN) };
    const ok = { logits: randF32(mulberry32(9), E) };
    const [r1, r2, r3] = await Promise.allSettled([b.forward(good, ok), b.forward(good, bad), b.forward(good, { logits: new Float32Array(3) })]);
    expect(r1.status).toBe('fulfilled');
    expect((r2 as PromiseRejectedResult).reason).toMatchObject({ name: 'RangeError', code: 'ERR_MOE_INVALID_ARGUMENT' });
    expect((r3 as PromiseRejectedResult).reason.message).toMatch(/^route\.logits: expected length/);
    expect(bitsEqual((r1 as PromiseFulfilledResult<Float32Array>).value, layer.forwardSync(good, ok))).toBe(true);
  });

  test('bad options -> TypeError / RangeError naming them', () => {
    expectThrows(() => new ForwardBatcher(layer, { maxTokens: 0 }), RangeError, ['options.maxTokens']);
    expectThrows(() => new ForwardBatcher(layer, { maxDelayMs: -1 }), RangeError, ['options.maxDelayMs']);
    expectThrows(() => new ForwardBatcher(layer, { maxDelayMs: '1' as never }), TypeError, ['options.maxDelayMs']);
  });

  test('a bad hidden rejects, never throws', async () => {
    const b = new ForwardBatcher(layer);
    await expectRejects(() => b.forward(new Float32Array(H + 1)), RangeError, ['hidden']);
  });
});
