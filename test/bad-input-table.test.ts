// The bad-input table: every public function and option, each given wrong types, lengths,
// ranges and values that are not representable where the kernels hold them. Each case must
// throw (or reject) a TypeError for a wrong type or RangeError for a wrong value, with code
// ERR_MOE_INVALID_ARGUMENT and a message that starts with the name of the argument the caller
// passed, and leave every input array as it was. The tally is printed at the end.
import { afterAll, describe, expect, test } from 'vitest';
import {
  MoeBlock, MoeLayer, deinterleaveW13, dequantize, fromBf16, geluAndMul, interleaveW13, loadMoeLayer, openCheckpoint,
  quantize, selectExperts, siluAndMul, swigluoai, toBf16,
} from '../lib/index';
import { binding } from '../lib/binding';
import { makeCheckpoint, removeDir } from './checkpoint/synthetic';
import { mulberry32, randF32, snapshot, unchanged } from './helpers';

const E = 4, H = 32, I = 64, K = 2, T = 3;
const rng = mulberry32(7);
const w13 = randF32(rng, E * 2 * I * H), w2 = randF32(rng, E * H * I);

function layerOptions(): Record<string, unknown> {
  return {
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'swigluoai', isW13Interleaved: true,
    weightDtype: 'f32', w13, w2, w13Bias: randF32(rng, E * 2 * I), w2Bias: randF32(rng, E * H),
  };
}

/** Values of the wrong type for each kind of argument, and values of the right type but out of range. */
const NOT_A_NUMBER = ['3', null, {}, [], true, 3n];
const BAD_COUNT = [0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 1e300];
const BAD_FLOAT = [NaN, Infinity, -Infinity, 1e39, -1e39, 3.5e38];
const NOT_A_BOOLEAN = [1, 0, 'true', null, {}];
const NOT_A_STRING = [1, null, {}, ['silu']];
const NOT_AN_OBJECT = [1, 'x', true];

type Case = { fn: string; arg: string; value: unknown; expect: 'TypeError' | 'RangeError'; call: () => unknown };
const cases: Case[] = [];
function add(fn: string, arg: string, values: unknown[], kind: Case['expect'], call: (v: unknown) => unknown) {
  for (const value of values) cases.push({ fn, arg, value, expect: kind, call: () => call(value) });
}
const show = (v: unknown) => (typeof v === 'bigint' ? `${v}n` : ArrayBuffer.isView(v) ? `${v.constructor.name}(${(v as Float32Array).length})` : JSON.stringify(v) ?? String(v));

