// "Never crash, never lie" (issue 11), the checkpoint part: every header lie, bad config.json
// value and special file is a CheckpointError with the code of its kind, quickly; symbolic links
// to regular files load; no message quotes a file's bytes.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { CheckpointError, openCheckpoint, loadMoeLayer, type Checkpoint } from '../lib/index';
import { bitsEqual } from './helpers';
import { encodeSafetensors, writeRaw, writeSafetensors } from './checkpoint/safetensors-writer';
import { checkpointMaker, randomHidden, tempDir, type Synthetic } from './checkpoint/synthetic';

type Code = CheckpointError['code'];

const { make, track } = checkpointMaker();

/** Awaits `p`, which must reject within `ms` with a CheckpointError of `code` containing every string. */
async function expectCode(p: Promise<unknown>, code: Code, mustContain: string[] = [], ms = 5000): Promise<CheckpointError> {
  const started = Date.now();
  const caught = await p.then(() => undefined, (e: unknown) => e);
  expect(Date.now() - started, 'took too long').toBeLessThan(ms);
  expect(caught, 'expected a CheckpointError').toBeInstanceOf(CheckpointError);
  const err = caught as CheckpointError;
  expect(err.code, err.message).toBe(code);
  for (const s of mustContain) expect(err.message).toContain(s);
  return err;
}

/** The header text, data and file of a synthetic checkpoint's model.safetensors. */
function parts(s: Synthetic) {
  const { header, data } = encodeSafetensors(s.tensors);
  return { header: header as Record<string, any>, data, file: path.join(s.dir, 'model.safetensors') };
}

/** Writes prefix (header length `length`), header text and data as they are: no padding, no fix-up. */
function writeExact(file: string, text: string, data: Uint8Array, length = Buffer.byteLength(text)): void {
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(length));
  fs.writeFileSync(file, Buffer.concat([prefix, Buffer.from(text, 'utf8'), data]));
}

async function forward(ckpt: Checkpoint, layer: number): Promise<Float32Array> {
  const block = await ckpt.loadMoeLayer(layer, { threads: 1 });
  try {
    return block.forwardSync(randomHidden(3, 2, ckpt.config.hiddenSize, false).hidden) as Float32Array;
  } finally {
    block.dispose();
  }
}

