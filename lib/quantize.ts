// Weight formats: the packed formats a layer can hold, pre-quantized tensors as checkpoints
// store them, quantize() / dequantize(), and the checks MoeLayer runs on its weights.
import { constants as bufferConstants } from 'node:buffer';

import { binding, type NativeTensor, type TensorData } from './binding';
import { adopt, describe, f16BitsOf, isFloat16Array, oneOf, positiveInteger, typedArray } from './validate';
import { typeError, rangeError } from './errors';
// Type only: layer.ts imports this file at run time.
import type { Float16ArrayLike } from './layer';

/**
 * The format a layer holds its expert weights in (biases are always held in f32):
 * - `'f32'`, `'bf16'`, `'f16'`: one value per weight (32, 16, 16 bits);
 * - `'mxfp4'`: OCP MX e2m1 codes with one e8m0 scale per block of 32 weights along the input axis
 *   (4.25 bits a weight), as gpt-oss checkpoints ship them;
 * - `'int8'`: int8 codes with one f16 scale per block of 32 (8.5 bits a weight; ggml's q8_0).
 */
export type WeightDtype = 'f32' | 'bf16' | 'f16' | 'mxfp4' | 'int8';

/** The block-quantized formats. */
export type QuantizedFormat = 'mxfp4' | 'int8';

/**
 * MXFP4 tensor of `rows` rows of `depth` values (depth a multiple of 32), laid out as gpt-oss
 * checkpoints store `*_blocks` and `*_scales`: for every row, depth / 32 blocks.
 */
export interface Mxfp4Tensor {
  /** [rows, depth / 32, 16]: 16 bytes of e2m1 codes per block of 32 values, element 2j in the low nibble of byte j, 2j + 1 in the high one. */
  blocks: Uint8Array;
  /** [rows, depth / 32]: one e8m0 scale byte per block, 2^(s − 127); 0xFF is NaN. */
  scales: Uint8Array;
}

/** int8 tensor of `rows` rows of `depth` values (depth a multiple of 32): value = code · scale. */
export interface Int8Tensor {
  /** [rows, depth]: codes in [-127, 127]. */
  codes: Int8Array;
  /** [rows, depth / 32]: one f16 scale (bit pattern) per block of 32 codes along the row. */
  scales: Uint16Array;
}

export type QuantizedTensor = Mxfp4Tensor | Int8Tensor;

/** Values along the input axis that share one scale in 'mxfp4' and 'int8'. */
export const BLOCK_VALUES = 32;
const MXFP4_BLOCK_BYTES = 16;

const WEIGHT_DTYPES: readonly WeightDtype[] = ['f32', 'bf16', 'f16', 'mxfp4', 'int8'];
const QUANTIZED: readonly QuantizedFormat[] = ['mxfp4', 'int8'];

export function isQuantized(dtype: WeightDtype): dtype is QuantizedFormat {
  return dtype === 'mxfp4' || dtype === 'int8';
}

/** Like describe(), but a plain object shows its keys: `{ blocks, scales }`. */
function describeValue(value: unknown): string {
  if (value && typeof value === 'object' && !ArrayBuffer.isView(value)) {
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) {
      const keys = Object.keys(value);
      return keys.length ? `{ ${keys.slice(0, 6).join(', ')}${keys.length > 6 ? ', …' : ''} }` : '{}';
    }
  }
  return describe(value);
}

/** A view on `rows` rows of `depth` values, with the names used in messages. */
export interface TensorShape {
  /** Leading dimensions, e.g. [['E', 5], ['2I', 192]]; their product is the row count. */
  outer: [string, number][];
  depthName: string;
  depth: number;
}

function rowsOf(s: TensorShape): number {
  return s.outer.reduce((a, [, n]) => a * n, 1);
}

function dims(s: TensorShape, last: string[]): string {
  return `[${[...s.outer.map(([k, n]) => `${k}=${n}`), ...last].join(', ')}]`;
}

