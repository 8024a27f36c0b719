// safetensors files: header parsing and validation.
//
// Format: 8 bytes little-endian u64 N, N bytes of JSON header
// { name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} }, then the data;
// offsets are relative to the data section. Only the header is read when a file is opened.
//
// The header is held to what the format promises (the checks of the reference implementation,
// and a few more): UTF-8 JSON starting with '{', an object of well-formed entries with unique
// names, __metadata__ (if present) an object of strings, dtype × shape = the entry's byte length
// with element counts that are safe integers, and the entries' data tiling the data section
// exactly — starting at 0, contiguous, not overlapping, ending at the end of the file. A header
// length off by a few bytes (into the padding or the data) breaks the tiling, so it cannot shift
// the tensors silently. Every violation is a CheckpointError naming the file (and the tensor).
import * as path from 'node:path';

import { CheckpointError, type CheckpointErrorCode } from './errors';
import { openRegular, readFully } from './files';
import { describeValue, firstDuplicate, parseJson, topLevelKeys, utf8ErrorOffset } from './json';

/** Bits per element of every safetensors dtype. */
export const DTYPE_BITS: Readonly<Record<string, number>> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, I16: 16, U16: 16, F16: 16, BF16: 16,
  I32: 32, U32: 32, F32: 32, F64: 64, I64: 64, U64: 64, F4: 4, F6_E2M3: 6, F6_E3M2: 6, C64: 64,
};
/** What a dtype name looks like (dtypes outside DTYPE_BITS are kept, and refused if a layer needs them). */
const DTYPE_NAME = /^[A-Z][A-Z0-9_]{0,31}$/;

/** The safetensors reference implementation refuses larger headers. */
const MAX_HEADER_BYTES = 100_000_000;
const LENGTH_PREFIX_BYTES = 8;

export interface TensorEntry {
  name: string;
  dtype: string;
  shape: number[];
  /** Absolute byte offsets in the file, [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  /** Absolute path. */
  path: string;
  size: number;
  mtimeMs: number;
  /** Device and inode: a file replaced since it was opened is told by them. */
  dev: number;
  ino: number;
  tensors: Map<string, TensorEntry>;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** The element count of a shape, or -1 when it is not a safe integer. */
function safeElementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return -1;
  }
  return n;
}

const HEADER: CheckpointErrorCode = 'ERR_MOE_CHECKPOINT_HEADER';
const FILE: CheckpointErrorCode = 'ERR_MOE_CHECKPOINT_FILE';

