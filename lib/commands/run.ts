// `moe-cpu run <dir> --layer N`: loads one MoE layer of a checkpoint (or all of them) and runs
// it on deterministic random input; reports times, memory and a checksum of the output.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { toBf16, fromBf16 } from '../bf16';
import { formatLayers, openCheckpoint, type LoadWeightDtype } from '../checkpoint/checkpoint';
import type { MoeBlock } from '../checkpoint/block';
import { WEIGHT_DTYPES } from '../checkpoint/formats';
import { peakRss } from '../checkpoint/memory';
import { cpuInfo } from '../cpu';
import type { WeightArray } from '../validate';
import { nonNegativeInteger, oneOf, positiveInteger, stringOption, UsageError, type ParsedArgs } from './args';
import type { Command, CommandOutput, CommandResult } from './command';
import { formatBytes } from './inspect';
import { activationBytes, describeNeeds, memoryNeeds, needsReport } from './memory-needs';
import { Progress } from './progress';

const RUN_USAGE = `moe-cpu run <dir> --layer N | --all-layers [--tokens T] [--dtype mxfp4|int8|bf16|f16|f32]
             [--hidden f32|bf16] [--threads N] [--iters N] [--seed S] [--verify] [--out FILE] [--json]
  loads layer N (or every MoE layer: --all-layers), runs it on T tokens of deterministic random
  input (seed S; with --all-layers every layer gets the same input, one after another), prints
  load time, memory (bytes held, RSS, peak RSS), the micro-kernels chosen, forward time and a
  checksum. Before loading it prints (on stderr) the memory the run needs: packed weights,
  the staging arrays they are packed from, activations
  --layer N       the MoE layer to load (moe-cpu inspect lists them)
  --all-layers    every MoE layer, through loadMoeLayers
  --tokens T      tokens per forward (default 1)
  --dtype X       the weightDtype the layers hold (default: the checkpoint's own, see inspect)
  --hidden f32|bf16  the activations' dtype (default f32)
  --threads N     native threads (default: the physical cores)
  --iters N       timed forwards after the first (default 5)
  --seed S        seed of the random input (default 1)
  --verify        compare with the scalar kernels (MOE_CPU_ISA=scalar, in a child process)
  --out FILE      write the output's raw bytes (all layers' outputs, in order)`;

/** docs/spec.md "Precision contract": all-f32, and anything with bf16. */
const F32_TOLERANCE = 1e-5;
const BF16_TOLERANCE = 1e-2;

/** mulberry32: the deterministic input. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function fnv1a32(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
  return h;
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function values(a: WeightArray): Float32Array {
  return a instanceof Uint16Array ? fromBf16(a) : a;
}

function describeKernels(block: MoeBlock): string {
  const k = block.experts.kernels;
  if (!k) return 'n/a';
  const tiles = k.tiles ? `, tiles ${k.tiles} (from ${k.tilesMinTokensPerExpert})` : '';
  return `decode ${k.decode}, prefill ${k.prefill} (from ${k.prefillMinTokensPerExpert} tokens per selected expert on average)${tiles}`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface RunOptions {
  dir: string;
  /** The layer to load; undefined: every MoE layer (--all-layers). */
  layer: number | undefined;
  tokens: number;
  iters: number;
  seed: number;
  threads: number | undefined;
  dtype: LoadWeightDtype | undefined;
  hidden: 'f32' | 'bf16';
  verify: boolean;
  outFile: string | undefined;
}

