// Broken checkpoints: every case gives a clear error naming file and tensor, and a failed
// load leaves nothing allocated.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, test, vi } from 'vitest';
import { CheckpointError, MoeLayer, loadMoeLayer, openCheckpoint } from '../lib/index';
import { encodeSafetensors, writeRaw, writeSafetensors } from './checkpoint/safetensors-writer';
import { checkpointMaker, tempDir } from './checkpoint/synthetic';

const { make, track } = checkpointMaker();

/** Expects a CheckpointError whose message contains every string; returns it. */
async function expectCheckpointError(p: Promise<unknown>, mustContain: string[], where: { file?: string; tensor?: string } = {}): Promise<CheckpointError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a CheckpointError').toBeInstanceOf(CheckpointError);
  const err = caught as CheckpointError;
  for (const s of mustContain) expect(err.message).toContain(s);
  if (where.file !== undefined) expect(err.file).toBe(where.file);
  if (where.tensor !== undefined) expect(err.tensor).toBe(where.tensor);
  return err;
}

/** A mixtral checkpoint whose model.safetensors is rewritten by `edit` (header object, data). */
function withEditedFile(edit: (header: Record<string, any>, data: Uint8Array) => { header: Record<string, unknown> | string; data: Uint8Array }) {
  const s = make('mixtral', { seed: 2 });
  const file = path.join(s.dir, 'model.safetensors');
  const { header, data } = encodeSafetensors(s.tensors);
  const edited = edit(header as Record<string, any>, data);
  writeRaw(file, edited.header, edited.data);
  return { s, file };
}

describe('corrupt safetensors files (openCheckpoint reads the headers)', () => {
  test('shorter than the 8-byte length', async () => {
    const s = make('mixtral');
    const file = path.join(s.dir, 'model.safetensors');
    fs.writeFileSync(file, Buffer.from([1, 2, 3]));
    await expectCheckpointError(openCheckpoint(s.dir), [file, 'not a safetensors file'], { file });
  });

  test('header length past the end of the file', async () => {
    const s = make('mixtral');
    const file = path.join(s.dir, 'model.safetensors');
    const b = Buffer.alloc(64);
    b.writeBigUInt64LE(1_000_000n);
    fs.writeFileSync(file, b);
    await expectCheckpointError(openCheckpoint(s.dir), [file, 'header claims 1000000 bytes'], { file });
  });

  test('header that is not JSON', async () => {
    const { file, s } = withEditedFile((_h, data) => ({ header: '{"a": [1, 2', data }));
    await expectCheckpointError(openCheckpoint(s.dir), [file, 'not valid JSON'], { file });
  });

  test('data_offsets that do not match dtype × shape', async () => {
    const name = 'model.layers.0.block_sparse_moe.experts.1.w3.weight';
    const { file, s } = withEditedFile((h, data) => {
      h[name].data_offsets[1] -= 2;
      return { header: h, data };
    });
    await expectCheckpointError(openCheckpoint(s.dir), [file, name, 'data_offsets'], { file, tensor: name });
  });

  test('offsets that overlap another tensor', async () => {
    const a = 'model.layers.0.block_sparse_moe.experts.2.w1.weight';
    const b = 'model.layers.0.block_sparse_moe.experts.2.w3.weight';
    const { file, s } = withEditedFile((h, data) => {
      const len = h[b].data_offsets[1] - h[b].data_offsets[0];
      h[b].data_offsets = [h[a].data_offsets[0] + 2, h[a].data_offsets[0] + 2 + len];
      return { header: h, data };
    });
    const err = await expectCheckpointError(openCheckpoint(s.dir), [file, 'overlaps']);
    expect([a, b]).toContain(err.tensor);
    expect(err.message).toContain(err.tensor === a ? b : a);
  });

  test('a truncated file: offsets run past the end', async () => {
    const s = make('mixtral');
    const file = path.join(s.dir, 'model.safetensors');
    const size = fs.statSync(file).size;
    fs.truncateSync(file, size - 100);
    const last = s.tensors[s.tensors.length - 1].name;
    await expectCheckpointError(openCheckpoint(s.dir), [file, last, 'runs past the end'], { file, tensor: last });
  });

  test('no safetensors file, no config.json, bad config.json, unknown model', async () => {
    const dir = tempDir('empty');
    track(dir);
    await expectCheckpointError(openCheckpoint(dir), ['config.json', 'not found']);
    fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": ');
    await expectCheckpointError(openCheckpoint(dir), ['config.json', 'not valid JSON']);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', architectures: ['LlamaForCausalLM'] }));
    await expectCheckpointError(openCheckpoint(dir), ['unsupported model', '"llama"', 'gpt_oss', 'mixtral', 'qwen3_moe', 'deepseek_v3']);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'mixtral', num_hidden_layers: 2, hidden_size: 'big' }));
    await expectCheckpointError(openCheckpoint(dir), ['config.json', 'hidden_size', 'positive integer', '"big"']);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'mixtral', num_hidden_layers: 2, hidden_size: 8, intermediate_size: 8, num_local_experts: 2, num_experts_per_tok: 2 }));
    await expectCheckpointError(openCheckpoint(dir), [dir, 'no model.safetensors']);
    await expect(openCheckpoint(path.join(dir, 'nope'))).rejects.toThrow(/not a folder/);
    await expect(openCheckpoint(42 as never)).rejects.toThrow(TypeError);
  });
});

