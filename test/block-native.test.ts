// One native call per MoE block: the router (logits and routing), the routed experts, the
// shared expert and its gate run in the same addon call, on the dispatcher thread for
// forward(); nothing of the math runs in JavaScript and no weights are copied per call.
import { afterEach, describe, expect, test } from 'vitest';
import { MoeBlock, MoeLayer, type Route } from '../lib/index';
import { binding } from '../lib/binding';
import { bitsEqual, expectClose, expectRejects, expectThrows, mulberry32, randF32, valuesOf } from './helpers';
import { refFromBf16, refMoeForward, refSelectExperts, refToBf16 } from './reference';

const E = 6, H = 96, I = 40, Is = 24, K = 2, T = 7;

type Dtype = 'f32' | 'bf16';

interface Parts {
  routerWeight: Float32Array;
  routerBias: Float32Array;
  w13: Float32Array; w2: Float32Array;
  sw13: Float32Array; sw2: Float32Array;
  gate: Float32Array;
}

function parts(seed: number): Parts {
  const rng = mulberry32(seed);
  return {
    routerWeight: randF32(rng, E * H), routerBias: randF32(rng, E, -0.5, 0.5),
    w13: randF32(rng, E * 2 * I * H, -0.2, 0.2), w2: randF32(rng, E * H * I, -0.2, 0.2),
    sw13: randF32(rng, 2 * Is * H, -0.2, 0.2), sw2: randF32(rng, H * Is, -0.2, 0.2),
    gate: randF32(rng, H, -0.3, 0.3),
  };
}

function experts(p: Parts, router = true): MoeLayer {
  return new MoeLayer({
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', isW13Interleaved: false,
    weightDtype: 'f32', w13: p.w13, w2: p.w2, threads: 2,
    ...(router ? { routerWeight: p.routerWeight, routerBias: p.routerBias } : {}),
  });
}

function sharedLayer(p: Parts): MoeLayer {
  return new MoeLayer({
    numExperts: 1, hiddenSize: H, intermediateSize: Is, topK: 1, activation: 'silu', isW13Interleaved: false,
    weightDtype: 'f32', w13: p.sw13, w2: p.sw2, threads: 2,
  });
}

function block(p: Parts, opts: { gate?: boolean; router?: boolean } = {}): MoeBlock {
  return new MoeBlock({
    experts: experts(p, opts.router ?? true), sharedExperts: sharedLayer(p),
    ...(opts.gate ?? true ? { sharedExpertGate: p.gate } : {}),
  });
}

function hiddenOf(seed: number, dtype: Dtype): Float32Array | Uint16Array {
  const x = randF32(mulberry32(seed), T * H);
  return dtype === 'bf16' ? refToBf16(x) : x;
}

/** The block in float64: router logits, routing, routed experts, sigmoid gate, shared expert. */
function refBlock(p: Parts, x: Float32Array, gate: boolean): Float64Array {
  const logits = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      let s = p.routerBias[e];
      for (let h = 0; h < H; h++) s += p.routerWeight[e * H + h] * x[t * H + h];
      logits[t * E + e] = s;
    }
  }
  const sel = refSelectExperts(logits, T, E, K, { mode: 'topk-softmax' });
  const cfg = { hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu' as const, layout: 'halves' as const, transposed: false };
  const routed = refMoeForward({ ...cfg, numExperts: E } as never, { w13: p.w13, w2: p.w2 }, x, sel.ids, sel.weights);
  const scales = new Float64Array(T).fill(1);
  if (gate) {
    for (let t = 0; t < T; t++) {
      let s = 0;
      for (let h = 0; h < H; h++) s += p.gate[h] * x[t * H + h];
      scales[t] = 1 / (1 + Math.exp(-s));
    }
  }
  const shared = refMoeForward({ ...cfg, numExperts: 1, intermediateSize: Is, topK: 1 } as never,
    { w13: p.sw13, w2: p.sw2 }, x, new Int32Array(T), scales);
  return routed.map((v, i) => v + shared[i]);
}

