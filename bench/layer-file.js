#!/usr/bin/env node
// Decode from a packed-layer file mapping against the layer's own (private, 2 MiB-page) memory,
// side by side in one run: a gpt-oss-20b MoE layer in mxfp4 (E=32, H=I=2880, 426 MB packed),
// saved to each store, opened with MoeLayer.open, then T=1 forwards with cold weights (fresh
// random routes and a cache sweep before every call, neither timed), the layers taking turns
// call by call; medians. Also: save and open times (with and without verify) and how the
// mapping is backed (4 KiB pages or huge pages, from /proc/self/smaps).
//
//   npm run compile && npx tsc -p tsconfig.json && node bench/layer-file.js [DIR ...]
//
// Stores by default: /tmp (the disk's page cache) and /dev/shm (tmpfs). A tmpfs mounted with
// huge pages serves the mapping in 2 MiB pages (root: mount -t tmpfs -o huge=always,size=2G
// tmpfs /mnt/moe-huge), pass it as a DIR.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { MoeLayer, toBf16, cpuInfo } = require(path.join(__dirname, '..', 'dist', 'index.js'));

const E = 32, H = 2880, I = 2880, K = 4, CALLS = 31;
const dirs = process.argv.length > 2 ? process.argv.slice(2) : ['/tmp', '/dev/shm'];
let seed = 7;
const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
const values = (n) => toBf16(Float32Array.from({ length: n }, () => (rnd() - 0.5) / 8));
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

// Cold weights: 4 x a 32 MiB L3 and more, read and written, on the main thread between calls.
const sweep = new Int32Array((256 << 20) / 4).fill(1);
let sink = 0;
function sweepCaches() {
  for (let i = 0; i < sweep.length; i += 16) {
    sink += sweep[i];
    sweep[i] = sink & 0xff;
  }
}

function route() {
  const ids = new Int32Array(K), weights = new Float32Array(K).fill(0.25);
  const chosen = new Set();
  while (chosen.size < K) chosen.add(Math.floor(rnd() * E));
  ids.set([...chosen]);
  return { ids, weights };
}

/** Huge-page backing of the mapping that holds `bytes`-sized regions: kB in PMD mappings, from smaps. */
function backing() {
  const smaps = fs.readFileSync('/proc/self/smaps', 'utf8');
  const sum = (key) => [...smaps.matchAll(new RegExp(`^${key}:\\s+(\\d+) kB`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
  return { anonHuge: sum('AnonHugePages'), fileHuge: sum('FilePmdMapped'), shmemHuge: sum('ShmemPmdMapped') };
}

(async () => {
  const info = cpuInfo();
  console.log(`layer-file bench: gpt-oss-20b shape, mxfp4, T=1 cold, ${info.threads} threads, kernel ${info.kernel}`);
  const w13 = Array(E).fill(values(2 * I * H)), w2 = Array(E).fill(values(H * I));
  const before = backing();
  const t0 = performance.now();
  const own = await MoeLayer.create({
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'swigluoai', isW13Interleaved: true,
    weightDtype: 'mxfp4', w13, w2,
  });
  console.log(`packed ${(own.bytes / 1e6).toFixed(0)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s; ` +
    `private memory in huge pages: ${((backing().anonHuge - before.anonHuge) / 1024).toFixed(0)} MB`);

  const layers = [{ label: 'private (packed here)', layer: own }];
  for (const dir of dirs) {
    const file = path.join(dir, `moe-cpu-bench-${process.pid}.moe`);
    let t = performance.now();
    await own.save(file);
    const saveMs = performance.now() - t;
    const b0 = backing();
    t = performance.now();
    const quick = await MoeLayer.open(file, { verify: false });
    const openMs = performance.now() - t;
    quick.dispose();
    t = performance.now();
    const layer = await MoeLayer.open(file);
    const verifyMs = performance.now() - t;
    // Touch every page once (a forward over all experts), then see how it is mapped.
    await layer.forward(new Float32Array(E * H).fill(0.1), { ids: Int32Array.from({ length: E * K }, (_, i) => i % E), weights: new Float32Array(E * K).fill(0.25) });
    const b1 = backing();
    const huge = (b1.fileHuge - b0.fileHuge) + (b1.shmemHuge - b0.shmemHuge);
    console.log(`${dir}: save ${saveMs.toFixed(0)} ms; open ${openMs.toFixed(1)} ms, with verify ${verifyMs.toFixed(0)} ms; ` +
      `mapped in huge pages: ${(huge / 1024).toFixed(0)} MB of ${(layer.bytes / 1e6).toFixed(0)} MB`);
    layers.push({ label: `mapped from ${dir}`, layer, file });
  }

  const hidden = new Float32Array(H).map((_, i) => Math.sin(i));
  const times = layers.map(() => []);
  for (let c = 0; c < CALLS + 2; c++) {
    for (let l = 0; l < layers.length; l++) {
      const r = route();
      sweepCaches();
      const t = performance.now();
      await layers[l].layer.forward(hidden, r);
      if (c >= 2) times[l].push(performance.now() - t); // two warm-up rounds
    }
  }
  const base = median(times[0]);
  console.log(`\nT=1, cold weights, median of ${CALLS} calls each (the layers take turns):`);
  for (let l = 0; l < layers.length; l++) {
    const m = median(times[l]);
    const gbps = (K * 3 * I * H * 4.25 / 8) / m / 1e6;
    console.log(`  ${layers[l].label.padEnd(28)} ${m.toFixed(3)} ms  ${gbps.toFixed(1)} GB/s  ${(m / base).toFixed(3)}x private`);
  }
  for (const { layer, file } of layers) {
    layer.dispose();
    if (file) fs.rmSync(file, { force: true });
  }
  if (sink === 0.5) console.log(sink);
})();
