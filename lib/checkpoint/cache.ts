// The packed-layer cache of openCheckpoint(dir, { packedCache }): a layer is packed once, saved
// as packed-layer files, and mapped afterwards by every process and worker (one copy per host,
// in the page cache).
//
// An entry is a folder `<cacheDir>/<key>/` holding `experts.moe` (the routed experts with their
// router), and for a block with a shared expert `shared.moe` and its gate (`gate.f32` or
// `gate.bf16`, raw values). The key is a SHA-256 of what decides the packed bytes: the checkpoint
// (config.json's bytes; each safetensors file's name, size and modification time — not its
// gigabytes of content, which would cost a full read per open), the layer, the weightDtype, and
// moe-cpu's version and architecture. An entry is written into a temporary folder and renamed
// into place whole, so a reader sees a complete entry or none, and when several processes fill
// the same entry at once, the first rename wins and the others use it. An entry that cannot be
// opened (damaged, or written by an incompatible moe-cpu) is removed and packed again. The
// writer maps its entry back with every checksum verified; later opens check headers and
// section tables only (a whole model is mapped in milliseconds).
import { createHash, randomBytes } from 'node:crypto';
import * as nodeFs from 'node:fs';
import * as path from 'node:path';

import { LayerFileError } from '../errors';
import { MoeLayer } from '../layer';
import type { WeightArray } from '../validate';

const VERSION: string = (() => {
  try {
    return (JSON.parse(nodeFs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

/** What a cache entry holds: the parts of one MoeBlock. */
export interface CachedParts {
  experts: MoeLayer;
  shared: MoeLayer | null;
  gate: WeightArray | null;
}

function callback<T>(run: (cb: (err: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => run((err, value) => (err ? reject(err) : resolve(value as T))));
}
// Callback API, as the rest of the loader (fsio.ts says why).
const mkdir = (p: string) => callback<string | undefined>((cb) => nodeFs.mkdir(p, { recursive: true }, cb));
const rename = (a: string, b: string) => callback<void>((cb) => nodeFs.rename(a, b, cb));
const rm = (p: string) => callback<void>((cb) => nodeFs.rm(p, { recursive: true, force: true }, cb));
const readFile = (p: string) => callback<Buffer>((cb) => nodeFs.readFile(p, cb));
const writeFile = (p: string, data: Uint8Array) => callback<void>((cb) => nodeFs.writeFile(p, data, cb));
const readdir = (p: string) => callback<string[]>((cb) => nodeFs.readdir(p, cb));

export class PackedCache {
  readonly dir: string;
  readonly #identity: string;

  /** `identity`: the checkpoint's part of every key (see the file comment). */
  constructor(dir: string, identity: string) {
    this.dir = path.resolve(dir);
    this.#identity = identity;
  }

  /** The cache of a checkpoint: its identity from config.json's bytes and the tensor files' names, sizes and times. */
  static async of(dir: string, configFile: string, files: readonly { path: string; size: number; mtimeMs: number }[]): Promise<PackedCache> {
    const h = createHash('sha256').update(await readFile(configFile));
    for (const f of files) h.update(JSON.stringify([path.basename(f.path), f.size, f.mtimeMs]));
    return new PackedCache(dir, h.digest('hex'));
  }

  /** `part`: what of the layer is held, when not all of it (a subset of experts, no shared expert). */
  key(layer: number, weightDtype: string, part?: unknown): string {
    return createHash('sha256')
      .update(JSON.stringify({ checkpoint: this.#identity, layer, weightDtype, part: part ?? null, moeCpu: VERSION, arch: process.arch }))
      .digest('hex').slice(0, 32);
  }

  /**
   * The entry's parts, mapped; null when there is none (a damaged or incompatible one is
   * removed). `verify`: check every section's checksum — done by the process that wrote the
   * entry, when it maps it back; other processes check the headers and section tables only, so
   * that mapping a whole model takes milliseconds, not a pass over every weight.
   */
  async open(key: string, threads: number | undefined, verify = false): Promise<CachedParts | null> {
    const entry = path.join(this.dir, key);
    let names: string[];
    try {
      names = await readdir(entry);
    } catch {
      return null;
    }
    const options = threads === undefined ? { verify } : { threads, verify };
    let experts: MoeLayer | null = null, shared: MoeLayer | null = null;
    try {
      experts = await MoeLayer.open(path.join(entry, 'experts.moe'), options);
      let gate: WeightArray | null = null;
      if (names.includes('shared.moe')) {
        shared = await MoeLayer.open(path.join(entry, 'shared.moe'), options);
        const gateName = names.find((n) => n === 'gate.f32' || n === 'gate.bf16');
        if (gateName) {
          const bytes = await readFile(path.join(entry, gateName));
          const width = gateName === 'gate.f32' ? 4 : 2;
          if (bytes.byteLength !== shared.hiddenSize * width) {
            throw new LayerFileError('ERR_MOE_LAYER_FILE', path.join(entry, gateName), `${gateName}: ${bytes.byteLength} bytes, expected ${shared.hiddenSize * width}`);
          }
          const copy = new Uint8Array(bytes).buffer;
          gate = width === 4 ? new Float32Array(copy) : new Uint16Array(copy);
        }
      }
      return { experts, shared, gate };
    } catch (err) {
      experts?.dispose();
      shared?.dispose();
      if (!(err instanceof LayerFileError)) throw err;
      // Damaged, or from an incompatible moe-cpu: removed (mappings of it elsewhere stay valid), packed again.
      await rm(entry).catch(() => undefined);
      return null;
    }
  }

  /** Writes the parts as entry `key`: whole or not at all; an entry another process wrote first is kept. */
  async store(key: string, parts: CachedParts): Promise<void> {
    await mkdir(this.dir);
    const entry = path.join(this.dir, key);
    const temp = path.join(this.dir, `${key}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    await mkdir(temp);
    try {
      await parts.experts.save(path.join(temp, 'experts.moe'));
      if (parts.shared) {
        await parts.shared.save(path.join(temp, 'shared.moe'));
        if (parts.gate) {
          const g = parts.gate;
          await writeFile(path.join(temp, g instanceof Float32Array ? 'gate.f32' : 'gate.bf16'), new Uint8Array(g.buffer, g.byteOffset, g.byteLength));
        }
      }
      try {
        await rename(temp, entry);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
        // Another process completed the same entry first: theirs is used.
      }
    } finally {
      await rm(temp).catch(() => undefined);
    }
  }
}
