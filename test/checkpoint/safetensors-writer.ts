// A tiny safetensors writer for the tests (independent of lib/): the exact on-disk format —
// u64 LE header length, JSON header padded with spaces to 8 bytes, then the data.
import * as fs from 'node:fs';
import * as path from 'node:path';

export type StDtype = 'F32' | 'BF16' | 'F16' | 'U8' | 'F64' | 'I32' | 'F8_E4M3';

export interface StTensor {
  name: string;
  dtype: StDtype;
  shape: number[];
  /** Raw little-endian bytes (any typed array is taken by its bytes). */
  data: ArrayBufferView;
}

const HEADER_ALIGN = 8;

function bytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Header object and data blob of a file, before any deliberate corruption. */
export function encodeSafetensors(tensors: StTensor[]): { header: Record<string, unknown>; data: Uint8Array } {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensors) {
    const n = t.data.byteLength;
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  const data = new Uint8Array(offset);
  offset = 0;
  for (const t of tensors) {
    data.set(bytes(t.data), offset);
    offset += t.data.byteLength;
  }
  return { header, data };
}

/** Writes a file from a header object (or raw header text) and a data blob. */
export function writeRaw(file: string, header: Record<string, unknown> | string, data: Uint8Array): void {
  let json = typeof header === 'string' ? header : JSON.stringify(header);
  json += ' '.repeat((HEADER_ALIGN - (Buffer.byteLength(json) % HEADER_ALIGN)) % HEADER_ALIGN);
  const head = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(head.length));
  fs.writeFileSync(file, Buffer.concat([prefix, head, data]));
}

export function writeSafetensors(file: string, tensors: StTensor[]): void {
  const { header, data } = encodeSafetensors(tensors);
  writeRaw(file, header, data);
}

/**
 * Writes `tensors` as `shards` files model-0000i-of-0000n.safetensors plus
 * model.safetensors.index.json (round-robin by tensor, so a layer spans shards).
 */
export function writeSharded(dir: string, tensors: StTensor[], shards: number): void {
  const name = (i: number) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
  const weightMap: Record<string, string> = {};
  const groups: StTensor[][] = Array.from({ length: shards }, () => []);
  tensors.forEach((t, i) => {
    groups[i % shards].push(t);
    weightMap[t.name] = name(i % shards);
  });
  groups.forEach((g, i) => writeSafetensors(path.join(dir, name(i)), g));
  const total = tensors.reduce((a, t) => a + t.data.byteLength, 0);
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
}