describe('checkpoints that contradict themselves (loadMoeLayer plans before reading)', () => {
  test('a missing tensor names the tensor and the file it should be in', async () => {
    const s = make('qwen3-moe', { seed: 3 });
    const file = path.join(s.dir, 'model.safetensors');
    const missing = 'model.layers.1.mlp.experts.5.up_proj.weight';
    writeSafetensors(file, s.tensors.filter((t) => t.name !== missing));
    const ckpt = await openCheckpoint(s.dir);
    await ckpt.loadMoeLayer(0).then((b) => b.dispose()); // the other layer is fine
    await expectCheckpointError(ckpt.loadMoeLayer(1), [file, missing, 'missing tensor'], { file, tensor: missing });
    expect(() => ckpt.layerInfo(1)).toThrow(missing);
  });

  test('a shape that contradicts config.json', async () => {
    const s = make('deepseek-v3', { seed: 4 });
    const configFile = path.join(s.dir, 'config.json');
    fs.writeFileSync(configFile, JSON.stringify({ ...s.config, moe_intermediate_size: s.dims.I + 8 }));
    const name = 'model.layers.1.mlp.experts.0.gate_proj.weight';
    const err = await expectCheckpointError(loadMoeLayer(s.dir, 1), [name, `[${s.dims.I}, ${s.dims.H}]`, 'contradicts', configFile, `[${s.dims.I + 8}, ${s.dims.H}]`], { tensor: name });
    expect(err.file).toBe(path.join(s.dir, 'model.safetensors'));
  });

  test('MXFP4 scales of the wrong shape', async () => {
    const s = make('gpt-oss-mxfp4', { seed: 5 });
    const name = 'model.layers.0.mlp.experts.down_proj_scales';
    const tensors = s.tensors.map((t) => (t.name === name ? { ...t, shape: [t.shape[0], t.shape[1] / 2, 2 * t.shape[2]] } : t));
    writeSafetensors(path.join(s.dir, 'model.safetensors'), tensors);
    await expectCheckpointError(loadMoeLayer(s.dir, 0), [name, 'contradicts', 'config.json', '[E, H, I/32]'], { tensor: name });
  });

  test('an unsupported dtype names the tensor and the dtype', async () => {
    const s = make('mixtral', { seed: 6 });
    const name = 'model.layers.1.block_sparse_moe.experts.0.w2.weight';
    const tensors = s.tensors.map((t) => (t.name === name ? { ...t, dtype: 'F8_E4M3' as const, data: new Uint8Array(t.data.byteLength / 2) } : t));
    writeSafetensors(path.join(s.dir, 'model.safetensors'), tensors);
    await expectCheckpointError(loadMoeLayer(s.dir, 1), [name, 'dtype F8_E4M3 is not supported', 'FP8'], { tensor: name });
    const other = s.tensors.find((t) => t.name === 'model.layers.0.block_sparse_moe.gate.weight')!;
    writeSafetensors(path.join(s.dir, 'model.safetensors'), s.tensors.map((t) => (t === other ? { ...t, dtype: 'I32' as const, data: new Int32Array(t.data.byteLength / 2) } : t)));
    await expectCheckpointError(loadMoeLayer(s.dir, 0), [other.name, 'dtype I32', 'F32 or BF16 or F16'], { tensor: other.name });
  });

  test('expert weights of mixed dtypes, and MXFP4 blocks that are not U8', async () => {
    const s = make('qwen3-moe', { seed: 14 });
    const name = 'model.layers.0.mlp.experts.3.down_proj.weight';
    writeSafetensors(path.join(s.dir, 'model.safetensors'), s.tensors.map((t) => (t.name === name ? { ...t, dtype: 'F16' as const } : t)));
    await expectCheckpointError(loadMoeLayer(s.dir, 0), [name, 'dtype F16 differs from BF16'], { tensor: name });
    const g = make('gpt-oss-mxfp4', { seed: 15 });
    const blocks = 'model.layers.1.mlp.experts.gate_up_proj_blocks';
    writeSafetensors(path.join(g.dir, 'model.safetensors'), g.tensors.map((t) => (t.name === blocks ? { ...t, dtype: 'BF16' as const, shape: [...t.shape.slice(0, 3), 8] } : t)));
    await expectCheckpointError(loadMoeLayer(g.dir, 1), [blocks, 'dtype BF16 is not supported here (expected U8)'], { tensor: blocks });
  });

  test('layer indices that have no MoE block, and bad options', async () => {
    const s = make('deepseek-v3', { seed: 7 });
    const ckpt = await openCheckpoint(s.dir);
    await expect(ckpt.loadMoeLayer(0)).rejects.toThrow(/layer: layer 0 has a dense MLP \(first_k_dense_replace = 1\); MoE layers: 1-2/);
    await expect(ckpt.loadMoeLayer(3)).rejects.toThrow(RangeError);
    await expect(ckpt.loadMoeLayer(1.5)).rejects.toThrow(/layer: expected an integer in \[0, 3\)/);
    await expect(ckpt.loadMoeLayer('1' as never)).rejects.toThrow(TypeError);
    await expect(ckpt.loadMoeLayer(1, { weightDtype: 'q4' as never })).rejects.toThrow(/weightDtype: expected one of 'mxfp4', 'int8', 'bf16', 'f16', 'f32', got 'q4'/);
    await expect(ckpt.loadMoeLayer(1, { weightDtype: 'q4' as never })).rejects.toThrow(RangeError);
    await expect(ckpt.loadMoeLayer(1, { weightDtype: 4 as never })).rejects.toThrow(TypeError);
    // H = 48, I = 24: no blocks of 32 along the input axes.
    await expect(ckpt.loadMoeLayer(1, { weightDtype: 'mxfp4' })).rejects.toThrow(/weightDtype: 'mxfp4' packs blocks of 32 .*hidden_size 48, intermediate_size 24/);
    await expect(ckpt.loadMoeLayer(1, { weightDtype: 'int8' })).rejects.toThrow(RangeError);
    await expect(ckpt.loadMoeLayer(1, { threads: 0 })).rejects.toThrow(/threads: expected a positive integer/);
    await expect(ckpt.loadMoeLayer(1, null as never)).rejects.toThrow(/options: expected an object/);
  });
});