/** Reads and validates the header of one file; throws CheckpointError naming file and tensor. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsFile> {
  const { fh, stat } = await openRegular(file);
  try {
    const fail = (code: CheckpointErrorCode, message: string, tensor?: string): never => {
      throw new CheckpointError({ file, tensor, code }, message);
    };
    if (stat.size < LENGTH_PREFIX_BYTES) fail(FILE, `not a safetensors file: ${stat.size} bytes, shorter than the 8-byte header length`);
    const prefix = Buffer.alloc(LENGTH_PREFIX_BYTES);
    await readFully(fh, prefix, 0, file);
    const n = prefix.readBigUInt64LE(0);
    if (n > BigInt(stat.size - LENGTH_PREFIX_BYTES)) {
      fail(n > BigInt(MAX_HEADER_BYTES) ? HEADER : FILE,
        `corrupt or truncated: the header claims ${n} bytes but the file has only ${stat.size - LENGTH_PREFIX_BYTES} after the length`);
    }
    if (n > BigInt(MAX_HEADER_BYTES)) fail(HEADER, `corrupt: header of ${n} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit of the format`);
    if (n === 0n) fail(HEADER, 'corrupt: the header length is 0 (the header is a JSON object)');
    const headerBytes = Number(n);
    const raw = Buffer.alloc(headerBytes);
    await readFully(fh, raw, LENGTH_PREFIX_BYTES, file);
    // The text of the header is never quoted: a file that is not safetensors at all may be anything.
    if (raw[0] !== 0x7b) fail(HEADER, "corrupt header: it does not start with '{' (not a safetensors file, or a wrong header length)");
    const bad = utf8ErrorOffset(raw);
    if (bad >= 0) fail(HEADER, `corrupt header: not valid UTF-8 (byte ${bad} of the header)`);
    const text = raw.toString('utf8');
    const parsed = parseJson(text);
    if ('error' in parsed) return fail(HEADER, `corrupt header: ${parsed.error}`);
    const header = parsed.value;
    if (typeof header !== 'object' || header === null || Array.isArray(header)) return fail(HEADER, 'corrupt header: not a JSON object');
    const entries = Object.entries(header as Record<string, unknown>);
    const keys = topLevelKeys(text);
    if (keys.length !== entries.length) {
      const dup = firstDuplicate(keys);
      fail(HEADER, 'corrupt header: the name is listed twice (JSON keeps only the last entry)', dup);
    }

    const dataStart = LENGTH_PREFIX_BYTES + headerBytes;
    const dataBytes = stat.size - dataStart;
    const tensors = new Map<string, TensorEntry>();
    for (const [name, value] of entries) {
      if (name === '__metadata__') {
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          fail(HEADER, `corrupt header: __metadata__ is ${describeValue(value)}, not an object of strings`);
        }
        for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
          if (typeof v !== 'string') fail(HEADER, `corrupt header: __metadata__ value ${describeValue(k)} is ${describeValue(v)}, not a string`);
        }
        continue;
      }
      // eslint-disable-next-line no-control-regex
      if (name === '' || /[\u0000-\u001f\u007f]/.test(name)) {
        fail(HEADER, `corrupt header: a tensor name is ${name === '' ? 'empty' : 'not printable (control characters)'}`);
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(HEADER, `corrupt header: the entry is ${describeValue(value)}, not an object`, name);
      const { dtype, shape, data_offsets: offsets } = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof dtype !== 'string' || !DTYPE_NAME.test(dtype)) fail(HEADER, `corrupt header: dtype is ${describeValue(dtype)}, not a dtype name`, name);
      if (!Array.isArray(shape) || !shape.every(isCount)) fail(HEADER, `corrupt header: shape is ${describeValue(shape)}, not a list of sizes`, name);
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
        fail(HEADER, `corrupt header: data_offsets is ${describeValue(offsets)}, not [begin, end] with begin <= end`, name);
      }
      const [b, e] = offsets as [number, number];
      const dims = shape as number[];
      const count = safeElementCount(dims);
      if (count < 0) fail(HEADER, `corrupt header: shape ${formatShape(dims)} has more elements than a file can hold`, name);
      const bits = DTYPE_BITS[dtype as string];
      if (bits !== undefined && BigInt(e - b) * 8n !== BigInt(count) * BigInt(bits)) {
        const need = (BigInt(count) * BigInt(bits) + 7n) / 8n;
        fail(HEADER, `corrupt header: ${dtype} ${formatShape(dims)} needs ${need} bytes, data_offsets [${b}, ${e}] give ${e - b}`, name);
      }
      if (e > dataBytes) {
        fail(FILE, `truncated or corrupt: data [${b}, ${e}) runs past the end of the file (data section is ${dataBytes} bytes)`, name);
      }
      tensors.set(name, { name, dtype: dtype as string, shape: dims, begin: dataStart + b, end: dataStart + e });
    }
    // The entries must tile the data section: no gap, no overlap, nothing after the last.
    const sorted = [...tensors.values()].sort((x, y) => x.begin - y.begin || x.end - y.end);
    let at = dataStart;
    let previous: TensorEntry | null = null;
    const rel = (t: TensorEntry) => `[${t.begin - dataStart}, ${t.end - dataStart})`;
    for (const t of sorted) {
      if (t.begin < at && previous) {
        fail(HEADER, `corrupt header: data overlaps that of ${previous.name} (offsets ${rel(t)} and ${rel(previous)})`, t.name);
      }
      if (t.begin > at) {
        fail(HEADER, `corrupt header: bytes [${at - dataStart}, ${t.begin - dataStart}) of the data section, before this tensor's ${rel(t)}, belong to no tensor`, t.name);
      }
      at = t.end;
      previous = t;
    }
    if (at !== stat.size) {
      fail(HEADER, `corrupt header: the tensors' data ends at byte ${at - dataStart} of the data section, but the file has ${stat.size - at} more byte${stat.size - at === 1 ? '' : 's'} after it ` +
        '(trailing bytes, or a header length that is off)');
    }
    return { path: path.resolve(file), size: stat.size, mtimeMs: stat.mtimeMs, dev: stat.dev, ino: stat.ino, tensors };
  } finally {
    await fh.close();
  }
}
