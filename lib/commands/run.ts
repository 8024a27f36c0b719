// `moe-cpu run <dir> --layer N`: loads one MoE layer of a checkpoint and runs it on
// deterministic random input; prints times, memory and a checksum of the output.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { toBf16, fromBf16 } from '../bf16';
import { formatLayers, openCheckpoint, type Checkpoint, type LoadWeightDtype } from '../checkpoint/checkpoint';
import type { MoeBlock } from '../checkpoint/block';
import { WEIGHT_DTYPES } from '../checkpoint/formats';
import { peakRss } from '../checkpoint/memory';
import { cpuInfo } from '../cpu';
import type { WeightArray } from '../validate';
import { formatBytes } from './inspect';
import { Progress } from './progress';
import { rangeError } from '../errors';

export const RUN_USAGE = `moe-cpu run <dir> --layer N | --all-layers [--tokens T] [--dtype mxfp4|int8|bf16|f16|f32]
             [--hidden f32|bf16] [--threads N] [--iters N] [--seed S] [--verify] [--out FILE]
  loads layer N (or every MoE layer: --all-layers), runs it on T tokens of deterministic random
  input (seed S; with --all-layers every layer gets the same input, one after another), prints
  load time, memory (bytes held, RSS, peak RSS), the micro-kernels chosen, forward time and a
  checksum; --verify compares with the scalar kernels (MOE_CPU_ISA=scalar, in a child process);
  --out writes the output's raw bytes (all layers' outputs, in order)`;

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
  return `decode ${k.decode}, prefill ${k.prefill} (from ${k.prefillMinTokensPerExpert} tokens per selected expert on average)`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function positive(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw rangeError(`--${name}: expected a positive integer, got '${value}'`);
  return n;
}

