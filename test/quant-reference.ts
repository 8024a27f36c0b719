// Independent reference for the packed weight formats, written from the OCP Microscaling
// Formats (MX) Specification v1.0 and docs/spec.md "Weight formats", not from the library's
// code and without importing the package. Plain TypeScript, float64
// math with explicit f32 rounding (Math.fround) where an f32 kernel rounds.
//
// OCP MX v1.0, as used here:
// - an MX block is k = 32 elements P_i sharing one scale X; value_i = X * P_i;
// - X is E8M0: an unsigned 8-bit biased exponent, X = 2^(x − 127), x = 0xFF is NaN (no sign,
//   no mantissa, no zero);
// - MXFP4 elements are FP4 E2M1: 1 sign bit, 2 exponent bits (bias 1), 1 mantissa bit, no Inf
//   or NaN; exponent 0 is subnormal (0 or 0.5), the largest magnitude is 6 = 1.5 * 2^2
//   (emax_elem = 2);
// - quantization (section 6.3): X = 2^(floor(log2(max_i |V_i|)) − emax_elem), clamped to the
//   E8M0 range; P_i = V_i / X rounded to the element format, round to nearest, ties to even,
//   magnitudes above the largest normal clamped to it (saturation).
// docs/spec.md adds: x clamped to [0, 254], an all-zero block gets x = 0; a block holding a
// NaN or an infinity gets x = 0xFF (its codes do not matter: every value decodes to NaN).
//
// int8 (ggml q8_0): blocks of 32 int8 codes q with one f16 scale d; value = q * d;
// d = f16(max|v| / 127) (the f32 quotient, rounded to f16, nearest even); q = round(v / d) on
// the exact quotient with the stored d, ties away from zero, clamped to [-127, 127]; d = 0:
// q = 0. NaN and infinity are refused (finite inputs only here).

export const BLOCK = 32;

// ---------------------------------------------------------------------------------------------
// E2M1 (FP4) element

/** The value of a 4-bit E2M1 code: sign bit 3, exponent bits 2-1 (bias 1), mantissa bit 0. */
export function e2m1Value(code: number): number {
  const sign = code & 0b1000 ? -1 : 1;
  const exponent = (code >> 1) & 0b11;
  const mantissa = code & 0b1;
  const magnitude = exponent === 0 ? mantissa * 0.5 : 2 ** (exponent - 1) * (1 + mantissa / 2);
  return sign * magnitude;
}

/** The 8 non-negative E2M1 magnitudes by code 0..7. */
const E2M1_MAGNITUDES = Array.from({ length: 8 }, (_, c) => e2m1Value(c));
export const E2M1_MAX = 6;

/**
 * Nearest E2M1 code of x (a real number): round to nearest, ties to the even code (mantissa
 * bit 0), magnitudes above 6 saturate to 6; the sign is kept (−0 and small negatives: code 8).
 */
export function e2m1Encode(x: number): number {
  const negative = x < 0 || Object.is(x, -0);
  const a = Math.min(Math.abs(x), E2M1_MAX);
  let best = 0;
  for (let c = 1; c < 8; c++) {
    const d = Math.abs(a - E2M1_MAGNITUDES[c]);
    const bestD = Math.abs(a - E2M1_MAGNITUDES[best]);
    if (d < bestD || (d === bestD && (c & 1) === 0 && (best & 1) === 1)) best = c;
  }
  return best | (negative ? 0b1000 : 0);
}

// ---------------------------------------------------------------------------------------------
// E8M0 scale

export const E8M0_NAN = 0xff;
export const E8M0_BIAS = 127;

export function e8m0Value(x: number): number {
  return x === E8M0_NAN ? NaN : 2 ** (x - E8M0_BIAS);
}

/** floor(log2(a)) for a > 0, exactly (Math.log2 alone may be off by one near powers of 2). */
export function floorLog2(a: number): number {
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  return e;
}

// ---------------------------------------------------------------------------------------------
// MXFP4 tensors: rows of `depth` values, depth / 32 blocks per row; per block 16 bytes of codes
// (element 2j in the low nibble of byte j, element 2j + 1 in the high nibble) and one scale.

export interface RefMxfp4 {
  blocks: Uint8Array;
  scales: Uint8Array;
}

/** One block of 32 values -> 32 codes and the scale byte. */
export function refMxfp4Block(v: ArrayLike<number>): { codes: number[]; scale: number } {
  let amax = 0;
  let special = false;
  for (let i = 0; i < BLOCK; i++) {
    if (!Number.isFinite(v[i])) special = true;
    else amax = Math.max(amax, Math.abs(v[i]));
  }
  if (special) return { codes: new Array(BLOCK).fill(0), scale: E8M0_NAN };
  if (amax === 0) return { codes: Array.from({ length: BLOCK }, (_, i) => e2m1Encode(v[i])), scale: 0 };
  const emaxElem = 2;
  // Shared exponent, clamped to what E8M0 holds (2^-127 .. 2^127; 0xFF is NaN).
  const exponent = Math.min(127, Math.max(-127, floorLog2(amax) - emaxElem));
  const X = 2 ** exponent;
  return { codes: Array.from({ length: BLOCK }, (_, i) => e2m1Encode(v[i] / X)), scale: exponent + E8M0_BIAS };
}

