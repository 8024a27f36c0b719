// Independent reference for the tests, written from docs/spec.md only (no import of the package).
// Plain TypeScript, float64 math. Slow and obvious on purpose: it is the oracle.

export type Layout = 'halves' | 'interleaved';
export type ActivationName = 'swigluoai' | 'silu' | 'gelu' | 'gelu_tanh';
export type RefRouting =
  | { mode: 'topk-softmax' }
  | { mode: 'softmax-topk'; renormalize: boolean }
  | {
      mode: 'sigmoid-grouped';
      numGroups: number;
      topkGroups: number;
      correctionBias?: Float32Array;
      renormalize: boolean;
      routedScalingFactor?: number;
    };

export const SWIGLU_ALPHA_DEFAULT = 1.702;
export const SWIGLU_LIMIT_DEFAULT = 7.0;
const GELU_TANH_SCALE = 0.7978845608028654; // sqrt(2 / pi), as written in docs/spec.md
const GELU_TANH_CUBIC = 0.044715;

// ---------------------------------------------------------------------------------------------
// bf16: the upper 16 bits of an f32, rounded to nearest with ties to even; NaN stays NaN.

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function f32BitsToBf16(bits: number): number {
  const exponentAllOnes = (bits & 0x7f800000) === 0x7f800000;
  const mantissa = bits & 0x007fffff;
  if (exponentAllOnes && mantissa !== 0) {
    // NaN: keep sign and top payload bits, force the quiet bit so truncation cannot make Inf.
    return ((bits >>> 16) | 0x0040) & 0xffff;
  }
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

export function refToBf16Scalar(value: number): number {
  f32Scratch[0] = value;
  return f32BitsToBf16(u32Scratch[0]);
}

export function refFromBf16Scalar(bits: number): number {
  u32Scratch[0] = (bits & 0xffff) << 16;
  return f32Scratch[0];
}

export function refToBf16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = refToBf16Scalar(values[i]);
  return out;
}

export function refFromBf16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = refFromBf16Scalar(bits[i]);
  return out;
}

/** Rounds a number to the nearest bf16 value (via f32 first, as a float kernel would). */
export function roundBf16(value: number): number {
  return refFromBf16Scalar(refToBf16Scalar(value));
}

// ---------------------------------------------------------------------------------------------
// W13 layout. Any W13 tensor or bias is [outer, 2I, inner]; interleaving permutes the 2I axis.

export interface LayoutShape {
  outer: number;
  intermediate: number;
  inner: number;
}

type NumArray = Float32Array | Uint16Array;

function like<A extends NumArray>(src: A): A {
  return new (src.constructor as new (n: number) => A)(src.length);
}

export function refDeinterleave<A extends NumArray>(src: A, s: LayoutShape): A {
  const dst = like(src);
  const rows = 2 * s.intermediate;
  for (let o = 0; o < s.outer; o++) {
    for (let j = 0; j < s.intermediate; j++) {
      for (let c = 0; c < s.inner; c++) {
        const base = o * rows * s.inner;
        dst[base + j * s.inner + c] = src[base + 2 * j * s.inner + c];
        dst[base + (s.intermediate + j) * s.inner + c] = src[base + (2 * j + 1) * s.inner + c];
      }
    }
  }
  return dst;
}

export function refInterleave<A extends NumArray>(src: A, s: LayoutShape): A {
  const dst = like(src);
  const rows = 2 * s.intermediate;
  for (let o = 0; o < s.outer; o++) {
    for (let j = 0; j < s.intermediate; j++) {
      for (let c = 0; c < s.inner; c++) {
        const base = o * rows * s.inner;
        dst[base + 2 * j * s.inner + c] = src[base + j * s.inner + c];
        dst[base + (2 * j + 1) * s.inner + c] = src[base + (s.intermediate + j) * s.inner + c];
      }
    }
  }
  return dst;
}

/** [outer][rows][cols] -> [outer][cols][rows] (used to build transposed weights). */
export function refTranspose<A extends NumArray>(src: A, outer: number, rows: number, cols: number): A {
  const dst = like(src);
  for (let o = 0; o < outer; o++) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        dst[o * rows * cols + c * rows + r] = src[o * rows * cols + r * cols + c];
      }
    }
  }
  return dst;
}

