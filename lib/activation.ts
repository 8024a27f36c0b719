// Standalone gated activations over [T, 2I] -> [T, I]; either W13 layout, f32 or bf16.
import { binding } from './binding';
import { activationArray, boolean, finiteNumber, object, oneOf, positiveInteger, sameType, type WeightArray } from './validate';
import { rangeError } from './errors';

export type Activation = 'swigluoai' | 'silu' | 'gelu' | 'gelu_tanh';
export const ACTIVATIONS: readonly Activation[] = ['swigluoai', 'silu', 'gelu', 'gelu_tanh'];

/** gpt-oss defaults (docs/spec.md). */
export const SWIGLU_ALPHA = 1.702;
export const SWIGLU_LIMIT = 7.0;

/** The shape of the input x [T, 2I] of a gated activation. */
export interface GatedShape {
  /** T. */
  tokens: number;
  /** I: the output is [T, I]. */
  intermediateSize: number;
  /** Required: the layout of the 2I columns is a property of the data, never assumed. */
  isInterleaved: boolean;
}

export function checkSwigluLimit(value: unknown, name: string): number {
  if (value === Infinity) return value;
  const limit = finiteNumber(value, name, SWIGLU_LIMIT);
  if (!(limit > 0)) throw rangeError(`${name}: expected a positive number, got ${limit}`);
  return limit;
}

function gated<T extends WeightArray>(x: T, options: GatedShape, kind: Activation, alpha: number, limit: number): T {
  const o = object(options, 'options');
  const tokens = positiveInteger(o.tokens, 'tokens');
  const I = positiveInteger(o.intermediateSize, 'intermediateSize');
  const interleaved = boolean(o.isInterleaved, 'isInterleaved');
  const input = activationArray(x, 'x') as T;
  if (input.length !== tokens * 2 * I) {
    throw rangeError(`x: expected length ${tokens * 2 * I} ([T=${tokens}, 2I=${2 * I}]), got ${input.length}`);
  }
  const out = sameType(input, tokens * I);
  binding.gatedActivation(input, out, tokens, I, interleaved, kind, alpha, limit);
  return out;
}

/** `swigluoai`'s options. */
export interface SwigluoaiOptions extends GatedShape {
  /**
   * A finite float32.
   * @default 1.702
   */
  alpha?: number | undefined;
  /**
   * A positive number, or Infinity for no clamp.
   * @default 7
   */
  limit?: number | undefined;
}

/** `geluAndMul`'s options. */
export interface GeluAndMulOptions extends GatedShape {
  /**
   * `'none'`: the exact gelu (erf); `'tanh'`: the tanh approximation.
   * @default 'none'
   */
  approximate?: 'none' | 'tanh' | undefined;
}

/** gpt-oss: min(g, limit) · sigmoid(alpha · min(g, limit)) · (clamp(u, ±limit) + 1). x [T, 2I] f32 or bf16 -> [T, I] of the same dtype. */
export function swigluoai<T extends WeightArray>(x: T, options: SwigluoaiOptions): T {
  const o = object(options, 'options');
  const alpha = finiteNumber(o.alpha, 'alpha', SWIGLU_ALPHA);
  const limit = checkSwigluLimit(o.limit, 'limit');
  return gated(x, options, 'swigluoai', alpha, limit);
}

/** SwiGLU: silu(g) · u. x [T, 2I] f32 or bf16 -> [T, I] of the same dtype. */
export function siluAndMul<T extends WeightArray>(x: T, options: GatedShape): T {
  return gated(x, options, 'silu', SWIGLU_ALPHA, SWIGLU_LIMIT);
}

/** GeGLU: gelu(g) · u, exact (erf) or tanh approximation. x [T, 2I] f32 or bf16 -> [T, I] of the same dtype. */
export function geluAndMul<T extends WeightArray>(x: T, options: GeluAndMulOptions): T {
  const o = object(options, 'options');
  const approximate = o.approximate === undefined ? 'none' : oneOf(o.approximate, 'approximate', ['none', 'tanh'] as const);
  return gated(x, options, approximate === 'tanh' ? 'gelu_tanh' : 'gelu', SWIGLU_ALPHA, SWIGLU_LIMIT);
}
