// The functions around the layer: cpuInfo, bf16 conversion, W13 layouts, gated activations,
// routing, and a layer with its own router behind a ForwardBatcher, with cancellation and errors.
import {
  ForwardBatcher, MoeLayer, cpuInfo, deinterleaveW13, fromBf16, interleaveW13, selectExperts, siluAndMul, swigluoai, toBf16,
} from 'moe-cpu';

const info = cpuInfo();
console.log(`${info.arch}: kernel set '${info.kernel}' (runnable: ${info.kernels.join(', ')}), ${info.threads} threads`);

// bf16: round to nearest even, and back (exact).
console.log(`bf16 of [1, 0.1, -3.14159]: [${fromBf16(toBf16(Float32Array.from([1, 0.1, -3.14159]))).join(', ')}]`);

const E = 8, H = 64, I = 32, K = 2, T = 4;
const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);

// W13 layouts: interleaved (g0,u0,g1,u1,…) <-> halves; a bias [E, 2I] is hiddenSize 1.
const interleaved = random(E * 2 * I * H);
const halves = deinterleaveW13(interleaved, { numExperts: E, intermediateSize: I, hiddenSize: H });
const back = interleaveW13(halves, { numExperts: E, intermediateSize: I, hiddenSize: H });
console.log(`interleave(deinterleave(w13)) equals w13: ${back.every((v, i) => v === interleaved[i])}`);

// Gated activations on [T, 2I] -> [T, I], in either layout (stated, never assumed).
const x = random(T * 2 * I);
const xHalves = deinterleaveW13(x, { numExperts: T, intermediateSize: I, hiddenSize: 1 });
const a = siluAndMul(x, { tokens: T, intermediateSize: I, isInterleaved: true });
const b = siluAndMul(xHalves, { tokens: T, intermediateSize: I, isInterleaved: false });
console.log(`silu·u, both layouts agree: ${a.every((v, i) => v === b[i])}`);
swigluoai(x, { tokens: T, intermediateSize: I, isInterleaved: true, limit: 7 });

// Routing: the three rules.
const logits = random(T * E);
const topkSoftmax = selectExperts(logits, { tokens: T, numExperts: E, topK: K, routing: { mode: 'topk-softmax' } });
const softmaxTopk = selectExperts(logits, { tokens: T, numExperts: E, topK: K, routing: { mode: 'softmax-topk', renormalize: true } });
const grouped = selectExperts(logits, {
  tokens: T, numExperts: E, topK: K,
  routing: { mode: 'sigmoid-grouped', numGroups: 4, topkGroups: 2, renormalize: true, routedScalingFactor: 2.5 },
});
console.log(`token 0 goes to experts ${topkSoftmax.ids.slice(0, K).join(', ')} (topk-softmax), ` +
  `${softmaxTopk.ids.slice(0, K).join(', ')} (softmax-topk), ${grouped.ids.slice(0, K).join(', ')} (sigmoid-grouped)`);

// A layer with a router, packed off the main thread; forward(hidden) routes by itself.
const layer = await MoeLayer.create({
  numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', isW13Interleaved: false,
  weightDtype: 'f32', w13: halves, w2: random(E * H * I), routerWeight: random(E * H), threads: 1,
});
console.log(`kernels: decode ${layer.kernels.decode}, prefill ${layer.kernels.prefill}`);

// Concurrent one-token calls, run as one native call.
const batcher = new ForwardBatcher(layer, { maxTokens: 16 });
const outs = await Promise.all(Array.from({ length: 4 }, () => batcher.forward(random(H))));
console.log(`batched: ${outs.length} outputs of ${outs[0]!.length}`);

// Cancellation and errors carry a stable code.
const aborted = await layer.forward(random(H), undefined, { signal: AbortSignal.abort() }).catch((err: { code?: string }) => err.code);
try {
  layer.forwardSync(random(H + 1));
} catch (err) {
  console.log(`aborted: ${aborted}; bad hidden: ${err instanceof RangeError ? 'RangeError' : err} ${(err as { code?: string }).code}`);
}
layer.dispose();
