// `moe-cpu bench`: a short timing of one MoE layer of a preset shape with random weights, next
// to a quick measure of this machine's read bandwidth (the bound of decode). The full
// benchmark is the native build/moe_bench; the comparison with peers is `npm run bench:peers`.
import { parseArgs } from 'node:util';

import { cpuInfo } from '../cpu';
import { MoeLayer } from '../layer';
import { PRESETS, type Preset } from '../presets';
import { selectExperts } from '../routing';
import { Progress } from './progress';
import { measureReadBandwidth } from './read-bandwidth';

export const BENCH_USAGE = `moe-cpu bench [--preset NAME] [--dtype bf16|f32] [--tokens 1,4,16,64,256] [--threads N] [--iters N]
  presets: ${PRESETS.map((p) => p.name).join(', ')}`;

// Token counts SPEC.md calls decode: every selected expert's weights are read once per call,
// so the time is bound by memory bandwidth.
const DECODE_MAX_TOKENS = 4;
// Timed calls per token count when --iters does not say: as many as fit the budget judging by
// the warm-up, odd (the median is a sample), within these bounds.
const BUDGET_MS = 2000;
const MIN_ITERS = 3;
const MAX_ITERS = 21;

// Random weights of a realistic magnitude (|w| in [2^-8, 2^-4)), made straight as bit
// patterns. Only the first block is random; the rest repeats it (copyWithin runs at memcpy
// speed), which is all a timing needs: the memory read per call is the same.
const RANDOM_WORDS = (1 << 20) + 7; // an odd length, so repeats do not line up with rows

function randomBits(words: Uint32Array, seed: number, bf16: boolean): void {
  let s = seed >>> 0 || 1;
  const n = Math.min(words.length, RANDOM_WORDS);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    if (bf16) {
      // Two bf16 values per word: sign | exponent 119..122 | 7 mantissa bits.
      const lo = (s & 0x8000) | ((119 + ((s >>> 7) & 3)) << 7) | (s & 0x7f);
      const hi = ((s >>> 1) & 0x8000) | ((119 + ((s >>> 23) & 3)) << 7) | ((s >>> 24) & 0x7f);
      words[i] = (lo | (hi << 16)) >>> 0;
    } else {
      words[i] = ((s & 0x80000000) | ((119 + (s & 3)) << 23) | ((s >>> 2) & 0x7fffff)) >>> 0;
    }
  }
  for (let filled = n; filled < words.length; filled *= 2) words.copyWithin(filled, 0, Math.min(filled, words.length - filled));
}

