// `moe-cpu bench`: times one MoE layer of a preset shape with random weights.
import { parseArgs } from 'node:util';

import { cpuInfo } from '../cpu';
import { MoeLayer } from '../layer';
import { PRESETS, type Preset } from '../presets';
import { selectExperts } from '../routing';

export const BENCH_USAGE = `moe-cpu bench [--preset NAME] [--dtype bf16|f32] [--tokens 1,64] [--threads N] [--iters N]
  presets: ${PRESETS.map((p) => p.name).join(', ')}`;

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

async function runBench(preset: Preset, dtype: 'f32' | 'bf16', tokenCounts: number[], threads: number | undefined, iters: number) {
  const { numExperts: E, hiddenSize: H, intermediateSize: I, topK: K } = preset;
  const bf16 = dtype === 'bf16';
  const info = cpuInfo();
  console.log(`moe-cpu bench: ${preset.name} (E=${E} H=${H} I=${I} K=${K}, ${preset.activation}, ` +
    `${preset.isW13Interleaved ? 'interleaved' : 'halves'} W13), ${dtype} weights`);
  console.log(`cpu: ${info.arch} [${info.features.join(' ')}], kernel ${info.kernel}, threads ${threads ?? info.threads}`);
  process.stdout.write('making random weights… ');
  let t = performance.now();
  const w13 = weights(E * 2 * I * H, 1, bf16), w2 = weights(E * H * I, 2, bf16);
  const w13Bias = preset.biases ? weights(E * 2 * I, 3, bf16) : undefined;
  const w2Bias = preset.biases ? weights(E * H, 4, bf16) : undefined;
  console.log(`${((performance.now() - t) / 1000).toFixed(1)} s`);
  process.stdout.write('packing the layer… ');
  t = performance.now();
  const layer = new MoeLayer({
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: preset.activation,
    isW13Interleaved: preset.isW13Interleaved, weightDtype: dtype, w13, w2, w13Bias, w2Bias,
    routing: preset.routing, threads,
  });
  console.log(`${((performance.now() - t) / 1000).toFixed(2)} s, layer holds ${(layer.bytes / 1e9).toFixed(2)} GB`);

  const rows: string[][] = [['tokens', 'median ms', 'tokens/s', 'weights GB/s', 'GFLOP/s']];
  for (const T of tokenCounts) {
    const hidden = new Float32Array(T * H).map((_, i) => Math.sin(i * 0.37));
    const logits = new Float32Array(T * E).map((_, i) => Math.sin(i * 1.618) * 3);
    process.stdout.write(`T=${T}: `);
    layer.forwardSync(hidden, { logits }); // warm-up: page in, wake the pool
    const ms: number[] = [];
    for (let i = 0; i < iters; i++) {
      const t0 = performance.now();
      await layer.forward(hidden, { logits });
      ms.push(performance.now() - t0);
      process.stdout.write('▮');
    }
    console.log();
    // Every selected expert's W13 and W2 are read once per call.
    const { ids } = selectExperts(logits, { tokens: T, numExperts: E, topK: K, routing: preset.routing });
    const touched = new Set(ids).size;
    const m = median(ms);
    const bytes = touched * 3 * I * H * (bf16 ? 2 : 4);
    const flops = 2 * T * K * 3 * I * H;
    rows.push([String(T), m.toFixed(2), (T / m * 1000).toFixed(1), (bytes / m / 1e6).toFixed(2), (flops / m / 1e6).toFixed(2)]);
  }
  layer.dispose();
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) console.log(r.map((v, c) => v.padStart(widths[c])).join('  '));
  console.log(`(median of ${iters} runs each)`);
}

export async function bench(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: 'string', default: 'gpt-oss-20b' },
      dtype: { type: 'string', default: 'bf16' },
      tokens: { type: 'string', default: '1,64' },
      threads: { type: 'string' },
      iters: { type: 'string', default: '5' },
    },
  });
  const preset = PRESETS.find((p) => p.name === values.preset);
  if (!preset) throw new RangeError(`--preset: unknown preset '${values.preset}'\n${BENCH_USAGE}`);
  if (values.dtype !== 'f32' && values.dtype !== 'bf16') throw new RangeError(`--dtype: expected f32 or bf16, got '${values.dtype}'`);
  const tokens = values.tokens.split(',').map(Number);
  if (tokens.some((n) => !Number.isInteger(n) || n <= 0)) throw new RangeError(`--tokens: expected positive integers, got '${values.tokens}'`);
  await runBench(preset, values.dtype, tokens, values.threads === undefined ? undefined : Number(values.threads), Number(values.iters));
}
