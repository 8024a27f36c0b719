// `moe-cpu bench`: a short timing of one MoE layer of a preset shape with random weights, next
// to a quick measure of this machine's read bandwidth (the bound of decode). A checkout of the
// repository has more (the native build/moe_bench, the peers of bench/); the footer names them
// only where they exist, since an installed package has neither.
//
// Cold weights by default (the way the project quotes decode): before every call, warm-ups
// included, new random logits are routed with the preset's routing (a different set of experts
// each call) and a buffer of max(64 MiB, 4 x L3) is read and written, then half of it read
// again (so no dirty line is written back inside the timed call), neither timed. `--warm`: the
// same route every call, no sweep.
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

import { packedMatrixBytes } from '../checkpoint/formats';
import { cpuInfo } from '../cpu';
import { codedError, ERR_OUT_OF_MEMORY } from '../errors';
import { MoeLayer, type MoeLayerOptions } from '../layer';
import { PRESETS, type Preset } from '../presets';
import { selectExperts } from '../routing';
import { listOf, positiveInteger, positiveIntegerList, stringOption, UsageError, type ParsedArgs } from './args';
import type { Command, CommandOutput, CommandResult } from './command';
import { formatBytes } from './inspect';
import { activationBytes, describeNeeds, memoryNeeds, needsReport, type MemoryNeeds } from './memory-needs';
import { Progress } from './progress';
import { BANDWIDTH_PROBE_BYTES, measureReadBandwidth } from './read-bandwidth';

const DTYPES = ['f32', 'bf16', 'f16', 'mxfp4', 'int8'] as const;
type BenchDtype = (typeof DTYPES)[number];

// A toy shape to check that the command works (tests, a new machine): its timings mean nothing.
const TINY_PRESET: Preset = {
  name: 'tiny', hiddenSize: 64, intermediateSize: 64, numExperts: 8, topK: 2, activation: 'swigluoai',
  isW13Interleaved: true, biases: true, routing: { mode: 'topk-softmax' },
};
const BENCH_PRESETS: readonly Preset[] = [...PRESETS, TINY_PRESET];

const BENCH_USAGE = `moe-cpu bench [--preset NAME] [--dtype bf16|f32|f16|mxfp4|int8[,...]] [--tokens 1,4,16,64,256]
          [--threads N] [--iters N] [--warm] [--sweep-mb N] [--json]
  times one MoE layer of a model's shape with random weights, T tokens at a time, and measures
  this machine's read bandwidth (the bound of decode) to judge the decode rows by. Before it
  allocates it prints (on stderr) the memory it needs and stops if that is not available
  --preset NAME   the layer's shape (default gpt-oss-20b): ${PRESETS.map((p) => p.name).join(', ')},
                  or tiny (E=8 H=I=64 K=2: checks that the command runs; its times mean nothing)
  --dtype X,...   weight formats, one layer each (default bf16)
  --tokens T,...  token counts (default 1,4,16,64,256)
  --threads N     native threads (default: the physical cores)
  --iters N       timed calls per token count (default: as many as fit 2 s, 3 to 21)
  --warm          the same route every call and no cache sweep (default: cold weights, fresh
                  routes and a cache sweep before every call, not timed)
  --sweep-mb N    the sweep's size in MiB (default max(64, 4 x L3))`;

// Bytes per weight as the layer holds it (mxfp4 and int8: codes and one scale per 32).
const PACKED_BYTES: Record<BenchDtype, number> = { f32: 4, bf16: 2, f16: 2, mxfp4: 4.25 / 8, int8: 8.5 / 8 };

// Token counts docs/spec.md calls decode: every selected expert's weights are read once per call,
// so the time is bound by memory bandwidth.
const DECODE_MAX_TOKENS = 4;
// Timed calls per token count when --iters does not say: as many as fit the budget judging by
// the warm-up, odd (the median is a sample), within these bounds.
const BUDGET_MS = 2000;
const MIN_ITERS = 3;
const MAX_ITERS = 21;
// Cold calls: warm-ups before the timed ones (each with its routes and sweep).
const COLD_WARMUPS = 2;
const MIB = 1 << 20;
const MIN_SWEEP_BYTES = 64 * MIB;
const DEFAULT_L3_BYTES = 32 * MIB;

// Random weights of a realistic magnitude (|w| in [2^-8, 2^-4)), made straight as bit
// patterns. Only the first block is random; the rest repeats it (copyWithin runs at memcpy
// speed), which is all a timing needs: the memory read per call is the same.
const RANDOM_WORDS = (1 << 20) + 7; // an odd length, so repeats do not line up with rows

type Bits = 'f32' | 'bf16' | 'f16';

