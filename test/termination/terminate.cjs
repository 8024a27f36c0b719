// Terminates Workers at random moments while they run moe-cpu: forward, forwardSync, layer
// construction (packing) and checkpoint loads. Run as a child process by
// test/worker-termination.test.ts so that a crash (abort, segfault) is seen as this process's
// exit status rather than taking the test runner down.
//
//   node terminate.cjs <package dir> <terminations> <seed> [checkpoint dir]
// Prints one JSON line { terminations, modes } and exits 0 when every Worker came and went.
'use strict';
const { Worker } = require('node:worker_threads');

const [pkg, countArg, seedArg, checkpoint] = process.argv.slice(2);
const count = Number(countArg);
let seed = Number(seedArg) >>> 0;
const random = () => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

// The Worker: builds what its mode needs, says 'ready', then loops until terminated.
const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
const moe = require(workerData.pkg);
const E = 8, H = 512, I = 256, K = 2;
const options = () => ({
  numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'swigluoai', isW13Interleaved: true,
  weightDtype: 'bf16', w13: new Uint16Array(E * 2 * I * H).fill(0x3c00), w2: new Uint16Array(E * H * I).fill(0x3c00),
  routerWeight: new Float32Array(E * H).fill(0.01),
});
const hidden = new Float32Array(4 * H).fill(0.5);
(async () => {
  if (workerData.mode === 'create') {
    parentPort.postMessage('ready');
    for (;;) new moe.MoeLayer(options()).dispose();
  }
  if (workerData.mode === 'load') {
    parentPort.postMessage('ready');
    for (;;) (await moe.loadMoeLayer(workerData.checkpoint, 0)).dispose();
  }
  const layer = new moe.MoeLayer(options());
  parentPort.postMessage('ready');
  if (workerData.mode === 'forwardSync') for (;;) layer.forwardSync(hidden);
  if (workerData.mode === 'forward') for (;;) await layer.forward(hidden);
  // several forwards in flight at once
  for (;;) await Promise.all([layer.forward(hidden), layer.forward(hidden), layer.forward(hidden)]);
})();
`;

const modes = ['forward', 'forwardSync', 'create', 'forward-many'];
if (checkpoint) modes.push('load');
const seen = Object.fromEntries(modes.map((m) => [m, 0]));

(async () => {
  for (let i = 0; i < count; i++) {
    const mode = modes[i % modes.length];
    seen[mode]++;
    await new Promise((resolve, reject) => {
      const w = new Worker(WORKER, { eval: true, workerData: { pkg, mode, checkpoint } });
      w.on('message', () => setTimeout(() => w.terminate(), random() * 40));
      w.on('error', reject);
      w.on('exit', resolve);
    });
  }
  console.log(JSON.stringify({ terminations: count, modes: seen }));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
