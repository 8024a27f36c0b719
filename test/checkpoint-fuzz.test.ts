// The checkpoint fuzzer (scripts/fuzz-checkpoints.js), a bounded run with a fixed seed: every
// mutation of every family's synthetic checkpoint is refused with a CheckpointError or loads
// honestly; none lies, leaks a file's bytes, throws anything else, crashes or hangs. It runs the
// compiled facade (dist/, as the CLI tests do: `npx tsc -p tsconfig.json` first). The long run:
// `npm run fuzz:checkpoints` (or `node scripts/fuzz-checkpoints.js --count 5000 --seed S`).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

const SCRIPT = fileURLToPath(new URL('../scripts/fuzz-checkpoints.js', import.meta.url));
const COUNT = 600;

test(`${COUNT} mutations (seed 11): only CheckpointErrors and honest loads`, () => {
  const r = spawnSync(process.execPath, [SCRIPT, '--count', String(COUNT), '--seed', '11', '--json', '--timeout', '20000'], { encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr).not.toBeNull();
  expect(r.stderr, 'dist/ is older than lib/checkpoint: run `npx tsc -p tsconfig.json`').not.toContain('is older than lib/checkpoint');
  const lines = r.stdout.trim().split('\n');
  const summary = JSON.parse(lines[lines.length - 1]);
  const failures = summary.failures.map((f: { i: number; kind: string; what?: string; outcome: string; detail: string }) =>
    `case ${f.i} (${f.kind}: ${f.what ?? ''}): ${f.outcome}: ${String(f.detail).slice(0, 300)}`);
  expect(failures).toEqual([]);
  expect(r.status).toBe(0);
  expect(summary.count).toBe(COUNT);
  const { byOutcome, byKind } = summary;
  expect(byOutcome['checkpoint-error'] + byOutcome.honest).toBe(COUNT);
  // The run exercises both outcomes, and every kind of mutation.
  expect(byOutcome['checkpoint-error']).toBeGreaterThan(COUNT / 4);
  expect(byOutcome.honest).toBeGreaterThan(COUNT / 20);
  expect(Object.keys(byKind).length).toBe(14);
}, 120_000);