function valuesShape(s: TensorShape, transposed = false): string {
  const depth = `${s.depthName}=${s.depth}`;
  if (!transposed) return dims(s, [depth]);
  // [E, rows, depth] given as [E, depth, rows]
  const [first, ...rest] = s.outer;
  return `[${[`${first[0]}=${first[1]}`, depth, ...rest.map(([k, n]) => `${k}=${n}`)].join(', ')}]`;
}

function blocksOf(s: TensorShape): string {
  return `${s.depthName}/${BLOCK_VALUES}=${s.depth / BLOCK_VALUES}`;
}

const MXFP4_TENSOR = '{ blocks: Uint8Array, scales: Uint8Array } (pre-quantized mxfp4)';
const INT8_TENSOR = '{ codes: Int8Array, scales: Uint16Array } (pre-quantized int8)';
const MXFP4_PER_EXPERT = '{ blocks: Uint8Array[], scales: Uint8Array[] }';
const INT8_PER_EXPERT = '{ codes: Int8Array[], scales: Uint16Array[] }';

/**
 * The most elements one typed array holds on this runtime: 2^32 on Node 20, 2^53 − 1 on Node 22
 * and later. A tensor larger than that can only be given per expert.
 */
export const MAX_TYPED_ARRAY_LENGTH: number = bufferConstants.MAX_LENGTH;

/** The shape of one expert's part of a tensor whose first dimension is the experts. */
function expertShape(s: TensorShape): TensorShape {
  return { outer: s.outer.slice(1), depthName: s.depthName, depth: s.depth };
}

function expertCount(s: TensorShape): number {
  return s.outer[0][1];
}

/** One expert's values shape: [rows, depth], or [depth, rows] when transposed. */
function expertValuesShape(s: TensorShape, transposed: boolean): string {
  const e = expertShape(s);
  const depth = `${s.depthName}=${s.depth}`;
  return transposed ? `[${[depth, ...e.outer.map(([k, n]) => `${k}=${n}`)].join(', ')}]` : dims(e, [depth]);
}

/**
 * A length check whose message, when the whole tensor is longer than one typed array can be on
 * this runtime, says to give it per expert (`perExpert` describes that form).
 */
function checkLength(actual: number, name: string, expected: number, shape: string, perExpert?: string): void {
  if (actual === expected) return;
  const hint = perExpert && expected > MAX_TYPED_ARRAY_LENGTH
    ? `; one typed array holds at most ${MAX_TYPED_ARRAY_LENGTH} elements on this runtime (Node ${process.versions.node}): ` +
      `pass ${perExpert}`
    : '';
  throw rangeError(`${name}: expected length ${expected} (${shape}), got ${actual}${hint}`);
}


/**
 * Checks a pre-quantized tensor of `format` (the object, its fields, their lengths) and returns
 * it as the addon takes it. `name` names it in messages ('w13', 'tensor'). Its fields may be
 * arrays of one typed array per expert (`perExpert`: the tensor's first dimension is the experts).
 */
