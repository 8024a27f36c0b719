#!/usr/bin/env node
// moe-cpu against its peers, through the public API, in one run (`npm run bench:peers`).
//
//   node bench/peers.js [--preset NAME,...] [--tokens 1,64] [--threads 1,all] [--iters N]
//                       [--only NAME,...] [--json FILE]
//
// For every case of trials.js (or of the flags): each implementation of implementations.js is
// built, its output on the case's inputs is checked against the float64 reference (first
// tokens; max|out - ref| / max|ref| within 1e-4 for f32 weights, 1e-2 for 16-bit ones), then
// timed the same way: the checked call is the warm-up, then an odd number of calls, median.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');

const ROOT = path.join(__dirname, '..');
const INSTALL = 'cd bench && npm install --ignore-scripts';

function installed() {
  try {
    require.resolve('onnxruntime-node', { paths: [__dirname] });
    return true;
  } catch {
    return false;
  }
}

if (!installed()) {
  console.log(`bench:peers: the peer benchmark's own dependencies (bench/node_modules) are not installed.\n` +
    `Install them with:\n  ${INSTALL}\n(--ignore-scripts: onnxruntime-node's install script downloads other builds; ` +
    `its CPU build is inside the npm package.) Nothing was run.`);
  process.exit(0);
}

let moe, PRESETS;
try {
  moe = require(ROOT);
  ({ PRESETS } = require(path.join(ROOT, 'dist', 'presets.js')));
} catch (err) {
  console.error(`bench:peers: cannot load moe-cpu from ${ROOT} (${err.message}).\n` +
    'Build it first: npm run compile && npx tsc -p tsconfig.json');
  process.exit(1);
}

const { hidden: makeHidden, logits: makeLogits, presetWeights } = require('./data');
const { IMPLEMENTATIONS, RATIOS } = require('./implementations');
const { plainMoe } = require('./plain-moe');
const TRIALS = require('./trials');

// Tokens whose output is checked against the float64 reference (tokens are independent).
const CHECK_TOKENS = 2;
const TOLERANCE = { f32: 1e-4, bf16: 1e-2, f16: 1e-2 };
// Timed calls: as many as fit the budget judging by the warm-up, odd, within these bounds.
const BUDGET_MS = 2000;
const MIN_ITERS = 3;
const MAX_ITERS = 21;
// An implementation whose call would take longer than this (extrapolated from its last token
// count) is not run for larger token counts.
const MAX_CALL_MS = 5000;

