// Standalone gated activations over [T, 2I] -> [T, I]; either W13 layout, f32 or bf16.
import { binding } from './binding';
import { activationArray, boolean, finiteNumber, object, oneOf, positiveInteger, sameType, type WeightArray } from './validate';
import { rangeError } from './errors';

export type Activation = 'swigluoai' | 'silu' | 'gelu' | 'gelu_tanh';
export const ACTIVATIONS: readonly Activation[] = ['swigluoai', 'silu', 'gelu', 'gelu_tanh'];

/** gpt-oss defaults (docs/spec.md). */
export const SWIGLU_ALPHA = 1.702;
export const SWIGLU_LIMIT = 7.0;

export interface GatedShape {
  tokens: number;
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

/** gpt-oss: min(g, limit) · sigmoid(alpha · min(g, limit)) · (clamp(u, ±limit) + 1). */
export function swigluoai<T extends WeightArray>(x: T, options: GatedShape & { alpha?: number; limit?: number }): T {
  const o = object(options, 'options');
  const alpha = finiteNumber(o.alpha, 'alpha', SWIGLU_ALPHA);
  const limit = checkSwigluLimit(o.limit, 'limit');
  return gated(x, options, 'swigluoai', alpha, limit);
}

/** SwiGLU: silu(g) · u. */
export function siluAndMul<T extends WeightArray>(x: T, options: GatedShape): T {
  return gated(x, options, 'silu', SWIGLU_ALPHA, SWIGLU_LIMIT);
}

/** GeGLU: gelu(g) · u, exact (erf) or tanh approximation. */
export function geluAndMul<T extends WeightArray>(x: T, options: GatedShape & { approximate?: 'none' | 'tanh' }): T {
  const o = object(options, 'options');
  const approximate = o.approximate === undefined ? 'none' : oneOf(o.approximate, 'approximate', ['none', 'tanh'] as const);
  return gated(x, options, approximate === 'tanh' ? 'gelu_tanh' : 'gelu', SWIGLU_ALPHA, SWIGLU_LIMIT);
}