function runOptions(parsed: ParsedArgs): RunOptions {
  const { positionals, values } = parsed;
  const option = (name: string) => stringOption(parsed, name);
  if (positionals.length !== 1) throw new UsageError(`run: expected one folder, got ${positionals.length}`);
  const all = values['all-layers'] === true;
  const layer = option('layer');
  if (layer === undefined && !all) throw new UsageError('--layer: required (or --all-layers)');
  if (layer !== undefined && all) throw new UsageError('--layer and --all-layers: give one of them');
  const number = (name: string, check: (flag: string, v: string) => number, fallback: number) => {
    const v = option(name);
    return v === undefined ? fallback : check(name, v);
  };
  const dtype = option('dtype');
  const threads = option('threads');
  return {
    dir: positionals[0],
    layer: layer === undefined ? undefined : nonNegativeInteger('layer', layer),
    tokens: number('tokens', positiveInteger, 1),
    iters: number('iters', positiveInteger, 5),
    seed: number('seed', nonNegativeInteger, 1),
    threads: threads === undefined ? undefined : positiveInteger('threads', threads),
    dtype: dtype === undefined ? undefined : oneOf('dtype', dtype, WEIGHT_DTYPES),
    hidden: oneOf('hidden', option('hidden') ?? 'f32', ['f32', 'bf16'] as const),
    verify: values.verify === true,
    outFile: option('out'),
  };
}

/** A JSON number: NaN and infinities (a failed comparison) as null. */
const finite = (x: number) => (Number.isFinite(x) ? x : null);