// --- new MoeLayer(options)
const ctor = (patch: Record<string, unknown>) => () => new MoeLayer({ ...layerOptions(), ...patch } as never);
add('MoeLayer', 'options', [...NOT_AN_OBJECT, null, undefined], 'TypeError', (v) => new MoeLayer(v as never));
for (const arg of ['numExperts', 'hiddenSize', 'intermediateSize', 'topK']) {
  add('MoeLayer', arg, NOT_A_NUMBER, 'TypeError', (v) => ctor({ [arg]: v })());
  add('MoeLayer', arg, BAD_COUNT, 'RangeError', (v) => ctor({ [arg]: v })());
}
add('MoeLayer', 'topK', [E + 1], 'RangeError', (v) => ctor({ topK: v })());
add('MoeLayer', 'threads', [...NOT_A_NUMBER], 'TypeError', (v) => ctor({ threads: v })());
add('MoeLayer', 'threads', [...BAD_COUNT, 2 ** 32, 2 ** 32 + 1, 1025], 'RangeError', (v) => ctor({ threads: v })());
add('MoeLayer', 'isW13Interleaved', [...NOT_A_BOOLEAN, undefined], 'TypeError', (v) => ctor({ isW13Interleaved: v })());
add('MoeLayer', 'transposed', NOT_A_BOOLEAN, 'TypeError', (v) => ctor({ transposed: v })());
add('MoeLayer', 'activation', NOT_A_STRING, 'TypeError', (v) => ctor({ activation: v })());
add('MoeLayer', 'activation', ['relu', 'SILU', ''], 'RangeError', (v) => ctor({ activation: v })());
add('MoeLayer', 'weightDtype', [...NOT_A_STRING, undefined], 'TypeError', (v) => ctor({ weightDtype: v })());
add('MoeLayer', 'weightDtype', ['f64', 'fp4', 'BF16'], 'RangeError', (v) => ctor({ weightDtype: v })());
add('MoeLayer', 'swigluAlpha', NOT_A_NUMBER, 'TypeError', (v) => ctor({ swigluAlpha: v })());
add('MoeLayer', 'swigluAlpha', BAD_FLOAT, 'RangeError', (v) => ctor({ swigluAlpha: v })());
add('MoeLayer', 'swigluLimit', NOT_A_NUMBER, 'TypeError', (v) => ctor({ swigluLimit: v })());
add('MoeLayer', 'swigluLimit', [0, -1, NaN, -Infinity, 1e39], 'RangeError', (v) => ctor({ swigluLimit: v })());
for (const [arg, length] of [['w13', E * 2 * I * H], ['w2', E * H * I], ['w13Bias', E * 2 * I], ['w2Bias', E * H]] as const) {
  add('MoeLayer', arg, [[1, 2], new Float64Array(length), new Int32Array(length), 'x', 1], 'TypeError', (v) => ctor({ [arg]: v })());
  add('MoeLayer', arg, [new Float32Array(length - 1), new Float32Array(length + 1), new Float32Array(0)], 'RangeError', (v) => ctor({ [arg]: v })());
}
add('MoeLayer', 'w13', [undefined, null], 'TypeError', (v) => ctor({ w13: v })());
// A subset of the experts: ids increasing in [0, E), or { first, count }; the weights are the subset's.
add('MoeLayer', 'experts', ['all', 1, null, true], 'TypeError', (v) => ctor({ experts: v })());
add('MoeLayer', 'experts', [[]], 'RangeError', (v) => ctor({ experts: v })());
add('MoeLayer', 'experts[1]', [[0, 0], [2, 1], [0, E], [0, 1.5], [0, -1]], 'RangeError', (v) => ctor({ experts: v })());
add('MoeLayer', 'experts[0]', [['0'], [null]], 'TypeError', (v) => ctor({ experts: v })());
add('MoeLayer', 'experts.first', [{ first: -1, count: 1 }, { first: E, count: 1 }, { first: 0.5, count: 1 }], 'RangeError', (v) => ctor({ experts: v })());
add('MoeLayer', 'experts.first', [{ count: 1 }, { first: '0', count: 1 }], 'TypeError', (v) => ctor({ experts: v })());
add('MoeLayer', 'experts.count', [{ first: 0, count: 0 }, { first: 1, count: E }], 'RangeError', (v) => ctor({ experts: v })());
add('MoeLayer', 'w13', [new Float32Array(E * 2 * I * H)], 'RangeError', (v) => ctor({ experts: [0, 1], w13: v })());
// Per expert: E arrays of one type, [2I, H] / [H, I] each; pre-quantized per field; biases never per expert.
const experts = <T extends Float32Array>(a: T) => Array.from({ length: E }, (_, e) => a.slice(e * (a.length / E), (e + 1) * (a.length / E)));
const with13 = (i: number, v: unknown) => experts(w13).map((a, e) => (e === i ? v : a));
add('MoeLayer', 'w13[2]', [new Float32Array(2 * I * H - 1), new Float32Array(0)], 'RangeError', (v) => ctor({ w13: with13(2, v) })());
add('MoeLayer', 'w13[2]', [new Uint16Array(2 * I * H), new Float64Array(2 * I * H), null, 'x'], 'TypeError', (v) => ctor({ w13: with13(2, v) })());
add('MoeLayer', 'w2[0]', [new Float32Array(H * I + 1)], 'RangeError', (v) => ctor({ w2: experts(w2).map((a, e) => (e === 0 ? v : a)) })());
add('MoeLayer', 'w13', [experts(w13).slice(1), [...experts(w13), experts(w13)[0]], []], 'RangeError', (v) => ctor({ w13: v })());
const mx13 = quantize(w13, [E * 2 * I, H], 'mxfp4');
const mxExperts = { blocks: experts(mx13.blocks as never) as unknown as Uint8Array[], scales: experts(mx13.scales as never) as unknown as Uint8Array[] };
add('MoeLayer', 'w13[0]', [experts(w13).map((a) => quantize(a, [2 * I, H], 'mxfp4'))], 'TypeError', (v) => ctor({ weightDtype: 'mxfp4', w13: v })());
add('MoeLayer', 'w13.scales', [mx13.scales], 'TypeError', (v) => ctor({ weightDtype: 'mxfp4', w13: { blocks: mxExperts.blocks, scales: v } })());
add('MoeLayer', 'w13.blocks[1]', [new Uint8Array(3)], 'RangeError',
  (v) => ctor({ weightDtype: 'mxfp4', w13: { blocks: mxExperts.blocks.map((b, e) => (e === 1 ? v : b)), scales: mxExperts.scales } })());