describe('safetensors headers that lie', () => {
  test('the header length reduced by 1 up to the whole trailing padding: each one refused', async () => {
    const s = make('mixtral', { seed: 40 });
    const { header, data, file } = parts(s);
    const text = JSON.stringify(header) + ' '.repeat(13); // padding of 13 spaces
    for (let k = 1; k <= 13; k++) {
      writeExact(file, text, data, Buffer.byteLength(text) - k);
      await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', [file, 'after it (trailing bytes, or a header length that is off)']);
    }
    writeExact(file, text, data);
    await openCheckpoint(s.dir); // the exact length loads
  });

  test('the header length longer than the header: refused (JSON followed by data, or data past the end)', async () => {
    const s = make('qwen3-moe', { seed: 41 });
    const { header, data, file } = parts(s);
    const text = JSON.stringify(header);
    for (let k = 1; k <= 16; k++) {
      writeExact(file, text, data, Buffer.byteLength(text) + k);
      const err = await openCheckpoint(s.dir).then(() => null, (e: unknown) => e);
      expect(err, `+${k}`).toBeInstanceOf(CheckpointError);
      expect(['ERR_MOE_CHECKPOINT_HEADER', 'ERR_MOE_CHECKPOINT_FILE']).toContain((err as CheckpointError).code);
    }
    // Data bytes that happen to be JSON whitespace still cannot shift the tensors.
    const spaced = new Uint8Array(data.length + 4).fill(0x20);
    spaced.set(data, 4);
    const shifted = JSON.stringify(Object.fromEntries(Object.entries(header).map(([k, v]) => [k, k === '__metadata__' ? v : { ...v, data_offsets: v.data_offsets.map((o: number) => o + 4) }])));
    writeExact(file, shifted, spaced, Buffer.byteLength(shifted) + 4);
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_FILE', ['runs past the end']);
    writeExact(file, shifted, spaced);
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['bytes [0, 4) of the data section', 'belong to no tensor']);
  });

  test('a gap between two tensors, data not starting at 0, trailing bytes', async () => {
    const s = make('mixtral', { seed: 42 });
    const { header, data, file } = parts(s);
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    const victim = names[5];
    // 8 bytes inserted before `victim`, the offsets of it and all after shifted: sizes stay right.
    const cut = header[victim].data_offsets[0];
    const gapped = new Uint8Array(data.length + 8);
    gapped.set(data.subarray(0, cut), 0);
    gapped.set(data.subarray(cut), cut + 8);
    const h2 = structuredClone(header);
    for (const n of names) if (h2[n].data_offsets[0] >= cut) h2[n].data_offsets = h2[n].data_offsets.map((o: number) => o + 8);
    writeRaw(file, h2, gapped);
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', [victim, 'belong to no tensor']);
    // Every tensor 16 bytes later: a gap at the start.
    const h3 = structuredClone(header);
    for (const n of names) h3[n].data_offsets = h3[n].data_offsets.map((o: number) => o + 16);
    const late = new Uint8Array(data.length + 16);
    late.set(data, 16);
    writeRaw(file, h3, late);
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['bytes [0, 16)']);
    // Bytes after the last tensor.
    writeRaw(file, header, Buffer.concat([data, Buffer.alloc(3)]));
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['3 more bytes after it', 'trailing bytes']);
    // A deleted entry leaves its bytes behind: a gap too.
    const h4 = structuredClone(header);
    delete h4[victim];
    writeRaw(file, h4, data);
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['belong to no tensor']);
  });

  test('malformed JSON structure: duplicates, __metadata__, entries, dtypes, shapes, offsets', async () => {
    const s = make('mixtral', { seed: 43 });
    const { header, data, file } = parts(s);
    const name = 'model.layers.0.block_sparse_moe.experts.1.w3.weight';
    const edit = async (f: (h: Record<string, any>) => void, contains: string[], tensor?: string) => {
      const h = structuredClone(header);
      f(h);
      writeRaw(file, h, data);
      const err = await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', contains);
      if (tensor) expect(err.tensor).toBe(tensor);
    };
    // JSON.parse keeps the last of two equal keys: a duplicate is found in the text.
    const text = JSON.stringify(header);
    const entry = JSON.stringify(header[name]);
    writeRaw(file, text.replace(`"${name}":${entry}`, `"${name}":${entry},"${name}":${entry}`), data);
    expect((await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['listed twice'])).tensor).toBe(name);
    await edit((h) => { h.__metadata__ = { format: 7 }; }, ['__metadata__', 'not a string']);
    await edit((h) => { h.__metadata__ = ['pt']; }, ['__metadata__', 'not an object']);
    await edit((h) => { h[name] = [1, 2]; }, ['not an object'], name);
    await edit((h) => { h[name] = null; }, ['not an object'], name);
    await edit((h) => { delete h[name].dtype; }, ['dtype is nothing (missing)'], name);
    await edit((h) => { h[name].dtype = 7; }, ['dtype is 7'], name);
    await edit((h) => { h[name].dtype = 'bf16 '; }, ['not a dtype name'], name);
    await edit((h) => { h[name].shape = [40, '48']; }, ['shape is'], name);
    await edit((h) => { h[name].shape = [40, -48]; }, ['shape is [40, -48]'], name);
    await edit((h) => { h[name].shape = [40, 48.5]; }, ['shape is'], name);
    await edit((h) => { h[name].shape = [2 ** 26, 2 ** 26, 2 ** 26]; }, ['more elements than a file can hold'], name);
    await edit((h) => { h[name].shape = [40, 96]; }, ['needs 7680 bytes'], name);
    await edit((h) => { h[name].data_offsets = [h[name].data_offsets[0]]; }, ['data_offsets is'], name);
    await edit((h) => { h[name].data_offsets = h[name].data_offsets.reverse(); }, ['data_offsets is', 'begin <= end'], name);
    await edit((h) => { h[name].data_offsets = [2 ** 53, 2 ** 53 + 2]; }, ['data_offsets is'], name);
    await edit((h) => { h['bad\u0001name'] = h[name]; delete h[name]; }, ['not printable']);
    await edit((h) => { h[''] = h[name]; delete h[name]; }, ['empty']);
    // A header that is not an object, or does not start with '{', or is not UTF-8.
    for (const bad of ['[]', ' {}', '"model"', '1']) {
      writeRaw(file, bad, data);
      await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ["does not start with '{'"]);
    }
    const bytes = Buffer.from(text, 'utf8');
    const at = text.indexOf(name) + 3;
    bytes[at] = 0xff; // one byte of a tensor name: not UTF-8
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(bytes.length));
    fs.writeFileSync(file, Buffer.concat([prefix, bytes, data]));
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['not valid UTF-8', `byte ${at}`]);
    // Unknown keys in an entry are ignored, as by the reference implementation; key order does not matter.
    const h = structuredClone(header);
    h[name].extra = 'x';
    writeRaw(file, Object.fromEntries(Object.entries(h).reverse()), data);
    await openCheckpoint(s.dir);
  });

  test('a corrupt header never puts the file\'s bytes in the message', async () => {
    const s = make('mixtral', { seed: 44 });
    const { data, file } = parts(s);
    const secret = 'root:x:0:0:SECRET-TEXT:/root:/bin/bash\n'.repeat(40);
    const leak = (err: CheckpointError) => {
      for (const piece of [secret.slice(0, 8), 'SECRET', 'root:x']) expect(err.message).not.toContain(piece);
    };
    // A text file as model.safetensors, directly and through a symbolic link.
    const elsewhere = path.join(tempDir('secret'), 'passwd');
    track(path.dirname(elsewhere));
    fs.writeFileSync(elsewhere, secret);
    fs.rmSync(file);
    fs.symlinkSync(elsewhere, file);
    leak(await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', [file]));
    fs.rmSync(file);
    // A header whose JSON is broken right after secret-looking text (JSON.parse would quote it).
    writeRaw(file, '{"SECRET-TEXT root:x:0:0', data);
    leak(await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['not valid JSON', 'line 1, column']));
    writeRaw(file, '{"a": SECRET-TEXT}', data);
    leak(await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['not valid JSON', 'unexpected character', 'column 7']));
    writeRaw(file, '{"a": {"dtype": "SECRET-TEXT root:x:0:0", "shape": [1], "data_offsets": [0, 1]}}', new Uint8Array(1));
    leak(await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['dtype is a string of']));
    // config.json and the index: a text file, through a link.
    writeSafetensors(file, s.tensors);
    const config = path.join(s.dir, 'config.json');
    const saved = fs.readFileSync(config);
    fs.rmSync(config);
    fs.symlinkSync(elsewhere, config);
    leak(await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_CONFIG', [config, 'not valid JSON']));
    fs.rmSync(config);
    fs.writeFileSync(config, saved);
    const index = path.join(s.dir, 'model.safetensors.index.json');
    fs.symlinkSync(elsewhere, index);
    leak(await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', [index, 'not valid JSON']));
    fs.rmSync(index);
    fs.writeFileSync(index, JSON.stringify({ weight_map: { a: 'SECRET/root:x.safetensors' } }));
    leak(await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['not a file name of this folder']));
  });
});

