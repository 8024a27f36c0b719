// The CLI on synthetic checkpoints: `moe-cpu inspect <dir>` and `moe-cpu run <dir> --layer N`.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { writeSafetensors } from './checkpoint/safetensors-writer';
import { makeCheckpoint, removeDir, type Synthetic } from './checkpoint/synthetic';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const made: Synthetic[] = [];
afterAll(() => made.forEach((s) => removeDir(s.dir)));
const gptOss = makeCheckpoint('gpt-oss-mxfp4', { seed: 31, shards: 2 });
const qwen2 = makeCheckpoint('qwen2-moe', { seed: 32 });
made.push(gptOss, qwen2);

describe('moe-cpu inspect', () => {
  test('family, MoE layers, tensors, W13 layout and how it was decided, bytes', () => {
    const r = cli('inspect', gptOss.dir);
    expect(r.status, r.stderr).toBe(0);
    for (const s of [
      "family       gpt-oss (config.json model_type 'gpt_oss')", 'MoE layers   0-1 (2 of 2 layers)', 'topk-softmax',
      'model.layers.0.mlp.experts.gate_up_proj_blocks', 'U8', '[8, 64, 3, 16]', 'model-00001-of-00002.safetensors',
      'W13 layout   interleaved: gpt-oss stores gate and up fused', 'orientation  W13 [E, 2I, H]', 'MXFP4', 'loaded', '(bf16)',
      'all 2 MoE layers: tensors present',
    ]) expect(r.stdout).toContain(s);
  });

  test('each layer\'s stored format and the weightDtype it loads as: the default and why, or --dtype', () => {
    const r = cli('inspect', gptOss.dir);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('stored       MXFP4 (U8 e2m1 blocks + e8m0 scales)');
    expect(r.stdout).toMatch(/loads as     mxfp4 \(default: MXFP4 checkpoints load as mxfp4: the blocks and scales go into the layer as stored/);
    expect(r.stdout).toMatch(/loaded: [\d.]+ [kMG]?B \(mxfp4\), [\d.]+ [kMG]?B \(int8\), [\d.]+ [kMG]?B \(bf16\), [\d.]+ [kMG]?B \(f16\), [\d.]+ [kMG]?B \(f32\)/);
    expect(r.stdout).toMatch(/0-1 +MXFP4 +mxfp4 \(default\) +[\d.]+ [kMG]?B each/);
    expect(r.stdout).toMatch(/all 2: [\d.]+ [kMG]?B packed, [\d.]+ [kMG]?B at peak while loading \(loadMoeLayers\); [\d.]+ GB available/);
    const int8 = cli('inspect', gptOss.dir, '--dtype', 'int8');
    expect(int8.status, int8.stderr).toBe(0);
    expect(int8.stdout).toContain('loads as     int8 (--dtype; quantized while packing; default mxfp4)');
    expect(int8.stdout).toMatch(/0-1 +MXFP4 +int8 +[\d.]+ [kMG]?B each/);
    const f16 = cli('inspect', qwen2.dir, '--dtype', 'f16', '--json');
    expect(f16.status, f16.stderr).toBe(0);
    const j = JSON.parse(f16.stdout);
    expect(j.layers).toEqual([{ layer: 1, stored: 'BF16', weightDtype: 'f16', bytes: j.estimate.bytes, error: null }]);
    expect(j.layer.defaultWeightDtype).toBe('bf16');
    // Qwen2 synthetic: H = 40, I = 24: no blocks of 32.
    const mx = cli('inspect', qwen2.dir, '--dtype', 'mxfp4');
    expect(mx.status).toBe(1);
    expect(mx.stdout).toContain("cannot load as mxfp4: 'mxfp4' packs blocks of 32 values along the input axis");
  });

  test('per-expert tensors grouped, shared expert, --layer, --json', () => {
    const r = cli('inspect', qwen2.dir, '--layer', '1');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('model.layers.1.mlp.experts.{e}.gate_proj.weight ×12');
    expect(r.stdout).toContain('W13 layout   halves:');
    expect(r.stdout).toContain('sigmoid(shared_expert_gate · x)');
    const j = JSON.parse(cli('inspect', qwen2.dir, '--json').stdout);
    expect(j.family).toBe('qwen-moe');
    expect(j.moeLayers).toEqual([1]);
    expect(j.layer.isW13Interleaved).toBe(false);
    expect(j.layer.sharedExpert).toEqual({ intermediateSize: 48, gated: true });
    expect(j.problems).toEqual([]);
    const dense = cli('inspect', qwen2.dir, '--layer', '0');
    expect(dense.status).toBe(1);
    expect(dense.stdout).toContain('layer 0 is in mlp_only_layers');
  });

  test('a broken layer: listed with the tensor at fault, exit code 1', () => {
    const s = makeCheckpoint('mixtral', { seed: 33 });
    made.push(s);
    const missing = 'model.layers.1.block_sparse_moe.experts.4.w2.weight';
    writeSafetensors(path.join(s.dir, 'model.safetensors'), s.tensors.filter((t) => t.name !== missing));
    const r = cli('inspect', s.dir);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('1 of 2 MoE layers cannot be loaded');
    expect(r.stdout).toContain(missing);
    const bad = cli('inspect', path.join(s.dir, 'nope'));
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('not a folder');
  });
});

describe('moe-cpu run', () => {
  test('loads a layer, prints times, memory and a checksum that does not depend on the thread count; --verify passes', () => {
    const sums = ['1', '2'].map((threads) => {
      const r = cli('run', gptOss.dir, '--layer', '1', '--tokens', '3', '--threads', threads, '--iters', '2', '--verify');
      expect(r.status, r.stderr + r.stdout).toBe(0);
      for (const s of ['layer 1 (gpt-oss: E=8 K=4 H=96 I=32)', 'load: ', 'MXFP4 -> mxfp4', 'layer holds', 'RSS', 'peak', 'kernels: decode gemm_mxfp4_', 'forward: T=3', 'median']) {
        expect(r.stdout).toContain(s);
      }
      expect(r.stdout).toMatch(/verify: scalar kernels .*: ok/);
      return /checksum: (.*)/.exec(r.stdout)![1];
    });
    expect(sums[0]).toBe(sums[1]);
  });

  test('--dtype mxfp4|int8|bf16|f16|f32: the layer holds that format and says which kernels it runs', () => {
    for (const dtype of ['mxfp4', 'int8', 'bf16', 'f16', 'f32']) {
      const r = cli('run', gptOss.dir, '--layer', '0', '--tokens', '2', '--dtype', dtype, '--iters', '1', '--verify');
      expect(r.status, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toContain(`MXFP4 -> ${dtype}`);
      expect(r.stdout).toMatch(new RegExp(`kernels: decode gemm_${dtype}_f32__\\w+, prefill gemm_${dtype}_\\w+ \\(from \\d+ tokens per selected expert on average\\)`));
      expect(r.stdout).toMatch(/verify: .*: ok/);
    }
  });

  test('--all-layers: every MoE layer through loadMoeLayers, bytes held, RSS, peak', () => {
    const r = cli('run', gptOss.dir, '--all-layers', '--tokens', '2', '--iters', '1', '--verify');
    expect(r.status, r.stderr + r.stdout).toBe(0);
    for (const s of ['all 2 MoE layers 0-1', 'estimate: ', 'load: 2 layers in', 'MXFP4 -> mxfp4', 'sum of block.bytes', 'peak', 'RSS / held', 'through 2 layers']) {
      expect(r.stdout).toContain(s);
    }
    // Progress, one line per loaded layer, on stderr.
    for (const s of ['layer 0 (1/2)', 'layer 1 (2/2)']) expect(r.stderr).toContain(s);
    expect(r.stdout).not.toContain('(1/2)');
    const out = path.join(gptOss.dir, 'all.bin');
    expect(cli('run', gptOss.dir, '--all-layers', '--tokens', '2', '--iters', '1', '--out', out).status).toBe(0);
    expect(fs.statSync(out).size).toBe(2 * 2 * gptOss.dims.H * 4);
    const tight = spawnSync(process.execPath, [CLI, 'run', gptOss.dir, '--all-layers'], { encoding: 'utf8', env: { ...process.env, MOE_CPU_AVAILABLE_MEMORY: '1000' } });
    expect(tight.status).toBe(1);
    expect(tight.stderr).toMatch(/loading MoE layers 0-1 \(2\) as mxfp4 needs [\d.]+ [kMG]?B .*, but 1.0 kB is available \(MOE_CPU_AVAILABLE_MEMORY\); nothing was loaded/);
  });

  test('--dtype, --hidden, --seed and --out', () => {
    const out = path.join(qwen2.dir, 'out.bin');
    const r = cli('run', qwen2.dir, '--layer', '1', '--tokens', '4', '--dtype', 'f32', '--hidden', 'bf16', '--seed', '9', '--iters', '1', '--out', out);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('BF16 -> f32');
    expect(fs.statSync(out).size).toBe(4 * qwen2.dims.H * 2);
    const again = cli('run', qwen2.dir, '--layer', '1', '--tokens', '4', '--dtype', 'f32', '--hidden', 'bf16', '--seed', '10', '--iters', '1');
    expect(/checksum: (.*)/.exec(again.stdout)![1]).not.toBe(/checksum: (.*)/.exec(r.stdout)![1]);
  });

  test('bad arguments: exit code 2 for a wrong command line, 1 for what only the checkpoint can refuse', () => {
    for (const [args, code, message] of [
      [['run', qwen2.dir], 2, '--layer: required'],
      [['run', qwen2.dir, '--layer', '1', '--tokens', '0'], 2, '--tokens: expected a positive integer, got "0"'],
      [['run', qwen2.dir, '--layer', '1', '--dtype', 'q4'], 2, '--dtype: expected one of mxfp4, int8, bf16, f16, f32, got "q4"'],
      [['run', qwen2.dir, '--layer', '1', '--all-layers'], 2, '--layer and --all-layers'],
      [['inspect', qwen2.dir, '--dtype', 'q4'], 2, '--dtype: expected one of'],
      [['run', qwen2.dir, '--layer', '0'], 1, 'layer 0 is in mlp_only_layers'],
      [['run', qwen2.dir, '--layer', '1', '--dtype', 'mxfp4'], 1, "weightDtype: 'mxfp4' packs blocks of 32"],
    ] as const) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(code);
      expect(r.stderr).toContain(message);
    }
    expect(cli('run', '--help').stdout).toMatch(/moe-cpu run <dir> --layer N \| --all-layers/);
    expect(cli('help', 'inspect').stdout).toMatch(/moe-cpu inspect <dir>/);
  });

});
