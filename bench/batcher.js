#!/usr/bin/env node
// ForwardBatcher against separate calls: 16 concurrent one-token forwards on a layer larger than
// the caches (int8, E=32, H=2048, I=1024: 214 MB packed), median of 7 rounds in one run.
//
//   npm run compile && npx tsc -p tsconfig.json && node bench/batcher.js
'use strict';
const path = require('node:path');
const { MoeLayer, ForwardBatcher, toBf16 } = require(path.join(__dirname, '..', 'dist', 'index.js'));

const E = 32, H = 2048, I = 1024, CALLS = 16, ROUNDS = 7;
let seed = 1;
const rnd = (n) => Float32Array.from({ length: n }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5);
const layer = new MoeLayer({
  numExperts: E, hiddenSize: H, intermediateSize: I, topK: 4, activation: 'silu', isW13Interleaved: false,
  weightDtype: 'int8', w13: toBf16(rnd(E * 2 * I * H)), w2: toBf16(rnd(E * H * I)), routerWeight: rnd(E * H),
});
const batcher = new ForwardBatcher(layer);
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

(async () => {
  const xs = Array.from({ length: CALLS }, () => rnd(H));
  const separate = [], batched = [];
  for (let r = 0; r < ROUNDS; r++) {
    let t = performance.now();
    await Promise.all(xs.map((x) => layer.forward(x)));
    separate.push(performance.now() - t);
    t = performance.now();
    await Promise.all(xs.map((x) => batcher.forward(x)));
    batched.push(performance.now() - t);
  }
  console.log(`layer ${(layer.bytes / 1e6).toFixed(0)} MB int8, ${CALLS} concurrent one-token forwards, median of ${ROUNDS}: ` +
    `separate ${median(separate).toFixed(1)} ms, batched ${median(batched).toFixed(1)} ms ` +
    `(${(median(separate) / median(batched)).toFixed(2)}x)`);
  layer.dispose();
})();