/** Index of gate j and up j inside the 2I axis. */
export function gateIndex(layout: Layout, j: number): number {
  return layout === 'interleaved' ? 2 * j : j;
}
export function upIndex(layout: Layout, j: number, intermediate: number): number {
  return layout === 'interleaved' ? 2 * j + 1 : intermediate + j;
}

// ---------------------------------------------------------------------------------------------
// erf, to ~1e-15: erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)).
// Every term is positive (no cancellation); for |x| >= 6, |1 - |erf(x)|| < 2e-17.

const TWO_OVER_SQRT_PI = 1.1283791670955126;

export function refErf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  const x2 = ax * ax;
  let term = ax;
  let sum = ax;
  for (let n = 0; n < 500; n++) {
    term *= (2 * x2) / (2 * n + 3);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  const value = TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
  return x < 0 ? -value : value;
}

// ---------------------------------------------------------------------------------------------
// Gated activations (SPEC "Gated activations").

export interface ActParams {
  alpha?: number;
  limit?: number;
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

export function refAct(kind: ActivationName, g: number, u: number, p: ActParams = {}): number {
  switch (kind) {
    case 'swigluoai': {
      const alpha = p.alpha ?? SWIGLU_ALPHA_DEFAULT;
      const limit = p.limit ?? SWIGLU_LIMIT_DEFAULT;
      if (Number.isNaN(g) || Number.isNaN(u)) return NaN;
      const gc = Math.min(g, limit);
      const uc = Math.min(Math.max(u, -limit), limit);
      return gc * sigmoid(alpha * gc) * (uc + 1);
    }
    case 'silu':
      return g * sigmoid(g) * u;
    case 'gelu':
      return 0.5 * g * (1 + refErf(g / Math.SQRT2)) * u;
    case 'gelu_tanh':
      return 0.5 * g * (1 + Math.tanh(GELU_TANH_SCALE * (g + GELU_TANH_CUBIC * g * g * g))) * u;
  }
}

/** x: [tokens, 2I] in `layout` -> [tokens, I] (float64). */
export function refGatedActivation(
  kind: ActivationName,
  x: ArrayLike<number>,
  tokens: number,
  intermediate: number,
  layout: Layout,
  p: ActParams = {},
): Float64Array {
  const out = new Float64Array(tokens * intermediate);
  for (let t = 0; t < tokens; t++) {
    const row = t * 2 * intermediate;
    for (let j = 0; j < intermediate; j++) {
      const g = x[row + gateIndex(layout, j)];
      const u = x[row + upIndex(layout, j, intermediate)];
      out[t * intermediate + j] = refAct(kind, g, u, p);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Routing (SPEC "Routing"). Slots by descending score, ties to the lower expert index.

/** Indices of the k largest scores among `candidates` (ascending index order on ties). */
function topIndices(scores: ArrayLike<number>, candidates: number[], k: number): number[] {
  const sorted = [...candidates].sort((a, b) => (scores[b] - scores[a]) || (a - b));
  return sorted.slice(0, k);
}

export interface RefSelection {
  ids: Int32Array;
  weights: Float64Array;
}

export function refSelectExperts(
  logits: ArrayLike<number>,
  tokens: number,
  numExperts: number,
  topK: number,
  routing: RefRouting,
): RefSelection {
  const ids = new Int32Array(tokens * topK);
  const weights = new Float64Array(tokens * topK);
  const all = Array.from({ length: numExperts }, (_, e) => e);
  for (let t = 0; t < tokens; t++) {
    const row = Array.from({ length: numExperts }, (_, e) => logits[t * numExperts + e]);
    let chosen: number[];
    let w: number[];
    if (routing.mode === 'topk-softmax') {
      chosen = topIndices(row, all, topK);
      const m = Math.max(...chosen.map((e) => row[e]));
      const ex = chosen.map((e) => Math.exp(row[e] - m));
      const s = ex.reduce((a, b) => a + b, 0);
      w = ex.map((v) => v / s);
    } else if (routing.mode === 'softmax-topk') {
      const m = Math.max(...row);
      const ex = row.map((v) => Math.exp(v - m));
      const s = ex.reduce((a, b) => a + b, 0);
      const probs = ex.map((v) => v / s);
      chosen = topIndices(probs, all, topK);
      w = chosen.map((e) => probs[e]);
      if (routing.renormalize) {
        const sum = w.reduce((a, b) => a + b, 0);
        w = w.map((v) => v / sum);
      }
    } else {
      const scores = row.map(sigmoid);
      const bias = routing.correctionBias;
      const choice = scores.map((v, e) => v + (bias ? bias[e] : 0));
      const groupSize = numExperts / routing.numGroups;
      const groupScores: number[] = [];
      for (let gi = 0; gi < routing.numGroups; gi++) {
        const members = all.slice(gi * groupSize, (gi + 1) * groupSize);
        const top2 = topIndices(choice, members, 2);
        groupScores.push(top2.reduce((a, e) => a + choice[e], 0));
      }
      const groups = topIndices(groupScores, Array.from({ length: routing.numGroups }, (_, g) => g), routing.topkGroups);
      const allowed = all.filter((e) => groups.includes(Math.floor(e / groupSize)));
      chosen = topIndices(choice, allowed, topK);
      w = chosen.map((e) => scores[e]);
      if (routing.renormalize) {
        const sum = w.reduce((a, b) => a + b, 0);
        w = w.map((v) => v / sum);
      }
      const factor = routing.routedScalingFactor ?? 1;
      w = w.map((v) => v * factor);
    }
    for (let k = 0; k < topK; k++) {
      ids[t * topK + k] = chosen[k];
      weights[t * topK + k] = w[k];
    }
  }
  return { ids, weights };
}

// ---------------------------------------------------------------------------------------------
// The MoE forward (SPEC "The MoE forward for one token t"), reading the caller's layout and
// orientation directly. Weights are numbers already (bf16 weights: pass refFromBf16(bits)).

export interface RefMoeConfig {
  numExperts: number;
  hiddenSize: number;
  intermediateSize: number;
  topK: number;
  activation: ActivationName;
  layout: Layout;
  transposed: boolean;
  swigluAlpha?: number;
  swigluLimit?: number;
  /** bf16 activations: round `a` to bf16 before W2 and the output once at the end. */
  bf16Activations: boolean;
}

export interface RefMoeWeights {
  w13: ArrayLike<number>;
  w2: ArrayLike<number>;
  w13Bias?: ArrayLike<number>;
  w2Bias?: ArrayLike<number>;
}

export function refMoeForward(
  c: RefMoeConfig,
  wt: RefMoeWeights,
  hidden: ArrayLike<number>,
  ids: ArrayLike<number>,
  routeWeights: ArrayLike<number>,
): Float64Array {
  const { hiddenSize: H, intermediateSize: I, topK: K } = c;
  const tokens = hidden.length / H;
  const out = new Float64Array(tokens * H);
  const w13At = (e: number, row: number, h: number): number =>
    c.transposed ? wt.w13[(e * H + h) * 2 * I + row] : wt.w13[(e * 2 * I + row) * H + h];
  const w2At = (e: number, h: number, i: number): number =>
    c.transposed ? wt.w2[(e * I + i) * H + h] : wt.w2[(e * H + h) * I + i];
  const hRow = new Float64Array(2 * I);
  const a = new Float64Array(I);
  for (let t = 0; t < tokens; t++) {
    const acc = new Float64Array(H);
    for (let k = 0; k < K; k++) {
      const e = ids[t * K + k];
      const w = routeWeights[t * K + k];
      for (let r = 0; r < 2 * I; r++) {
        let s = wt.w13Bias ? wt.w13Bias[e * 2 * I + r] : 0;
        for (let h = 0; h < H; h++) s += w13At(e, r, h) * hidden[t * H + h];
        hRow[r] = s;
      }
      for (let j = 0; j < I; j++) {
        const g = hRow[gateIndex(c.layout, j)];
        const u = hRow[upIndex(c.layout, j, I)];
        const v = refAct(c.activation, g, u, { alpha: c.swigluAlpha, limit: c.swigluLimit });
        a[j] = c.bf16Activations ? roundBf16(v) : v;
      }
      for (let h = 0; h < H; h++) {
        let s = wt.w2Bias ? wt.w2Bias[e * H + h] : 0;
        for (let i = 0; i < I; i++) s += w2At(e, h, i) * a[i];
        acc[h] += w * s;
      }
    }
    for (let h = 0; h < H; h++) out[t * H + h] = c.bf16Activations ? roundBf16(acc[h]) : acc[h];
  }
  return out;
}