add('MoeLayer', 'w13.scales[3]', [new Uint16Array(2 * I * H / 32)], 'TypeError',
  (v) => ctor({ weightDtype: 'mxfp4', w13: { blocks: mxExperts.blocks, scales: mxExperts.scales.map((b, e) => (e === 3 ? v : b)) } })());
add('MoeLayer', 'w13Bias', [experts(randF32(rng, E * 2 * I))], 'TypeError', (v) => ctor({ w13Bias: v })());
add('MoeLayer', 'w2Bias', [experts(randF32(rng, E * H))], 'TypeError', (v) => ctor({ w2Bias: v })());
// A tensor larger than one typed array can hold on this runtime names the per-expert form (Node 20: 2^32 elements).
add('MoeLayer', 'w13', [new Uint16Array(5)], 'RangeError', (v) => new MoeLayer({
  numExperts: 256, hiddenSize: 7168, intermediateSize: 2048, topK: 8, activation: 'silu', isW13Interleaved: false, weightDtype: 'bf16',
  w13: v, w2: new Uint16Array(5) } as never));
// Float16Array activations: never (f32 or bf16 hidden only); where the runtime has no Float16Array these cases are not added.
const F16 = (globalThis as { Float16Array?: new (n: number) => ArrayBufferView }).Float16Array;
add('MoeLayer', 'routing', NOT_AN_OBJECT, 'TypeError', (v) => ctor({ routing: v })());
add('MoeLayer', 'routing.mode', ['topk', 'sigmoid'], 'RangeError', (v) => ctor({ routing: { mode: v } })());
add('MoeLayer', 'routing.routedScalingFactor', [...BAD_FLOAT, 0, -2], 'RangeError',
  (v) => ctor({ routing: { mode: 'sigmoid-grouped', renormalize: false, numGroups: 1, topkGroups: 1, routedScalingFactor: v } })());
add('MoeLayer', 'routing.numGroups', [0, 3, 1.5, -1], 'RangeError', (v) => ctor({ routing: { mode: 'sigmoid-grouped', renormalize: false, numGroups: v, topkGroups: 1 } })());
add('MoeLayer', 'routing.correctionBias', [new Float32Array(E + 1)], 'RangeError',
  (v) => ctor({ routing: { mode: 'sigmoid-grouped', renormalize: false, numGroups: 1, topkGroups: 1, correctionBias: v } })());
add('MoeLayer', 'routing.correctionBias', [new Float64Array(E), [0, 0, 0, 0]], 'TypeError',
  (v) => ctor({ routing: { mode: 'sigmoid-grouped', renormalize: false, numGroups: 1, topkGroups: 1, correctionBias: v } })());
