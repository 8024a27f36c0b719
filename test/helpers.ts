// Test helpers: deterministic random data, error measure, snapshots.
import { expect } from 'vitest';
import { refFromBf16, refToBf16 } from './reference';

/** SPEC "Precision contract": max|out - ref| / max|ref| against a float64 reference. */
export const F32_TOL = 1e-5;
/** Any bf16 weights and/or bf16 activations. */
export const BF16_TOL = 1e-2;
/** Outputs of a wrong W13 layout flag must differ by more than this (seed bug test). */
export const WRONG_LAYOUT_MIN_ERR = 0.1;

/** mulberry32: small deterministic PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Rng = () => number;

export function randF32(rng: Rng, n: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rng();
  return out;
}

/** Random values already rounded to bf16, as bit patterns. */
export function randBf16(rng: Rng, n: number, lo = -1, hi = 1): Uint16Array {
  return refToBf16(randF32(rng, n, lo, hi));
}

/** Distinct-ish random logits (ties have probability ~0). */
export function randLogits(rng: Rng, tokens: number, experts: number, scale = 2): Float32Array {
  return randF32(rng, tokens * experts, -scale, scale);
}

export type Dtype = 'f32' | 'bf16';

/** Makes an array of `dtype` from f32 values (bf16: rounded to nearest even). */
export function asDtype(values: Float32Array, dtype: Dtype): Float32Array | Uint16Array {
  return dtype === 'f32' ? values : refToBf16(values);
}

/** The numeric values of an f32 or bf16 array. */
export function valuesOf(a: Float32Array | Uint16Array): Float32Array {
  return a instanceof Uint16Array ? refFromBf16(a) : a;
}

/**
 * max|out - ref| / max|ref|. A NaN in one array and not in the other gives Infinity; NaN in
 * both at the same index counts as equal.
 */
export function relErr(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) throw new Error(`relErr: length ${out.length} != ${ref.length}`);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const o = out[i];
    const r = ref[i];
    if (Number.isNaN(o) || Number.isNaN(r)) {
      if (Number.isNaN(o) && Number.isNaN(r)) continue;
      return Infinity;
    }
    maxDiff = Math.max(maxDiff, Math.abs(o - r));
    maxRef = Math.max(maxRef, Math.abs(r));
  }
  if (maxDiff === 0) return 0;
  return maxRef === 0 ? Infinity : maxDiff / maxRef;
}

export function expectClose(out: ArrayLike<number>, ref: ArrayLike<number>, tol: number, label = ''): void {
  const err = relErr(out, ref);
  expect(err, `${label} relErr ${err} > ${tol}`).toBeLessThanOrEqual(tol);
}

/** Bitwise equality of two typed arrays (same type, same bytes). */
export function bitsEqual(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.constructor !== b.constructor || a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Byte copy of a typed array, to check later that nothing wrote to it. */
export function snapshot(a: ArrayBufferView): Uint8Array {
  if (a.byteLength === 0) return new Uint8Array(0); // also a detached buffer: no view possible
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

export function unchanged(a: ArrayBufferView, before: Uint8Array): boolean {
  if (a.byteLength === 0) return before.length === 0;
  return bitsEqual(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), before);
}

/** Detaches the buffer of `a` (Node 20 has no ArrayBuffer.prototype.transfer). */
export function detach(a: ArrayBufferView): void {
  structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] });
}

/**
 * Runs `fn`, expects it to throw an instance of `cls` whose message contains every string of
 * `mustContain` (numbers are matched as their decimal string).
 */
export function expectThrows(
  fn: () => unknown,
  cls: ErrorConstructor | ErrorConstructor[],
  mustContain: (string | number)[],
): Error {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  return checkError(caught, cls, mustContain);
}

export async function expectRejects(
  fn: () => Promise<unknown>,
  cls: ErrorConstructor | ErrorConstructor[],
  mustContain: (string | number)[],
): Promise<Error> {
  let promise: Promise<unknown> | undefined;
  let syncError: unknown;
  try {
    promise = fn();
  } catch (e) {
    syncError = e;
  }
  expect(syncError, 'must return a rejected promise, not throw synchronously').toBeUndefined();
  expect(promise).toBeInstanceOf(Promise);
  let caught: unknown;
  try {
    await promise;
  } catch (e) {
    caught = e;
  }
  return checkError(caught, cls, mustContain);
}

function checkError(caught: unknown, cls: ErrorConstructor | ErrorConstructor[], mustContain: (string | number)[]): Error {
  expect(caught, 'expected an error').toBeInstanceOf(Error);
  const err = caught as Error;
  const classes = Array.isArray(cls) ? cls : [cls];
  expect(
    classes.some((c) => err instanceof c),
    `expected ${classes.map((c) => c.name).join(' or ')}, got ${err.name}: ${err.message}`,
  ).toBe(true);
  for (const s of mustContain) expect(err.message).toContain(String(s));
  // Every error moe-cpu throws has a stable code (docs/errors.md); argument errors share one.
  const code = (err as { code?: unknown }).code;
  expect(code, `${err.name}: ${err.message}: no code`).toMatch(/^ERR_MOE_[A-Z_]+$/);
  if (err instanceof TypeError || err instanceof RangeError) expect(code).toBe('ERR_MOE_INVALID_ARGUMENT');
  return err;
}

/** The error of a layer or block used after dispose(). */
export function expectDisposed(err: Error): void {
  expect(err.constructor).toBe(Error);
  expect((err as { code?: unknown }).code).toBe('ERR_MOE_DISPOSED');
  expect(err.message).toMatch(/was disposed/);
}
