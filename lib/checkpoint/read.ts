// Positioned reads of planned tensors into the typed arrays a layer is built from, converting
// dtypes on the way in chunks: the only full-size arrays are the destinations. Reads go through
// Node's fs (libuv), conversions through the addon's dispatcher thread: the event loop only
// waits on both.
import type * as fs from './fsio';

import { binding } from '../binding';
import { internalError } from '../errors';
import type { WeightArray } from '../validate';
import { CheckpointError } from './errors';
import { MXFP4_BLOCK, MXFP4_BLOCK_BYTES } from './families';
import { openRegular, readFully } from './files';
import { elementCount, type SafetensorsFile } from './safetensors';
import { abortError } from '../errors';
import type { TensorLocation } from './tensors';

/** Bytes read per conversion chunk: big enough to make per-read costs vanish, small next to a layer. */
const CHUNK_BYTES = 16 << 20;


function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Open file handles of one load, checked against the sizes seen by openCheckpoint. */
export class TensorReader {
  readonly #handles = new Map<string, Promise<fs.FileHandle>>();
  readonly #signal: AbortSignal | undefined;

  /** `signal` cancels the load: checked before every read (at most CHUNK_BYTES apart). */
  constructor(signal?: AbortSignal) {
    this.#signal = signal;
  }

  /** Rejects with ERR_MOE_ABORTED once the load's signal has fired. */
  throwIfAborted(): void {
    if (this.#signal?.aborted) throw abortError('load', this.#signal.reason);
  }

  async #handle(file: SafetensorsFile, tensor: string): Promise<fs.FileHandle> {
    let h = this.#handles.get(file.path);
    if (!h) {
      h = (async () => {
        // A regular file still (symbolic links followed), opened without blocking: the same
        // rules as openCheckpoint's; and the very file whose header it read.
        const { fh, stat } = await openRegular(file.path);
        if (stat.size !== file.size || stat.mtimeMs !== file.mtimeMs || stat.ino !== file.ino || stat.dev !== file.dev) {
          await fh.close();
          throw new CheckpointError({ file: file.path, tensor, code: 'ERR_MOE_CHECKPOINT_FILE' }, 'the file changed since openCheckpoint read its header: open the checkpoint again');
        }
        return fh;
      })();
      this.#handles.set(file.path, h);
    }
    return h;
  }

  /** Reads `dest.length` bytes of a tensor starting `offset` bytes into its data. */
  async bytes(loc: TensorLocation, offset: number, dest: Uint8Array): Promise<void> {
    this.throwIfAborted();
    const fh = await this.#handle(loc.file, loc.entry.name);
    await readFully(fh, dest, loc.entry.begin + offset, loc.file.path, loc.entry.name);
  }

  /**
   * Elements [first, first + count) of a float tensor (F32, BF16, F16; by default all of it) into
   * dest (f32, or bf16 bits rounded to nearest even), starting at element `at` of dest.
   */
  async floats(loc: TensorLocation, dest: WeightArray, at = 0, first = 0, count = elementCount(loc.entry.shape) - first): Promise<void> {
    const { dtype } = loc.entry;
    const toBf16 = dest instanceof Uint16Array;
    const target = dest.subarray(at, at + count);
    const inBytes = dtype === 'F32' ? 4 : 2;
    if ((dtype === 'BF16' && toBf16) || (dtype === 'F32' && !toBf16)) {
      await this.bytes(loc, first * inBytes, bytesOf(target)); // same representation: straight into place
      return;
    }
    const from = dtype === 'F32' ? 'f32' : dtype === 'BF16' ? 'bf16' : 'f16';
    const perChunk = Math.floor(CHUNK_BYTES / inBytes);
    const scratch = new ArrayBuffer(Math.min(count, perChunk) * inBytes);
    for (let i = 0; i < count; i += perChunk) {
      const n = Math.min(perChunk, count - i);
      await this.bytes(loc, (first + i) * inBytes, new Uint8Array(scratch, 0, n * inBytes));
      const src = dtype === 'F32' ? new Float32Array(scratch, 0, n) : new Uint16Array(scratch, 0, n);
      // On the addon's dispatcher thread: the event loop only waits (f16 -> bf16 is one rounding).
      await binding.convertAsync(src, from, target.subarray(i, i + n));
    }
  }

  /** Bytes [first, first + dest.byteLength) of a tensor as stored (MXFP4 blocks and scales); by default from its start. */
  async raw(loc: TensorLocation, dest: ArrayBufferView, first = 0): Promise<void> {
    await this.bytes(loc, first, bytesOf(dest));
  }

  /** Elements [first, first + count) of an F16 tensor as f16 bits (no conversion) into dest, starting at element `at`. */
  async f16Bits(loc: TensorLocation, dest: Uint16Array, at = 0, first = 0, count = elementCount(loc.entry.shape) - first): Promise<void> {
    if (loc.entry.dtype !== 'F16') throw internalError(`f16Bits of a ${loc.entry.dtype} tensor (${loc.entry.name})`);
    await this.raw(loc, dest.subarray(at, at + count), first * 2);
  }

  /** A whole float tensor in a new array of `ctor`'s dtype (f32, or bf16 bits). */
  async array(loc: TensorLocation, ctor: Float32ArrayConstructor | Uint16ArrayConstructor): Promise<WeightArray> {
    const out = new ctor(elementCount(loc.entry.shape));
    await this.floats(loc, out);
    return out;
  }

  /** A router-sized tensor kept in its own precision: BF16 as bf16 bits, F32 and F16 as f32. */
  async router(loc: TensorLocation): Promise<WeightArray> {
    return this.array(loc, loc.entry.dtype === 'BF16' ? Uint16Array : Float32Array);
  }

  /**
   * MXFP4 blocks [..., nb, 16] + scales [..., nb] -> dest [..., nb * 32], decoded exactly: blocks
   * [first, first + count) (by default all of them) into dest from its start.
   */
  async mxfp4(blocks: TensorLocation, scales: TensorLocation, dest: WeightArray, first = 0, count = elementCount(scales.entry.shape) - first): Promise<void> {
    const perChunk = Math.floor(CHUNK_BYTES / MXFP4_BLOCK_BYTES);
    const codeBuf = new Uint8Array(Math.min(count, perChunk) * MXFP4_BLOCK_BYTES);
    const scaleBuf = new Uint8Array(Math.min(count, perChunk));
    for (let b = 0; b < count; b += perChunk) {
      const n = Math.min(perChunk, count - b);
      const codes = codeBuf.subarray(0, n * MXFP4_BLOCK_BYTES), s = scaleBuf.subarray(0, n);
      await Promise.all([this.bytes(blocks, (first + b) * MXFP4_BLOCK_BYTES, codes), this.bytes(scales, first + b, s)]);
      await binding.decodeMxfp4Async(codes, s, dest.subarray(b * MXFP4_BLOCK, (b + n) * MXFP4_BLOCK));
    }
  }

  async close(): Promise<void> {
    const handles = [...this.#handles.values()];
    this.#handles.clear();
    await Promise.all(handles.map((h) => h.then((fh) => fh.close(), () => undefined)));
  }
}