add('MoeLayer', 'routerWeight', [new Float32Array(E * H - 1)], 'RangeError', (v) => ctor({ routerWeight: v })());
add('MoeLayer', 'routerWeight', [new Float64Array(E * H), 'w'], 'TypeError', (v) => ctor({ routerWeight: v })());
add('MoeLayer', 'routerBias', [new Float32Array(E)], 'TypeError', (v) => ctor({ routerBias: v })()); // without routerWeight

// --- layer.forward / forwardSync
const layer = new MoeLayer({ ...layerOptions(), routerWeight: randF32(rng, E * H) } as never);
const plain = new MoeLayer(layerOptions() as never);
const hidden = randF32(rng, T * H);
for (const [name, run] of [['forwardSync', (h: unknown, r?: unknown) => plain.forwardSync(h as never, r as never)],
  ['forward', (h: unknown, r?: unknown) => plain.forward(h as never, r as never)]] as const) {
  add(name, 'hidden', [[1], new Float64Array(H), null, undefined, 'h'], 'TypeError', (v) => run(v, { logits: new Float32Array(E) }));
  add(name, 'hidden', [new Float32Array(H + 1)], 'RangeError', (v) => run(v, { logits: new Float32Array(E) }));
  add(name, 'route', [undefined, 1, 'r', {}], 'TypeError', (v) => run(hidden, v));
  add(name, 'route.logits', [new Float32Array(T * E - 1), new Float32Array(T * E).fill(NaN)], 'RangeError', (v) => run(hidden, { logits: v }));
  add(name, 'route.logits', [new Float64Array(T * E), [0]], 'TypeError', (v) => run(hidden, { logits: v }));
  add(name, 'route.ids', [new Int32Array(T * K).fill(E), new Int32Array(T * K).fill(-1), new Int32Array(T * K - 1)], 'RangeError',
    (v) => run(hidden, { ids: v, weights: new Float32Array(T * K) }));
  add(name, 'route.ids', [new Uint32Array(T * K), null], 'TypeError', (v) => run(hidden, { ids: v, weights: new Float32Array(T * K) }));
  add(name, 'route.weights', [new Float32Array(T * K).fill(NaN), new Float32Array(T * K).fill(Infinity), new Float32Array(T * K + 1)],
    'RangeError', (v) => run(hidden, { ids: new Int32Array(T * K), weights: v }));
}
if (F16) {
  add('forwardSync', 'hidden', [new F16(T * H)], 'TypeError', (v) => plain.forwardSync(v as never, { logits: new Float32Array(T * E) }));
  add('forward', 'hidden', [new F16(T * H)], 'TypeError', (v) => plain.forward(v as never, { logits: new Float32Array(T * E) }));
  add('forward (router)', 'hidden', [new F16(T * H)], 'TypeError', (v) => layer.forward(v as never));
  add('MoeLayer', 'w13', [new F16(E * 2 * I * H - 1)], 'RangeError', (v) => ctor({ w13: v })());
  add('MoeLayer', 'w13[1]', [new F16(2 * I * H)], 'TypeError', (v) => ctor({ w13: with13(1, v) })());
  add('MoeLayer', 'routerWeight', [new F16(E * H + 1)], 'RangeError', (v) => ctor({ routerWeight: v })());
}
add('forward (router)', 'hidden', [new Float32Array(T * H).fill(NaN)], 'RangeError', (v) => layer.forward(v as never));
// --- packed-layer files
add('save', 'path', [...NOT_A_STRING, undefined, '', 'a\0b'], 'TypeError', (v) => layer.save(v as never));
add('MoeLayer.open', 'path', [...NOT_A_STRING, undefined, '', 'a\0b'], 'TypeError', (v) => MoeLayer.open(v as never));
add('MoeLayer.open', 'options', NOT_AN_OBJECT, 'TypeError', (v) => MoeLayer.open('x.moe', v as never));
add('MoeLayer.open', 'options.threads', [0, -1, 1.5, 2 ** 32], 'RangeError', (v) => MoeLayer.open('x.moe', { threads: v as number }));
add('MoeLayer.open', 'options.verify', NOT_A_BOOLEAN, 'TypeError', (v) => MoeLayer.open('x.moe', { verify: v as boolean }));
add('MoeLayer.adopt', 'handle', [...NOT_AN_OBJECT, null, undefined, {}, { kind: 'moe-cpu shared layer', id: 1 }], 'TypeError', (v) => MoeLayer.adopt(v as never));
add('forwardSync (router)', 'hidden', [new Float32Array(T * H).fill(Infinity)], 'RangeError', (v) => layer.forwardSync(v as never));

