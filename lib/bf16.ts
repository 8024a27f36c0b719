// bf16 <-> f32. bf16 values travel as Uint16Array bit patterns.
import { binding } from './binding';
import { typedArray } from './validate';

/** Rounds to nearest, ties to even; NaN stays NaN. */
export function toBf16(f32: Float32Array): Uint16Array {
  const src = typedArray(f32, 'f32', Float32Array);
  const out = new Uint16Array(src.length);
  binding.convertBf16(src, out);
  return out;
}

/** Exact widening. */
export function fromBf16(b: Uint16Array): Float32Array {
  const src = typedArray(b, 'b', Uint16Array);
  const out = new Float32Array(src.length);
  binding.convertBf16(src, out);
  return out;
}
