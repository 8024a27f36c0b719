// MoeLayer's own router (routerWeight / routerBias), MoeBlock composition, and the native
// MXFP4 decode on its edge cases.
import { describe, expect, test } from 'vitest';
import { binding } from '../lib/binding';
import { MoeBlock, MoeLayer } from '../lib/index';
import { BF16_TOL, F32_TOL, asDtype, bitsEqual, expectClose, expectDisposed, expectRejects, expectThrows, mulberry32, randF32, valuesOf, type Dtype } from './helpers';
import { decodeMxfp4 } from './checkpoint/mxfp4';
import { moeCase } from './moe-case';
import { refFromBf16, refMoeForward, refSelectExperts, roundBf16 } from './reference';

const E = 8, H = 64, I = 32, K = 2, T = 6;

function routedCase(routerDtype: Dtype, withBias: boolean, extra: Record<string, unknown> = {}) {
  const c = moeCase({ E, H, I, K, activation: 'silu', interleaved: false, bias: false, weightDtype: 'f32', seed: 41, routing: { mode: 'softmax-topk', renormalize: true } });
  const routerWeight = asDtype(randF32(c.rng, E * H, -0.4, 0.4), routerDtype);
  const routerBias = withBias ? asDtype(randF32(c.rng, E, -0.5, 0.5), routerDtype) : undefined;
  const layer = new MoeLayer({ ...c.options, routerWeight, routerBias, ...extra } as never);
  /** float64 reference: logits = x · Wrᵀ + br, then routing and experts. */
  const reference = (hidden: Float32Array | Uint16Array) => {
    const x = valuesOf(hidden), w = valuesOf(routerWeight), b = routerBias && valuesOf(routerBias);
    const tokens = x.length / H;
    const logits = new Float64Array(tokens * E);
    for (let t = 0; t < tokens; t++) {
      for (let e = 0; e < E; e++) {
        let s = b ? b[e] : 0;
        for (let h = 0; h < H; h++) s += x[t * H + h] * w[e * H + h];
        logits[t * E + e] = s;
      }
    }
    const sel = refSelectExperts(logits, tokens, E, K, { mode: 'softmax-topk', renormalize: true });
    return refMoeForward({ ...c.ref, bf16Activations: hidden instanceof Uint16Array }, c.weights, x, sel.ids, sel.weights);
  };
  return { c, layer, routerWeight, routerBias, reference };
}