// --- layout, activations, routing, bf16, quantize
const shape = { numExperts: E, intermediateSize: I, hiddenSize: H };
for (const [name, fn] of [['deinterleaveW13', deinterleaveW13], ['interleaveW13', interleaveW13]] as const) {
  add(name, 'w', [[1], new Float64Array(E * 2 * I * H), null], 'TypeError', (v) => fn(v as never, shape));
  add(name, 'w', [new Float32Array(E * 2 * I * H - 1)], 'RangeError', (v) => fn(v as never, shape));
  add(name, 'options', [...NOT_AN_OBJECT, undefined], 'TypeError', (v) => fn(w13.slice(), v as never));
  for (const arg of ['numExperts', 'intermediateSize', 'hiddenSize']) {
    add(name, arg, NOT_A_NUMBER, 'TypeError', (v) => fn(w13.slice(), { ...shape, [arg]: v }));
    add(name, arg, BAD_COUNT, 'RangeError', (v) => fn(w13.slice(), { ...shape, [arg]: v }));
  }
  add(name, 'inPlace', NOT_A_BOOLEAN, 'TypeError', (v) => fn(w13.slice(), { ...shape, inPlace: v } as never));
  add(name, 'transposed', NOT_A_BOOLEAN, 'TypeError', (v) => fn(w13.slice(), { ...shape, transposed: v } as never));
}
const gx = randF32(rng, T * 2 * I), gshape = { tokens: T, intermediateSize: I, isInterleaved: false };
for (const [name, fn] of [['swigluoai', swigluoai], ['siluAndMul', siluAndMul], ['geluAndMul', geluAndMul]] as const) {
  add(name, 'x', [[1], new Float64Array(T * 2 * I), null], 'TypeError', (v) => fn(v as never, gshape));
  add(name, 'x', [new Float32Array(T * 2 * I + 1)], 'RangeError', (v) => fn(v as never, gshape));
  add(name, 'tokens', NOT_A_NUMBER, 'TypeError', (v) => fn(gx, { ...gshape, tokens: v } as never));
  add(name, 'tokens', BAD_COUNT, 'RangeError', (v) => fn(gx, { ...gshape, tokens: v } as never));
  add(name, 'isInterleaved', [...NOT_A_BOOLEAN, undefined], 'TypeError', (v) => fn(gx, { ...gshape, isInterleaved: v } as never));
}
add('swigluoai', 'alpha', BAD_FLOAT, 'RangeError', (v) => swigluoai(gx, { ...gshape, alpha: v as number }));
add('swigluoai', 'limit', [0, -1, NaN, 1e39], 'RangeError', (v) => swigluoai(gx, { ...gshape, limit: v as number }));
add('geluAndMul', 'approximate', ['fast'], 'RangeError', (v) => geluAndMul(gx, { ...gshape, approximate: v } as never));
const sel = { tokens: T, numExperts: E, topK: K, routing: { mode: 'topk-softmax' } } as const;
add('selectExperts', 'logits', [[0], new Float64Array(T * E), null], 'TypeError', (v) => selectExperts(v as never, sel));
add('selectExperts', 'logits', [new Float32Array(T * E + 1), new Float32Array(T * E).fill(NaN)], 'RangeError', (v) => selectExperts(v as never, sel));
add('selectExperts', 'topK', [0, E + 1, 1.5], 'RangeError', (v) => selectExperts(new Float32Array(T * E), { ...sel, topK: v as number }));
add('selectExperts', 'numExperts', [0, -1, 2 ** 53], 'RangeError', (v) => selectExperts(new Float32Array(T * E), { ...sel, numExperts: v as number }));
add('selectExperts', 'routing', [...NOT_AN_OBJECT], 'TypeError', (v) => selectExperts(new Float32Array(T * E), { ...sel, routing: v as never }));
add('toBf16', 'values', [[1], new Float64Array(2), null, undefined, new Uint16Array(2)], 'TypeError', (v) => toBf16(v as never));
add('fromBf16', 'bits', [[1], new Float32Array(2), null, new Int16Array(2)], 'TypeError', (v) => fromBf16(v as never));
add('quantize', 'values', [[1], new Float64Array(64), null], 'TypeError', (v) => quantize(v as never, [2, 32], 'mxfp4'));
add('quantize', 'values', [new Float32Array(63)], 'RangeError', (v) => quantize(v as never, [2, 32], 'mxfp4'));
add('quantize', 'format', [1, null], 'TypeError', (v) => quantize(new Float32Array(64), [2, 32], v as never));
add('quantize', 'format', ['f32', 'fp8'], 'RangeError', (v) => quantize(new Float32Array(64), [2, 32], v as never));
add('quantize', 'shape', ['x', null], 'TypeError', (v) => quantize(new Float32Array(64), v as never, 'int8'));
add('quantize', 'shape', [[2], [2, 31], [0, 32], [2, 2 ** 53]], 'RangeError', (v) => quantize(new Float32Array(64), v as never, 'int8'));
add('dequantize', 'tensor', [{ blocks: new Uint8Array(31), scales: new Uint8Array(2) }], 'RangeError',
  (v) => dequantize(v as never, [2, 32], 'mxfp4'));