function randomBits(words: Uint32Array, seed: number, bits: Bits): void {
  let s = seed >>> 0 || 1;
  const n = Math.min(words.length, RANDOM_WORDS);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    if (bits === 'bf16') {
      // Two bf16 values per word: sign | exponent 119..122 | 7 mantissa bits.
      const lo = (s & 0x8000) | ((119 + ((s >>> 7) & 3)) << 7) | (s & 0x7f);
      const hi = ((s >>> 1) & 0x8000) | ((119 + ((s >>> 23) & 3)) << 7) | ((s >>> 24) & 0x7f);
      words[i] = (lo | (hi << 16)) >>> 0;
    } else if (bits === 'f16') {
      // Two f16 values per word: sign | exponent 7..10 (2^-8 .. 2^-5) | 10 mantissa bits.
      const lo = (s & 0x8000) | ((7 + ((s >>> 10) & 3)) << 10) | (s & 0x3ff);
      const hi = ((s << 4) & 0x8000) | ((7 + ((s >>> 12) & 3)) << 10) | ((s >>> 16) & 0x3ff);
      words[i] = (lo | (hi << 16)) >>> 0;
    } else {
      words[i] = ((s & 0x80000000) | ((119 + (s & 3)) << 23) | ((s >>> 2) & 0x7fffff)) >>> 0;
    }
  }
  for (let filled = n; filled < words.length; filled *= 2) words.copyWithin(filled, 0, Math.min(filled, words.length - filled));
}

function weights(length: number, seed: number, bits: Bits): Float32Array | Uint16Array {
  const array = bits === 'f32' ? new Float32Array(length) : new Uint16Array(length + (length & 1)).subarray(0, length);
  randomBits(new Uint32Array(array.buffer, 0, Math.ceil(array.byteLength / 4)), seed, bits);
  return array;
}

/**
 * Expert weights given per expert, every expert the same array: the caller side holds one
 * expert's worth (the layer packs each expert into its own panels, so what a call reads is
 * unchanged), and a layer past the 2^32 elements of a Node 20 typed array (DeepSeek-V3's W13)
 * can be built at all.
 */
function perExpertWeights(experts: number, lengthPerExpert: number, seed: number, bits: Bits): Float32Array[] | Uint16Array[] {
  return Array<Float32Array | Uint16Array>(experts).fill(weights(lengthPerExpert, seed, bits)) as Float32Array[] | Uint16Array[];
}

// The caller's arrays a layer of each format is built from: its own values for f32, bf16 and
// f16 (f16 bit patterns); bf16 values, quantized while packing, for mxfp4 and int8.
const SOURCE_BITS: Record<BenchDtype, Bits> = { f32: 'f32', bf16: 'bf16', f16: 'f16', mxfp4: 'bf16', int8: 'bf16' };

// The L3 one core sits behind (Linux sysfs), else 32 MiB.
function l3Bytes(): { bytes: number; source: string } {
  for (let i = 0; i < 16; i++) {
    const dir = `/sys/devices/system/cpu/cpu0/cache/index${i}/`;
    try {
      if (readFileSync(dir + 'level', 'utf8').trim() !== '3') continue;
      const m = /^(\d+)([KMG]?)/.exec(readFileSync(dir + 'size', 'utf8').trim());
      if (m) return { bytes: Number(m[1]) * ({ '': 1, K: 1 << 10, M: MIB, G: 1 << 30 } as Record<string, number>)[m[2]], source: 'sysfs' };
    } catch {
      break;
    }
  }
  return { bytes: DEFAULT_L3_BYTES, source: 'assumed' };
}

/**
 * Empties the caches between calls, on the main thread (the layer's threads are parked then):
 * every 64-byte line of the buffer read and written, then its first half read again, read
 * only, so the lines dirtied are written back now and not inside the timed call.
 */
class CacheSweep {
  readonly bytes: number;
  readonly #words: Int32Array;
  sink = 0;

  constructor(bytes: number) {
    this.bytes = Math.ceil(bytes / MIB) * MIB;
    this.#words = new Int32Array(this.bytes / 4).fill(1);
  }

