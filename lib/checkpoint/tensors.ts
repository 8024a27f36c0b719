// The tensors of a model folder: one model.safetensors, shards listed by
// model.safetensors.index.json, or (no index) every *.safetensors file of the folder.
//
// The index is held to what it promises: a JSON object whose weight_map maps tensor names to
// shard file names of this folder (plain .safetensors names: no folder, no '..'), and every
// tensor it lists for a shard that is present is in that shard's header. A shard that is absent
// (nothing at its path: a partial download) does not stop openCheckpoint; one that is there but
// is not a regular file (or a symbolic link to one) does.
import * as fs from './fsio';
import * as path from 'node:path';

import { CheckpointError } from './errors';
import { fileError, isPresent, readJsonFile } from './files';
import { describeValue } from './json';
import { readSafetensorsHeader, type SafetensorsFile, type TensorEntry } from './safetensors';

/** Index files of the largest checkpoints are a few tens of MB. */
const MAX_INDEX_BYTES = 100_000_000;

export const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';

export interface TensorLocation {
  file: SafetensorsFile;
  entry: TensorEntry;
}

export class TensorSet {
  /** The files read (absolute paths), in name order. */
  readonly files: readonly SafetensorsFile[];
  /** Shards named by the index but absent from the folder (a partial download). */
  readonly missingFiles: readonly string[];
  readonly indexPath: string | null;
  readonly #where: Map<string, string>;
  readonly #byPath: Map<string, SafetensorsFile>;

  constructor(files: SafetensorsFile[], missingFiles: string[], where: Map<string, string>, indexPath: string | null) {
    this.files = files;
    this.missingFiles = missingFiles;
    this.indexPath = indexPath;
    this.#where = where;
    this.#byPath = new Map(files.map((f) => [f.path, f]));
  }

  has(name: string): boolean {
    const file = this.#where.get(name);
    return file !== undefined && this.#byPath.get(file)?.tensors.has(name) === true;
  }

  /** Where a tensor is; a CheckpointError naming the tensor and the file it should be in. */
  locate(name: string): TensorLocation {
    const filePath = this.#where.get(name);
    if (filePath === undefined) {
      const source = this.indexPath ?? this.files.map((f) => f.path).join(', ');
      throw new CheckpointError({ file: source, tensor: name, code: 'ERR_MOE_CHECKPOINT_TENSOR' }, 'missing tensor: no file of the checkpoint has it');
    }
    const file = this.#byPath.get(filePath);
    if (!file) {
      throw new CheckpointError({ file: filePath, tensor: name, code: 'ERR_MOE_CHECKPOINT_FILE' }, `missing tensor: its shard (listed in ${INDEX_FILE}) is not in the folder`);
    }
    const entry = file.tensors.get(name);
    if (!entry) throw new CheckpointError({ file: filePath, tensor: name, code: 'ERR_MOE_CHECKPOINT_HEADER' }, `missing tensor: listed in ${INDEX_FILE} for this file, but absent from its header`);
    return { file, entry };
  }

  /** Layer indices n named by the tensors (`model.layers.<n>.…`, as the index or the headers list them). */
  layerIndices(): Set<number> {
    const layers = new Set<number>();
    for (const name of this.#where.keys()) {
      const m = /(?:^|\.)layers\.(\d{1,9})\./.exec(name);
      if (m) layers.add(Number(m[1]));
    }
    return layers;
  }
}

/** Reads the index (if any) and the header of every file present. */
/** `checkAborted` throws once the caller's signal fired: called before each file is opened. */
export async function openTensorSet(dir: string, checkAborted: () => void = () => undefined): Promise<TensorSet> {
  const indexPath = path.join(dir, INDEX_FILE);
  if (await isPresent(indexPath)) return openIndexed(dir, indexPath, checkAborted);
  const single = path.join(dir, SINGLE_FILE);
  let names: string[];
  if (await isPresent(single)) {
    names = [SINGLE_FILE];
  } else {
    const entries = await fs.readdir(dir).catch(async (err: unknown) => {
      throw await fileError(dir, err);
    });
    names = entries.filter((n) => n.endsWith('.safetensors')).sort();
  }
  if (names.length === 0) {
    throw new CheckpointError({ file: dir, code: 'ERR_MOE_CHECKPOINT_FILE' }, `no ${SINGLE_FILE}, ${INDEX_FILE} or other .safetensors file in this folder`);
  }
  checkAborted();
  const files = await Promise.all(names.map(async (n) => {
    checkAborted();
    return readSafetensorsHeader(path.join(dir, n));
  }));
  const where = new Map<string, string>();
  for (const f of files) {
    for (const name of f.tensors.keys()) {
      const other = where.get(name);
      if (other !== undefined) {
        throw new CheckpointError({ file: f.path, tensor: name, code: 'ERR_MOE_CHECKPOINT_HEADER' }, `also in ${other}: which one to use is ambiguous without ${INDEX_FILE}`);
      }
      where.set(name, f.path);
    }
  }
  return new TensorSet(files, [], where, null);
}

/** A shard name of the index: a plain .safetensors file name of the folder, nothing that leads elsewhere. */
function isShardName(shard: string): boolean {
  // eslint-disable-next-line no-control-regex
  return shard.endsWith('.safetensors') && shard.length > '.safetensors'.length && !/[/\\\u0000-\u001f]/.test(shard) &&
    path.basename(shard) === shard && !path.isAbsolute(shard);
}

async function openIndexed(dir: string, indexPath: string, checkAborted: () => void): Promise<TensorSet> {
  const header = (message: string, tensor?: string) =>
    new CheckpointError({ file: indexPath, tensor, code: 'ERR_MOE_CHECKPOINT_HEADER' }, `corrupt index: ${message}`);
  const index = await readJsonFile(indexPath, MAX_INDEX_BYTES, 'ERR_MOE_CHECKPOINT_HEADER');
  if (typeof index !== 'object' || index === null || Array.isArray(index)) throw header(`the file holds ${describeValue(index)}, not a JSON object`);
  const map = (index as { weight_map?: unknown }).weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw header(`"weight_map" is ${describeValue(map)}, not an object of tensor name -> shard file name`);
  }
  const where = new Map<string, string>();
  const shards = new Set<string>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    // A shard is a file of this folder: no path may lead elsewhere.
    if (typeof shard !== 'string' || !isShardName(shard)) {
      throw header(`shard ${describeValue(shard)} is not a file name of this folder (a plain name ending in .safetensors)`, name);
    }
    const shardPath = path.resolve(dir, shard);
    where.set(name, shardPath);
    shards.add(shardPath);
  }
  const present: string[] = [];
  const missing: string[] = [];
  for (const shard of [...shards].sort()) ((await isPresent(shard)) ? present : missing).push(shard);
  checkAborted();
  const files = await Promise.all(present.map(async (shard) => {
    checkAborted();
    return readSafetensorsHeader(shard);
  }));
  // Every tensor the index lists for a shard that is here is in that shard.
  const byPath = new Map(files.map((f) => [f.path, f]));
  for (const [name, shardPath] of where) {
    const f = byPath.get(shardPath);
    if (f && !f.tensors.has(name)) {
      throw new CheckpointError({ file: shardPath, tensor: name, code: 'ERR_MOE_CHECKPOINT_HEADER' },
        `missing tensor: listed in ${INDEX_FILE} for this file, but absent from its header`);
    }
  }
  return new TensorSet(files, missing, where, path.resolve(indexPath));
}