add('dequantize', 'tensor', [{ blocks: new Uint8Array(32) }, 1], 'TypeError',
  (v) => dequantize(v as never, [2, 32], 'mxfp4'));
add('dequantize', 'format', [null], 'TypeError', (v) => dequantize(new Float32Array(64), [2, 32], v as never));
add('dequantize', 'format', ['fp8'], 'RangeError', (v) => dequantize(new Float32Array(64), [2, 32], v as never));

// --- MoeBlock
add('MoeBlock', 'experts', [null, {}, 1], 'TypeError', (v) => new MoeBlock({ experts: v } as never));
add('MoeBlock', 'sharedExperts', [{}, 1], 'TypeError', (v) => new MoeBlock({ experts: plain, sharedExperts: v } as never));
add('MoeBlock', 'sharedExperts', [plain], 'RangeError', (v) => new MoeBlock({ experts: plain, sharedExperts: v } as never));

// --- the internal binding, called directly (defence in depth: sizes that would wrap)
const huge = 2 ** 40;
add('binding.permuteW13', 'w', [huge], 'RangeError', (v) => binding.permuteW13(new Float32Array(8), new Float32Array(8), v as number, huge, huge, true));
add('binding.gatedActivation', 'x', [huge], 'RangeError', (v) => binding.gatedActivation(new Float32Array(8), new Float32Array(4), v as number, huge, false, 'silu', 1, 1));
add('binding.selectExperts', 'logits', [huge], 'RangeError',
  (v) => binding.selectExperts(new Float32Array(8), v as number, huge, 1, { mode: 'topk-softmax' }, new Int32Array(1), new Float32Array(1)));
const routingArg = { mode: 'topk-softmax', renormalize: false, numGroups: 1, topkGroups: 1, correctionBias: null, routedScalingFactor: 1 } as const;
add('binding.NativeRouter', 'routerWeight', [huge], 'RangeError',
  (v) => new binding.NativeRouter(new Float32Array(8), v as number, huge, null, routingArg, 1));
add('binding.NativeRouter', 'topK', [0, 9], 'RangeError',
  (v) => new binding.NativeRouter(new Float32Array(8), 8, 1, null, routingArg, v as number));