function quantizedTensor(value: unknown, name: string, format: QuantizedFormat, s: TensorShape, context: string,
  perExpert: boolean, beforeFields?: () => void): NativeTensor {
  const o = value as Record<string, unknown>;
  const mx = format === 'mxfp4';
  if (mx && o.blocks === undefined && o.codes !== undefined) {
    throw typeError(`${name}: expected ${MXFP4_TENSOR} for ${context} 'mxfp4', got ${describeValue(value)} (an int8 tensor)`);
  }
  if (!mx && o.codes === undefined && o.blocks !== undefined) {
    throw typeError(`${name}: expected ${INT8_TENSOR} for ${context} 'int8', got ${describeValue(value)} (an mxfp4 tensor)`);
  }
  beforeFields?.();
  const codeKey = mx ? 'blocks' : 'codes';
  // One constructor type for both formats' arrays (typedArray checks instanceof; the type is for the compiler).
  type Ctor = { new (n: number): Uint8Array; name: string };
  const codeCtor = (mx ? Uint8Array : Int8Array) as unknown as Ctor, scaleCtor = (mx ? Uint8Array : Uint16Array) as unknown as Ctor;
  const codeWhat = mx ? 'Uint8Array (mxfp4 e2m1 codes, 16 bytes per block of 32 values)' : 'Int8Array (int8 codes in [-127, 127])';
  const scaleWhat = mx ? 'Uint8Array (mxfp4 e8m0 scales, one per block of 32 values)' : 'Uint16Array (int8 f16 scales, one per block of 32 values)';
  const codeDims = (t: TensorShape) => (mx ? dims(t, [blocksOf(t), '16']) : dims(t, [`${t.depthName}=${t.depth}`]));
  const codeLength = (t: TensorShape) => rowsOf(t) * (mx ? (t.depth / BLOCK_VALUES) * MXFP4_BLOCK_BYTES : t.depth);
  const scaleLength = (t: TensorShape) => rowsOf(t) * (t.depth / BLOCK_VALUES);
  const listForm = mx ? MXFP4_PER_EXPERT : INT8_PER_EXPERT;

  const codeList = Array.isArray(o[codeKey]), scaleList = Array.isArray(o.scales);
  if (!codeList && !scaleList) {
    const form = perExpert ? `${name} per expert: ${listForm} (${expertCount(s)} arrays each)` : undefined;
    const data = typedArray(o[codeKey], `${name}.${codeKey}`, codeCtor, undefined, undefined, codeWhat);
    checkLength(data.length, `${name}.${codeKey}`, codeLength(s), codeDims(s), form);
    const scales = typedArray(o.scales, `${name}.scales`, scaleCtor, undefined, undefined, scaleWhat);
    checkLength(scales.length, `${name}.scales`, scaleLength(s), dims(s, [blocksOf(s)]), form);
    return { format, data, scales };
  }
  if (!perExpert) {
    throw typeError(`${name}: expected ${mx ? MXFP4_TENSOR : INT8_TENSOR}, got per-expert arrays (${describeValue(value)} with an Array field)`);
  }
  // Per expert: both fields are arrays of E typed arrays.
  const E = expertCount(s), e1 = expertShape(s);
  const fields = [[codeKey, codeList, codeCtor], ['scales', scaleList, scaleCtor]] as const;
  for (const [key, isList, ctor] of fields) {
    if (!isList) {
      throw typeError(`${name}.${key}: expected an Array of ${E} per-expert ${ctor.name}s (the form ${listForm}: ` +
        `both fields per expert, or both whole), got ${describeValue(o[key])}`);
    }
  }
  for (const [key] of fields) {
    const list = o[key] as unknown[];
    if (list.length !== E) throw rangeError(`${name}.${key}: expected ${E} per-expert arrays (numExperts), got an Array of ${list.length}`);
  }
  const data = (o[codeKey] as unknown[]).map((v, e) => {
    const a = typedArray(v, `${name}.${codeKey}[${e}]`, codeCtor, undefined, undefined, codeWhat);
    checkLength(a.length, `${name}.${codeKey}[${e}]`, codeLength(e1), codeDims(e1));
    return a;
  });
  const scales = (o.scales as unknown[]).map((v, e) => {
    const a = typedArray(v, `${name}.scales[${e}]`, scaleCtor, undefined, undefined, scaleWhat);
    checkLength(a.length, `${name}.scales[${e}]`, scaleLength(e1), dims(e1, [blocksOf(e1)]));
    return a;
  });
  return { format, data, scales } as NativeTensor;
}

function isTensorObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !ArrayBuffer.isView(value) && !Array.isArray(value);
}

/** The arrays of values a layer of `dtype` takes, for messages. */
function acceptedValues(dtype: WeightDtype): string[] {
  const f16 = 'Float16Array (f16 values)';
  switch (dtype) {
    case 'f32': return ['Float32Array (f32)', f16];
    case 'bf16': return ['Uint16Array (bf16 bit patterns)', f16];
    case 'f16': return ['Float32Array (f32 values)', 'Uint16Array (f16 bit patterns)', f16];
    case 'mxfp4': case 'int8': return ['Float32Array (f32 values)', 'Uint16Array (bf16 bit patterns)', f16];
  }
}

/** "a, b or c" */
function orList(items: string[]): string {
  return items.length > 1 ? `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}` : items[0];
}