describe('special files: refused at once, never opened as data, never a hang', () => {
  /**
   * openCheckpoint with a FIFO in the folder must fail within a few seconds. Should it block in
   * open() instead, the FIFO's write end is opened to release it (else the worker would hang).
   */
  async function expectFifoRefused(dir: string, fifo: string): Promise<CheckpointError> {
    let settled = false;
    const p = openCheckpoint(dir).finally(() => { settled = true; });
    const timer = setTimeout(() => {
      if (!settled) {
        try {
          fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
        } catch { /* no reader */ }
      }
    }, 3000);
    try {
      return await expectCode(p, 'ERR_MOE_CHECKPOINT_FILE', [fifo, 'FIFO'], 2500);
    } finally {
      clearTimeout(timer);
    }
  }

  test.each(['model.safetensors', 'config.json', 'model.safetensors.index.json'])('a FIFO named %s', async (name) => {
    const s = make('mixtral', { seed: 45 });
    const fifo = path.join(s.dir, name);
    fs.rmSync(fifo, { force: true });
    execFileSync('mkfifo', [fifo]);
    await expectFifoRefused(s.dir, fifo);
  });

  test('a FIFO as a shard, and as a symbolic link target', async () => {
    const s = make('qwen3-moe', { seed: 46, shards: 2 });
    const shard = path.join(s.dir, 'model-00002-of-00002.safetensors');
    fs.rmSync(shard);
    execFileSync('mkfifo', [shard]);
    await expectFifoRefused(s.dir, shard);
    fs.rmSync(shard);
    const fifo = path.join(s.dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    fs.symlinkSync(fifo, shard);
    await expectFifoRefused(s.dir, shard);
  });

  test('a file replaced by a FIFO after openCheckpoint: loadMoeLayer refuses it at once', async () => {
    const s = make('mixtral', { seed: 47 });
    const ckpt = await openCheckpoint(s.dir);
    const file = path.join(s.dir, 'model.safetensors');
    fs.rmSync(file);
    execFileSync('mkfifo', [file]);
    await expectCode(ckpt.loadMoeLayer(0), 'ERR_MOE_CHECKPOINT_FILE', [file, 'FIFO'], 2500);
  });

  test('folders, devices, sockets, empty files, dangling links and link loops', async () => {
    const s = make('mixtral', { seed: 48 });
    const file = path.join(s.dir, 'model.safetensors');
    const saved = fs.readFileSync(file);
    const reset = () => fs.rmSync(file, { recursive: true, force: true });
    reset();
    fs.mkdirSync(file);
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_FILE', [file, 'a folder']);
    for (const device of ['/dev/zero', '/dev/null']) {
      reset();
      fs.symlinkSync(device, file);
      await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_FILE', [file, 'a character device', 'symbolic links are followed']);
    }
    reset();
    fs.symlinkSync(path.join(s.dir, 'nowhere'), file);
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_FILE', [file, 'symbolic link to a missing file']);
    reset();
    fs.symlinkSync(file, file);
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_FILE', [file, 'ELOOP']);
    reset();
    fs.writeFileSync(file, '');
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_FILE', [file, '0 bytes']);
    reset();
    const net = await import('node:net');
    const server = net.createServer();
    const sock = path.join(s.dir, 'sock');
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      fs.symlinkSync(sock, file);
      await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_FILE', [file, 'a socket']);
    } finally {
      server.close();
    }
    reset();
    fs.writeFileSync(file, saved);
    const config = path.join(s.dir, 'config.json');
    const text = fs.readFileSync(config);
    fs.rmSync(config);
    fs.mkdirSync(config);
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_FILE', [config, 'a folder']);
    fs.rmSync(config, { recursive: true });
    fs.writeFileSync(config, text);
    await openCheckpoint(s.dir);
  });

  test('symbolic links to regular files are followed: a linked shard, file and folder load as the originals', async () => {
    const s = make('deepseek-v3', { seed: 49, shards: 3 });
    const before = await openCheckpoint(s.dir);
    const ref = await forward(before, 1);
    // Every file moved to another folder and linked back (as the Hugging Face cache does).
    const blobs = tempDir('blobs');
    track(blobs);
    for (const name of fs.readdirSync(s.dir)) {
      const target = path.join(blobs, `blob-${name}`);
      fs.renameSync(path.join(s.dir, name), target);
      fs.symlinkSync(path.relative(s.dir, target), path.join(s.dir, name));
    }
    const linked = await openCheckpoint(s.dir);
    expect(bitsEqual(await forward(linked, 1), ref)).toBe(true);
    // A link to the folder.
    const folderLink = path.join(os.tmpdir(), `moe-cpu-folder-link-${process.pid}`);
    fs.rmSync(folderLink, { force: true });
    fs.symlinkSync(s.dir, folderLink);
    try {
      expect(bitsEqual(await forward(await openCheckpoint(folderLink), 1), ref)).toBe(true);
    } finally {
      fs.rmSync(folderLink);
    }
    // A linked single file.
    const m = make('mixtral', { seed: 50 });
    const single = path.join(m.dir, 'model.safetensors');
    const ref2 = await forward(await openCheckpoint(m.dir), 0);
    fs.renameSync(single, path.join(blobs, 'mixtral.safetensors'));
    fs.symlinkSync(path.join(blobs, 'mixtral.safetensors'), single);
    expect(bitsEqual(await forward(await openCheckpoint(m.dir), 0), ref2)).toBe(true);
  });
});