add('binding.forwardBlockSync', 'hidden', [huge], 'RangeError', (v) => {
  const native = new binding.NativeLayer(
    { numExperts: 1, hiddenSize: 32, intermediateSize: 32, topK: 1, activation: 'silu', isW13Interleaved: false, transposed: false,
      swigluAlpha: 1, swigluLimit: 7, threads: 1, weightDtype: 'f32' } as never,
    { format: 'f32', data: new Float32Array(2 * 32 * 32) } as never, { format: 'f32', data: new Float32Array(32 * 32) } as never, null, null);
  const router = new binding.NativeRouter(null, 1, 32, null, routingArg, 1);
  return binding.forwardBlockSync(native, router, null, null, new Float32Array(32), v as number, null, null, null, new Float32Array(32));
});
add('binding.forwardBlockSync', 'experts', [null, {}], 'TypeError', (v) => {
  const router = new binding.NativeRouter(null, 1, 32, null, routingArg, 1);
  return binding.forwardBlockSync(v as never, router, null, null, new Float32Array(32), 1, null, null, null, new Float32Array(32));
});
add('binding.NativeLayer', 'w13', [huge], 'RangeError', (v) => new binding.NativeLayer(
  { numExperts: v, hiddenSize: huge, intermediateSize: huge, topK: 1, activation: 'silu', isW13Interleaved: false, transposed: false,
    swigluAlpha: 1, swigluLimit: 7, threads: 1, weightDtype: 'f32' } as never,
  { format: 'f32', data: new Float32Array(8) } as never, { format: 'f32', data: new Float32Array(8) } as never, null, null));
add('binding.NativeLayer', 'swigluAlpha', [1e39, NaN], 'RangeError', (v) => new binding.NativeLayer(
  { numExperts: 1, hiddenSize: 32, intermediateSize: 32, topK: 1, activation: 'silu', isW13Interleaved: false, transposed: false,
    swigluAlpha: v, swigluLimit: 7, threads: 1, weightDtype: 'f32' } as never,
  { format: 'f32', data: new Float32Array(2048) } as never, { format: 'f32', data: new Float32Array(1024) } as never, null, null));
add('binding.NativeLayer', 'threads', [2 ** 32, 2 ** 32 + 1], 'RangeError', (v) => new binding.NativeLayer(
  { numExperts: 1, hiddenSize: 32, intermediateSize: 32, topK: 1, activation: 'silu', isW13Interleaved: false, transposed: false,
    swigluAlpha: 1, swigluLimit: 7, threads: v, weightDtype: 'f32' } as never,
  { format: 'f32', data: new Float32Array(2048) } as never, { format: 'f32', data: new Float32Array(1024) } as never, null, null));

const tally = { tried: 0, correct: 0 };

async function outcome(call: () => unknown): Promise<unknown> {
  try {
    const r = call();
    if (r instanceof Promise) await r;
    return undefined;
  } catch (err) {
    return err;
  }
}

function inputArrays(c: Case): ArrayBufferView[] {
  return ArrayBuffer.isView(c.value) ? [c.value] : [];
}