  run(): void {
    const w = this.#words;
    let s = 0;
    for (let i = 0; i < w.length; i += 16) {
      const v = w[i] + w[i + 8];
      s += v;
      w[i] = v & 0xffff;
    }
    for (let i = 0, half = w.length >>> 1; i < half; i += 16) s += w[i];
    this.sink = s;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const seconds = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

interface Options {
  preset: Preset;
  dtypes: BenchDtype[];
  tokens: number[];
  threads: number;
  iters: number; // 0: by the time budget
  warm: boolean;
  sweepBytes: number; // 0: max(64 MiB, 4 x L3)
}

/** Bytes the layer holds: packed W13 and W2 (checkpoint/formats' panel arithmetic) and f32 biases. */
function layerBytes(p: Preset, dtype: BenchDtype): number {
  const { numExperts: E, hiddenSize: H, intermediateSize: I } = p;
  return E * (2 * packedMatrixBytes(dtype, I, H) + packedMatrixBytes(dtype, H, I)) + (p.biases ? E * (2 * I + H) * 4 : 0);
}

/**
 * Bytes of the arrays a layer is packed from (alive beside the packed copy while it packs): one
 * expert's W13 and W2, given for every expert (perExpertWeights), and the biases.
 */
function sourceBytes(p: Preset, dtype: BenchDtype): number {
  const { numExperts: E, hiddenSize: H, intermediateSize: I } = p;
  return (3 * I * H + (p.biases ? E * (2 * I + H) : 0)) * (SOURCE_BITS[dtype] === 'f32' ? 4 : 2);
}

/**
 * The most the run holds at once, counted as if nothing were freed in between (the probe's
 * memory and the source arrays go at V8's next garbage collection, not at once).
 */
function benchNeeds(o: Options, sweepBytes: number): MemoryNeeds {
  const p = o.preset;
  const step = (d: BenchDtype) => layerBytes(p, d) + sourceBytes(p, d);
  const largest = o.dtypes.reduce((a, d) => (step(d) > step(a) ? d : a));
  const tokens = Math.max(...o.tokens);
  return memoryNeeds([
    { key: 'readBandwidthProbe', what: 'read-bandwidth probe', bytes: BANDWIDTH_PROBE_BYTES },
    { key: 'cacheSweep', what: 'cache sweep', bytes: sweepBytes },
    { key: 'packedWeights', what: `packed weights (${largest})`, bytes: layerBytes(p, largest) },
    { key: 'sourceArrays', what: 'source arrays while packing', bytes: sourceBytes(p, largest) },
    { key: 'activations', what: `activations (T=${tokens})`, bytes: activationBytes({
      tokens, hiddenSize: p.hiddenSize, intermediateSize: p.intermediateSize, numExperts: p.numExperts, topK: p.topK,
      sharedIntermediateSize: 0, hiddenBytes: 4, outputs: 1,
    }) },
  ]);
}

interface TokenRow {
  tokens: number;
  calls: number;
  medianMs: number;
  tokensPerSecond: number;
  /** Mean distinct experts a call selected. */
  experts: number;
  /** Median over the calls of that call's experts' packed bytes ÷ its time. */
  weightsGBps: number;
  gflops: number;
  /** weightsGBps ÷ the read bandwidth measured (decode rows only, else null). */
  readBandwidthFraction: number | null;
}

interface DtypeResult {
  dtype: BenchDtype;
  bitsPerWeight: number;
  kernels: { decode: string; prefill: string } | null;
  packSeconds: number;
  layerBytes: number;
  rows: TokenRow[];
}

// What a checkout of the repository has beyond the installed package, named in the footer
// only when present.
const PACKAGE_ROOT = path.join(__dirname, '..', '..');
const MOE_BENCH = path.join(PACKAGE_ROOT, 'build', 'moe_bench');
const PEERS = path.join(PACKAGE_ROOT, 'bench', 'peers.js');

async function runBench(o: Options, out: CommandOutput): Promise<CommandResult> {
  const { preset, tokens, threads, iters, warm } = o;
  const { numExperts: E, hiddenSize: H, intermediateSize: I, topK: K } = preset;
  const info = cpuInfo();
  const l3 = l3Bytes();
  const sweepBytes = warm ? 0 : Math.ceil((o.sweepBytes || Math.max(MIN_SWEEP_BYTES, 4 * l3.bytes)) / MIB) * MIB;
  const needs = benchNeeds(o, sweepBytes);
  const progress = new Progress(1 + o.dtypes.length * (1 + tokens.length));
  progress.note(`memory: ${describeNeeds(needs)}`);
  if (!needs.fits) {
    const fit = DTYPES.filter((d) => benchNeeds({ ...o, dtypes: [d] }, sweepBytes).fits);
    throw codedError(new Error(`not enough memory: the run needs ~${formatBytes(needs.bytes)} but ${formatBytes(needs.available)} ` +
      `is available (${needs.availableSource}); nothing was allocated. ` +
      (fit.length ? `It fits with --dtype ${fit.join(' or ')}` : 'No --dtype fits (--warm drops the cache sweep)')), ERR_OUT_OF_MEMORY);
  }
  const sweep = warm ? null : new CacheSweep(sweepBytes);
  out.print(`moe-cpu bench: ${preset.name} (E=${E} H=${H} I=${I} K=${K}, ${preset.activation}, ` +
    `${preset.isW13Interleaved ? 'interleaved' : 'halves'} W13), ${o.dtypes.join(', ')} weights, f32 activations`);
  out.print(`cpu: ${info.arch} [${info.features.join(' ')}], kernel ${info.kernel}, ${threads} thread${threads === 1 ? '' : 's'}`);
  out.print(sweep
    ? `cold weights: fresh routes + ${sweep.bytes / MIB} MB cache sweep before each call (main thread; L3 ` +
      `${l3.bytes / MIB} MiB, ${l3.source}; not timed)`
    : 'warm weights (--warm): the same route every call, no cache sweep');

  const results: DtypeResult[] = [];
  const rng = normalRandom(7);
  let bandwidth = 0;
  try {
    progress.update('measuring read bandwidth');
    bandwidth = await measureReadBandwidth(threads);
    progress.step(`read bandwidth ${bandwidth.toFixed(1)} GB/s`);
    for (const dtype of o.dtypes) {
      progress.update(`${dtype}: making random weights`);
      const bits = SOURCE_BITS[dtype];
      // Biases in the same dtype as the weights' arrays (the layer holds them in f32).
      const w13 = perExpertWeights(E, 2 * I * H, 1, bits), w2 = perExpertWeights(E, H * I, 2, bits);
      const w13Bias = preset.biases ? weights(E * 2 * I, 3, bits) : undefined;
      const w2Bias = preset.biases ? weights(E * H, 4, bits) : undefined;
      const t = performance.now();
      // Packed off the main thread, so the progress line keeps moving during a long packing.
      const layer = await progress.during(MoeLayer.create({
        numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: preset.activation,
        isW13Interleaved: preset.isW13Interleaved, weightDtype: dtype, w13, w2, w13Bias, w2Bias,
        routing: preset.routing, threads,
        // The cast: SOURCE_BITS gives each dtype arrays it takes, a pairing the compiler cannot follow.
      } as MoeLayerOptions), () => `${dtype}: packing the layer, ${seconds(t)}`);
      const packSeconds = (performance.now() - t) / 1000;
      progress.step(`${dtype}: layer packed in ${packSeconds.toFixed(1)} s, holds ${formatBytes(layer.bytes)}`);
      const k = layer.kernels as { decode?: string; prefill?: string } | undefined;
      const result: DtypeResult = {
        dtype, bitsPerWeight: PACKED_BYTES[dtype] * 8, kernels: k?.decode && k.prefill ? { decode: k.decode, prefill: k.prefill } : null,
        packSeconds, layerBytes: layer.bytes, rows: [],
      };
      const expertBytes = 3 * I * H * PACKED_BYTES[dtype];
      try {
        for (const T of tokens) {
          const hidden = new Float32Array(T * H).map((_, i) => Math.sin(i * 0.37));
          const logits = new Float32Array(T * E);
          const route = () => {
            for (let i = 0; i < logits.length; i++) logits[i] = rng(); // continuous: no ties
            const r = selectExperts(logits, { tokens: T, numExperts: E, topK: K, routing: preset.routing });
            return { route: r, experts: new Set(r.ids).size };
          };
          let current = route();
          const call = async () => {
            if (sweep) {
              current = route();
              sweep.run();
            }
            const t0 = performance.now();
            await layer.forward(hidden, current.route);
            return performance.now() - t0;
          };
          progress.update(`${dtype} T=${T}: warm-up`);
          let warmMs = 0;
          for (let i = 0; i < (sweep ? COLD_WARMUPS : 1); i++) warmMs = await call(); // pages in, wakes the pool
          const calls = (iters || Math.min(MAX_ITERS, Math.max(MIN_ITERS, Math.floor(BUDGET_MS / warmMs)))) | 1;
          const ms: number[] = [], gbps: number[] = [], experts: number[] = [];
          for (let i = 0; i < calls; i++) {
            progress.update(`${dtype} T=${T}: call ${i + 1}/${calls}`);
            const m = await call();
            ms.push(m);
            experts.push(current.experts);
            gbps.push((current.experts * expertBytes) / m / 1e6); // this call's experts, read once each
          }
          const m = median(ms), g = median(gbps);
          result.rows.push({
            tokens: T, calls, medianMs: m, tokensPerSecond: (T / m) * 1000, experts: experts.reduce((a, b) => a + b, 0) / experts.length,
            weightsGBps: g, gflops: (2 * T * K * 3 * I * H) / m / 1e6, readBandwidthFraction: T <= DECODE_MAX_TOKENS ? g / bandwidth : null,
          });
          progress.step(`${dtype} T=${T}: ${m.toFixed(2)} ms`);
        }
      } finally {
        layer.dispose();
      }
      results.push(result);
    }
  } finally {
    progress.end();
  }
  for (const r of results) {
    const kernels = r.kernels ? `${r.kernels.decode} / ${r.kernels.prefill}` : 'not reported';
    out.print(`\n${r.dtype} weights (${r.bitsPerWeight} bits as packed), kernels ${kernels}; layer packed in ${r.packSeconds.toFixed(1)} s, holds ${formatBytes(r.layerBytes)}`);
    const rows = [['tokens', 'calls', 'median ms', 'tokens/s', 'experts', 'weights GB/s', 'GFLOP/s', '% read BW'], ...r.rows.map((x) => [
      String(x.tokens), String(x.calls), x.medianMs.toFixed(2), x.tokensPerSecond.toFixed(1), x.experts.toFixed(1), x.weightsGBps.toFixed(2),
      x.gflops.toFixed(1), x.readBandwidthFraction === null ? '-' : (100 * x.readBandwidthFraction).toFixed(1),
    ])];
    const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
    for (const row of rows) out.print(row.map((v, c) => v.padStart(widths[c])).join('  '));
  }
  out.print(`\n${sweep ? 'cold' : 'warm'} weights; median of the timed calls after ${sweep ? COLD_WARMUPS : 1} warm-up` +
    `${sweep ? 's' : ''}; experts = mean distinct experts a call selected; weights GB/s = median over the calls of ` +
    `(that call's experts × 3·I·H × bytes per weight as packed: f32 4, bf16/f16 2, int8 8.5/8, mxfp4 4.25/8) ÷ its ` +
    'time; GFLOP/s = 2·T·K·3·I·H ÷ median time.');
  const more = [
    ...(existsSync(MOE_BENCH) ? ['build/moe_bench measures both limits and runs ggml beside it'] : []),
    ...(existsSync(PEERS) ? ['npm run bench:peers compares with ONNX Runtime'] : []),
  ];
  out.print(`% read BW (decode, T ≤ ${DECODE_MAX_TOKENS}): of ${bandwidth.toFixed(1)} GB/s read by ${threads} ` +
    `thread${threads === 1 ? '' : 's'} from JavaScript (4 KiB pages; the packed weights sit in 2 MiB pages, which ` +
    `can read faster${more.length ? `: ${more.join('; ')}` : ''}).`);
  const report = {
    preset, cpu: { arch: info.arch, features: info.features, kernel: info.kernel }, threads,
    weights: sweep ? 'cold' : 'warm', sweepBytes: sweep ? sweep.bytes : null, l3, readBandwidthGBps: bandwidth,
    memory: needsReport(needs), results,
  };
  return { report, failed: false };
}

// Standard normal samples (Box-Muller over a xorshift), reproducible from `seed`.
function normalRandom(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const uniform = () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

async function bench(parsed: ParsedArgs, out: CommandOutput): Promise<CommandResult> {
  if (parsed.positionals.length > 0) throw new UsageError(`bench: takes no folder or other positional argument, got ${JSON.stringify(parsed.positionals[0])}`);
  const option = (name: string) => stringOption(parsed, name);
  const presetName = option('preset') ?? 'gpt-oss-20b';
  const preset = BENCH_PRESETS.find((p) => p.name === presetName);
  if (!preset) throw new UsageError(`--preset: expected one of ${BENCH_PRESETS.map((p) => p.name).join(', ')}, got ${JSON.stringify(presetName)}`);
  const positive = (name: string) => {
    const v = option(name);
    return v === undefined ? undefined : positiveInteger(name, v);
  };
  return runBench({
    preset,
    dtypes: listOf('dtype', option('dtype') ?? 'bf16', DTYPES),
    tokens: positiveIntegerList('tokens', option('tokens') ?? '1,4,16,64,256'),
    threads: positive('threads') ?? cpuInfo().threads,
    iters: positive('iters') ?? 0,
    warm: parsed.values.warm === true,
    sweepBytes: (positive('sweep-mb') ?? 0) * MIB,
  }, out);
}

export const benchCommand: Command = {
  summary: 'time one MoE layer of a preset shape (gpt-oss, Mixtral, Qwen3, DeepSeek) with random weights',
  usage: BENCH_USAGE,
  options: { preset: 'string', dtype: 'string', tokens: 'string', threads: 'string', iters: 'string', warm: 'boolean', 'sweep-mb': 'string' },
  run: bench,
};