/** What a weight of a layer of `dtype` may be, for messages. */
function acceptedWeights(dtype: WeightDtype): string {
  const tensor = dtype === 'mxfp4' ? [MXFP4_TENSOR] : dtype === 'int8' ? [INT8_TENSOR] : [];
  return orList([...acceptedValues(dtype), ...tensor]);
}


/**
 * One array of values as a layer of `dtype` takes it: its own dtype (f32, bf16), f32 values
 * (f16, mxfp4, int8 layers), 16-bit patterns (f16 for an 'f16' layer, else bf16), or a
 * Float16Array (any layer: f16 values, kept by an 'f16' layer, converted by the others). Null
 * for anything else (the caller says what was expected).
 */
function valuesTensor(value: unknown, name: string, dtype: WeightDtype): { format: WeightDtype; data: Float32Array | Uint16Array } | null {
  if (isFloat16Array(value)) return { format: 'f16', data: f16BitsOf(value, name) };
  if (value instanceof Float32Array && dtype !== 'bf16') return { format: 'f32', data: typedArray(value, name, Float32Array) };
  if (value instanceof Uint16Array && dtype !== 'f32') {
    const format = dtype === 'f16' ? 'f16' : 'bf16';
    return { format, data: typedArray(value, name, Uint16Array, undefined, undefined, `Uint16Array (${format} bit patterns)`) };
  }
  return null;
}

/**
 * A layer's weight (w13 or w2) as the addon takes it. f32 and bf16 layers take their own dtype
 * (and Float16Array values); f16, mxfp4 and int8 layers also take f32 values (and bf16 ones for
 * mxfp4/int8), converted while packing, and mxfp4/int8 layers pre-quantized tensors of their
 * format (not transposed). Any of these may be given per expert: an array of E typed arrays of
 * one type, or for a pre-quantized tensor its fields as arrays of E typed arrays.
 */
export function layerWeight(value: unknown, name: string, dtype: WeightDtype, s: TensorShape, transposed: boolean): NativeTensor {
  value = adopt(value);
  if (Array.isArray(value)) return perExpertWeight(value, name, dtype, s, transposed);
  const values = valuesTensor(value, name, dtype);
  if (values) {
    const kind = isFloat16Array(value) ? 'Float16Array' : values.data.constructor.name;
    checkLength(values.data.length, name, rowsOf(s) * s.depth, valuesShape(s, transposed),
      `${name} per expert: an array of ${expertCount(s)} ${kind}s (${expertValuesShape(s, transposed)} each)`);
    return values;
  }
  if (isQuantized(dtype) && isTensorObject(value)) {
    return quantizedTensor(value, name, dtype, s, 'weightDtype', true, () => {
      if (transposed) {
        throw rangeError(
          `transposed: expected false with a pre-quantized ${dtype} ${name} (its blocks of 32 run along the input axis ` +
          `of each output row: ${dims(s, [`${s.depthName}=${s.depth}`])}), got true; ` +
          'quantize the rows in that orientation, or pass f32/bf16 values');
      }
    });
  }
  throw typeError(`${name}: expected ${acceptedWeights(dtype)} for weightDtype '${dtype}', got ${describeValue(value)}`);
}