describe('bad-input table', () => {
  test.each(cases.map((c) => [`${c.fn}: ${c.arg} = ${show(c.value)} -> ${c.expect}`, c] as const))('%s', async (_label, c) => {
    tally.tried++;
    const arrays = [...inputArrays(c), w13, w2, hidden];
    const before = arrays.map(snapshot);
    const err = await outcome(c.call) as (Error & { code?: string }) | undefined;
    expect(err, 'expected an error').toBeInstanceOf(Error);
    expect(err!.name, err!.message).toBe(c.expect);
    expect(err!.code, err!.message).toBe('ERR_MOE_INVALID_ARGUMENT');
    const leaf = c.arg.replace(/^binding\./, '');
    expect(err!.message, 'the message names the argument').toContain(leaf.split('.').pop()!);
    arrays.forEach((a, i) => expect(unchanged(a, before[i]), `input ${i} changed`).toBe(true));
    tally.correct++;
  });

  describe('checkpoint entry points', () => {
    const ck = makeCheckpoint('mixtral');
    afterAll(() => removeDir(ck.dir));
    const loads: [string, unknown, 'TypeError' | 'RangeError', () => Promise<unknown>][] = [
      ['openCheckpoint dir', 1, 'TypeError', () => openCheckpoint(1 as never)],
      ['loadMoeLayer layer', -1, 'RangeError', () => loadMoeLayer(ck.dir, -1)],
      ['loadMoeLayer layer', '0', 'TypeError', () => loadMoeLayer(ck.dir, '0' as never)],
      ['loadMoeLayer layer', 99, 'RangeError', () => loadMoeLayer(ck.dir, 99)],
      ['loadMoeLayer threads', 2 ** 32, 'RangeError', () => loadMoeLayer(ck.dir, 0, { threads: 2 ** 32 })],
      ['loadMoeLayer weightDtype', 'fp8', 'RangeError', () => loadMoeLayer(ck.dir, 0, { weightDtype: 'fp8' as never })],
      ['loadMoeLayer options', 'x', 'TypeError', () => loadMoeLayer(ck.dir, 0, 'x' as never)],
      ['loadMoeLayers layers', [99], 'RangeError', async () => (await openCheckpoint(ck.dir)).loadMoeLayers({ layers: [99] })],
      ['loadMoeLayers onProgress', 1, 'TypeError', async () => (await openCheckpoint(ck.dir)).loadMoeLayers({ onProgress: 1 as never })],
      ['estimate availableBytes', -1, 'RangeError', async () => (await openCheckpoint(ck.dir)).estimate({ availableBytes: -1 })],
      ['openCheckpoint packedCache', 5, 'TypeError', () => openCheckpoint(ck.dir, { packedCache: 5 as never })],
      ['loadMoeLayer experts', [ck.dims.E], 'RangeError', () => loadMoeLayer(ck.dir, 0, { experts: [ck.dims.E] })],
      ['loadMoeLayer experts', 'x', 'TypeError', () => loadMoeLayer(ck.dir, 0, { experts: 'x' as never })],
      ['loadMoeLayer sharedExperts', 1, 'TypeError', () => loadMoeLayer(ck.dir, 0, { sharedExperts: 1 as never })],
      ['estimate experts', [], 'RangeError', async () => (await openCheckpoint(ck.dir)).estimate({ experts: [] })],
    ];
    test.each(loads)('%s = %j -> %s', async (label, _v, cls, call) => {
      tally.tried++;
      const err = await outcome(call) as (Error & { code?: string }) | undefined;
      expect(err, 'expected an error').toBeInstanceOf(Error);
      expect(err!.name, err!.message).toBe(cls);
      expect(err!.code).toBe('ERR_MOE_INVALID_ARGUMENT');
      expect(err!.message).toContain(label.split(' ').pop()!);
      tally.correct++;
    });
  });

  afterAll(() => {
    layer.dispose();
    plain.dispose();
    console.log(`bad-input table: ${tally.correct} of ${tally.tried} bad inputs gave the right error class, code and argument name`);
  });
});

describe('layers that padding would blow up', () => {
  test('E = 2^21 experts of H = I = 1: 24 MB of input would pack to 3.25 GB -> RangeError before allocating', () => {
    const n = 2 ** 21;
    const rss = process.memoryUsage().rss;
    const err = (() => {
      try {
        new MoeLayer({
          numExperts: n, hiddenSize: 1, intermediateSize: 1, topK: 1, activation: 'silu', isW13Interleaved: false,
          weightDtype: 'f32', w13: new Float32Array(2 * n), w2: new Float32Array(n),
        });
      } catch (e) {
        return e as Error & { code?: string };
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(RangeError);
    expect(err!.code).toBe('ERR_MOE_INVALID_ARGUMENT');
    expect(err!.message).toMatch(/hiddenSize.*intermediateSize.*3\.25 GB.*129x the unpadded size/);
    expect(process.memoryUsage().rss - rss).toBeLessThan(512 << 20);
  });
});