async function run(parsed: ParsedArgs, out: CommandOutput, args: readonly string[]): Promise<CommandResult> {
  const o = runOptions(parsed);
  const rss0 = process.memoryUsage().rss;
  let t0 = performance.now();
  const ckpt = await openCheckpoint(o.dir);
  const c = ckpt.config;
  const cpu = cpuInfo();
  const threads = o.threads ?? cpu.threads;
  const all = o.layer === undefined;
  const layers = all ? [...ckpt.moeLayers] : [o.layer!];
  const shape = `${ckpt.family}: E=${c.numExperts} K=${c.topK} H=${c.hiddenSize} I=${c.intermediateSize}${c.sharedExpert ? ` + shared ${c.sharedExpert.intermediateSize}` : ''}`;
  out.print(`moe-cpu run: ${ckpt.dir}, ${all ? `all ${layers.length} MoE layers ${formatLayers(layers)}` : `layer ${o.layer}`} (${shape})`);
  out.print(`cpu: ${cpu.arch}, kernel ${cpu.kernel}, threads ${threads}`);

  // From the headers only: a layer that is not an MoE layer, or a dtype it cannot hold, fails here.
  const estimate = ckpt.estimate({ layers, weightDtype: o.dtype });
  const needs = memoryNeeds([
    { key: 'packedWeights', what: 'packed weights', bytes: estimate.bytes },
    { key: 'staging', what: 'staging arrays while a layer is packed', bytes: estimate.stagingBytes },
    { key: 'activations', what: `activations (T=${o.tokens})`, bytes: activationBytes({
      tokens: o.tokens, hiddenSize: c.hiddenSize, intermediateSize: c.intermediateSize, numExperts: c.numExperts, topK: c.topK,
      sharedIntermediateSize: c.sharedExpert?.intermediateSize ?? 0, hiddenBytes: o.hidden === 'bf16' ? 2 : 4, outputs: layers.length,
    }) },
  ]);
  const progress = new Progress(layers.length);
  progress.note(`memory: ${describeNeeds(needs)}` +
    (o.verify ? '; --verify then loads the same again in a child process, after this one has freed its layers' : ''));
  if (all) {
    out.print(`estimate: ${formatBytes(estimate.bytes)} packed + ${formatBytes(estimate.stagingBytes)} staging = ${formatBytes(estimate.peakBytes)} at peak; ` +
      `${formatBytes(estimate.available)} available (${estimate.availableSource})`);
  }
  const infos = layers.map((n) => ckpt.layerInfo(n));
  const disk = infos.reduce((a, i) => a + i.diskBytes, 0);
  const stored = [...new Set(infos.map((i) => i.weightFormat.toUpperCase()))].join('/');
  const as = [...new Set(estimate.layers.map((l) => l.weightDtype))].join('/');
  const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  progress.note(`loading ${all ? `${layers.length} MoE layers` : `layer ${o.layer}`}: ${formatBytes(disk)} from disk, ${stored} -> ${as}`);
  let loaded = 0;
  const loading = progress.during(ckpt.loadMoeLayers({
    layers, weightDtype: o.dtype, threads: o.threads,
    onProgress: (p) => {
      loaded = p.index + 1;
      progress.step(`layer ${p.layer} (${p.index + 1}/${p.count}), ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}, ` +
        `${elapsed()}, RSS ${formatBytes(process.memoryUsage().rss)}`);
    },
  }), () => `layer ${layers[Math.min(loaded, layers.length - 1)]} (${Math.min(loaded + 1, layers.length)}/${layers.length}): loading, ${elapsed()}`);
  const blocks = await loading.finally(() => progress.end()); // a failed load leaves no half-drawn bar
  const loadSeconds = (performance.now() - t0) / 1000;
  const held = blocks.reduce((a, b) => a + b.bytes, 0);
  const rssLoaded = process.memoryUsage().rss;
  const memory = `RSS ${formatBytes(rss0)} -> ${formatBytes(rssLoaded)} (peak ${formatBytes(peakRss())})`;
  if (all) {
    out.print(`load: ${blocks.length} layers in ${loadSeconds.toFixed(2)} s (${formatBytes(disk)} read, ${stored} -> ${as}, ` +
      `${(disk / 1e9 / loadSeconds).toFixed(2)} GB/s), layers hold ${formatBytes(held)} (sum of block.bytes; estimate ${formatBytes(estimate.bytes)}); ` +
      `${memory}; RSS / held = ${(rssLoaded / held).toFixed(3)}`);
  } else {
    out.print(`load: ${loadSeconds.toFixed(2)} s (${formatBytes(disk)} read, ${stored} -> ${as}), layer holds ${formatBytes(held)}; ${memory}`);
  }
  const dtype = blocks[0].weightDtype as LoadWeightDtype;
  out.print(`kernels: ${describeKernels(blocks[0])}`);

  const rng = random(o.seed);
  const x = Float32Array.from({ length: o.tokens * c.hiddenSize }, () => 2 * rng() - 1);
  const hidden: WeightArray = o.hidden === 'bf16' ? toBf16(x) : x;
  const pass = async (): Promise<WeightArray> => {
    if (blocks.length === 1) return blocks[0].forward(hidden);
    const outs: WeightArray[] = [];
    for (const b of blocks) outs.push(await b.forward(hidden));
    return concat(outs);
  };
  const k = blocks[0].experts.kernels; // read before dispose
  let output: WeightArray;
  let first = 0;
  const times: number[] = [];
  try {
    t0 = performance.now();
    output = await pass();
    first = performance.now() - t0;
    for (let i = 0; i < o.iters; i++) {
      t0 = performance.now();
      output = await pass();
      times.push(performance.now() - t0);
    }
  } finally {
    for (const b of blocks) b.dispose();
  }
  const m = median(times);
  const through = blocks.length === 1 ? '' : ` through ${blocks.length} layers`;
  out.print(`forward: T=${o.tokens}, hidden ${o.hidden}${through}: first ${first.toFixed(2)} ms, median ${m.toFixed(2)} ms of ${o.iters} (${(o.tokens / m * 1000).toFixed(1)} tokens/s)`);
  const y = values(output);
  let sum = 0, abs = 0;
  for (const value of y) {
    sum += value;
    abs += Math.abs(value);
  }
  const fnv = `0x${fnv1a32(bytesOf(output)).toString(16).padStart(8, '0')}`;
  out.print(`checksum: fnv1a32 ${fnv}, sum ${sum.toPrecision(8)}, mean |out| ${(abs / y.length).toPrecision(6)}`);
  const rssForward = process.memoryUsage().rss;
  out.print(`RSS after forward: ${formatBytes(rssForward)}`);
  if (o.outFile) fs.writeFileSync(o.outFile, bytesOf(output));

  let verify: Record<string, unknown> | null = null;
  if (o.verify) {
    const tolerance = dtype === 'f32' && o.hidden === 'f32' ? F32_TOLERANCE : BF16_TOLERANCE;
    const err = verifyAgainstScalar(args, output, y);
    const ok = err <= tolerance;
    const scalarOnly = cpu.kernel === 'scalar';
    const note = scalarOnly ? ' (the active kernels are the scalar ones too: this checks determinism only)' : '';
    out.print(`verify: scalar kernels (MOE_CPU_ISA=scalar, child process): max|out - ref| / max|ref| = ${err.toExponential(2)}, tolerance ${tolerance}: ${ok ? 'ok' : 'FAILED'}${note}`);
    verify = { relativeError: finite(err), tolerance, ok, determinismOnly: scalarOnly };
  }
  const report = {
    dir: ckpt.dir, family: ckpt.family,
    shape: { numExperts: c.numExperts, topK: c.topK, hiddenSize: c.hiddenSize, intermediateSize: c.intermediateSize,
      sharedIntermediateSize: c.sharedExpert?.intermediateSize ?? null },
    layers, stored, weightDtype: dtype, threads, kernel: cpu.kernel,
    kernels: k ? { decode: k.decode, prefill: k.prefill, prefillMinTokensPerExpert: k.prefillMinTokensPerExpert,
      tiles: k.tiles, tilesMinTokensPerExpert: k.tilesMinTokensPerExpert } : null,
    memory: { needs: needsReport(needs), heldBytes: held, rssBeforeBytes: rss0, rssAfterLoadBytes: rssLoaded, peakRssBytes: peakRss(), rssAfterForwardBytes: rssForward },
    load: { seconds: loadSeconds, diskBytes: disk },
    forward: { tokens: o.tokens, hidden: o.hidden, iters: o.iters, firstMs: first, medianMs: m, tokensPerSecond: (o.tokens / m) * 1000 },
    checksum: { fnv1a32: fnv, sum: finite(sum), meanAbs: finite(abs / y.length) },
    verify,
    out: o.outFile ?? null,
  };
  return { report, failed: verify !== null && verify.ok !== true };
}

