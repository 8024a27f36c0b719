// `moe-cpu bench`: a short timing of one MoE layer of a preset shape with random weights, next
// to a quick measure of this machine's read bandwidth (the bound of decode). The full
// benchmark is the native build/moe_bench; the comparison with peers is `npm run bench:peers`.
//
// Cold weights by default (the way the project quotes decode): before every call, warm-ups
// included, new random logits are routed with the preset's routing (a different set of experts
// each call) and a buffer of max(64 MiB, 4 x L3) is read and written, then half of it read
// again (so no dirty line is written back inside the timed call), neither timed. `--warm`: the
// same route every call, no sweep.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { cpuInfo } from '../cpu';
import { MoeLayer } from '../layer';
import { PRESETS, type Preset } from '../presets';
import { selectExperts } from '../routing';
import { Progress } from './progress';
import { measureReadBandwidth } from './read-bandwidth';
import { rangeError } from '../errors';

const DTYPES = ['f32', 'bf16', 'f16', 'mxfp4', 'int8'] as const;
type BenchDtype = (typeof DTYPES)[number];

export const BENCH_USAGE = `moe-cpu bench [--preset NAME] [--dtype bf16|f32|f16|mxfp4|int8[,...]] [--tokens 1,4,16,64,256]
          [--threads N] [--iters N] [--warm] [--sweep-mb N]
  presets: ${PRESETS.map((p) => p.name).join(', ')}
  cold weights by default: fresh routes and a cache sweep (--sweep-mb MiB, default max(64, 4 x L3))
  before every call, not timed; --warm: the same route every call and no sweep`;

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

async function runBench(o: Options): Promise<void> {
  const { preset, tokens, threads, iters, warm } = o;
  const { numExperts: E, hiddenSize: H, intermediateSize: I, topK: K } = preset;
  const info = cpuInfo();
  const l3 = l3Bytes();
  const sweep = warm ? null : new CacheSweep(o.sweepBytes || Math.max(MIN_SWEEP_BYTES, 4 * l3.bytes));
  console.log(`moe-cpu bench: ${preset.name} (E=${E} H=${H} I=${I} K=${K}, ${preset.activation}, ` +
    `${preset.isW13Interleaved ? 'interleaved' : 'halves'} W13), ${o.dtypes.join(', ')} weights, f32 activations`);
  console.log(`cpu: ${info.arch} [${info.features.join(' ')}], kernel ${info.kernel}, ${threads} thread${threads === 1 ? '' : 's'}`);
  console.log(sweep
    ? `cold weights: fresh routes + ${sweep.bytes / MIB} MB cache sweep before each call (main thread; L3 ` +
      `${l3.bytes / MIB} MiB, ${l3.source}; not timed)`
    : 'warm weights (--warm): the same route every call, no cache sweep');

  const progress = new Progress(1 + o.dtypes.length * (1 + tokens.length));
  progress.update('measuring read bandwidth');
  const bandwidth = await measureReadBandwidth(threads);
  progress.step(`read bandwidth ${bandwidth.toFixed(1)} GB/s`);

  const tables: { dtype: BenchDtype; kernels: string; packed: string; rows: string[][] }[] = [];
  const rng = normalRandom(7);
  try {
    for (const dtype of o.dtypes) {
      progress.update(`${dtype}: making random weights`);
      const bits = SOURCE_BITS[dtype];
      // Biases in the same dtype as the weights' arrays (the layer holds them in f32).
      const w13 = weights(E * 2 * I * H, 1, bits), w2 = weights(E * H * I, 2, bits);
      const w13Bias = preset.biases ? weights(E * 2 * I, 3, bits) : undefined;
      const w2Bias = preset.biases ? weights(E * H, 4, bits) : undefined;
      const t = performance.now();
      progress.update(`${dtype}: packing the layer`);
      const layer = new MoeLayer({
        numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: preset.activation,
        isW13Interleaved: preset.isW13Interleaved, weightDtype: dtype, w13, w2, w13Bias, w2Bias,
        routing: preset.routing, threads,
      });
      const packed = `packed in ${seconds(t)}, holds ${(layer.bytes / 1e9).toFixed(2)} GB`;
      progress.step(`${dtype}: layer ${packed}`);
      const k = layer.kernels as { decode?: string; prefill?: string } | undefined;
      const kernels = k?.decode ? `${k.decode} / ${k.prefill}` : 'not reported';
      const expertBytes = 3 * I * H * PACKED_BYTES[dtype];
      const rows: string[][] = [['tokens', 'calls', 'median ms', 'tokens/s', 'experts', 'weights GB/s', 'GFLOP/s', '% read BW']];
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
          const meanExperts = experts.reduce((a, b) => a + b, 0) / experts.length;
          const gflops = (2 * T * K * 3 * I * H) / m / 1e6;
          rows.push([String(T), String(calls), m.toFixed(2), ((T / m) * 1000).toFixed(1), meanExperts.toFixed(1), g.toFixed(2),
            gflops.toFixed(1), T <= DECODE_MAX_TOKENS ? ((100 * g) / bandwidth).toFixed(1) : '-']);
          progress.step(`${dtype} T=${T}: ${m.toFixed(2)} ms`);
        }
      } finally {
        layer.dispose();
      }
      tables.push({ dtype, kernels, packed, rows });
    }
  } finally {
    progress.end();
  }
  for (const { dtype, kernels, packed, rows } of tables) {
    console.log(`\n${dtype} weights (${PACKED_BYTES[dtype] * 8} bits as packed), kernels ${kernels}; layer ${packed}`);
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    for (const r of rows) console.log(r.map((v, c) => v.padStart(widths[c])).join('  '));
  }
  console.log(`\n${sweep ? 'cold' : 'warm'} weights; median of the timed calls after ${sweep ? COLD_WARMUPS : 1} warm-up` +
    `${sweep ? 's' : ''}; experts = mean distinct experts a call selected; weights GB/s = median over the calls of ` +
    `(that call's experts × 3·I·H × bytes per weight as packed: f32 4, bf16/f16 2, int8 8.5/8, mxfp4 4.25/8) ÷ its ` +
    'time; GFLOP/s = 2·T·K·3·I·H ÷ median time.');
  console.log(`% read BW (decode, T ≤ ${DECODE_MAX_TOKENS}): of ${bandwidth.toFixed(1)} GB/s read by ${threads} ` +
    `thread${threads === 1 ? '' : 's'} from JavaScript (4 KiB pages; the packed weights sit in 2 MiB pages, which ` +
    'can read faster: build/moe_bench measures both limits and runs ggml beside it, npm run bench:peers compares ' +
    'with ONNX Runtime).');
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