describe('index files that lie', () => {
  function index(s: Synthetic) {
    const file = path.join(s.dir, 'model.safetensors.index.json');
    return { file, json: JSON.parse(fs.readFileSync(file, 'utf8')) as { weight_map: Record<string, unknown> } & Record<string, unknown> };
  }

  test('weight_map entries: names that leave the folder, non-strings, tensors their shard lacks', async () => {
    const s = make('mixtral', { seed: 51, shards: 2 });
    const { file, json } = index(s);
    const name = 'model.layers.1.block_sparse_moe.gate.weight';
    const original = json.weight_map[name] as string;
    for (const bad of ['../model-00001-of-00002.safetensors', '/etc/passwd', 'sub/x.safetensors', '..', '.', '', 'config.json', 'a\\b.safetensors', 7, null, ['x']]) {
      fs.writeFileSync(file, JSON.stringify({ ...json, weight_map: { ...json.weight_map, [name]: bad } }));
      const err = await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', [file, 'not a file name of this folder']);
      expect(err.tensor).toBe(name);
    }
    const other = original.includes('00001') ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors';
    fs.writeFileSync(file, JSON.stringify({ ...json, weight_map: { ...json.weight_map, [name]: other } }));
    const err = await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['absent from its header']);
    expect(err.file).toBe(path.join(s.dir, other));
    fs.writeFileSync(file, JSON.stringify({ ...json, weight_map: { ...json.weight_map, 'model.not.there': original } }));
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['model.not.there', 'absent from its header']);
    for (const bad of ['[]', '"x"', '{}', '{"weight_map": []}', '{"weight_map": null}', '{"weight_map": "a"}']) {
      fs.writeFileSync(file, bad);
      await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', [file]);
    }
    fs.writeFileSync(file, '{"weight_map": {"a": "b.safetensors",');
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_HEADER', ['not valid JSON', 'unexpected end of input']);
    // Reformatted, with a byte-order mark: the same checkpoint.
    fs.writeFileSync(file, '\ufeff' + JSON.stringify(json, null, 4));
    await openCheckpoint(s.dir);
  });
});