/** Counts the calls into the addon while `run` runs. */
async function bindingCalls(run: () => unknown): Promise<string[]> {
  const calls: string[] = [];
  const b = binding as unknown as Record<string, unknown>;
  const saved = new Map<string, unknown>();
  for (const [name, value] of Object.entries(b)) {
    if (typeof value !== 'function' || /^[A-Z]/.test(name)) continue;
    saved.set(name, value);
    b[name] = (...args: unknown[]) => {
      calls.push(name);
      return (value as (...a: unknown[]) => unknown)(...args);
    };
  }
  try {
    await run();
  } finally {
    for (const [name, value] of saved) b[name] = value;
  }
  return calls;
}

const live: { dispose(): void }[] = [];
afterEach(() => {
  for (const x of live.splice(0)) x.dispose();
});
function keep<X extends { dispose(): void }>(x: X): X {
  live.push(x);
  return x;
}

describe('one native call per forward', () => {
  test('MoeBlock with router, shared expert and gate: forward is one forwardBlock call, forwardSync one forwardBlockSync', async () => {
    const b = keep(block(parts(1)));
    const x = hiddenOf(2, 'f32');
    expect(await bindingCalls(() => b.forward(x))).toEqual(['forwardBlock']);
    expect(await bindingCalls(() => b.forwardSync(x))).toEqual(['forwardBlockSync']);
  });

  test('MoeLayer with a router, and with route { logits }: one call, no selectExperts or routerLogits on the main thread', async () => {
    const l = keep(experts(parts(3)));
    const x = hiddenOf(4, 'bf16');
    expect(await bindingCalls(() => l.forward(x))).toEqual(['forwardBlock']);
    const logits = randF32(mulberry32(5), T * E);
    expect(await bindingCalls(() => l.forward(x, { logits }))).toEqual(['forwardBlock']);
    expect(await bindingCalls(() => l.forwardSync(x, { logits }))).toEqual(['forwardBlockSync']);
  });
});

describe('the native block computes what the float64 reference does', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    for (const gate of [true, false]) {
      test(`${dtype} hidden, ${gate ? 'with' : 'without'} the sigmoid gate`, async () => {
        const p = parts(10 + (gate ? 1 : 0));
        const b = keep(block(p, { gate }));
        const hidden = hiddenOf(12, dtype);
        const x = dtype === 'bf16' ? refFromBf16(hidden as Uint16Array) : (hidden as Float32Array);
        const ref = refBlock(p, x, gate);
        const out = await b.forward(hidden);
        expect(out.constructor).toBe(hidden.constructor);
        expectClose(valuesOf(out), ref, dtype === 'bf16' ? 8e-3 : 2e-5, `${dtype} gate=${gate}`);
        expect(bitsEqual(b.forwardSync(hidden), out)).toBe(true);
      });
    }
  }

  test('without a gate the block is bit for bit the routed experts plus the shared expert, summed in f32', async () => {
    const p = parts(20);
    const b = keep(block(p, { gate: false }));
    const x = hiddenOf(21, 'f32') as Float32Array;
    const routed = b.experts.forwardSync(x);
    const shared = b.sharedExperts!.forwardSync(x, { ids: new Int32Array(T), weights: new Float32Array(T).fill(1) });
    const sum = routed.map((v, i) => v + shared[i]);
    expect(bitsEqual(await b.forward(x), sum)).toBe(true);
    // bf16 hidden: the same sum from the widened activations, rounded once.
    const xb = refToBf16(x);
    const wide = refFromBf16(xb);
    const r2 = b.experts.forwardSync(wide), s2 = b.sharedExperts!.forwardSync(wide, { ids: new Int32Array(T), weights: new Float32Array(T).fill(1) });
    expect(bitsEqual(await b.forward(xb), refToBf16(r2.map((v, i) => v + s2[i])))).toBe(true);
  });

  test('every route form gives the same output as the ids and weights it routes to', async () => {
    const p = parts(30);
    const b = keep(block(p, { router: false }));
    const x = hiddenOf(31, 'f32') as Float32Array;
    const logits = randF32(mulberry32(32), T * E, -3, 3);
    const sel = refSelectExperts(logits, T, E, K, { mode: 'topk-softmax' });
    const byLogits = await b.forward(x, { logits });
    const byIds = await b.forward(x, { ids: sel.ids, weights: Float32Array.from(sel.weights) });
    expectClose(byLogits, byIds, 1e-6);
    expect(bitsEqual(b.forwardSync(x, { logits }), byLogits)).toBe(true);
  });
});