export async function bench(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: 'string', default: 'gpt-oss-20b' },
      dtype: { type: 'string', default: 'bf16' },
      tokens: { type: 'string', default: '1,4,16,64,256' },
      threads: { type: 'string' },
      iters: { type: 'string' },
      warm: { type: 'boolean', default: false },
      'sweep-mb': { type: 'string' },
    },
  });
  const preset = PRESETS.find((p) => p.name === values.preset);
  if (!preset) throw rangeError(`--preset: unknown preset '${values.preset}'\n${BENCH_USAGE}`);
  const dtypes = values.dtype.split(',').filter((d) => d !== '');
  for (const d of dtypes) {
    if (!(DTYPES as readonly string[]).includes(d)) {
      throw rangeError(`--dtype: expected ${DTYPES.join(', ')} (comma-separated), got '${d}'`);
    }
  }
  if (dtypes.length === 0) throw rangeError(`--dtype: expected ${DTYPES.join(', ')}, got '${values.dtype}'`);
  const tokens = values.tokens.split(',').map(Number);
  if (tokens.some((n) => !Number.isInteger(n) || n <= 0)) throw rangeError(`--tokens: expected positive integers, got '${values.tokens}'`);
  const positive = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw rangeError(`--${flag}: expected a positive integer, got '${v}'`);
    return n;
  };
  const threads = positive('threads', values.threads) ?? cpuInfo().threads;
  await runBench({
    preset, dtypes: dtypes as BenchDtype[], tokens, threads, iters: positive('iters', values.iters) ?? 0,
    warm: values.warm, sweepBytes: (positive('sweep-mb', values['sweep-mb']) ?? 0) * MIB,
  });
}
