// bf16 <-> f32. bf16 values travel as Uint16Array bit patterns.
import { binding } from './binding';
import { typedArray } from './validate';

/** Rounds to nearest, ties to even; NaN stays NaN. */
export function toBf16(values: Float32Array): Uint16Array {
  const src = typedArray(values, 'values', Float32Array);
  const out = new Uint16Array(src.length);
  binding.convertBf16(src, out);
  return out;
}

/** Exact widening. */
export function fromBf16(bits: Uint16Array): Float32Array {
  const src = typedArray(bits, 'bits', Uint16Array);
  const out = new Float32Array(src.length);
  binding.convertBf16(src, out);
  return out;
}