/** `name` given as an array: one typed array per expert, all of one type and length. */
function perExpertWeight(list: unknown[], name: string, dtype: WeightDtype, s: TensorShape, transposed: boolean): NativeTensor {
  const E = expertCount(s);
  const tensorAt = list.findIndex((v) => isTensorObject(v));
  if (isQuantized(dtype) && tensorAt >= 0) {
    const form = dtype === 'mxfp4' ? MXFP4_PER_EXPERT : INT8_PER_EXPERT;
    const fields = dtype === 'mxfp4' ? ['blocks', 'scales'] : ['codes', 'scales'];
    throw typeError(`${name}[${tensorAt}]: expected a typed array, got ${describeValue(list[tensorAt])}: pre-quantized experts are ` +
      `given per field, ${name}: ${form} (e.g. { ${fields.map((f) => `${f}: experts.map((t) => t.${f})`).join(', ')} }), ` +
      'not as an array of tensors');
  }
  // Types first (every expert the same), then the count, then each length.
  const tensors: { format: WeightDtype; data: Float32Array | Uint16Array }[] = [];
  let first: unknown;
  for (let e = 0; e < list.length; e++) {
    const v = adopt(list[e]);
    const at = `${name}[${e}]`;
    const t = valuesTensor(v, at, dtype);
    if (!t) {
      throw typeError(`${at}: expected ${orList(acceptedValues(dtype))} ` +
        `for weightDtype '${dtype}' (one expert of ${name}), got ${describeValue(v)}`);
    }
    if (e === 0) {
      first = v;
    } else if (t.format !== tensors[0].format || t.data.constructor !== tensors[0].data.constructor ||
      isFloat16Array(v) !== isFloat16Array(first)) {
      throw typeError(`${at}: expected ${describeKind(first)} like ${name}[0] (every expert has the same dtype), got ${describeValue(v)}`);
    }
    tensors.push(t);
  }
  if (list.length !== E) {
    throw rangeError(`${name}: expected ${E} per-expert arrays (numExperts), got an array of ${list.length}`);
  }
  const shape = expertValuesShape(s, transposed), length = rowsOf(expertShape(s)) * s.depth;
  tensors.forEach((t, e) => checkLength(t.data.length, `${name}[${e}]`, length, shape));
  return { format: tensors[0].format, data: tensors.map((t) => t.data) } as NativeTensor;
}

/** The array type of a value, for messages: 'Float32Array', 'Float16Array', … */
function describeKind(value: unknown): string {
  return ArrayBuffer.isView(value) ? value.constructor.name : describeValue(value);
}

/**
 * A layer's bias: one array for all experts (biases are small; never per expert). f32 and bf16
 * layers take their own dtype; the others f32, or 16-bit values (f16 for 'f16', else bf16);
 * every layer a Float16Array (f16 values).
 */
export function layerBias(value: unknown, name: string, dtype: WeightDtype, length: number, shape: string): NativeTensor {
  value = adopt(value);
  if (Array.isArray(value)) {
    throw typeError(`${name}: expected one typed array ${shape} for all experts, got an Array of ${value.length}: ` +
      'biases are not given per expert (they are small); concatenate them');
  }
  const t = valuesTensor(value, name, dtype);
  if (t) {
    checkLength(t.data.length, name, length, shape);
    return t;
  }
  const half = dtype === 'f16' ? 'f16' : 'bf16';
  const expected = dtype === 'f32' ? 'Float32Array (f32)' : dtype === 'bf16' ? 'Uint16Array (bf16 bit patterns)'
    : `Float32Array (f32) or Uint16Array (${half} bit patterns)`;
  throw typeError(`${name}: expected ${expected} or Float16Array (f16 values) for weightDtype '${dtype}', got ${describeValue(value)}`);
}

/** Quantized layers: H and I must be multiples of the block (each is the input axis of one matrix). */
export function checkBlockMultiple(dtype: WeightDtype, value: number, name: string, matrix: string): void {
  if (isQuantized(dtype) && value % BLOCK_VALUES !== 0) {
    throw rangeError(
      `${name}: expected a multiple of ${BLOCK_VALUES} for weightDtype '${dtype}' (blocks of ${BLOCK_VALUES} values ` +
      `along the input axis of ${matrix}), got ${value}`);
  }
}

/** The first NaN or infinity in f32 values, bf16 or f16 bit patterns, or null. */
function firstNonFinite(a: Float32Array | Uint16Array, format: string): { index: number; value: number } | null {
  if (a instanceof Float32Array) {
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return { index: i, value: a[i] };
    return null;
  }
  const [exp, man] = format === 'f16' ? [0x7c00, 0x3ff] : [0x7f80, 0x7f];
  for (let i = 0; i < a.length; i++) {
    if ((a[i] & exp) === exp) return { index: i, value: a[i] & man ? NaN : a[i] & 0x8000 ? -Infinity : Infinity };
  }
  return null;
}

/** The largest magnitude an int8 block can hold: 127 times the largest f16 scale. */
const INT8_MAX_MAGNITUDE = 127 * 65504;

