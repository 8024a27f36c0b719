import { describe, expect, test } from 'vitest';
import { MoeLayer } from '../lib/index';
import {
  BF16_TOL,
  Dtype,
  F32_TOL,
  WRONG_LAYOUT_MIN_ERR,
  asDtype,
  bitsEqual,
  expectClose,
  mulberry32,
  randF32,
  randLogits,
  relErr,
  snapshot,
  unchanged,
  valuesOf,
} from './helpers';
import { MoeCase, moeCase, randomRoute } from './moe-case';
import {
  ActivationName,
  RefRouting,
  refDeinterleave,
  refFromBf16,
  refMoeForward,
  refSelectExperts,
  refToBf16,
  refTranspose,
} from './reference';

type Route = { logits: Float32Array } | { ids: Int32Array; weights: Float32Array };

function tolOf(weightDtype: Dtype, hiddenDtype: Dtype): number {
  return weightDtype === 'f32' && hiddenDtype === 'f32' ? F32_TOL : BF16_TOL;
}

/** The reference output for a case, hidden values and a route (logits use `routing`). */
function reference(c: MoeCase, hidden: Float32Array | Uint16Array, route: Route, routing?: RefRouting): Float64Array {
  const T = hidden.length / c.ref.hiddenSize;
  let ids: ArrayLike<number>;
  let weights: ArrayLike<number>;
  if ('logits' in route) {
    const sel = refSelectExperts(route.logits, T, c.ref.numExperts, c.ref.topK, routing ?? { mode: 'topk-softmax' });
    ids = sel.ids;
    weights = sel.weights;
  } else {
    ids = route.ids;
    weights = route.weights;
  }
  return refMoeForward({ ...c.ref, bf16Activations: hidden instanceof Uint16Array }, c.weights, valuesOf(hidden), ids, weights);
}