describe('sharded checkpoints', () => {
  test('a shard missing from the folder: open works (partial download), its tensors do not load', async () => {
    const s = make('gpt-oss-mxfp4', { seed: 8, shards: 3 });
    const gone = path.join(s.dir, 'model-00002-of-00003.safetensors');
    fs.rmSync(gone);
    const ckpt = await openCheckpoint(s.dir);
    expect(ckpt.missingFiles).toEqual([gone]);
    const err = await expectCheckpointError(ckpt.loadMoeLayer(0), [gone, 'shard', 'not in the folder'], { file: gone });
    expect(err.tensor).toMatch(/^model\.layers\.0\./);
  });

  test('an index that names a tensor its shard lacks', async () => {
    const s = make('mixtral', { seed: 9, shards: 2 });
    const indexFile = path.join(s.dir, 'model.safetensors.index.json');
    const index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
    const name = 'model.layers.0.block_sparse_moe.experts.3.w1.weight';
    const other = index.weight_map[name].includes('00001') ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors';
    index.weight_map[name] = other;
    fs.writeFileSync(indexFile, JSON.stringify(index));
    await expectCheckpointError(loadMoeLayer(s.dir, 0), [other, name, 'absent from its header'], { file: path.join(s.dir, other), tensor: name });
  });

  test('an index whose shard names leave the folder is refused', async () => {
    const s = make('mixtral', { seed: 10, shards: 2 });
    const indexFile = path.join(s.dir, 'model.safetensors.index.json');
    const index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
    index.weight_map['model.norm.weight'] = '../../etc/passwd';
    fs.writeFileSync(indexFile, JSON.stringify(index));
    await expectCheckpointError(openCheckpoint(s.dir), [indexFile, 'not a file name of this folder'], { file: indexFile, tensor: 'model.norm.weight' });
  });

  test('without an index, one tensor in two files is ambiguous', async () => {
    const s = make('mixtral', { seed: 12 });
    writeSafetensors(path.join(s.dir, 'extra.safetensors'), s.tensors.slice(0, 1));
    fs.renameSync(path.join(s.dir, 'model.safetensors'), path.join(s.dir, 'a.safetensors'));
    await expectCheckpointError(openCheckpoint(s.dir), [s.tensors[0].name, 'ambiguous']);
  });
});

