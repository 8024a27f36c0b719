// examples/: type-checked as a strict user project (examples/tsconfig.json: strict,
// exactOptionalPropertyTypes; .mts as ESM, .cjs as CommonJS JavaScript through its JSDoc), then
// run: the .mts compiled to a temporary folder that sees this package as node_modules/moe-cpu,
// the .cjs as written. The README's "Using it" snippets are examples/ files, verbatim.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ROOT, buildPackage, tsc } from './tsc';

const EXAMPLES = path.join(ROOT, 'examples');

/** A pattern for the whole output: these lines (patterns each), in this order. */
const lines = (patterns: string[]) => new RegExp(`^${patterns.join('\n')}$`);

/** What each example prints (all of it, line by line), numbers and kernel names left open. */
const PRINTS: Record<string, RegExp> = {
  'using-it.mts': /^out \[3, 64\], same both ways: true$/,
  'using-it.cjs': /^out: Uint16Array \[3, 64\], routed to experts (\d,){5}\d$/,
  'expert-parallel.cjs': /^2 workers holding experts 0-7, 8-15: sum of partial outputs vs the whole layer, max \|diff\| \/ max \|ref\| = \d\.\d\de-\d+$/,
  'weight-formats.mts': lines([
    ...['f32', 'f16', 'int8', 'mxfp4'].map((f) => `${f} +\\d+ bytes, error against f32 \\d\\.\\de[-+]\\d+`),
    'mxfp4 per expert equals mxfp4 whole: true', 'mxfp4 against its decoded f32 layer: within 1e-5',
  ]),
  'checkpoint.mts': lines([
    'gpt-oss: MoE layers 0, 1, E=4, K=2',
    'layer 0: stored as mxfp4, interleaved W13: true',
    'forward: 2 tokens; block holds \\d+ bytes as mxfp4',
    'all layers as int8: \\d+ bytes, fits: true',
    'loaded layer 0 \\(1 of 2\\)', 'loaded layer 1 \\(2 of 2\\)',
    'CheckpointError ERR_MOE_CHECKPOINT_FILE',
  ]),
  'functions.mts': lines([
    "\\w+: kernel set '\\w+' \\(runnable: [\\w, ]+\\), \\d+ threads",
    'bf16 of \\[1, 0\\.1, -3\\.14159\\]: \\[1, 0\\.10009765625, -3\\.140625\\]',
    'interleave\\(deinterleave\\(w13\\)\\) equals w13: true',
    'silu·u, both layouts agree: true',
    'token 0 goes to experts \\d, \\d \\(topk-softmax\\), \\d, \\d \\(softmax-topk\\), \\d, \\d \\(sigmoid-grouped\\)',
    'kernels: decode gemm_\\w+, prefill gemm_\\w+',
    'batched: 4 outputs of 64',
    'aborted: ERR_MOE_ABORTED; bad hidden: RangeError ERR_MOE_INVALID_ARGUMENT',
  ]),
};

let out = '';

beforeAll(() => {
  buildPackage();
  out = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-examples-'));
  fs.mkdirSync(path.join(out, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(out, 'node_modules', 'moe-cpu'), 'dir');
}, 120_000);

afterAll(() => {
  if (out) fs.rmSync(out, { recursive: true, force: true });
});

function runExample(file: string): string {
  const r = spawnSync(process.execPath, [file], { cwd: path.dirname(file), encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr, file).toBe('');
  expect(r.status, `${file}: exit ${r.status}`).toBe(0);
  return r.stdout.trim();
}

describe('examples/', () => {
  test('every example is listed here with what it prints', () => {
    const files = fs.readdirSync(EXAMPLES).filter((f) => /\.(mts|cjs)$/.test(f)).sort();
    expect(files).toEqual(Object.keys(PRINTS).sort());
  });

  test('they type-check, strict and with exactOptionalPropertyTypes', () => {
    const r = tsc(['-p', path.join(EXAMPLES, 'tsconfig.json')]);
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
  });

  describe('they run', () => {
    beforeAll(() => {
      const r = tsc(['-p', path.join(EXAMPLES, 'tsconfig.json'), '--noEmit', 'false', '--outDir', out]);
      expect(r.output).toBe('');
    }, 120_000);
    for (const [name, prints] of Object.entries(PRINTS)) {
      test(name, () => {
        // The JavaScript runs as it is written; TypeScript as tsc emitted it.
        const file = name.endsWith('.cjs') ? path.join(EXAMPLES, name) : path.join(out, name.replace(/\.mts$/, '.mjs'));
        expect(runExample(file)).toMatch(prints);
      });
    }
  });

  test("the README's \"Using it\" code blocks are examples/ files, verbatim", () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = /^## Using it\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? '';
    const blocks = [...section.matchAll(/^```(?:ts|js)\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
    expect(blocks.length).toBeGreaterThan(0);
    const sources = Object.keys(PRINTS).map((f) => fs.readFileSync(path.join(EXAMPLES, f), 'utf8'));
    for (const block of blocks) expect(sources, block.slice(0, 80)).toContain(block);
  });
});