describe('MoeLayer with routerWeight', () => {
  test.each<[Dtype, boolean, Dtype]>([
    ['f32', false, 'f32'], ['f32', true, 'f32'], ['bf16', true, 'f32'], ['bf16', false, 'bf16'], ['f32', true, 'bf16'],
  ])('router %s (bias %s), hidden %s: forward(hidden) routes by itself', async (routerDtype, withBias, hiddenDtype) => {
    const { c, layer, reference } = routedCase(routerDtype, withBias);
    const hidden = asDtype(randF32(c.rng, T * H), hiddenDtype);
    const out = layer.forwardSync(hidden);
    expectClose(valuesOf(out), reference(hidden), hiddenDtype === 'f32' ? F32_TOL : BF16_TOL, 'forwardSync');
    expect(bitsEqual(await layer.forward(hidden), out), 'forward = forwardSync').toBe(true);
    expect(layer.hasRouter).toBe(true);
    layer.dispose();
  });

  test('bytes counts the router; the layer keeps its own copy of it', () => {
    const { c, layer, routerWeight, routerBias } = routedCase('bf16', true);
    const plain = new MoeLayer(c.options as never);
    expect(layer.bytes).toBe(plain.bytes + E * H * 2 + E * 4);
    const hidden = randF32(c.rng, T * H);
    const before = layer.forwardSync(hidden);
    routerWeight.fill(0);
    routerBias!.fill(0);
    expect(bitsEqual(layer.forwardSync(hidden), before)).toBe(true);
    layer.dispose();
    plain.dispose();
    expect(layer.bytes).toBe(0);
  });

  test('forward(hidden) reads hidden at the call: the caller may reuse it at once', async () => {
    const { c, layer } = routedCase('f32', true);
    const hidden = randF32(c.rng, T * H);
    const expected = layer.forwardSync(hidden);
    const p = layer.forward(hidden);
    hidden.fill(7);
    expect(bitsEqual(await p, expected)).toBe(true);
  });

  test('router results do not depend on the thread count (pool path: T·E·H >= 2^20)', () => {
    const big = { E: 64, H: 256, T: 80 };
    const c = moeCase({ E: big.E, H: big.H, I: 8, K: 4, activation: 'silu', interleaved: false, bias: false, weightDtype: 'bf16', seed: 3 });
    const routerWeight = asDtype(randF32(c.rng, big.E * big.H, -0.2, 0.2), 'bf16');
    const hidden = randF32(c.rng, big.T * big.H);
    const outs = [1, 2].map((threads) => new MoeLayer({ ...c.options, routerWeight, threads } as never).forwardSync(hidden));
    expect(bitsEqual(outs[0], outs[1])).toBe(true);
    const viaLogits = new MoeLayer(c.options as never);
    const w = refFromBf16(routerWeight as Uint16Array);
    const logits = new Float32Array(big.T * big.E).map((_, i) => {
      const t = Math.floor(i / big.E), e = i % big.E;
      let s = 0;
      for (let h = 0; h < big.H; h++) s += hidden[t * big.H + h] * w[e * big.H + h];
      return s;
    });
    expectClose(outs[0], viaLogits.forwardSync(hidden, { logits }), BF16_TOL);
  });

  test('argument errors name the argument', async () => {
    const { c, layer } = routedCase('f32', false);
    const plain = new MoeLayer(c.options as never);
    const hidden = randF32(c.rng, T * H);
    expectThrows(() => plain.forwardSync(hidden), TypeError, ['route', 'routerWeight']);
    await expectRejects(() => plain.forward(hidden), TypeError, ['route', 'routerWeight']);
    expectThrows(() => new MoeLayer({ ...c.options, routerWeight: new Float32Array(E * H - 1) } as never), RangeError, ['routerWeight', E * H, `[E=${E}, H=${H}]`, E * H - 1]);
    expectThrows(() => new MoeLayer({ ...c.options, routerWeight: new Int32Array(E * H) } as never), TypeError, ['routerWeight', 'Int32Array']);
    expectThrows(() => new MoeLayer({ ...c.options, routerBias: new Float32Array(E) } as never), TypeError, ['routerBias', 'without routerWeight']);
    expectThrows(() => new MoeLayer({ ...c.options, routerWeight: new Float32Array(E * H), routerBias: new Float32Array(E + 1) } as never), RangeError, ['routerBias', `[E=${E}]`]);
    const bad = randF32(c.rng, T * H);
    bad[H + 3] = NaN;
    expectThrows(() => layer.forwardSync(bad), RangeError, ['hidden', 'not finite']);
    await expectRejects(() => layer.forward(bad), RangeError, ['hidden', 'not finite']);
    expectThrows(() => layer.forwardSync(new Float32Array(H + 1)), RangeError, ['hidden', 'multiple of hiddenSize']);
    layer.dispose();
    expectDisposed(await expectRejects(() => layer.forward(hidden), Error, ['dispose']));
  });
});