describe('inputs and weights are the block\'s own', () => {
  test('changing the caller\'s router weights, bias and gate after construction changes nothing', async () => {
    const p = parts(40);
    const b = keep(block(p));
    const x = hiddenOf(41, 'f32');
    const before = await b.forward(x);
    p.routerWeight.fill(0);
    p.routerBias.fill(0);
    p.gate.fill(0);
    expect(bitsEqual(await b.forward(x), before)).toBe(true);
  });

  test('hidden and the route may be changed right after forward() returns its promise', async () => {
    const b = keep(block(parts(42), { router: false }));
    const x = hiddenOf(43, 'f32') as Float32Array;
    const logits = randF32(mulberry32(44), T * E);
    const expected = b.forwardSync(x, { logits });
    const pending = b.forward(x, { logits });
    x.fill(NaN);
    logits.fill(NaN);
    expect(bitsEqual(await pending, expected)).toBe(true);
  });

  test('bytes count the router weights and bias and the gate, held natively', () => {
    const p = parts(45);
    const b = keep(block(p));
    const withoutRouter = keep(experts(p, false));
    expect(b.experts.bytes - withoutRouter.bytes).toBe(E * H * 4 + E * 4);
    expect(b.bytes).toBe(b.experts.bytes + b.sharedExperts!.bytes + H * 4);
  });

  test('a layer of the block disposed directly while a block forward is in flight: the forward finishes right', async () => {
    const p = parts(46);
    const reference = keep(block(p));
    const x = hiddenOf(47, 'f32');
    const expected = reference.forwardSync(x);
    const b = block(p);
    const pending = [b.forward(x), b.forward(x)];
    b.experts.dispose();
    b.sharedExperts!.dispose();
    for (const out of await Promise.all(pending)) expect(bitsEqual(out, expected)).toBe(true);
    expect(b.experts.bytes).toBe(0);
    b.dispose();
  });
});

describe('errors name what the caller passed', () => {
  test('NaN in route.logits names route.logits; NaN in hidden names hidden', async () => {
    const l = keep(experts(parts(50)));
    const x = hiddenOf(51, 'f32') as Float32Array;
    const logits = randF32(mulberry32(52), T * E);
    logits[E + 3] = NaN;
    const e1 = await expectRejects(() => l.forward(x, { logits }), RangeError, ['[1, 3]', 'NaN']);
    expect(e1.message).toMatch(/^route\.logits: /);
    expectThrows(() => l.forwardSync(x, { logits }), RangeError, ['route.logits', '[1, 3]']);
    x[2 * H + 1] = Infinity;
    const e2 = await expectRejects(() => l.forward(x), RangeError, ['not finite', 'check hidden']);
    expect(e2.message).toMatch(/^hidden: /);
  });

  test('the binding refuses an object of the wrong native class (type tags), not a misread pointer', () => {
    const p = parts(53);
    const b = keep(block(p));
    const x = hiddenOf(54, 'f32') as Float32Array;
    const router = new binding.NativeRouter(null, E, H, null,
      { mode: 'topk-softmax', renormalize: false, numGroups: 1, topkGroups: 1, correctionBias: null, routedScalingFactor: 1 }, K);
    const fake = Object.create((binding as unknown as { NativeLayer: { prototype: object } }).NativeLayer.prototype);
    for (const bad of [router, fake, {}]) {
      expectThrows(() => binding.forwardBlockSync(bad as never, router, null, null, x, T, null, null, null, new Float32Array(T * H)),
        TypeError, ['experts', 'NativeLayer']);
    }
    expect(b.disposed).toBe(false);
  });
});

// Route types stay what they were.
const _route: Route = { logits: new Float32Array(0) };
void _route;
