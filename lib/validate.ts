// Argument checks shared by every public function. Each throws a TypeError (wrong type,
// missing) or RangeError (wrong value, length or range) whose message starts with the
// argument's name and says what was expected and what was given.
import { types } from 'node:util';

import { rangeError, typeError } from './errors';

export type WeightArray = Float32Array | Uint16Array;

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as Float32Array).length})`;
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'object') return value.constructor?.name ?? 'object';
  return String(value);
}

export function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== 'number') throw typeError(`${name}: expected a positive integer, got ${describe(value)}`);
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw rangeError(`${name}: expected a positive integer, got ${describe(value)}`);
  }
  return value;
}

export function boolean(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw typeError(`${name}: expected true or false, got ${describe(value)}`);
  return value;
}

export function optionalBoolean(value: unknown, name: string, fallback: boolean): boolean {
  return value === undefined ? fallback : boolean(value, name);
}

/** The largest finite float32: option values the kernels hold as float must fit. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/** A number the kernels hold as a float32: finite there too (|value| ≤ 3.4028235e38). */
export function finiteNumber(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw typeError(`${name}: expected a number, got ${describe(value)}`);
  if (!Number.isFinite(value)) throw rangeError(`${name}: expected a finite number, got ${value}`);
  if (Math.abs(value) > FLOAT32_MAX) {
    throw rangeError(`${name}: expected a number representable as float32 (|x| <= 3.4028235e38), got ${value}`);
  }
  return value;
}

/** Most native threads one layer may use (the pool is shared by all layers). */
export const MAX_THREADS = 1024;

export function threadCount(value: unknown, name: string): number {
  const n = positiveInteger(value, name);
  if (n > MAX_THREADS) throw rangeError(`${name}: expected at most ${MAX_THREADS} threads, got ${n}`);
  return n;
}

export function oneOf<T extends string>(value: unknown, name: string, allowed: readonly T[]): T {
  if (typeof value !== 'string') {
    throw typeError(`${name}: expected one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describe(value)}`);
  }
  if (!(allowed as readonly string[]).includes(value)) {
    throw rangeError(`${name}: expected one of ${allowed.map((a) => `'${a}'`).join(', ')}, got '${value}'`);
  }
  return value as T;
}

export function object(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null) throw typeError(`${name}: expected an object, got ${describe(value)}`);
  return value as Record<string, unknown>;
}

// Node 20 has no ArrayBuffer.prototype.detached; constructing a view on a detached buffer
// throws, which tells the two empty cases apart.
function isDetached(buffer: ArrayBufferLike): boolean {
  const flag = (buffer as { detached?: boolean }).detached;
  if (flag !== undefined) return flag;
  if (buffer.byteLength !== 0) return false;
  try {
    new Uint8Array(buffer as ArrayBuffer);
    return false;
  } catch {
    return true;
  }
}

type ArrayConstructor =
  | Float32ArrayConstructor | Uint16ArrayConstructor | Int32ArrayConstructor | Uint8ArrayConstructor | Int8ArrayConstructor;
const DTYPE_NAME = new Map<ArrayConstructor, string>([
  [Float32Array, 'Float32Array (f32)'],
  [Uint16Array, 'Uint16Array (bf16 bit patterns)'],
  [Int32Array, 'Int32Array'],
  [Uint8Array, 'Uint8Array'],
  [Int8Array, 'Int8Array'],
]);

const SAME_KIND: ReadonlyArray<[ArrayConstructor, (v: unknown) => boolean]> = [
  [Float32Array, types.isFloat32Array], [Uint16Array, types.isUint16Array], [Int32Array, types.isInt32Array],
  [Uint8Array, types.isUint8Array], [Int8Array, types.isInt8Array],
];

/**
 * A typed array made in another context (a `vm` context, another realm) fails `instanceof`
 * here: the same memory is viewed through this context's constructor (no copy). Anything else
 * is returned as it is.
 */
export function adopt(value: unknown): unknown {
  if (!ArrayBuffer.isView(value)) return value;
  for (const [ctor, isKind] of SAME_KIND) {
    if (isKind(value) && !(value instanceof ctor)) {
      const v = value as unknown as Float32Array;
      try {
        return new ctor(v.buffer as ArrayBuffer, v.byteOffset, v.length);
      } catch {
        return value; // detached: reported as such by the caller's checks
      }
    }
  }
  return value;
}

/**
 * Checks the array type and, when `length` is given, its length; `shape` explains it. `what`
 * replaces the default description of the expected type (e.g. 'Uint16Array (f16 bit patterns)').
 */
export function typedArray<T extends Float32Array | Uint16Array | Int32Array | Uint8Array | Int8Array>(
  value: unknown, name: string, ctor: { new (n: number): T }, length?: number, shape?: string, what?: string,
): T {
  value = adopt(value);
  if (!(value instanceof (ctor as unknown as ArrayConstructor))) {
    throw typeError(`${name}: expected ${what ?? DTYPE_NAME.get(ctor as unknown as ArrayConstructor)}, got ${describe(value)}`);
  }
  const array = value as T;
  if (isDetached(array.buffer)) throw typeError(`${name}: its ArrayBuffer is detached`);
  if (length !== undefined && array.length !== length) {
    throw rangeError(`${name}: expected length ${length}${shape ? ` (${shape})` : ''}, got ${array.length}`);
  }
  return array;
}

/**
 * A Float16Array (a global of Node >= 24; none on Node 20), from this realm or another. Node-API
 * reports it as a typed array type the addon does not take, so it is recognised here.
 */
export function isFloat16Array(value: unknown): value is ArrayBufferView & { length: number } {
  const isKind = (types as { isFloat16Array?: (v: unknown) => boolean }).isFloat16Array;
  if (isKind) return isKind(value);
  const ctor = (globalThis as { Float16Array?: abstract new (...args: never[]) => unknown }).Float16Array;
  return ctor !== undefined && value instanceof ctor;
}

/** The f16 bit patterns of a Float16Array: a Uint16Array view of the same memory (no copy). */
export function f16BitsOf(value: ArrayBufferView & { length: number }, name: string): Uint16Array {
  if (isDetached(value.buffer)) throw typeError(`${name}: its ArrayBuffer is detached`);
  return new Uint16Array(value.buffer as ArrayBuffer, value.byteOffset, value.length);
}

/** A Float32Array or a Uint16Array (bf16), whichever it is. */
export function weightArray(value: unknown, name: string, note = ''): WeightArray {
  value = adopt(value);
  if (value instanceof Float32Array) return typedArray(value, name, Float32Array);
  if (value instanceof Uint16Array) return typedArray(value, name, Uint16Array);
  if (isFloat16Array(value)) {
    throw typeError(`${name}: expected Float32Array (f32) or Uint16Array (bf16 bit patterns), got ${describe(value)}` +
      (note || ` (f16 values are not taken here: convert them with Float32Array.from(${name}))`));
  }
  throw typeError(`${name}: expected Float32Array (f32) or Uint16Array (bf16 bit patterns), got ${describe(value)}`);
}

/** Activations (hidden, x): f32 or bf16 only; a Float16Array is refused by name. */
export function activationArray(value: unknown, name: string): WeightArray {
  return weightArray(value, name, ` (activations are f32 or bf16 only: convert f16 values with Float32Array.from(${name}))`);
}

/**
 * A router-sized weight (routerWeight, routerBias, sharedExpertGate): f32 values, bf16 bit
 * patterns, or a Float16Array, whose values are widened to a new Float32Array (exactly).
 */
export function routerValues(value: unknown, name: string): WeightArray {
  value = adopt(value);
  if (isFloat16Array(value)) {
    f16BitsOf(value, name); // refuses a detached buffer
    return Float32Array.from(value as unknown as ArrayLike<number>);
  }
  return weightArray(value, name);
}

export function sameType<T extends WeightArray>(like: T, length: number): T {
  return (like instanceof Float32Array ? new Float32Array(length) : new Uint16Array(length)) as T;
}

/** An optional AbortSignal option. */
export function optionalSignal(value: unknown, name: string): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw typeError(`${name}: expected an AbortSignal, got ${describe(value)}`);
  return value;
}