describe('MoeBlock', () => {
  function parts(hiddenDtype: Dtype) {
    const routed = routedCase('bf16', true);
    const rng = mulberry32(77);
    const Is = 48;
    const sc = moeCase({ E: 1, H, I: Is, K: 1, activation: 'silu', interleaved: false, bias: false, weightDtype: 'f32', seed: 8 });
    const gate = randF32(rng, H, -0.3, 0.3);
    const block = new MoeBlock({ experts: routed.layer, sharedExperts: new MoeLayer(sc.options as never), sharedExpertGate: gate });
    const hidden = asDtype(randF32(rng, T * H), hiddenDtype);
    const x = valuesOf(hidden);
    const scales = Array.from({ length: T }, (_, t) => {
      let g = 0;
      for (let h = 0; h < H; h++) g += x[t * H + h] * gate[h];
      return 1 / (1 + Math.exp(-g));
    });
    const shared = refMoeForward({ ...sc.ref, bf16Activations: false }, sc.weights, x, new Int32Array(T), scales);
    // f32 activations for both parts (bf16 hidden widened), one rounding of the sum.
    const routedRef = routed.reference(hiddenDtype === 'bf16' ? x : hidden);
    const ref = routedRef.map((v, i) => (hiddenDtype === 'bf16' ? roundBf16(v + shared[i]) : v + shared[i]));
    return { block, hidden, ref };
  }

  test.each<Dtype>(['f32', 'bf16'])('routed + sigmoid(gate · x) · shared, hidden %s', async (hd) => {
    const { block, hidden, ref } = parts(hd);
    const out = block.forwardSync(hidden);
    expect(out.constructor).toBe(hidden.constructor);
    expectClose(valuesOf(out), ref, hd === 'f32' ? F32_TOL : BF16_TOL);
    expect(bitsEqual(await block.forward(hidden), out)).toBe(true);
    expect(block.bytes).toBe(block.experts.bytes + block.sharedExperts!.bytes + H * 4);
    block.dispose();
    expect(block.bytes).toBe(0);
  });

  test('argument errors', () => {
    const { layer } = routedCase('f32', false);
    const c1 = moeCase({ E: 2, H, I: 8, K: 1, activation: 'silu', interleaved: false, bias: false, weightDtype: 'f32', seed: 1 });
    const c2 = moeCase({ E: 1, H: H + 1, I: 8, K: 1, activation: 'silu', interleaved: false, bias: false, weightDtype: 'f32', seed: 1 });
    const c3 = moeCase({ E: 1, H, I: 8, K: 1, activation: 'silu', interleaved: false, bias: false, weightDtype: 'f32', seed: 1 });
    expectThrows(() => new MoeBlock({ experts: {} as never }), TypeError, ['experts', 'MoeLayer']);
    expectThrows(() => new MoeBlock({ experts: layer, sharedExperts: new MoeLayer(c1.options as never) }), RangeError, ['sharedExperts', 'numExperts 1']);
    expectThrows(() => new MoeBlock({ experts: layer, sharedExperts: new MoeLayer(c2.options as never) }), RangeError, ['sharedExperts', 'hiddenSize', H]);
    expectThrows(() => new MoeBlock({ experts: layer, sharedExpertGate: new Float32Array(H) }), TypeError, ['sharedExpertGate', 'without sharedExperts']);
    expectThrows(() => new MoeBlock({ experts: layer, sharedExperts: new MoeLayer(c3.options as never), sharedExpertGate: new Float32Array(H - 1) }), RangeError, ['sharedExpertGate', `[1, H=${H}]`]);
  });
});

describe('MXFP4 decode (native)', () => {
  const decode = (binding as unknown as { decodeMxfp4(b: Uint8Array, s: Uint8Array, out: Float32Array | Uint16Array): void }).decodeMxfp4;

  test('every code, low nibble first, scales 0 (2^-127), 1, 127, 200, 254 and 255 (NaN): exact in f32 and bf16', () => {
    const scales = Uint8Array.from([0, 1, 127, 200, 254, 255]);
    const blocks = new Uint8Array(scales.length * 16);
    for (let b = 0; b < scales.length; b++) for (let i = 0; i < 16; i++) blocks[b * 16 + i] = i | ((15 - i) << 4);
    const ref = decodeMxfp4(blocks, scales);
    const f32 = new Float32Array(scales.length * 32);
    decode(blocks, scales, f32);
    const bf16 = new Uint16Array(scales.length * 32);
    decode(blocks, scales, bf16);
    const asBf16 = refFromBf16(bf16);
    for (let i = 0; i < ref.length; i++) {
      const want = Math.fround(ref[i]); // 6 · 2^127 overflows f32 to Infinity
      expect(Object.is(f32[i], want) || (Number.isNaN(want) && Number.isNaN(f32[i])), `f32[${i}] ${f32[i]} vs ${want}`).toBe(true);
      expect(Object.is(asBf16[i], want) || (Number.isNaN(want) && Number.isNaN(asBf16[i])), `bf16[${i}] ${asBf16[i]} vs ${want}`).toBe(true);
    }
    expect(f32[2 * 32 + 0]).toBe(0); // code 0 in the low nibble of byte 0
    expect(f32[2 * 32 + 1]).toBe(-6); // code 15 in its high nibble
  });

  test('the binding checks lengths', () => {
    expect(() => decode(new Uint8Array(15), new Uint8Array(1), new Float32Array(32))).toThrow(/blocks: expected length 16/);
    expect(() => decode(new Uint8Array(16), new Uint8Array(1), new Uint16Array(31))).toThrow(/out: expected length 32/);
  });
});