describe('files that change after openCheckpoint', () => {
  test('a file truncated after open: a clear error, and nothing stays allocated', async () => {
    // Shared expert in its own shard, so the routed experts are packed before the failure.
    const s = make('deepseek-v3', { seed: 13 });
    const isShared = (name: string) => name.includes('shared_experts');
    const a = 'model-00001-of-00002.safetensors', b = 'model-00002-of-00002.safetensors';
    fs.rmSync(path.join(s.dir, 'model.safetensors'));
    writeSafetensors(path.join(s.dir, a), s.tensors.filter((t) => !isShared(t.name)));
    writeSafetensors(path.join(s.dir, b), s.tensors.filter((t) => isShared(t.name)));
    fs.writeFileSync(path.join(s.dir, 'model.safetensors.index.json'), JSON.stringify({
      metadata: {}, weight_map: Object.fromEntries(s.tensors.map((t) => [t.name, isShared(t.name) ? b : a])),
    }));
    const ckpt = await openCheckpoint(s.dir);
    const file = path.join(s.dir, b);
    fs.truncateSync(file, fs.statSync(file).size - 64);
    const dispose = vi.spyOn(MoeLayer.prototype, 'dispose');
    try {
      await expectCheckpointError(ckpt.loadMoeLayer(1), [file, 'changed since openCheckpoint'], { file });
      expect(dispose).toHaveBeenCalledTimes(1);
      expect((dispose.mock.contexts[0] as MoeLayer).bytes).toBe(0);
      expect((dispose.mock.contexts[0] as MoeLayer).numExperts).toBe(s.dims.E);
    } finally {
      dispose.mockRestore();
    }
    // Opened again, the checkpoint reports the truncation at once.
    await expectCheckpointError(openCheckpoint(s.dir), [file, 'runs past the end']);
  });
});
