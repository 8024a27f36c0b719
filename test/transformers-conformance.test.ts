// Conformance with Hugging Face transformers itself (issue 13): tiny random models of every
// family, written by transformers 5.17's own classes with save_pretrained (gpt-oss MXFP4: the
// script quantized the BF16 experts, transformers' dequantizer read them), and each MoE block's
// forward as transformers computed it (scripts/make-transformers-fixtures.py made
// test/fixtures/transformers/; its manifest.json says what was made and how). Each checkpoint
// is opened as it is, every MoE layer loaded with the defaults, and the block's forward on the
// recorded input compared with transformers' output.
//
// transformers ran in float32 on the stored values widened exactly (BF16, or MXFP4 decoded by
// its own dequantizer), so the comparison is the precision contract (README, Precision and
// Weight formats) against a reference on the same inputs: f32 weights within 1e-5; mxfp4
// weights within 1e-5 in decode (fewer than 4 tokens per selected expert, f32 activations) and
// 1e-2 in prefill (activations may be rounded to bf16 for the dot products); bf16 weights
// within 1e-2.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { openCheckpoint, type MoeBlock } from '../lib/index';
import { BF16_TOL, F32_TOL, bitsEqual, relErr } from './helpers';
import { removeDir, tempDir } from './checkpoint/synthetic';

const ROOT = fileURLToPath(new URL('./fixtures/transformers', import.meta.url));

interface Recorded {
  input_ids: number[];
  /** Per MoE layer: the block's input and output, [T][H]. */
  layers: Record<string, { input: number[][]; output: number[][] }>;
}

interface Case {
  name: string;
  family: string;
  /** The stored expert weights: f32 weights are held as f32 and computed exactly. */
  stored: 'f32' | 'bf16' | 'mxfp4';
  /** The config.json keys the other-spelling variant renames (from the manifest). */
  otherSpelling: Record<string, string>;
}

const CASES: Case[] = [
  { name: 'gpt-oss-bf16', family: 'gpt-oss', stored: 'bf16', otherSpelling: { num_local_experts: 'num_experts' } },
  { name: 'gpt-oss-mxfp4', family: 'gpt-oss', stored: 'mxfp4', otherSpelling: {} },
  { name: 'mixtral-f32', family: 'mixtral', stored: 'f32', otherSpelling: { num_local_experts: 'num_experts' } },
  { name: 'qwen3-moe-bf16', family: 'qwen-moe', stored: 'bf16', otherSpelling: { num_local_experts: 'num_experts' } },
  { name: 'qwen2-moe-f32', family: 'qwen-moe', stored: 'f32', otherSpelling: {} },
  { name: 'deepseek-v3-f32', family: 'deepseek-v3', stored: 'f32', otherSpelling: { n_routed_experts: 'num_local_experts', num_nextn_predict_layers: 'num_mtp_layers' } },
];

/** Tokens that keep every case in the decode regime: 3 tokens × top-2 / 8 experts < 4 a selected expert. */
const DECODE_TOKENS = 3;

const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'manifest.json'), 'utf8')) as {
  transformers: string;
  cases: Record<string, { moe_layers: number[]; other_spelling?: Record<string, string>; other_spelling_same_forward?: boolean }>;
};
const made: string[] = [];
afterAll(() => made.forEach(removeDir));

function recorded(name: string): Recorded {
  return JSON.parse(fs.readFileSync(path.join(ROOT, name, 'forward.json'), 'utf8')) as Recorded;
}

function rows(m: number[][], count = m.length): Float32Array {
  return Float32Array.from(m.slice(0, count).flat());
}

async function forward(block: MoeBlock, input: number[][], count?: number): Promise<Float32Array> {
  return (await block.forward(rows(input, count))) as Float32Array;
}

describe(`transformers ${manifest.transformers} fixtures`, () => {
  test('every case of the manifest is tested here, and the other spellings are the ones transformers read', () => {
    expect(Object.keys(manifest.cases).sort()).toEqual(CASES.map((c) => c.name).sort());
    for (const c of CASES) {
      expect(manifest.cases[c.name].other_spelling ?? {}).toEqual(c.otherSpelling);
      if (manifest.cases[c.name].other_spelling) expect(manifest.cases[c.name].other_spelling_same_forward).toBe(true);
    }
  });

  for (const c of CASES) {
    const dir = path.join(ROOT, c.name);
    test(`${c.name}: each MoE block's forward matches transformers'`, async () => {
      const rec = recorded(c.name);
      const ckpt = await openCheckpoint(dir);
      expect(ckpt.family).toBe(c.family);
      expect([...ckpt.moeLayers]).toEqual(manifest.cases[c.name].moe_layers);
      expect(Object.keys(rec.layers).map(Number)).toEqual(manifest.cases[c.name].moe_layers);
      for (const n of ckpt.moeLayers) {
        const { input, output } = rec.layers[String(n)];
        const block = await ckpt.loadMoeLayer(n);
        try {
          expect(block.experts.weightDtype).toBe(c.stored);
          const decode = await forward(block, input, DECODE_TOKENS);
          const decodeTol = c.stored === 'bf16' ? BF16_TOL : F32_TOL;
          expect(relErr(decode, rows(output, DECODE_TOKENS)), `layer ${n}, decode`).toBeLessThanOrEqual(decodeTol);
          const all = await forward(block, input);
          const prefillTol = c.stored === 'f32' ? F32_TOL : BF16_TOL;
          expect(relErr(all, rows(output)), `layer ${n}, ${input.length} tokens`).toBeLessThanOrEqual(prefillTol);
          // The comparison tells layers apart: another layer's output is far off.
          const other = ckpt.moeLayers.find((m) => m !== n);
          if (other !== undefined) expect(relErr(all, rows(rec.layers[String(other)].output))).toBeGreaterThan(0.1);
        } finally {
          block.dispose();
        }
      }
    });

    if (Object.keys(c.otherSpelling).length > 0) {
      test(`${c.name}: config.json in the other spelling (${Object.values(c.otherSpelling).join(', ')}) loads the same blocks`, async () => {
        const alt = tempDir(`${c.name}-other-spelling`);
        made.push(alt);
        const config = JSON.parse(fs.readFileSync(path.join(dir, 'config-other-spelling.json'), 'utf8')) as Record<string, unknown>;
        for (const [usual, other] of Object.entries(c.otherSpelling)) {
          expect(config).not.toHaveProperty(usual);
          expect(config).toHaveProperty(other);
        }
        fs.writeFileSync(path.join(alt, 'config.json'), JSON.stringify(config));
        fs.symlinkSync(path.join(dir, 'model.safetensors'), path.join(alt, 'model.safetensors'));
        const rec = recorded(c.name);
        const [a, b] = await Promise.all([openCheckpoint(dir), openCheckpoint(alt)]);
        expect(b.config).toEqual(a.config);
        for (const n of a.moeLayers) {
          const input = rec.layers[String(n)].input;
          const [x, y] = await Promise.all([a.loadMoeLayer(n), b.loadMoeLayer(n)]);
          try {
            expect(bitsEqual(await forward(y, input), await forward(x, input)), `layer ${n}`).toBe(true);
          } finally {
            x.dispose();
            y.dispose();
          }
        }
      });
    }
  }
});