export function refQuantizeMxfp4(values: ArrayLike<number>, rows: number, depth: number): RefMxfp4 {
  if (depth % BLOCK !== 0) throw new Error('depth % 32');
  const n = rows * (depth / BLOCK);
  const blocks = new Uint8Array(n * 16);
  const scales = new Uint8Array(n);
  const block = new Float64Array(BLOCK);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < BLOCK; i++) block[i] = values[b * BLOCK + i];
    // -0 survives Float64Array storage, so the sign of a zero is kept.
    const { codes, scale } = refMxfp4Block(block);
    scales[b] = scale;
    for (let j = 0; j < 16; j++) blocks[b * 16 + j] = codes[2 * j] | (codes[2 * j + 1] << 4);
  }
  return { blocks, scales };
}

/** The exact f32 values of an MXFP4 tensor (products rounded to f32: only 6·2^127 overflows). */
export function refDequantizeMxfp4(t: RefMxfp4, rows: number, depth: number): Float32Array {
  const n = rows * (depth / BLOCK);
  const out = new Float32Array(n * BLOCK);
  for (let b = 0; b < n; b++) {
    const X = e8m0Value(t.scales[b]);
    for (let j = 0; j < 16; j++) {
      const byte = t.blocks[b * 16 + j];
      out[b * BLOCK + 2 * j] = e2m1Value(byte & 0xf) * X;
      out[b * BLOCK + 2 * j + 1] = e2m1Value(byte >> 4) * X;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// IEEE 754 binary16 (f16): 1 sign, 5 exponent bits (bias 15), 10 mantissa bits.

export function refF16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Round half to even of a real number to an integer. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const r = x - f;
  if (r > 0.5) return f + 1;
  if (r < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** x (any number) -> f16 bits, round to nearest even; overflow to Inf; NaN -> a quiet NaN. */
export function refToF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const signBit = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return signBit | 0x7c00;
  // Quantum of the f16 grid around a: 2^(e − 10) for normals (e ≥ −14), 2^-24 for subnormals.
  const e = a === 0 ? -14 : Math.max(-14, floorLog2(a));
  const quantum = 2 ** (e - 10);
  const m = roundHalfEven(a / quantum); // a / quantum is exact: a power-of-2 division
  const value = m * quantum;
  if (value >= 65536) return signBit | 0x7c00; // past the largest finite f16, 65504
  if (value === 0) return signBit;
  const ve = Math.max(-14, floorLog2(value)); // rounding may carry into the next binade
  if (value < 2 ** -14) return signBit | (value / 2 ** -24); // subnormal: mantissa = value / 2^-24
  return signBit | ((ve + 15) << 10) | (value / 2 ** (ve - 10) - 1024);
}

export function refRoundF16(x: number): number {
  return refF16Value(refToF16Bits(x));
}

export function refToF16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = refToF16Bits(values[i]);
  return out;
}

export function refFromF16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = refF16Value(bits[i]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// int8 tensors: rows of `depth` codes, depth / 32 f16 scales per row.

export interface RefInt8 {
  codes: Int8Array;
  scales: Uint16Array;
}

/**
 * round(v / d) of the exact quotient, ties away from zero, clamped to [-127, 127], decided with
 * exact arithmetic: k·d (k < 2^8, d with 11 significant bits) and |v| − k·d are exact in float64.
 */
function roundQuotient(v: number, d: number): number {
  const a = Math.abs(v);
  if (a >= 127.5 * d) return v < 0 ? -127 : 127; // 127.5·d is exact
  let k = Math.floor(a / d);
  while (k > 0 && k * d > a) k--;
  while ((k + 1) * d <= a) k++;
  const q = a - k * d >= d / 2 ? k + 1 : k; // remainder vs half a step: ties go up (away from zero)
  return v < 0 ? -q : q;
}

export function refInt8Block(v: ArrayLike<number>): { codes: number[]; scale: number } {
  let amax = 0;
  for (let i = 0; i < BLOCK; i++) amax = Math.max(amax, Math.abs(v[i]));
  const scale = refToF16Bits(Math.fround(amax / 127));
  const d = refF16Value(scale);
  const codes = Array.from({ length: BLOCK }, (_, i) => {
    if (d === 0) return 0;
    return Math.min(127, Math.max(-127, roundQuotient(v[i], d))) | 0; // | 0: no -0 code
  });
  return { codes, scale };
}

export function refQuantizeInt8(values: ArrayLike<number>, rows: number, depth: number): RefInt8 {
  if (depth % BLOCK !== 0) throw new Error('depth % 32');
  const n = rows * (depth / BLOCK);
  const codes = new Int8Array(n * BLOCK);
  const scales = new Uint16Array(n);
  for (let b = 0; b < n; b++) {
    const r = refInt8Block(Array.prototype.slice.call(values, b * BLOCK, (b + 1) * BLOCK) as number[]);
    scales[b] = r.scale;
    codes.set(r.codes, b * BLOCK);
  }
  return { codes, scales };
}

export function refDequantizeInt8(t: RefInt8, rows: number, depth: number): Float32Array {
  const out = new Float32Array(rows * depth);
  for (let i = 0; i < out.length; i++) out[i] = t.codes[i] * refF16Value(t.scales[Math.floor(i / BLOCK)]);
  return out;
}