export async function run(args: string[]): Promise<void> {
  const { positionals, values: v } = parseArgs({
    args, allowPositionals: true,
    options: {
      layer: { type: 'string' }, 'all-layers': { type: 'boolean' }, tokens: { type: 'string' }, dtype: { type: 'string' },
      hidden: { type: 'string', default: 'f32' }, threads: { type: 'string' }, iters: { type: 'string' }, seed: { type: 'string' },
      verify: { type: 'boolean' }, out: { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw rangeError(`run: expected one folder, got ${positionals.length}\n${RUN_USAGE}`);
  const all = v['all-layers'] === true;
  if (v.layer === undefined && !all) throw rangeError(`--layer: required (or --all-layers)\n${RUN_USAGE}`);
  if (v.layer !== undefined && all) throw rangeError('--layer and --all-layers: give one of them');
  const T = positive(v.tokens, 'tokens', 1);
  const iters = positive(v.iters, 'iters', 5);
  const seed = positive(v.seed, 'seed', 1);
  const threads = v.threads === undefined ? undefined : positive(v.threads, 'threads', 1);
  const dtypeArg = v.dtype as LoadWeightDtype | undefined;
  if (dtypeArg !== undefined && !WEIGHT_DTYPES.includes(dtypeArg)) {
    throw rangeError(`--dtype: expected one of ${WEIGHT_DTYPES.join(', ')}, got '${v.dtype}'`);
  }
  if (v.hidden !== 'f32' && v.hidden !== 'bf16') throw rangeError(`--hidden: expected f32 or bf16, got '${v.hidden}'`);
  const dir = positionals[0];

  const rss0 = process.memoryUsage().rss;
  let t0 = performance.now();
  const ckpt = await openCheckpoint(dir);
  const c = ckpt.config;
  const cpu = cpuInfo();
  const shape = `${ckpt.family}: E=${c.numExperts} K=${c.topK} H=${c.hiddenSize} I=${c.intermediateSize}${c.sharedExpert ? ` + shared ${c.sharedExpert.intermediateSize}` : ''}`;
  const blocks = all
    ? await loadAll(ckpt, dtypeArg, threads, rss0, t0, shape, cpu.kernel, threads ?? cpu.threads)
    : await loadOne(ckpt, Number(v.layer), dtypeArg, threads, rss0, t0, shape, cpu.kernel, threads ?? cpu.threads);
  const dtype = blocks[0].weightDtype as LoadWeightDtype;
  console.log(`kernels: ${describeKernels(blocks[0])}`);

  const rng = random(seed);
  const x = Float32Array.from({ length: T * c.hiddenSize }, () => 2 * rng() - 1);
  const hidden: WeightArray = v.hidden === 'bf16' ? toBf16(x) : x;
  const pass = async (): Promise<WeightArray> => {
    if (blocks.length === 1) return blocks[0].forward(hidden);
    const outs: WeightArray[] = [];
    for (const b of blocks) outs.push(await b.forward(hidden));
    return concat(outs);
  };
  t0 = performance.now();
  let out = await pass();
  const first = performance.now() - t0;
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    t0 = performance.now();
    out = await pass();
    times.push(performance.now() - t0);
  }
  const m = median(times);
  const through = blocks.length === 1 ? '' : ` through ${blocks.length} layers`;
  console.log(`forward: T=${T}, hidden ${v.hidden}${through}: first ${first.toFixed(2)} ms, median ${m.toFixed(2)} ms of ${iters} (${(T / m * 1000).toFixed(1)} tokens/s)`);
  const y = values(out);
  let sum = 0, abs = 0;
  for (const value of y) {
    sum += value;
    abs += Math.abs(value);
  }
  console.log(`checksum: fnv1a32 0x${fnv1a32(bytesOf(out)).toString(16).padStart(8, '0')}, sum ${sum.toPrecision(8)}, mean |out| ${(abs / y.length).toPrecision(6)}`);
  console.log(`RSS after forward: ${formatBytes(process.memoryUsage().rss)}`);
  if (v.out) fs.writeFileSync(v.out, bytesOf(out));
  for (const b of blocks) b.dispose();

  if (v.verify) {
    const tolerance = dtype === 'f32' && v.hidden === 'f32' ? F32_TOLERANCE : BF16_TOLERANCE;
    const err = verifyAgainstScalar(args, out, y);
    const ok = err <= tolerance;
    const note = cpu.kernel === 'scalar' ? ' (the active kernels are the scalar ones too: this checks determinism only)' : '';
    console.log(`verify: scalar kernels (MOE_CPU_ISA=scalar, child process): max|out - ref| / max|ref| = ${err.toExponential(2)}, tolerance ${tolerance}: ${ok ? 'ok' : 'FAILED'}${note}`);
    if (!ok) process.exitCode = 1;
  }
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

/** RSS a -> b (peak c, VmHWM): the memory line of a load. */
function memoryLine(rss0: number): string {
  return `RSS ${formatBytes(rss0)} -> ${formatBytes(process.memoryUsage().rss)} (peak ${formatBytes(peakRss())})`;
}

async function loadOne(ckpt: Checkpoint, layer: number, dtype: LoadWeightDtype | undefined, threads: number | undefined,
  rss0: number, t0: number, shape: string, kernel: string, threadCount: number): Promise<MoeBlock[]> {
  const info = ckpt.layerInfo(layer);
  console.log(`moe-cpu run: ${ckpt.dir}, layer ${layer} (${shape})`);
  console.log(`cpu: ${cpuInfo().arch}, kernel ${kernel}, threads ${threadCount}`);
  const block = await ckpt.loadMoeLayer(layer, { weightDtype: dtype, threads });
  const loadSeconds = (performance.now() - t0) / 1000;
  console.log(`load: ${loadSeconds.toFixed(2)} s (${formatBytes(info.diskBytes)} read, ${info.weightFormat.toUpperCase()} -> ${block.weightDtype}), ` +
    `layer holds ${formatBytes(block.bytes)}; ${memoryLine(rss0)}`);
  return [block];
}

async function loadAll(ckpt: Checkpoint, dtype: LoadWeightDtype | undefined, threads: number | undefined,
  rss0: number, t0: number, shape: string, kernel: string, threadCount: number): Promise<MoeBlock[]> {
  const layers = ckpt.moeLayers;
  console.log(`moe-cpu run: ${ckpt.dir}, all ${layers.length} MoE layers ${formatLayers(layers)} (${shape})`);
  console.log(`cpu: ${cpuInfo().arch}, kernel ${kernel}, threads ${threadCount}`);
  const estimate = ckpt.estimate({ weightDtype: dtype });
  const disk = layers.reduce((a, n) => a + ckpt.layerInfo(n).diskBytes, 0);
  const stored = [...new Set(layers.map((n) => ckpt.layerInfo(n).weightFormat.toUpperCase()))].join('/');
  const as = [...new Set(estimate.layers.map((l) => l.weightDtype))].join('/');
  console.log(`estimate: ${formatBytes(estimate.bytes)} packed + ${formatBytes(estimate.stagingBytes)} staging = ${formatBytes(estimate.peakBytes)} at peak; ` +
    `${formatBytes(estimate.available)} available (${estimate.availableSource})`);
  const progress = new Progress(layers.length);
  const blocks = await ckpt.loadMoeLayers({
    weightDtype: dtype, threads,
    onProgress: (p) => progress.step(`layer ${p.layer} (${p.index + 1}/${p.count}), ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}, ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s, RSS ${formatBytes(process.memoryUsage().rss)}`),
  });
  progress.end();
  const loadSeconds = (performance.now() - t0) / 1000;
  const held = blocks.reduce((a, b) => a + b.bytes, 0);
  const rss = process.memoryUsage().rss;
  console.log(`load: ${blocks.length} layers in ${loadSeconds.toFixed(2)} s (${formatBytes(disk)} read, ${stored} -> ${as}, ` +
    `${(disk / 1e9 / loadSeconds).toFixed(2)} GB/s), layers hold ${formatBytes(held)} (sum of block.bytes; estimate ${formatBytes(estimate.bytes)}); ` +
    `${memoryLine(rss0)}; RSS / held = ${(rss / held).toFixed(3)}`);
  return blocks;
}

/** Runs the same command with the scalar kernels in a child process; returns the relative error. */
function verifyAgainstScalar(args: string[], out: WeightArray, y: Float32Array): number {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-verify-')), 'out.bin');
  try {
    const childArgs = args.filter((a) => a !== '--verify').concat(['--iters', '1', '--out', file]);
    const r = spawnSync(process.execPath, [path.join(__dirname, '..', 'cli.js'), 'run', ...childArgs], {
      env: { ...process.env, MOE_CPU_ISA: 'scalar' }, encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`verify: the scalar run failed (exit ${r.status}): ${r.stderr.trim()}`);
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