describe('config.json values are bounded and checked before use', () => {
  async function withConfig(s: Synthetic, patch: Record<string, unknown>, code: Code, contains: string[]) {
    const file = path.join(s.dir, 'config.json');
    fs.writeFileSync(file, JSON.stringify({ ...s.config, ...patch }));
    const err = await expectCode(loadMoeLayer(s.dir, s.moeLayers[0]).then((b) => b.dispose()), code, [file, ...contains], 2000);
    if (code !== 'ERR_MOE_CHECKPOINT_TENSOR') expect(err.file).toBe(file);
    return err;
  }

  test('num_hidden_layers 1e9 and 2**32: a CheckpointError at once, not an out-of-memory death', async () => {
    const s = make('mixtral', { seed: 52 });
    for (const L of [1e9, 2 ** 32, 2 ** 53 + 2, 1e300]) {
      await withConfig(s, { num_hidden_layers: L }, 'ERR_MOE_CHECKPOINT_CONFIG', ['num_hidden_layers']);
    }
    // Within the static bound, more layers than the tensors name.
    await withConfig(s, { num_hidden_layers: 3 }, 'ERR_MOE_CHECKPOINT_CONFIG', ['num_hidden_layers: 3 layers', 'name only 2 layers']);
    await withConfig(s, { num_hidden_layers: 60000 }, 'ERR_MOE_CHECKPOINT_CONFIG', ['num_hidden_layers: 60000 layers']);
    for (const L of [0, -1, 1.5, '2', null, true]) {
      await withConfig(s, { num_hidden_layers: L }, 'ERR_MOE_CHECKPOINT_CONFIG', ['num_hidden_layers: expected a positive integer']);
    }
    // Fewer layers than the tensors name is fine (DeepSeek-V3's MTP layer follows the last).
    fs.writeFileSync(path.join(s.dir, 'config.json'), JSON.stringify({ ...s.config, num_hidden_layers: 1 }));
    expect((await openCheckpoint(s.dir)).moeLayers).toEqual([0]);
  });

  test('sizes and counts out of range', async () => {
    const s = make('deepseek-v3', { seed: 53 });
    for (const [key, value] of [
      ['hidden_size', 1e9], ['hidden_size', 2 ** 32], ['moe_intermediate_size', 0], ['n_routed_experts', 1e6],
      ['num_experts_per_tok', -1], ['n_shared_experts', 1e5], ['first_k_dense_replace', -1], ['moe_layer_freq', 0],
      ['n_group', 3], ['n_group', 0], ['topk_group', 5], ['num_experts_per_tok', 9],
    ] as const) {
      await withConfig(s, { [key]: value }, 'ERR_MOE_CHECKPOINT_CONFIG', [key]);
    }
    await withConfig(s, { num_experts_per_tok: 17 }, 'ERR_MOE_CHECKPOINT_CONFIG', ['num_experts_per_tok']);
    const q = make('qwen2-moe', { seed: 54 });
    await withConfig(q, { mlp_only_layers: [5] }, 'ERR_MOE_CHECKPOINT_CONFIG', ['mlp_only_layers']);
    await withConfig(q, { mlp_only_layers: [-1] }, 'ERR_MOE_CHECKPOINT_CONFIG', ['mlp_only_layers']);
    await withConfig(q, { decoder_sparse_step: 1e9 }, 'ERR_MOE_CHECKPOINT_CONFIG', ['decoder_sparse_step']);
    await withConfig(q, { shared_expert_intermediate_size: -3 }, 'ERR_MOE_CHECKPOINT_CONFIG', ['shared_expert_intermediate_size']);
    const m = make('mixtral', { seed: 55 });
    await withConfig(m, { num_experts_per_tok: 9 }, 'ERR_MOE_CHECKPOINT_CONFIG', ['num_experts_per_tok 9 exceeds the number of experts 8']);
    // A size within the bounds that contradicts the tensors: planned, refused, naming the tensor.
    await withConfig(m, { hidden_size: 4096 }, 'ERR_MOE_CHECKPOINT_TENSOR', ['contradicts']);
  });

  test('swiglu_limit <= 0 and other floats out of range name config.json and the key (not an option the caller never passed)', async () => {
    const g = make('gpt-oss-mxfp4', { seed: 56 });
    for (const v of [0, -1, -0.5, 3.5e38, -3.5e38, '7', []]) {
      const err = await withConfig(g, { swiglu_limit: v }, 'ERR_MOE_CHECKPOINT_CONFIG', ['swiglu_limit']);
      expect(err.message).not.toMatch(/swigluLimit/);
    }
    for (const v of [0, -1.702, 1e4, 'x']) await withConfig(g, { swiglu_alpha: v }, 'ERR_MOE_CHECKPOINT_CONFIG', ['swiglu_alpha']);
    await withConfig(g, { num_experts_per_tok: 3, experts_per_token: 4 }, 'ERR_MOE_CHECKPOINT_CONFIG', ['experts_per_token', 'num_experts_per_tok']);
    // Infinity comes from a JSON number too large for a double.
    const file = path.join(g.dir, 'config.json');
    fs.writeFileSync(file, JSON.stringify({ ...g.config, swiglu_limit: 7 }).replace('"swiglu_limit":7', '"swiglu_limit":1e999'));
    await expectCode(openCheckpoint(g.dir), 'ERR_MOE_CHECKPOINT_CONFIG', ['swiglu_limit: expected a finite number, got Infinity']);
    const d = make('deepseek-v3', { seed: 57 });
    for (const v of [0, -2.5, 1e5, 3.5e38, 'NaN', false]) {
      const err = await withConfig(d, { routed_scaling_factor: v }, 'ERR_MOE_CHECKPOINT_CONFIG', ['routed_scaling_factor']);
      expect(err.message).not.toMatch(/routedScalingFactor/);
    }
    await withConfig(d, { scoring_func: 'softmax' }, 'ERR_MOE_CHECKPOINT_UNSUPPORTED', ['scoring_func']);
    await withConfig(d, { hidden_act: 'relu' }, 'ERR_MOE_CHECKPOINT_UNSUPPORTED', ['hidden_act']);
    await withConfig(d, { hidden_act: 'constructor' }, 'ERR_MOE_CHECKPOINT_UNSUPPORTED', ['hidden_act']);
    await withConfig(d, { model_type: 'toString', architectures: ['constructor'] }, 'ERR_MOE_CHECKPOINT_UNSUPPORTED', ['unsupported model']);
    await withConfig(d, { norm_topk_prob: 'yes' }, 'ERR_MOE_CHECKPOINT_CONFIG', ['norm_topk_prob: expected true or false']);
  });

  test('config.json that is not a JSON object, too large, or not UTF-8', async () => {
    const s = make('mixtral', { seed: 58 });
    const file = path.join(s.dir, 'config.json');
    for (const [text, contains] of [['[1]', 'not a JSON object'], ['null', 'not a JSON object'], ['{"a": 1,}', 'line 1, column 9'], ['{\n  "a": tru\n}', 'line 2, column 8']] as const) {
      fs.writeFileSync(file, text);
      await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_CONFIG', [file, contains]);
    }
    fs.writeFileSync(file, Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d]));
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_CONFIG', ['not valid UTF-8', 'byte 2']);
    fs.writeFileSync(file, ' '.repeat(17 << 20));
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_CONFIG', ['larger than']);
  });
});

