// One Worker of test/workers.test.ts: uses the service-facing API as a service's worker would —
// loads with progress and an AbortSignal, packs with MoeLayer.create from SharedArrayBuffer-backed
// weights, forwards SAB-backed hidden through a MoeLayer and a MoeBlock (one native call each),
// cancels queued forwards, batches with ForwardBatcher — and posts what it computed.
'use strict';
const { workerData, parentPort } = require('node:worker_threads');
const moe = require(workerData.pkg);

const errorOf = (e) => ({ name: e.name, code: e.code, message: e.message });
async function rejection(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return errorOf(e);
  }
}

(async () => {
  const { checkpoint, layer, hidden, tokens, options, perExpert } = workerData;
  const result = {};
  // The event loop keeps turning while everything below runs.
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);

  // Loads: one aborted while it runs, one with progress.
  const ckpt = await moe.openCheckpoint(checkpoint);
  const controller = new AbortController();
  const aborted = ckpt.loadMoeLayers({ layers: [layer], signal: controller.signal, threads: 1 });
  controller.abort(new Error('shutting down'));
  result.loadAbort = await rejection(aborted);
  const progress = [];
  const [block] = await ckpt.loadMoeLayers({ layers: [layer], threads: 1, onProgress: (p) => progress.push(p.layer) });
  result.progress = progress;

  // The block (router + routed experts + shared expert and gate) on SAB-backed hidden.
  const x = new Float32Array(hidden);
  result.block = Array.from(await block.forward(x));

  // A layer packed off this Worker's thread from SAB-backed arrays (one or per expert).
  const o = { ...options, threads: 1 };
  if (perExpert) {
    o.w13 = options.w13Experts.map((b) => new Uint16Array(b));
    o.w2 = options.w2Experts.map((b) => new Uint16Array(b));
  } else {
    o.w13 = new Uint16Array(options.w13);
    o.w2 = new Uint16Array(options.w2);
  }
  o.routerWeight = new Float32Array(options.routerWeight);
  delete o.w13Experts;
  delete o.w2Experts;
  const created = await moe.MoeLayer.create(o);
  result.created = Array.from(await created.forward(x));

  // A forward whose signal fired while it waited in the queue (behind a packing of ~25 MB) is dropped.
  const big = { ...options, numExperts: 8, hiddenSize: 1024, intermediateSize: 512, topK: 2, threads: 1 };
  delete big.w13Experts;
  delete big.w2Experts;
  delete big.routerWeight;
  big.w13 = new Uint16Array(8 * 2 * 512 * 1024);
  big.w2 = new Uint16Array(8 * 1024 * 512);
  const c2 = new AbortController();
  const packing = moe.MoeLayer.create(big);
  const queued = created.forward(x, undefined, { signal: c2.signal });
  c2.abort();
  result.cancelled = await rejection(queued);
  (await packing).dispose();

  // The batcher: one-token calls coalesced, each caller gets its own rows.
  const batcher = new moe.ForwardBatcher(created, { maxTokens: tokens });
  const H = options.hiddenSize;
  const rows = await Promise.all(Array.from({ length: tokens }, (_, t) => batcher.forward(x.slice(t * H, (t + 1) * H))));
  result.batched = rows.flatMap((r) => Array.from(r));

  created.dispose();
  block.dispose();
  result.disposed = await rejection(created.forward(x));
  clearInterval(timer);
  result.ticks = ticks;
  parentPort.postMessage(result);
})().catch((e) => parentPort.postMessage({ error: errorOf(e), stack: e.stack }));
