// Workers terminated at random moments while they run forward, forwardSync, layer packing and
// checkpoint loads must never take the process down (a terminating environment cannot take an
// exception, and the addon must outlive the last Worker that loaded it while the native pool
// still runs its code). Each round runs in a child process (test/termination/terminate.cjs) so
// that an abort or a segfault is its exit status.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { makeCheckpoint, removeDir } from './checkpoint/synthetic';

const ROOT = path.join(__dirname, '..');
const DRIVER = path.join(__dirname, 'termination', 'terminate.cjs');
/** Before the fixes, about one process in three died within ~30 terminations. */
const PROCESSES = Number(process.env.MOE_TERMINATION_PROCESSES ?? 6);
const TERMINATIONS = Number(process.env.MOE_TERMINATION_COUNT ?? 50);

describe('Worker termination', () => {
  const checkpoint = makeCheckpoint('qwen3-moe');
  afterAll(() => removeDir(checkpoint.dir));

  test(`${PROCESSES} processes × ${TERMINATIONS} Workers terminated mid-call: no process lost`, () => {
    const lost: string[] = [];
    let terminations = 0;
    for (let p = 0; p < PROCESSES; p++) {
      const r = spawnSync(process.execPath, [DRIVER, ROOT, String(TERMINATIONS), String(1000 + p), checkpoint.dir], {
        encoding: 'utf8', timeout: 120_000, env: { ...process.env },
      });
      if (r.status !== 0) {
        lost.push(`process ${p}: status ${r.status}, signal ${r.signal}: ${(r.stderr || r.error?.message || '').slice(0, 300)}`);
        continue;
      }
      const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as { terminations: number; modes: Record<string, number> };
      expect(Object.keys(summary.modes).sort()).toEqual(['create', 'forward', 'forward-many', 'forwardSync', 'load']);
      terminations += summary.terminations;
    }
    expect(lost).toEqual([]);
    expect(terminations).toBe(PROCESSES * TERMINATIONS);
  }, 600_000);
});
