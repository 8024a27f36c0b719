// Main-thread time per forward: the event loop's active time (eventLoopUtilization) spent per
// awaited forward(hidden) of a layer with a DeepSeek-V3-sized router (E=256, H=7168, bf16),
// and of a block with a shared expert and gate. Everything else of the call runs on the
// addon's dispatcher thread. Usage: node bench/main-thread.js [calls=200]
'use strict';
const { performance } = require('node:perf_hooks');
const { MoeLayer, MoeBlock } = require(process.env.MOE_CPU_DIST || '../dist/index.js');

const E = 256, H = 7168, I = 32, K = 8, T = 1;
const calls = Number(process.argv[2] ?? 200);
function rand(n, seed) {
  let s = seed >>> 0;
  const a = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    const f = new Float32Array([((s >>> 8) / 2 ** 24 - 0.5) * 0.1]);
    a[i] = new Uint32Array(f.buffer)[0] >>> 16;
  }
  return a;
}
const common = { hiddenSize: H, activation: 'silu', isW13Interleaved: false, weightDtype: 'bf16', threads: 1 };
const experts = new MoeLayer({
  ...common, numExperts: E, intermediateSize: I, topK: K, w13: rand(E * 2 * I * H, 1), w2: rand(E * H * I, 2),
  routerWeight: rand(E * H, 3), routing: { mode: 'sigmoid-grouped', numGroups: 8, topkGroups: 4, renormalize: true, routedScalingFactor: 2.5 },
});
const shared = new MoeLayer({ ...common, numExperts: 1, intermediateSize: 256, topK: 1, w13: rand(2 * 256 * H, 4), w2: rand(H * 256, 5) });
const block = new MoeBlock({ experts, sharedExperts: shared, sharedExpertGate: rand(H, 6) });
const hidden = rand(T * H, 7);

async function measure(label, run) {
  for (let i = 0; i < 20; i++) await run();
  const per = [];
  for (let i = 0; i < calls; i++) {
    const u0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    await run();
    const t1 = performance.now();
    const u = performance.eventLoopUtilization(u0);
    per.push([u.active, t1 - t0]);
  }
  const med = (k) => per.map((p) => p[k]).sort((a, b) => a - b)[per.length >> 1];
  console.log(`${label}: main thread ${med(0).toFixed(3)} ms per call (median of ${calls}), latency ${med(1).toFixed(3)} ms`);
}

(async () => {
  console.log(`router [E=${E}, H=${H}] bf16 = ${(E * H * 2 / 2 ** 20).toFixed(1)} MiB, T=${T}`);
  await measure('MoeLayer.forward(hidden)', () => experts.forward(hidden));
  await measure('MoeBlock.forward(hidden) (shared expert + gate)', () => block.forward(hidden));
  block.dispose();
})();