function concat(parts: WeightArray[]): WeightArray {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = parts[0] instanceof Uint16Array ? new Uint16Array(n) : new Float32Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Runs the same command with the scalar kernels in a child process; returns the relative error. */
function verifyAgainstScalar(args: readonly string[], out: WeightArray, y: Float32Array): number {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-verify-')), 'out.bin');
  try {
    const childArgs = args.filter((a) => a !== '--verify').concat(['--iters', '1', '--out', file]);
    const r = spawnSync(process.execPath, [path.join(__dirname, '..', 'cli.js'), 'run', ...childArgs], {
      env: { ...process.env, MOE_CPU_ISA: 'scalar' }, encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`verify: the scalar run failed (exit ${r.status}): ${r.stderr.split('\n').filter((l) => l.startsWith('moe-cpu run: ')).join(' ') || r.stderr.trim()}`);
    const raw = new Uint8Array(fs.readFileSync(file)).buffer; // a copy: aligned for any view
    const ref = values(out instanceof Uint16Array ? new Uint16Array(raw) : new Float32Array(raw));
    let maxDiff = 0, maxRef = 0;
    for (let i = 0; i < y.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(y[i] - ref[i]));
      maxRef = Math.max(maxRef, Math.abs(ref[i]));
    }
    if (Number.isNaN(maxDiff)) return Infinity;
    return maxDiff === 0 ? 0 : maxDiff / maxRef;
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
}

export const runCommand: Command = {
  summary: 'load MoE layers of a checkpoint and time them on random input (memory, kernels, checksum)',
  usage: RUN_USAGE,
  options: {
    layer: 'string', 'all-layers': 'boolean', tokens: 'string', dtype: 'string', hidden: 'string', threads: 'string',
    iters: 'string', seed: 'string', verify: 'boolean', out: 'string',
  },
  run,
};
