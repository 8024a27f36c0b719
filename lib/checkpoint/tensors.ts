// The tensors of a model folder: one model.safetensors, shards listed by
// model.safetensors.index.json, or (no index) every *.safetensors file of the folder.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { CheckpointError } from './errors';
import { readSafetensorsHeader, type SafetensorsFile, type TensorEntry } from './safetensors';

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
      throw new CheckpointError({ file: source, tensor: name }, 'missing tensor: no file of the checkpoint has it');
    }
    const file = this.#byPath.get(filePath);
    if (!file) {
      throw new CheckpointError({ file: filePath, tensor: name }, `missing tensor: its shard (listed in ${INDEX_FILE}) is not in the folder`);
    }
    const entry = file.tensors.get(name);
    if (!entry) throw new CheckpointError({ file: filePath, tensor: name }, `missing tensor: listed in ${INDEX_FILE} for this file, but absent from its header`);
    return { file, entry };
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then((s) => s.isFile(), () => false);
}

/** Reads the index (if any) and the header of every file present. */
export async function openTensorSet(dir: string): Promise<TensorSet> {
  const indexPath = path.join(dir, INDEX_FILE);
  if (await exists(indexPath)) return openIndexed(dir, indexPath);
  const single = path.join(dir, SINGLE_FILE);
  const names = (await exists(single))
    ? [SINGLE_FILE]
    : (await fs.readdir(dir)).filter((n) => n.endsWith('.safetensors')).sort();
  if (names.length === 0) {
    throw new CheckpointError({ file: dir }, `no ${SINGLE_FILE}, ${INDEX_FILE} or other .safetensors file in this folder`);
  }
  const files = await Promise.all(names.map((n) => readSafetensorsHeader(path.join(dir, n))));
  const where = new Map<string, string>();
  for (const f of files) {
    for (const name of f.tensors.keys()) {
      const other = where.get(name);
      if (other !== undefined) throw new CheckpointError({ file: f.path, tensor: name }, `also in ${other}: which one to use is ambiguous without ${INDEX_FILE}`);
      where.set(name, f.path);
    }
  }
  return new TensorSet(files, [], where, null);
}

async function openIndexed(dir: string, indexPath: string): Promise<TensorSet> {
  let index: unknown;
  try {
    index = JSON.parse(await fs.readFile(indexPath, 'utf8'));
  } catch (err) {
    throw new CheckpointError({ file: indexPath }, `corrupt index: ${(err as Error).message}`, { cause: err });
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new CheckpointError({ file: indexPath }, 'corrupt index: no "weight_map" object');
  }
  const where = new Map<string, string>();
  const shards = new Set<string>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    // A shard is a file of this folder: no path may lead elsewhere.
    if (typeof shard !== 'string' || shard !== path.basename(shard) || shard === '.' || shard === '..' || shard === '') {
      throw new CheckpointError({ file: indexPath, tensor: name }, `corrupt index: shard ${JSON.stringify(shard)} is not a file name of this folder`);
    }
    const shardPath = path.resolve(dir, shard);
    where.set(name, shardPath);
    shards.add(shardPath);
  }
  const present: string[] = [];
  const missing: string[] = [];
  for (const shard of [...shards].sort()) ((await exists(shard)) ? present : missing).push(shard);
  const files = await Promise.all(present.map(readSafetensorsHeader));
  return new TensorSet(files, missing, where, path.resolve(indexPath));
}