/** Runs forwardSync and checks dtype, length, untouched inputs and the value against the reference. */
function checkForward(layer: MoeLayer, c: MoeCase, hidden: Float32Array | Uint16Array, route: Route, tol: number, label: string, routing?: RefRouting) {
  const inputs = [hidden, ...Object.values(route)] as ArrayBufferView[];
  const before = inputs.map(snapshot);
  const out = layer.forwardSync(hidden, route);
  inputs.forEach((a, i) => expect(unchanged(a, before[i]), `${label}: input ${i} modified`).toBe(true));
  expect(out.constructor, label).toBe(hidden.constructor);
  expect(out.length, label).toBe(hidden.length);
  expectClose(valuesOf(out), reference(c, hidden, route, routing), tol, label);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The grid: small odd shapes, every combination of dtype, layout, orientation, bias, activation.

const E = 9;
const H = 17;
const I = 33;
const K = 3;
const DTYPES: Dtype[] = ['f32', 'bf16'];
const ACTIVATIONS: ActivationName[] = ['swigluoai', 'silu', 'gelu', 'gelu_tanh'];
const ROUTINGS: RefRouting[] = [
  { mode: 'topk-softmax' },
  { mode: 'softmax-topk', renormalize: true },
  {
    mode: 'sigmoid-grouped', numGroups: 3, topkGroups: 2, renormalize: true, routedScalingFactor: 2.5,
    correctionBias: randF32(mulberry32(99), E, -0.3, 0.3),
  },
];

const GRID: [Dtype, Dtype, boolean, boolean, boolean, ActivationName][] = [];
for (const wd of DTYPES)
  for (const hd of DTYPES)
    for (const inter of [false, true])
      for (const tr of [false, true])
        for (const bias of [false, true])
          for (const act of ACTIVATIONS) GRID.push([wd, hd, inter, tr, bias, act]);

describe(`MoeLayer vs reference, E=${E} H=${H} I=${I} K=${K}, T in 1, 3, 17`, () => {
  test.each(GRID)('weights %s, hidden %s, interleaved %s, transposed %s, bias %s, %s', (wd, hd, inter, tr, bias, act) => {
    const tol = tolOf(wd, hd);
    let seed = 1;
    for (const routing of ROUTINGS) {
      const c = moeCase({ E, H, I, K, activation: act, interleaved: inter, transposed: tr, weightDtype: wd, bias, seed: seed++, routing });
      const layer = new MoeLayer(c.options as never);
      for (const T of [1, 3, 17]) {
        const hidden = asDtype(randF32(c.rng, T * H), hd);
        const logits = randLogits(c.rng, T, E, 3);
        checkForward(layer, c, hidden, { logits }, tol, `${routing.mode} logits T=${T}`, routing);
        checkForward(layer, c, hidden, randomRoute(c.rng, T, E, K), tol, `${routing.mode} ids T=${T}`);
      }
      layer.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('gpt-oss style: swigluoai, interleaved, biases, topk-softmax, E=8 H=64 I=48 K=4', () => {
  const base = { E: 8, H: 64, I: 48, K: 4, activation: 'swigluoai' as const, interleaved: true, bias: true, preActStd: 4 };
  test.each(DTYPES.flatMap((wd) => DTYPES.flatMap((hd) => [false, true].map((tr) => [wd, hd, tr] as const))))(
    'weights %s, hidden %s, transposed %s',
    (wd, hd, tr) => {
      const c = moeCase({ ...base, weightDtype: wd, transposed: tr, seed: 7 });
      const layer = new MoeLayer(c.options as never);
      for (const T of [1, 4, 33]) {
        const hidden = asDtype(randF32(c.rng, T * 64), hd);
        checkForward(layer, c, hidden, { logits: randLogits(c.rng, T, 8, 3) }, tolOf(wd, hd), `T=${T}`);
      }
      layer.dispose();
    },
  );

  test('the pre-activations reach the swigluoai clamp (so the clamp is exercised)', () => {
    const c = moeCase({ ...base, weightDtype: 'f32', seed: 7 });
    const x = randF32(c.rng, 64);
    let clamped = 0;
    for (let e = 0; e < 8; e++)
      for (let r = 0; r < 96; r++) {
        let s = c.weights.w13Bias![e * 96 + r];
        for (let h = 0; h < 64; h++) s += c.weights.w13[(e * 96 + r) * 64 + h] * x[h];
        if (Math.abs(s) > 7) clamped++;
      }
    expect(clamped).toBeGreaterThan(10);
  });
});

// ---------------------------------------------------------------------------------------------

describe('THE SEED BUG: the W13 layout flag is honoured (gpt-oss interleaved weights)', () => {
  const E2 = 8, H2 = 64, I2 = 48, K2 = 4;
  const T = 9;

  for (const wd of DTYPES) {
    test(`interleaved + true == halves + false == transposed interleaved + true; wrong flag differs (${wd} weights)`, () => {
      const c = moeCase({ E: E2, H: H2, I: I2, K: K2, activation: 'swigluoai', interleaved: true, bias: true, weightDtype: wd, seed: 11, preActStd: 4 });
      const o = c.options as Record<string, Float32Array | Uint16Array | unknown>;
      const w13 = o.w13 as Float32Array | Uint16Array;
      const w2 = o.w2 as Float32Array | Uint16Array;
      const b13 = o.w13Bias as Float32Array | Uint16Array;
      const halvesW13 = refDeinterleave(w13, { outer: E2, intermediate: I2, inner: H2 });
      const halvesB13 = refDeinterleave(b13, { outer: E2, intermediate: I2, inner: 1 });
      // Hugging Face in-memory layout: gate_up_proj [E, H, 2I] (interleaved on the last axis), down_proj [E, I, H].
      const trW13 = refTranspose(w13, E2, 2 * I2, H2);
      const trW2 = refTranspose(w2, E2, H2, I2);

      const hidden = randF32(c.rng, T * H2);
      const route = { logits: randLogits(c.rng, T, E2, 3) };

      const interleaved = new MoeLayer({ ...c.options, isW13Interleaved: true } as never);
      const halves = new MoeLayer({ ...c.options, w13: halvesW13, w13Bias: halvesB13, isW13Interleaved: false } as never);
      const transposed = new MoeLayer({ ...c.options, w13: trW13, w2: trW2, transposed: true, isW13Interleaved: true } as never);
      const outA = interleaved.forwardSync(hidden, route) as Float32Array;
      const outB = halves.forwardSync(hidden, route) as Float32Array;
      const outC = transposed.forwardSync(hidden, route) as Float32Array;

      const tol = tolOf(wd, 'f32');
      const ref = reference(c, hidden, route);
      expectClose(outA, ref, tol, 'interleaved vs reference');
      expectClose(outB, ref, tol, 'halves vs reference');
      expectClose(outC, ref, tol, 'transposed vs reference');
      expectClose(outB, outA, F32_TOL, 'halves vs interleaved');
      expectClose(outC, outA, F32_TOL, 'transposed vs interleaved');

      // The wrong flag: the layer must not silently compute something close.
      const wrong1 = new MoeLayer({ ...c.options, isW13Interleaved: false } as never);
      const wrong2 = new MoeLayer({ ...c.options, w13: halvesW13, w13Bias: halvesB13, isW13Interleaved: true } as never);
      const wrong3 = new MoeLayer({ ...c.options, w13: trW13, w2: trW2, transposed: true, isW13Interleaved: false } as never);
      for (const [name, layer] of [['interleaved given as halves', wrong1], ['halves given as interleaved', wrong2], ['transposed interleaved given as halves', wrong3]] as const) {
        const err = relErr(layer.forwardSync(hidden, route) as Float32Array, outA);
        expect(err, name).toBeGreaterThan(WRONG_LAYOUT_MIN_ERR);
        layer.dispose();
      }
      interleaved.dispose();
      halves.dispose();
      transposed.dispose();
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('shapes and routes at the edges', () => {
  test.each([
    { E: 1, H: 1, I: 1, K: 1, T: 1 },
    { E: 3, H: 1, I: 5, K: 3, T: 3 },
    { E: 2, H: 33, I: 1, K: 1, T: 17 },
    { E: 4, H: 130, I: 97, K: 2, T: 65 },
    { E: 16, H: 31, I: 257, K: 5, T: 7 },
  ])('E=$E H=$H I=$I K=$K T=$T, every activation, f32 and bf16 weights', ({ E: e, H: h, I: i, K: k, T }) => {
    let seed = 300;
    for (const act of ACTIVATIONS)
      for (const wd of DTYPES) {
        const c = moeCase({ E: e, H: h, I: i, K: k, activation: act, interleaved: seed % 2 === 0, bias: true, weightDtype: wd, seed: seed++ });
        const layer = new MoeLayer(c.options as never);
        const hidden = randF32(c.rng, T * h);
        checkForward(layer, c, hidden, { logits: randLogits(c.rng, T, e, 3) }, tolOf(wd, 'f32'), `${act} ${wd}`);
        checkForward(layer, c, hidden, randomRoute(c.rng, T, e, k), tolOf(wd, 'f32'), `${act} ${wd} ids`);
        layer.dispose();
      }
  });

  test('the router weight scales the W2 bias too (zero weights: out = sum_k w_k * b2[e_k])', () => {
    const e = 3, h = 5, i = 7;
    const b2 = new Float32Array(e * h).map((_, j) => j + 1);
    const layer = new MoeLayer({
      numExperts: e, hiddenSize: h, intermediateSize: i, topK: 2, activation: 'silu', isW13Interleaved: false,
      weightDtype: 'f32', w13: new Float32Array(e * 2 * i * h), w2: new Float32Array(e * h * i), w2Bias: b2,
    });
    const out = layer.forwardSync(new Float32Array([1, 2, 3, 4, 5]), { ids: new Int32Array([2, 0]), weights: new Float32Array([0.5, 0.25]) });
    const expected = Array.from({ length: h }, (_, j) => 0.5 * b2[2 * h + j] + 0.25 * b2[j]);
    expectClose(out as Float32Array, expected, F32_TOL);
    layer.dispose();
  });

  test('the same expert twice in one token, zero and negative weights: sum over slots', () => {
    const c = moeCase({ E: 5, H: 17, I: 33, K: 3, activation: 'silu', interleaved: false, bias: true, weightDtype: 'f32', seed: 5 });
    const layer = new MoeLayer(c.options as never);
    const hidden = randF32(c.rng, 3 * 17);
    const route = { ids: new Int32Array([2, 2, 4, 0, 0, 0, 4, 3, 4]), weights: new Float32Array([0.3, 0.7, 0, -0.5, 1, 0.25, 1, 0, -1]) };
    checkForward(layer, c, hidden, route, F32_TOL, 'repeated ids');
    layer.dispose();
  });

  test('custom swigluAlpha and swigluLimit reach the layer', () => {
    const p = { E: 4, H: 17, I: 33, K: 2, activation: 'swigluoai' as const, interleaved: true, bias: true, weightDtype: 'f32' as const, seed: 8, preActStd: 4 };
    const c = moeCase({ ...p, swigluAlpha: 1.0, swigluLimit: 3.0 });
    const layer = new MoeLayer(c.options as never);
    const hidden = randF32(c.rng, 3 * 17);
    const route = { logits: randLogits(c.rng, 3, 4, 3) };
    const out = checkForward(layer, c, hidden, route, F32_TOL, 'custom alpha/limit');
    const dfltOptions = { ...c.options };
    delete dfltOptions.swigluAlpha;
    delete dfltOptions.swigluLimit;
    const dflt = new MoeLayer(dfltOptions as never);
    expect(relErr(dflt.forwardSync(hidden, route) as Float32Array, out as Float32Array)).toBeGreaterThan(1e-3);
    layer.dispose();
    dflt.dispose();
  });

  test('the layer keeps no reference to the caller weights (changing them after construction has no effect)', () => {
    const c = moeCase({ E: 5, H: 17, I: 33, K: 2, activation: 'silu', interleaved: false, bias: true, weightDtype: 'bf16', seed: 12 });
    const layer = new MoeLayer(c.options as never);
    for (const k of ['w13', 'w2', 'w13Bias', 'w2Bias']) (c.options[k] as Uint16Array).fill(0x7fc0);
    const hidden = randF32(c.rng, 3 * 17);
    checkForward(layer, c, hidden, { logits: randLogits(c.rng, 3, 5, 3) }, BF16_TOL, 'after caller overwrote weights');
    layer.dispose();
  });
});

// ---------------------------------------------------------------------------------------------

describe('determinism', () => {
  for (const wd of DTYPES)
    for (const hd of DTYPES) {
      test(`threads 1, 2, 3, 5 give bitwise equal outputs (weights ${wd}, hidden ${hd})`, () => {
        const c = moeCase({ E: 8, H: 64, I: 48, K: 4, activation: 'swigluoai', interleaved: true, bias: true, weightDtype: wd, seed: 21 });
        const T = 37;
        const hidden = asDtype(randF32(c.rng, T * 64), hd);
        const route = { logits: randLogits(c.rng, T, 8, 3) };
        const outs = [1, 2, 3, 5].map((threads) => {
          const layer = new MoeLayer({ ...c.options, threads } as never);
          const a = layer.forwardSync(hidden, route);
          const b = layer.forwardSync(hidden, route);
          expect(bitsEqual(a, b), `threads ${threads}: repeated call differs`).toBe(true);
          layer.dispose();
          return a;
        });
        for (let i = 1; i < outs.length; i++) expect(bitsEqual(outs[i], outs[0]), `threads index ${i}`).toBe(true);
        expectClose(valuesOf(outs[0]), reference(c, hidden, route), tolOf(wd, hd));
      });
    }

  test('a bf16 layer and an f32 layer of the same (bf16-exact) weights agree within the bf16 tolerance', () => {
    const c = moeCase({ E: 5, H: 17, I: 33, K: 2, activation: 'gelu', interleaved: false, bias: true, weightDtype: 'bf16', seed: 4 });
    const asF32 = Object.fromEntries(
      Object.entries(c.options).map(([k, v]) => [k, v instanceof Uint16Array ? refFromBf16(v) : v]),
    );
    const bf = new MoeLayer(c.options as never);
    const f = new MoeLayer({ ...asF32, weightDtype: 'f32' } as never);
    const hidden = refFromBf16(refToBf16(randF32(c.rng, 5 * 17)));
    const route = { logits: randLogits(c.rng, 5, 5, 3) };
    const ref = reference(c, hidden, route);
    expectClose(f.forwardSync(hidden, route) as Float32Array, ref, F32_TOL, 'f32 layer');
    expectClose(bf.forwardSync(hidden, route) as Float32Array, ref, BF16_TOL, 'bf16 layer');
    bf.dispose();
    f.dispose();
  });
});