function weights(length: number, seed: number, bf16: boolean): Float32Array | Uint16Array {
  const array = bf16 ? new Uint16Array(length + (length & 1)).subarray(0, length) : new Float32Array(length);
  randomBits(new Uint32Array(array.buffer, 0, Math.ceil(array.byteLength / 4)), seed, bf16);
  return array;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const seconds = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

interface Options {
  preset: Preset;
  dtype: 'f32' | 'bf16';
  tokens: number[];
  threads: number;
  iters: number; // 0: by the time budget
}

async function runBench({ preset, dtype, tokens, threads, iters }: Options): Promise<void> {
  const { numExperts: E, hiddenSize: H, intermediateSize: I, topK: K } = preset;
  const bf16 = dtype === 'bf16';
  const info = cpuInfo();
  console.log(`moe-cpu bench: ${preset.name} (E=${E} H=${H} I=${I} K=${K}, ${preset.activation}, ` +
    `${preset.isW13Interleaved ? 'interleaved' : 'halves'} W13), ${dtype} weights, f32 activations`);
  console.log(`cpu: ${info.arch} [${info.features.join(' ')}], kernel ${info.kernel}, ${threads} thread${threads === 1 ? '' : 's'}`);

  const progress = new Progress(3 + tokens.length);
  let t = performance.now();
  progress.update('making random weights');
  const w13 = weights(E * 2 * I * H, 1, bf16), w2 = weights(E * H * I, 2, bf16);
  const w13Bias = preset.biases ? weights(E * 2 * I, 3, bf16) : undefined;
  const w2Bias = preset.biases ? weights(E * H, 4, bf16) : undefined;
  progress.step(`random weights made (${seconds(t)})`);

  t = performance.now();
  progress.update('packing the layer');
  const layer = new MoeLayer({
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: preset.activation,
    isW13Interleaved: preset.isW13Interleaved, weightDtype: dtype, w13, w2, w13Bias, w2Bias,
    routing: preset.routing, threads,
  });
  const packed = `layer packed in ${seconds(t)}, holds ${(layer.bytes / 1e9).toFixed(2)} GB`;
  progress.step(packed);

  progress.update('measuring read bandwidth');
  const bandwidth = await measureReadBandwidth(threads);
  progress.step(`read bandwidth ${bandwidth.toFixed(1)} GB/s`);

  const rows: string[][] = [['tokens', 'calls', 'median ms', 'tokens/s', 'experts', 'weights GB/s', 'GFLOP/s', '% read BW']];
  try {
    for (const T of tokens) {
      const hidden = new Float32Array(T * H).map((_, i) => Math.sin(i * 0.37));
      const logits = new Float32Array(T * E).map((_, i) => Math.sin(i * 1.618) * 3);
      progress.update(`T=${T}: warm-up`);
      const w0 = performance.now();
      await layer.forward(hidden, { logits }); // warm-up: pages in, wakes the pool
      const warm = performance.now() - w0;
      const calls = (iters || Math.min(MAX_ITERS, Math.max(MIN_ITERS, Math.floor(BUDGET_MS / warm)))) | 1;
      const ms: number[] = [];
      for (let i = 0; i < calls; i++) {
        progress.update(`T=${T}: call ${i + 1}/${calls}`);
        const t0 = performance.now();
        await layer.forward(hidden, { logits });
        ms.push(performance.now() - t0);
      }
      // Every selected expert's W13 and W2 are read once per call.
      const { ids } = selectExperts(logits, { tokens: T, numExperts: E, topK: K, routing: preset.routing });
      const touched = new Set(ids).size;
      const m = median(ms);
      const gbps = (touched * 3 * I * H * (bf16 ? 2 : 4)) / m / 1e6;
      const gflops = (2 * T * K * 3 * I * H) / m / 1e6;
      rows.push([String(T), String(calls), m.toFixed(2), ((T / m) * 1000).toFixed(1), String(touched), gbps.toFixed(2),
        gflops.toFixed(1), T <= DECODE_MAX_TOKENS ? ((100 * gbps) / bandwidth).toFixed(1) : '-']);
      progress.step(`T=${T}: ${m.toFixed(2)} ms`);
    }
  } finally {
    layer.dispose();
    progress.end();
  }
  console.log();
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) console.log(r.map((v, c) => v.padStart(widths[c])).join('  '));
  console.log(`\nmedian of the calls after one warm-up; weights GB/s = distinct experts selected × 3·I·H × ` +
    `${bf16 ? 2 : 4} bytes ÷ time; GFLOP/s = 2·T·K·3·I·H ÷ time.`);
  console.log(`% read BW (decode, T ≤ ${DECODE_MAX_TOKENS}): of ${bandwidth.toFixed(1)} GB/s read by ${threads} ` +
    `thread${threads === 1 ? '' : 's'} from JavaScript (4 KiB pages; the packed weights sit in 2 MiB pages, which ` +
    'can read faster: build/moe_bench measures both limits, npm run bench:peers compares with ONNX Runtime).');
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
    },
  });
  const preset = PRESETS.find((p) => p.name === values.preset);
  if (!preset) throw new RangeError(`--preset: unknown preset '${values.preset}'\n${BENCH_USAGE}`);
  if (values.dtype !== 'f32' && values.dtype !== 'bf16') throw new RangeError(`--dtype: expected f32 or bf16, got '${values.dtype}'`);
  const tokens = values.tokens.split(',').map(Number);
  if (tokens.some((n) => !Number.isInteger(n) || n <= 0)) throw new RangeError(`--tokens: expected positive integers, got '${values.tokens}'`);
  const positive = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`--${flag}: expected a positive integer, got '${v}'`);
    return n;
  };
  const threads = positive('threads', values.threads) ?? cpuInfo().threads;
  await runBench({ preset, dtype: values.dtype, tokens, threads, iters: positive('iters', values.iters) ?? 0 });
}