function parseFlags() {
  const { values } = parseArgs({
    options: {
      preset: { type: 'string' }, tokens: { type: 'string' }, threads: { type: 'string' },
      iters: { type: 'string' }, only: { type: 'string' }, json: { type: 'string' },
    },
  });
  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  let trials = TRIALS;
  if (values.preset || values.tokens || values.threads) {
    const presets = values.preset ? list(values.preset) : [...new Set(TRIALS.map((t) => t.preset))];
    const threads = values.threads ? list(values.threads).map((t) => (t === 'all' ? 'all' : Number(t))) : [1, 'all'];
    const tokens = values.tokens ? list(values.tokens).map(Number) : TRIALS[0].tokens;
    trials = presets.flatMap((preset) => threads.map((th) => ({ preset, threads: th, tokens })));
  }
  for (const t of trials) {
    if (!PRESETS.some((p) => p.name === t.preset)) throw new RangeError(`--preset: unknown preset '${t.preset}'`);
    if (t.tokens.some((n) => !Number.isInteger(n) || n <= 0)) throw new RangeError('--tokens: expected positive integers');
    if (t.threads !== 'all' && !(Number.isInteger(t.threads) && t.threads > 0)) throw new RangeError('--threads: expected positive integers or all');
  }
  const only = values.only ? list(values.only) : undefined;
  for (const name of only ?? []) {
    if (!IMPLEMENTATIONS.some((i) => i.name === name)) {
      throw new RangeError(`--only: unknown implementation '${name}' (${IMPLEMENTATIONS.map((i) => i.name).join(', ')})`);
    }
  }
  return { trials, iters: values.iters ? Number(values.iters) : 0, only, json: values.json };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function relError(out, ref, n) {
  let err = 0, scale = 0;
  for (let i = 0; i < n; i++) {
    err = Math.max(err, Math.abs(out[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return Number.isFinite(err) ? err / scale : Infinity;
}

function pad(cells, widths) {
  return cells.map((c, i) => String(c).padStart(widths[i])).join('  ');
}

/**
 * How every implementation is timed: the call whose output is checked is the warm-up; then
 * `forcedIters` calls (made odd) or as many as fit BUDGET_MS judging by the warm-up; the median.
 * `live` remembers the last time, to skip token counts that would take too long, and failures.
 * Returns { ms, iters, err } or { status, note } (and err when the output was wrong).
 */
async function measure(live, T, hidden, logits, ref, checked, forcedIters) {
  if (live.off) return { status: live.off };
  if (live.lastMs !== undefined && (live.lastMs * T) / live.lastT > MAX_CALL_MS) {
    live.off = 'slow';
    return { status: 'slow', note: `not run from T=${T} on (~${((live.lastMs * T) / live.lastT / 1000).toFixed(0)} s per call)` };
  }
  let out, warm;
  try {
    const t0 = performance.now();
    out = await live.instance.run(hidden, logits, T);
    warm = performance.now() - t0;
  } catch (err) {
    live.off = 'error';
    return { status: 'error', note: `failed at T=${T}: ${err.message}` };
  }
  const err = relError(out, ref, checked);
  const tolerance = TOLERANCE[live.impl.dtype];
  if (!(err <= tolerance)) {
    return { status: 'WRONG', err, note: `T=${T}: output differs from the reference, max rel err ${err.toExponential(2)} > ${tolerance}` };
  }
  const iters = (forcedIters || Math.min(MAX_ITERS, Math.max(MIN_ITERS, Math.floor(BUDGET_MS / warm)))) | 1;
  const times = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await live.instance.run(hidden, logits, T);
    times.push(performance.now() - t0);
  }
  live.lastMs = median(times);
  live.lastT = T;
  return { ms: live.lastMs, iters, err };
}

async function runTrial(trial, weights, flags, results) {
  const preset = PRESETS.find((p) => p.name === trial.preset);
  const threads = trial.threads === 'all' ? moe.cpuInfo().threads : trial.threads;
  const impls = IMPLEMENTATIONS.filter((i) => !flags.only || flags.only.includes(i.name));
  console.log(`\n${preset.name} (E=${preset.numExperts} H=${preset.hiddenSize} I=${preset.intermediateSize} ` +
    `K=${preset.topK}, ${preset.activation}), ${threads} thread${threads === 1 ? '' : 's'}` +
    `${impls.some((i) => !i.threaded) ? ' (plain JS: always 1)' : ''}`);
  const live = [];
  const notes = [];
  for (const impl of impls) {
    process.stdout.write(`  building ${impl.name}… `);
    const t0 = performance.now();
    try {
      const instance = await impl.create({ preset, weights, threads, moe });
      live.push({ impl, instance, lastMs: undefined, lastT: undefined, off: undefined });
      console.log(`${((performance.now() - t0) / 1000).toFixed(2)} s`);
    } catch (err) {
      console.log('unavailable');
      notes.push(`${impl.name}: cannot run here: ${err.message}`);
    }
  }

  const ratios = RATIOS.filter(([a, b]) => impls.some((i) => i.name === a) && impls.some((i) => i.name === b));
  const headers = ['tokens', ...live.map((l) => `${l.impl.name} ms`), ...ratios.map(([a, b]) => `${a.replace('moe-cpu ', '')} vs ${b}`)];
  const widths = headers.map((h) => Math.max(h.length, 8));
  const f32 = { w13: weights.w13.f32, w2: weights.w2.f32, b13: weights.b13?.f32, b2: weights.b2?.f32 };
  const shape = { E: preset.numExperts, H: preset.hiddenSize, I: preset.intermediateSize, K: preset.topK, activation: preset.activation };
  const checks = [];
  console.log(pad(headers, widths));
  for (const T of trial.tokens) {
    const hidden = makeHidden(T, preset.hiddenSize, 11 + T);
    const logits = makeLogits(T, preset.numExperts, 13 + T);
    const checkT = Math.min(T, CHECK_TOKENS);
    const ref = plainMoe(shape, f32, hidden, logits, checkT);
    const ms = {};
    const errors = [];
    for (const l of live) {
      const m = await measure(l, T, hidden, logits, ref, checkT * preset.hiddenSize, flags.iters);
      ms[l.impl.name] = m.ms ?? m.status;
      if (m.err !== undefined) errors.push(`${l.impl.name} ${m.err.toExponential(1)}`);
      if (m.note) notes.push(`${l.impl.name}: ${m.note}`);
      if (m.ms !== undefined) {
        results.push({
          preset: preset.name, threads: l.impl.threaded ? threads : 1, tokens: T, implementation: l.impl.name,
          iters: m.iters, median_ms: m.ms, max_rel_err: m.err,
        });
      }
    }
    const speedups = ratios.map(([a, b]) => (typeof ms[a] === 'number' && typeof ms[b] === 'number' ? ms[b] / ms[a] : undefined));
    for (let i = 0; i < ratios.length; i++) {
      if (speedups[i] !== undefined) {
        results.push({ preset: preset.name, threads, tokens: T, ratio: `${ratios[i][1]} ms / ${ratios[i][0]} ms`, value: speedups[i] });
      }
    }
    const row = [T, ...live.map((l) => (typeof ms[l.impl.name] === 'number' ? ms[l.impl.name].toFixed(2) : ms[l.impl.name] ?? '-')),
      ...speedups.map((s) => (s === undefined ? '-' : `${s.toFixed(2)}×`))];
    console.log(pad(row, widths));
    checks.push(`T=${T} (first ${checkT} token${checkT === 1 ? '' : 's'}): ${errors.join(', ')}`);
  }
  for (const l of live) l.instance.dispose();
  console.log('  output check, max|out - ref| / max|ref| against the float64 reference:');
  for (const c of checks) console.log(`    ${c}`);
  for (const n of notes) console.log(`  note: ${n}`);
}

async function main() {
  const flags = parseFlags();
  const info = moe.cpuInfo();
  let ortVersion = 'not installed';
  try {
    ortVersion = require(require.resolve('onnxruntime-node/package.json', { paths: [__dirname] })).version;
  } catch { /* reported as not installed */ }
  console.log(`bench:peers — node ${process.version}, ${info.arch} [${info.features.join(' ')}], moe-cpu kernel ` +
    `${info.kernel}, onnxruntime-node ${ortVersion}, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log('times are medians (ms); "X vs PEER" is PEER ms ÷ moe-cpu X ms: how many times faster moe-cpu is');
  const results = [];
  let weights, weightsOf;
  for (const trial of flags.trials) {
    if (weightsOf !== trial.preset) {
      weights = undefined; // let the previous preset's arrays go first
      const preset = PRESETS.find((p) => p.name === trial.preset);
      process.stdout.write(`\nmaking ${preset.name} weights (f32, bf16, f16)… `);
      const t0 = performance.now();
      weights = presetWeights(preset);
      weightsOf = trial.preset;
      console.log(`${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    await runTrial(trial, weights, flags, results);
  }
  console.log(`\nload average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  if (flags.json) {
    fs.writeFileSync(flags.json, JSON.stringify({
      node: process.version, cpu: info, onnxruntime_node: ortVersion, results,
    }, null, 1));
    console.log(`results written to ${flags.json}`);
  }
}

main().catch((err) => {
  console.error(`bench:peers: ${err.stack ?? err}`);
  process.exitCode = 1;
});
