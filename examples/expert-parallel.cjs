// A MoE layer split by experts over worker threads: each worker holds a subset of the experts
// (MoeLayer's `experts`), computes the partial output of the routes to them, and the main
// thread sums the partial outputs. Checked against the whole layer in one thread.
//
//   node examples/expert-parallel.cjs [workers]
//
// The same split works across processes or hosts: each part needs its experts' weights and the
// model's router; the caller moves hidden states and partial outputs with its own transport.
'use strict';
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const { MoeLayer, toBf16 } = require('moe-cpu');

const E = 16, H = 256, I = 128, K = 4, T = 8;

// The model's weights, deterministic: every thread makes the same ones.
function modelWeights() {
  let seed = 42;
  /** @type {(n: number, scale: number) => Float32Array} */
  const rnd = (n, scale) => Float32Array.from({ length: n }, () => (((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5) * scale);
  return { w13: rnd(E * 2 * I * H, 0.2), w2: rnd(E * H * I, 0.2), router: rnd(E * H, 1) };
}

/**
 * A layer holding `ids` of the model's experts (all of them when null).
 * @param {number[] | null} ids
 */
function layerFor(ids) {
  const { w13, w2, router } = modelWeights();
  const held = ids ?? Array.from({ length: E }, (_, e) => e);
  // Expert e's rows of an [E, ...] tensor, one array per expert held.
  /** @type {(a: Float32Array) => Float32Array[]} */
  const rows = (a) => held.map((e) => a.subarray(e * (a.length / E), (e + 1) * (a.length / E)));
  return new MoeLayer({
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', isW13Interleaved: false,
    weightDtype: 'bf16', w13: rows(w13).map(toBf16), w2: rows(w2).map(toBf16), routerWeight: router,
    routing: { mode: 'softmax-topk', renormalize: true }, threads: 1,
    ...(ids ? { experts: ids } : {}),
  });
}

if (!isMainThread) {
  // A worker: its part of the layer; answers each hidden with its partial output.
  const layer = layerFor(workerData.experts);
  const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort);
  port.on('message', async (/** @type {Float32Array} */ hidden) => port.postMessage(await layer.forward(hidden)));
} else {
  (async () => {
    const workers = Number(process.argv[2] ?? 2);
    // Contiguous ranges of experts, one per worker.
    const parts = Array.from({ length: workers }, (_, w) => {
      const first = Math.floor((w * E) / workers), end = Math.floor(((w + 1) * E) / workers);
      return Array.from({ length: end - first }, (_, i) => first + i);
    });
    const threads = parts.map((experts) => new Worker(__filename, { workerData: { experts } }));
    const hidden = Float32Array.from({ length: T * H }, (_, i) => Math.sin(i * 0.1));
    const partials = await Promise.all(threads.map((w) => new Promise((/** @type {(p: Float32Array) => void} */ resolve) => {
      w.once('message', resolve);
      w.postMessage(hidden);
    })));
    // Each element: the sum over the parts (f32 values, added in f64 here; the comparison allows f32 rounding).
    const sum = Array.from(hidden.keys(), (i) => partials.reduce((a, p) => a + (p[i] ?? 0), 0));

    const whole = layerFor(null);
    const expected = await whole.forward(hidden);
    let err = 0, ref = 0;
    expected.forEach((v, i) => {
      err = Math.max(err, Math.abs((sum[i] ?? 0) - v));
      ref = Math.max(ref, Math.abs(v));
    });
    console.log(`${workers} workers holding experts ${parts.map((p) => `${p[0]}-${p[p.length - 1]}`).join(', ')}: ` +
      `sum of partial outputs vs the whole layer, max |diff| / max |ref| = ${(err / ref).toExponential(2)}`);
    for (const w of threads) await w.terminate();
    whole.dispose();
    // Summing the parts reassociates each token's f32 sum over its experts: within f32 rounding.
    if (!(err / ref <= 1e-5)) process.exit(1);
  })();
}
