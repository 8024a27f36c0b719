// safetensors files: header parsing and validation, positioned reads.
//
// Format: 8 bytes little-endian u64 N, N bytes of JSON header
// { name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} }, then the data;
// offsets are relative to the data section. Only the header is read when a file is opened.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { CheckpointError } from './errors';

/** Bits per element of every safetensors dtype. */
export const DTYPE_BITS: Readonly<Record<string, number>> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, I16: 16, U16: 16, F16: 16, BF16: 16,
  I32: 32, U32: 32, F32: 32, F64: 64, I64: 64, U64: 64, F4: 4, F6_E2M3: 6, F6_E3M2: 6,
};

/** The safetensors reference implementation refuses larger headers. */
const MAX_HEADER_BYTES = 100_000_000;
const LENGTH_PREFIX_BYTES = 8;
/** One read call at most this big (Node caps a read at 2 GiB - 1). */
const MAX_READ_BYTES = 1 << 30;

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

/** Reads and validates the header of one file; throws CheckpointError naming file and tensor. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsFile> {
  const fh = await fs.open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new CheckpointError({ file }, `cannot open (${err.code ?? err.message})`, { cause: err });
  });
  try {
    const stat = await fh.stat();
    const fail = (message: string, tensor?: string): never => {
      throw new CheckpointError({ file, tensor }, message);
    };
    if (stat.size < LENGTH_PREFIX_BYTES) fail(`not a safetensors file: ${stat.size} bytes, shorter than the 8-byte header length`);
    const prefix = Buffer.alloc(LENGTH_PREFIX_BYTES);
    await readFully(fh, prefix, 0, file);
    const n = prefix.readBigUInt64LE(0);
    if (n > BigInt(stat.size - LENGTH_PREFIX_BYTES)) {
      fail(`corrupt or truncated: the header claims ${n} bytes but the file has only ${stat.size - LENGTH_PREFIX_BYTES} after the length`);
    }
    if (n > BigInt(MAX_HEADER_BYTES)) fail(`corrupt: header of ${n} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit of the format`);
    const headerBytes = Number(n);
    const raw = Buffer.alloc(headerBytes);
    await readFully(fh, raw, LENGTH_PREFIX_BYTES, file);
    let header: unknown;
    try {
      header = JSON.parse(raw.toString('utf8'));
    } catch (err) {
      return fail(`corrupt header: not valid JSON (${(err as Error).message})`);
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('corrupt header: not a JSON object');

    const dataStart = LENGTH_PREFIX_BYTES + headerBytes;
    const dataBytes = stat.size - dataStart;
    const tensors = new Map<string, TensorEntry>();
    for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') continue;
      const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
      if (typeof v !== 'object' || v === null) fail('corrupt header: entry is not an object', name);
      const { dtype, shape, data_offsets: offsets } = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof dtype !== 'string') fail(`corrupt header: dtype is ${JSON.stringify(dtype)}`, name);
      if (!Array.isArray(shape) || !shape.every(isCount)) fail(`corrupt header: shape is ${JSON.stringify(shape)}`, name);
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
        fail(`corrupt header: data_offsets is ${JSON.stringify(offsets)}`, name);
      }
      const [b, e] = offsets as [number, number];
      const dims = shape as number[];
      const bits = DTYPE_BITS[dtype as string];
      if (bits !== undefined && (e - b) * 8 !== elementCount(dims) * bits) {
        fail(`corrupt header: ${dtype} ${formatShape(dims)} needs ${(elementCount(dims) * bits) / 8} bytes, data_offsets [${b}, ${e}] give ${e - b}`, name);
      }
      if (e > dataBytes) {
        fail(`truncated or corrupt: data [${b}, ${e}) runs past the end of the file (data section is ${dataBytes} bytes)`, name);
      }
      tensors.set(name, { name, dtype: dtype as string, shape: dims, begin: dataStart + b, end: dataStart + e });
    }
    const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((x, y) => x.begin - y.begin);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].begin < sorted[i - 1].end) {
        fail(`corrupt header: data overlaps that of ${sorted[i - 1].name} (offsets [${sorted[i].begin - dataStart}, ${sorted[i].end - dataStart}) and [${sorted[i - 1].begin - dataStart}, ${sorted[i - 1].end - dataStart}))`, sorted[i].name);
      }
    }
    return { path: path.resolve(file), size: stat.size, mtimeMs: stat.mtimeMs, tensors };
  } finally {
    await fh.close();
  }
}

/** Fills `dest` from `position`; a short file is a CheckpointError naming it. */
export async function readFully(fh: fs.FileHandle, dest: Uint8Array, position: number, file: string, tensor?: string): Promise<void> {
  let done = 0;
  while (done < dest.length) {
    const want = Math.min(dest.length - done, MAX_READ_BYTES);
    const { bytesRead } = await fh.read(dest, done, want, position + done);
    if (bytesRead === 0) {
      throw new CheckpointError({ file, tensor }, `the file ends at byte ${position + done}, before byte ${position + dest.length} (truncated since it was opened?)`);
    }
    done += bytesRead;
  }
}
