#!/usr/bin/env node
// One copy of the weights per host: N processes serving every MoE layer of a checkpoint through
// one packed-layer cache (openCheckpoint(dir, { packedCache })).
//
//   node scripts/make-gpt-oss-20b-checkpoint.js /tmp/gpt-oss-20b --layers 24
//   npm run compile && npx tsc -p tsconfig.json
//   node bench/shared-weights.js /tmp/gpt-oss-20b /tmp/moe-cache [--processes 4] [--dtype mxfp4]
//
// 1. One process fills the cache (packs every layer, saves it, maps it back): its time.
// 2. N processes start at once and load every layer from the cache: each one's ready time
//    (openCheckpoint + loadMoeLayers), then, with all N alive, every expert of every layer
//    touched once (a forward routed to all of them) and every layer held, each
//    one's RSS and PSS (/proc/PID/smaps_rollup: a shared page counts 1/n to each of the n
//    processes mapping it) and their sum against one copy (the packed bytes).
// 3. In one process, decode T=1 with cold weights (fresh random routes and a 256 MB cache sweep
//    before each call, not timed) on layer 0 mapped from the cache and on layer 0 loaded
//    without it (private memory), taking turns call by call: the medians and their ratio.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const [dir, cache] = process.argv.slice(2);
if (!dir || !cache || process.argv.includes('--help')) {
  console.error('usage: node bench/shared-weights.js CHECKPOINT_DIR CACHE_DIR [--processes N] [--dtype mxfp4|int8|bf16]');
  process.exit(2);
}
const flag = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const N = Number(flag('processes', '4'));
const dtype = flag('dtype', 'mxfp4');
const PKG = path.join(__dirname, '..', 'dist', 'index.js');

// The child: loads every layer through the cache, reports, then waits for 'measure' / 'decode'.
const CHILD = `
const moe = require(${JSON.stringify(PKG)});
const readline = require('node:readline');
(async () => {
  const t0 = performance.now();
  const ckpt = await moe.openCheckpoint(process.env.DIR, { packedCache: process.env.CACHE });
  const blocks = await ckpt.loadMoeLayers({ weightDtype: process.env.DTYPE });
  const readyMs = performance.now() - t0;
  const bytes = blocks.reduce((a, b) => a + b.bytes, 0);
  // Serving touches every expert: one forward per layer that routes to all of them (not timed).
  for (const b of blocks) {
    const E = b.numExperts, K = b.topK, T = Math.ceil(E / K);
    await b.forward(new Float32Array(T * b.hiddenSize).fill(0.01),
      { ids: Int32Array.from({ length: T * K }, (_, i) => i % E), weights: new Float32Array(T * K).fill(1 / K) });
  }
  process.stdout.write(JSON.stringify({ readyMs, bytes, mapped: blocks.every((b) => b.experts.mapped) }) + '\\n');
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (line !== 'decode') continue;
    const priv = await (await moe.openCheckpoint(process.env.DIR)).loadMoeLayer(ckpt.moeLayers[0], { weightDtype: process.env.DTYPE });
    const layers = [blocks[0], priv];
    const E = priv.numExperts, H = priv.hiddenSize, K = priv.topK;
    const sweep = new Int32Array((256 << 20) / 4).fill(1);
    let sink = 0;
    const times = [[], []];
    const hidden = new Float32Array(H).map((_, i) => Math.sin(i));
    for (let c = 0; c < 63; c++) {
      for (const l of c % 2 ? [1, 0] : [0, 1]) { // who goes first alternates
        const logits = new Float32Array(E).map(() => Math.random() * 4);
        for (let i = 0; i < sweep.length; i += 16) { sink += sweep[i]; sweep[i] = sink & 0xff; }
        const t = performance.now();
        await layers[l].forward(hidden, { logits });
        if (c >= 2) times[l].push(performance.now() - t);
      }
    }
    const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
    process.stdout.write(JSON.stringify({ mappedMs: median(times[0]), privateMs: median(times[1]), sink: sink === 0.5 }) + '\\n');
    priv.dispose();
  }
  blocks.forEach((b) => b.dispose());
})().catch((e) => { console.error(e); process.exit(1); });`;

function start() {
  const child = spawn(process.execPath, ['-e', CHILD], {
    stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, DIR: dir, CACHE: cache, DTYPE: dtype },
  });
  const lines = [];
  let buffer = '';
  const waiters = [];
  child.stdout.on('data', (d) => {
    buffer += d;
    let i;
    while ((i = buffer.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line); else lines.push(line);
    }
  });
  const next = () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((r) => waiters.push(r)));
  return { child, next };
}

function rollup(pid) {
  const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('Rss'), pss: kb('Pss') };
}
const gb = (b) => `${(b / 1e9).toFixed(2)} GB`;

(async () => {
  console.log(`shared-weights bench: ${dir}, ${dtype}, cache ${cache}, ${N} processes`);
  const filler = start();
  const filled = await filler.next();
  filler.child.stdin.end();
  console.log(`fill: one process packed, saved and mapped every layer in ${(filled.readyMs / 1000).toFixed(1)} s (${gb(filled.bytes)} packed)`);

  const children = Array.from({ length: N }, start);
  const ready = await Promise.all(children.map((c) => c.next()));
  const memory = children.map((c) => rollup(c.child.pid));
  const pss = memory.reduce((a, m) => a + m.pss, 0);
  for (let i = 0; i < N; i++) {
    console.log(`process ${i + 1}: ready in ${ready[i].readyMs.toFixed(0)} ms (all layers mapped: ${ready[i].mapped}), ` +
      `RSS ${gb(memory[i].rss)}, PSS ${gb(memory[i].pss)}`);
  }
  console.log(`sum of PSS over ${N} processes: ${gb(pss)} = ${(pss / filled.bytes).toFixed(2)}x one copy (${gb(filled.bytes)})`);

  children[0].child.stdin.write('decode\n');
  const d = await children[0].next();
  console.log(`decode T=1 cold, layer 0, median of 61: mapped ${d.mappedMs.toFixed(3)} ms, private ${d.privateMs.toFixed(3)} ms: ` +
    `mapped/private ${(d.mappedMs / d.privateMs).toFixed(3)}`);
  for (const c of children) c.child.stdin.end();
})();