describe('every CheckpointError has the code of its kind', () => {
  test('missing file, truncation, changed file, missing tensor, wrong shape, unsupported dtype and model', async () => {
    const s = make('qwen3-moe', { seed: 59 });
    const file = path.join(s.dir, 'model.safetensors');
    const missing = 'model.layers.1.mlp.experts.5.up_proj.weight';
    writeSafetensors(file, s.tensors.filter((t) => t.name !== missing));
    await expectCode(loadMoeLayer(s.dir, 1), 'ERR_MOE_CHECKPOINT_TENSOR', [missing, 'missing tensor']);
    writeSafetensors(file, s.tensors.map((t) => (t.name === missing ? { ...t, shape: [t.shape[1], t.shape[0]] } : t)));
    await expectCode(loadMoeLayer(s.dir, 1), 'ERR_MOE_CHECKPOINT_TENSOR', [missing, 'contradicts']);
    writeSafetensors(file, s.tensors.map((t) => (t.name === missing ? { ...t, dtype: 'F8_E4M3' as const, data: new Uint8Array(t.data.byteLength / 2) } : t)));
    await expectCode(loadMoeLayer(s.dir, 1), 'ERR_MOE_CHECKPOINT_UNSUPPORTED', [missing, 'F8_E4M3']);
    writeSafetensors(file, s.tensors.map((t) => (t.name === missing ? { ...t, dtype: 'I32' as const, data: new Int32Array(t.data.byteLength / 2) } : t)));
    await expectCode(loadMoeLayer(s.dir, 1), 'ERR_MOE_CHECKPOINT_TENSOR', [missing, 'I32']);
    // A NaN in a routing tensor is refused at load, naming it (not blamed on hidden by every forward).
    const router = 'model.layers.1.mlp.gate.weight';
    writeSafetensors(file, s.tensors.map((t) => (t.name === router ? { ...t, data: new Uint16Array(t.data.byteLength / 2).fill(0x7fc0) } : t)));
    await expectCode(loadMoeLayer(s.dir, 1), 'ERR_MOE_CHECKPOINT_TENSOR', [router, 'not a finite number']);
    writeSafetensors(file, s.tensors);
    const ckpt = await openCheckpoint(s.dir);
    fs.truncateSync(file, fs.statSync(file).size - 10);
    await expectCode(ckpt.loadMoeLayer(1), 'ERR_MOE_CHECKPOINT_FILE', ['changed since openCheckpoint']);
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_FILE', ['runs past the end']);
    fs.rmSync(file);
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_FILE', ['no model.safetensors']);
    fs.writeFileSync(path.join(s.dir, 'config.json'), JSON.stringify({ model_type: 'llama' }));
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_UNSUPPORTED', ['unsupported model', '"llama"']);
    fs.rmSync(path.join(s.dir, 'config.json'));
    await expectCode(openCheckpoint(s.dir), 'ERR_MOE_CHECKPOINT_FILE', ['config.json', 'not found']);
    await expectCode(openCheckpoint(path.join(s.dir, 'nope')), 'ERR_MOE_CHECKPOINT_FILE', ['not a folder']);
    const big = make('mixtral', { seed: 60 });
    await expectCode((await openCheckpoint(big.dir)).loadMoeLayers({ availableBytes: 1000 }), 'ERR_MOE_OUT_OF_MEMORY', ['nothing was loaded']);
  });
});