function firstBeyond(a: Float32Array | Uint16Array, limit: number): { index: number; value: number } | null {
  for (let i = 0; i < a.length; i++) {
    const v = a instanceof Float32Array ? a[i] : fromBf16Bits(a[i]);
    if (Math.abs(v) > limit) return { index: i, value: v };
  }
  return null;
}

function fromBf16Bits(bits: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, bits << 16);
  return view.getFloat32(0);
}

/**
 * int8 refuses NaN and infinity (it has no code for them). The kernel library finds them while
 * quantizing, at no extra pass over the weights; this turns its error into one that names the
 * argument and the index (found by scanning, on the error path only; `w13[3][17]` for expert 3
 * of a per-expert tensor). Other errors pass through.
 */
export function int8Refusal(err: unknown, tensors: [string, NativeTensor | null][], context: string): unknown {
  if (!(err instanceof RangeError)) return err;
  const tooLarge = /^int8: .*beyond the f16 range/.test(err.message);
  if (!tooLarge && !/^int8: .*NaN or infinity/.test(err.message)) return err;
  for (const [name, t] of tensors) {
    if (!t || !(t.format === 'f32' || t.format === 'bf16' || t.format === 'f16')) continue;
    const parts: [string, Float32Array | Uint16Array][] = Array.isArray(t.data)
      ? t.data.map((d, e) => [`${name}[${e}]`, d as Float32Array | Uint16Array])
      : [[name, t.data as Float32Array | Uint16Array]];
    for (const [at, data] of parts) {
      if (tooLarge) {
        // f16 values cannot exceed 65504: only f32 and bf16 ones can be too large.
        const big = t.format === 'f16' ? null : firstBeyond(data, INT8_MAX_MAGNITUDE);
        if (big) {
          return rangeError(
            `${at}[${big.index}]: expected |value| <= ${INT8_MAX_MAGNITUDE} for ${context} 'int8' (its block's f16 scale would overflow), got ${big.value}`,
            { cause: err });
        }
        continue;
      }
      const bad = firstNonFinite(data, t.format);
      if (bad) {
        return rangeError(
          `${at}[${bad.index}]: expected a finite value for ${context} 'int8' (int8 blocks cannot hold NaN or infinity), got ${bad.value}`,
          { cause: err });
      }
    }
  }
  return err;
}

/** [rows, depth] of quantize/dequantize; quantized formats need depth % 32 == 0. */
function matrixShape(value: unknown, format: WeightDtype): { rows: number; depth: number } {
  if (!Array.isArray(value)) throw typeError(`shape: expected [rows, depth], got ${describeValue(value)}`);
  if (value.length !== 2) throw rangeError(`shape: expected [rows, depth] (2 entries), got ${value.length} entries`);
  const rows = positiveInteger(value[0], 'shape[0] (rows)');
  const depth = positiveInteger(value[1], 'shape[1] (depth)');
  if (isQuantized(format) && depth % BLOCK_VALUES !== 0) {
    throw rangeError(
      `shape[1] (depth): expected a multiple of ${BLOCK_VALUES} for '${format}' (blocks of ${BLOCK_VALUES} values along each row), got ${depth}`);
  }
  return { rows, depth };
}

function plainShape(rows: number, depth: number): TensorShape {
  return { outer: [['rows', rows]], depthName: 'depth', depth };
}

/**
 * Quantizes `rows` rows of `depth` f32 values (row-major [rows, depth], depth a multiple of 32)
 * to blocks of 32 along each row, laid out as checkpoints store them. The rules:
 * - mxfp4: scale s = floor(log2(max|v|)) − 2 + 127 (0 for an all-zero block), codes = v / 2^(s − 127)
 *   rounded to the nearest e2m1 value, ties to even, saturating at ±6 (s clamped to [0, 254]);
 *   a block holding a NaN or an infinity gets scale 0xFF (NaN);
 * - int8: d = f16(max|v| / 127), codes = round(v / d) (the exact quotient with the stored d),
 *   ties away from zero, clamped to [-127, 127]; NaN or infinity is a RangeError naming the
 *   first such value (int8 cannot hold it).
 * For a layer's W13 [E, 2I, H] pass shape [E·2I, H]; for W2 [E, H, I], [E·H, I].
 */
