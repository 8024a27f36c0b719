// W13 layout conversion: interleaved (g0,u0,g1,u1,…) <-> halves (g0…g(I-1), u0…u(I-1)).
import { binding } from './binding';
import { object, optionalBoolean, positiveInteger, sameType, weightArray, type WeightArray } from './validate';
import { rangeError } from './errors';

/** The shape of a W13 weight [E, 2I, H] (or bias [E, 2I]) for `deinterleaveW13` / `interleaveW13`. */
export interface W13Shape {
  /** E. */
  numExperts: number;
  /** I (W13 has 2I rows). */
  intermediateSize: number;
  /** Input size H; 1 for a bias [E, 2I]. */
  hiddenSize: number;
  /**
   * [E, H, 2I] instead of [E, 2I, H].
   * @default false
   */
  transposed?: boolean | undefined;
  /**
   * Permute w itself (no second copy) and return it.
   * @default false (a new array)
   */
  inPlace?: boolean | undefined;
}

function permute<T extends WeightArray>(w: T, options: W13Shape, toInterleaved: boolean): T {
  const o = object(options, 'options');
  const E = positiveInteger(o.numExperts, 'numExperts');
  const I = positiveInteger(o.intermediateSize, 'intermediateSize');
  const H = positiveInteger(o.hiddenSize, 'hiddenSize');
  const transposed = optionalBoolean(o.transposed, 'transposed', false);
  const inPlace = optionalBoolean(o.inPlace, 'inPlace', false);
  const array = weightArray(w, 'w') as T;
  const length = E * 2 * I * H;
  if (array.length !== length) {
    const shape = transposed ? `[E=${E}, H=${H}, 2I=${2 * I}]` : `[E=${E}, 2I=${2 * I}, H=${H}]`;
    throw rangeError(`w: expected length ${length} (${shape}), got ${array.length}`);
  }
  const out = inPlace ? array : sameType(array, length);
  const [outer, inner] = transposed ? [E * H, 1] : [E, H];
  binding.permuteW13(array, out, outer, I, inner, toInterleaved);
  return out;
}

/** Interleaved -> halves. Works on weights and biases, f32 and bf16. */
export function deinterleaveW13<T extends WeightArray>(w: T, options: W13Shape): T {
  return permute(w, options, false);
}

/** Halves -> interleaved. */
export function interleaveW13<T extends WeightArray>(w: T, options: W13Shape): T {
  return permute(w, options, true);
}
