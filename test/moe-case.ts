// Builds MoE test cases: MoeLayer options plus what the reference needs to check them.
import { Dtype, Rng, asDtype, mulberry32, randF32, valuesOf } from './helpers';
import { ActivationName, RefMoeConfig, RefMoeWeights, RefRouting } from './reference';

export interface MoeCaseParams {
  E: number;
  H: number;
  I: number;
  K: number;
  activation: ActivationName;
  /** Layout of the W13 given to the layer (and its bias). */
  interleaved: boolean;
  transposed?: boolean;
  weightDtype: Dtype;
  bias: boolean;
  seed: number;
  /** Target standard deviation of W13·x (swigluoai clamps at 7). */
  preActStd?: number;
  routing?: RefRouting;
  threads?: number;
  swigluAlpha?: number;
  swigluLimit?: number;
}

export interface MoeCase {
  /** Options for `new MoeLayer(...)`. */
  options: Record<string, unknown>;
  ref: Omit<RefMoeConfig, 'bf16Activations'>;
  weights: RefMoeWeights;
  rng: Rng;
}

export function moeCase(p: MoeCaseParams): MoeCase {
  const rng = mulberry32(p.seed);
  const { E, H, I, K } = p;
  // hidden is uniform in [-1, 1] (std 1/sqrt(3)), so W13·x has std scale13 * sqrt(H) / 3.
  const scale13 = (3 * (p.preActStd ?? 2)) / Math.sqrt(H);
  const scale2 = 3 / Math.sqrt(I);
  const w13 = asDtype(randF32(rng, E * 2 * I * H, -scale13, scale13), p.weightDtype);
  const w2 = asDtype(randF32(rng, E * H * I, -scale2, scale2), p.weightDtype);
  const w13Bias = p.bias ? asDtype(randF32(rng, E * 2 * I, -0.5, 0.5), p.weightDtype) : undefined;
  const w2Bias = p.bias ? asDtype(randF32(rng, E * H, -0.5, 0.5), p.weightDtype) : undefined;
  const options: Record<string, unknown> = {
    numExperts: E,
    hiddenSize: H,
    intermediateSize: I,
    topK: K,
    activation: p.activation,
    isW13Interleaved: p.interleaved,
    weightDtype: p.weightDtype,
    w13,
    w2,
  };
  if (w13Bias) options.w13Bias = w13Bias;
  if (w2Bias) options.w2Bias = w2Bias;
  if (p.transposed !== undefined) options.transposed = p.transposed;
  if (p.routing) options.routing = p.routing;
  if (p.threads !== undefined) options.threads = p.threads;
  if (p.swigluAlpha !== undefined) options.swigluAlpha = p.swigluAlpha;
  if (p.swigluLimit !== undefined) options.swigluLimit = p.swigluLimit;
  return {
    options,
    ref: {
      numExperts: E,
      hiddenSize: H,
      intermediateSize: I,
      topK: K,
      activation: p.activation,
      layout: p.interleaved ? 'interleaved' : 'halves',
      transposed: p.transposed ?? false,
      swigluAlpha: p.swigluAlpha,
      swigluLimit: p.swigluLimit,
    },
    weights: {
      w13: valuesOf(w13),
      w2: valuesOf(w2),
      w13Bias: w13Bias && valuesOf(w13Bias),
      w2Bias: w2Bias && valuesOf(w2Bias),
    },
    rng,
  };
}

/** Random explicit routing: K distinct ids per token and positive weights. */
export function randomRoute(rng: Rng, tokens: number, E: number, K: number): { ids: Int32Array; weights: Float32Array } {
  const ids = new Int32Array(tokens * K);
  const weights = new Float32Array(tokens * K);
  for (let t = 0; t < tokens; t++) {
    const pool = Array.from({ length: E }, (_, e) => e);
    for (let k = 0; k < K; k++) {
      const pick = Math.floor(rng() * pool.length);
      ids[t * K + k] = pool.splice(pick, 1)[0];
      weights[t * K + k] = 0.1 + rng();
    }
  }
  return { ids, weights };
}