export function quantize(values: Float32Array, shape: readonly [number, number], format: 'mxfp4'): Mxfp4Tensor;
export function quantize(values: Float32Array, shape: readonly [number, number], format: 'int8'): Int8Tensor;
export function quantize(values: Float32Array, shape: readonly [number, number], format: QuantizedFormat): QuantizedTensor;
export function quantize(values: Float32Array, shape: readonly [number, number], format: QuantizedFormat): QuantizedTensor {
  const src = typedArray(values, 'values', Float32Array);
  const f = oneOf(format, 'format', QUANTIZED);
  const { rows, depth } = matrixShape(shape, f);
  if (src.length !== rows * depth) {
    throw rangeError(`values: expected length ${rows * depth} ([rows=${rows}, depth=${depth}]), got ${src.length}`);
  }
  const blocks = rows * (depth / BLOCK_VALUES);
  if (f === 'mxfp4') {
    const out: Mxfp4Tensor = { blocks: new Uint8Array(blocks * MXFP4_BLOCK_BYTES), scales: new Uint8Array(blocks) };
    binding.quantize('mxfp4', src, rows, depth, out.blocks, out.scales);
    return out;
  }
  const out: Int8Tensor = { codes: new Int8Array(rows * depth), scales: new Uint16Array(blocks) };
  try {
    binding.quantize('int8', src, rows, depth, out.codes, out.scales);
  } catch (err) {
    throw int8Refusal(err, [['values', { format: 'f32', data: src }]], 'format');
  }
  return out;
}

/**
 * The exact f32 values of a tensor of `rows` rows of `depth` values in `format`: a
 * pre-quantized mxfp4 or int8 tensor, or f32 values / bf16 or f16 bit patterns, or a Float16Array
 * (`'f16'`); a new array.
 */
export function dequantize(tensor: Mxfp4Tensor, shape: readonly [number, number], format: 'mxfp4'): Float32Array;
export function dequantize(tensor: Int8Tensor, shape: readonly [number, number], format: 'int8'): Float32Array;
export function dequantize(tensor: Float32Array, shape: readonly [number, number], format: 'f32'): Float32Array;
export function dequantize(tensor: Uint16Array, shape: readonly [number, number], format: 'bf16' | 'f16'): Float32Array;
export function dequantize(tensor: Float16ArrayLike, shape: readonly [number, number], format: 'f16'): Float32Array;
export function dequantize(tensor: QuantizedTensor | Float32Array | Uint16Array | Float16ArrayLike, shape: readonly [number, number],
  format: WeightDtype): Float32Array;
export function dequantize(tensor: QuantizedTensor | Float32Array | Uint16Array | Float16ArrayLike, shape: readonly [number, number],
  format: WeightDtype): Float32Array {
  const f = oneOf(format, 'format', WEIGHT_DTYPES);
  const { rows, depth } = matrixShape(shape, f);
  const s = plainShape(rows, depth);
  let t: NativeTensor;
  if (f === 'mxfp4' || f === 'int8') {
    if (!isTensorObject(tensor)) {
      throw typeError(`tensor: expected ${f === 'mxfp4' ? MXFP4_TENSOR : INT8_TENSOR}, got ${describeValue(tensor)}`);
    }
    t = quantizedTensor(tensor, 'tensor', f, s, 'format', false);
  } else if (f === 'f32') {
    t = { format: f, data: typedArray(tensor, 'tensor', Float32Array, rows * depth, valuesShape(s)) };
  } else if (f === 'f16' && isFloat16Array(adopt(tensor))) {
    const bits = f16BitsOf(adopt(tensor) as Float32Array, 'tensor');
    checkLength(bits.length, 'tensor', rows * depth, valuesShape(s));
    t = { format: f, data: bits };
  } else {
    t = { format: f, data: typedArray(tensor, 'tensor', Uint16Array, rows * depth, valuesShape(s), `Uint16Array (${f} bit patterns)`) };
  }
  const out = new Float32Array(rows * depth);
  binding.dequantize(f, t.data as TensorData, (t.scales ?? null) as Uint8Array | Uint16Array | null, rows, depth, out);
  return out;
}
