// The command line itself (dist/cli.js): --version, help per command, exit codes (2: the command
// line is wrong, 1: the run failed), --json on every command with nothing else on stdout,
// progress and the memory a run needs on stderr, and a bench footer that names only what exists.
// Every run is small: the `tiny` bench preset, synthetic checkpoints of a few hundred kB.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { openCheckpoint } from '../lib/index';
import { Progress } from '../lib/commands/progress';
import { makeCheckpoint, removeDir } from './checkpoint/synthetic';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = path.join(ROOT, 'dist', 'cli.js');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function cli(args: string[], options: { env?: Record<string, string>; cli?: string } = {}) {
  const r = spawnSync(process.execPath, [options.cli ?? CLI, ...args], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...options.env },
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** stdout as one JSON value: throws if anything else is on it. */
function json(stdout: string): Record<string, any> {
  return JSON.parse(stdout) as Record<string, any>;
}

// bench at its smallest: a toy shape, 1 thread, one timed call, a 1 MiB sweep.
const TINY_BENCH = ['bench', '--preset', 'tiny', '--tokens', '1,4', '--iters', '1', '--threads', '1', '--sweep-mb', '1'];

const gptOss = makeCheckpoint('gpt-oss-mxfp4', { seed: 41 });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-cli-'));
afterAll(() => {
  removeDir(gptOss.dir);
  removeDir(tmp);
});

describe('--version', () => {
  test('--version, -v and -V print the package version alone; --json as an object', () => {
    for (const flag of ['--version', '-v', '-V']) {
      const r = cli([flag]);
      expect(r.status, flag).toBe(0);
      expect(r.stdout).toBe(`${VERSION}\n`);
      expect(r.stderr).toBe('');
    }
    expect(json(cli(['--version', '--json']).stdout)).toEqual({ name: 'moe-cpu', version: VERSION });
    expect(cli(['run', '--version']).stdout).toBe(`${VERSION}\n`);
  });
});

describe('help', () => {
  test('--help lists the commands, exit codes and the common options', () => {
    for (const args of [['--help'], ['-h'], ['help']]) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout).toContain(`moe-cpu ${VERSION}`);
      for (const s of ['commands:', '  bench ', '  inspect ', '  run ', '--json', 'exit codes: 0 done; 1 failed', '2 usage error']) {
        expect(r.stdout).toContain(s);
      }
    }
  });

  test('<command> --help and help <command> print that command\'s help, not the global text', () => {
    const synopsis: Record<string, string> = {
      bench: 'usage: moe-cpu bench [--preset NAME]',
      inspect: 'usage: moe-cpu inspect <dir>',
      run: 'usage: moe-cpu run <dir> --layer N | --all-layers',
    };
    for (const [command, first] of Object.entries(synopsis)) {
      const a = cli([command, '--help']), b = cli(['help', command]), c = cli([command, '-h']);
      for (const r of [a, b, c]) {
        expect(r.status, command).toBe(0);
        expect(r.stdout.startsWith(first), r.stdout).toBe(true);
        expect(r.stdout).not.toContain('commands:');
      }
      expect(b.stdout).toBe(a.stdout);
      expect(c.stdout).toBe(a.stdout);
    }
    // --help wins over the rest of the line, even a bad value: it runs nothing.
    expect(cli(['run', '--layer', 'x', '--help']).status).toBe(0);
    expect(cli(['bench', '--preset', 'tiny', '--help']).stdout).toContain('--sweep-mb N');
  });

  test('no command: the global help on stderr, nothing on stdout, exit code 2; help for an unknown command: 2', () => {
    const r = cli([]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('commands:');
    const unknown = cli(['help', 'frobnicate']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
  });
});

describe('exit codes', () => {
  test('2 for a command line that is wrong, with the option and the value in the message; stdout empty', () => {
    const cases: [string[], string][] = [
      [['frobnicate'], "moe-cpu: unknown command 'frobnicate' (commands: bench, inspect, run)"],
      [['bench', '--frobnicate'], "moe-cpu bench: unknown option '--frobnicate' for bench"],
      [['bench', '-x'], "unknown option '-x'"],
      [['run', gptOss.dir, '--layer', 'x'], 'moe-cpu run: --layer: expected a non-negative integer, got "x"'],
      [['run', gptOss.dir, '--layer=-1'], '--layer: expected a non-negative integer, got "-1"'],
      [['run', gptOss.dir, '--layer', '1.5'], '--layer: expected a non-negative integer, got "1.5"'],
      [['run', gptOss.dir, '--layer', '1e3'], '--layer: expected a non-negative integer, got "1e3"'],
      [['run', gptOss.dir, '--layer'], '--layer: expected a value'],
      [['run', gptOss.dir, '--layer', '0', '--tokens', '0'], '--tokens: expected a positive integer, got "0"'],
      [['run', gptOss.dir, '--layer', '0', '--hidden', 'f16'], '--hidden: expected one of f32, bf16, got "f16"'],
      [['run', gptOss.dir, '--layer', '0', '--verify=yes'], '--verify: takes no value, got "yes"'],
      [['run', '--layer', '0'], 'run: expected one folder, got 0'],
      [['inspect', gptOss.dir, '--layer', 'one'], '--layer: expected a non-negative integer, got "one"'],
      [['inspect'], 'inspect: expected one folder, got 0'],
      [['bench', '--preset', 'gpt-5'], '--preset: expected one of gpt-oss-20b, gpt-oss-120b, mixtral-8x7b, qwen3-30b-a3b, deepseek-v3, tiny, got "gpt-5"'],
      [['bench', '--tokens', '1,x'], '--tokens: expected comma-separated positive integers, got "1,x"'],
      [['bench', '--dtype', 'bf16,bf16'], '--dtype: expected one or more of f32, bf16, f16, mxfp4, int8 (comma-separated, each once), got "bf16,bf16"'],
      [['bench', '--threads', '0'], '--threads: expected a positive integer, got "0"'],
      [['bench', 'somewhere'], 'bench: takes no folder or other positional argument, got "somewhere"'],
    ];
    for (const [args, message] of cases) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toMatch(/\(moe-cpu( \w+)? --help for usage\)/);
      expect(r.stdout, args.join(' ')).toBe('');
    }
  });

  test('1 for a run that fails: no such folder, a layer the checkpoint lacks, not enough memory', () => {
    const missing = cli(['inspect', path.join(tmp, 'nope')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('moe-cpu inspect: ');
    expect(missing.stderr).not.toContain('for usage');
    const lacks = cli(['run', gptOss.dir, '--layer', '7']);
    expect(lacks.status).toBe(1);
    expect(lacks.stderr).toMatch(/moe-cpu run: .*7/);
    const tight = cli(TINY_BENCH, { env: { MOE_CPU_AVAILABLE_MEMORY: '1000000' } });
    expect(tight.status).toBe(1);
    expect(tight.stderr).toMatch(/moe-cpu bench: not enough memory: the run needs ~[\d.]+ MB but 1.00 MB is available \(MOE_CPU_AVAILABLE_MEMORY\); nothing was allocated/);
    expect(tight.stdout).toBe('');
  });
});

describe('--json', () => {
  test('bench: one object on stdout; the layer holds what the stated memory needs say', () => {
    const r = cli([...TINY_BENCH, '--dtype', 'bf16,mxfp4', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const j = json(r.stdout);
    expect(j.command).toBe('bench');
    expect(j.preset).toMatchObject({ name: 'tiny', numExperts: 8, hiddenSize: 64, intermediateSize: 64, topK: 2 });
    expect(j.threads).toBe(1);
    expect(j.weights).toBe('cold');
    expect(j.sweepBytes).toBe(1 << 20);
    expect(j.readBandwidthGBps).toBeGreaterThan(0);
    expect(j.results.map((x: any) => x.dtype)).toEqual(['bf16', 'mxfp4']);
    for (const result of j.results) {
      expect(result.rows.map((row: any) => row.tokens)).toEqual([1, 4]);
      for (const row of result.rows) {
        expect(row.calls).toBe(1);
        expect(row.medianMs).toBeGreaterThan(0);
        expect(row.readBandwidthFraction).toBeGreaterThan(0);
      }
      expect(result.kernels.decode).toMatch(new RegExp(`^gemm_${result.dtype}_f32__`));
    }
    // The largest step is bf16 (16 bits a weight): its packed size as computed before allocating
    // equals what the layer then held.
    const bf16 = j.results[0];
    expect(j.memory.parts.packedWeights).toBe(bf16.layerBytes);
    expect(j.memory.parts.cacheSweep).toBe(1 << 20);
    expect(j.memory.bytes).toBe(Object.values(j.memory.parts as Record<string, number>).reduce((a, b) => a + b, 0));
    expect(j.memory.fits).toBe(true);
  });

  test('inspect: one object on stdout', () => {
    const r = cli(['inspect', gptOss.dir, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const j = json(r.stdout);
    expect(j.command).toBe('inspect');
    expect(j.family).toBe('gpt-oss');
    expect(j.moeLayers).toEqual([0, 1]);
    expect(j.problems).toEqual([]);
  });

  test('run: one object on stdout, the same figures as the text; memory needs equal estimate() and block.bytes', async () => {
    const args = ['run', gptOss.dir, '--layer', '1', '--tokens', '2', '--iters', '1', '--threads', '1'];
    const r = cli([...args, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const j = json(r.stdout);
    expect(j.command).toBe('run');
    expect(j).toMatchObject({ family: 'gpt-oss', layers: [1], stored: 'MXFP4', weightDtype: 'mxfp4', threads: 1, verify: null });
    expect(j.forward).toMatchObject({ tokens: 2, hidden: 'f32', iters: 1 });
    expect(j.kernels.decode).toMatch(/^gemm_mxfp4_f32__/);
    const estimate = (await openCheckpoint(gptOss.dir)).estimate({ layers: [1] });
    expect(j.memory.needs.parts.packedWeights).toBe(estimate.bytes);
    expect(j.memory.needs.parts.staging).toBe(estimate.stagingBytes);
    expect(j.memory.heldBytes).toBe(estimate.bytes);
    const text = cli(args);
    expect(text.stdout).toContain(`checksum: fnv1a32 ${j.checksum.fnv1a32},`);
  });

  test('run --all-layers --verify: one object; the child process of --verify leaves stdout alone', () => {
    const r = cli(['run', gptOss.dir, '--all-layers', '--tokens', '1', '--iters', '1', '--verify', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const j = json(r.stdout);
    expect(j.layers).toEqual([0, 1]);
    expect(j.verify.ok).toBe(true);
    expect(j.verify.relativeError).toBeLessThanOrEqual(j.verify.tolerance);
  });

  test('errors: an object with the code on stdout, the message on stderr; usage errors say so', () => {
    const usage = cli(['run', gptOss.dir, '--layer', 'x', '--json']);
    expect(usage.status).toBe(2);
    expect(json(usage.stdout)).toEqual({ error: { usage: true, name: 'RangeError', code: 'ERR_MOE_INVALID_ARGUMENT', message: '--layer: expected a non-negative integer, got "x"' } });
    const failure = cli(['inspect', path.join(tmp, 'nope'), '--json']);
    expect(failure.status).toBe(1);
    const e = json(failure.stdout).error;
    expect(e.usage).toBe(false);
    expect(e.code).toBe('ERR_MOE_CHECKPOINT_FILE');
    expect(failure.stderr).toContain(e.message);
  });
});

describe('stderr: progress and the memory a run needs, before it starts', () => {
  test('run: memory needs and loading lines on stderr, none of it on stdout', () => {
    const r = cli(['run', gptOss.dir, '--layer', '1', '--iters', '1']);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stderr.split('\n');
    const needs = lines.findIndex((l) => /^memory: needs ~[\d.]+ [kMG]?B: packed weights [\d.]+ [kMG]?B \+ staging arrays while a layer is packed [\d.]+ [kMG]?B \+ activations \(T=1\) [\d.]+ [kMG]?B; [\d.]+ [kMG]?B available/.test(l));
    const loading = lines.findIndex((l) => /^loading layer 1: [\d.]+ [kMG]?B from disk, MXFP4 -> mxfp4$/.test(l));
    const loaded = lines.findIndex((l) => /\] 100%  layer 1 \(1\/1\), [\d.]+ [kMG]?B of [\d.]+ [kMG]?B/.test(l));
    expect(needs, r.stderr).toBeGreaterThanOrEqual(0);
    expect(loading, r.stderr).toBeGreaterThan(needs);
    expect(loaded, r.stderr).toBeGreaterThan(loading);
    expect(r.stdout).not.toMatch(/needs ~|loading layer|%  layer/);
    expect(r.stdout).toContain('load: ');
  });

  test('bench: memory needs and a progress line per step on stderr; stdout has the tables only', () => {
    const r = cli(TINY_BENCH);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^memory: needs ~[\d.]+ MB: read-bandwidth probe 268 MB \+ cache sweep 1.05 MB \+ packed weights \(bf16\) [\d.]+ kB \+ source arrays while packing [\d.]+ kB \+ activations \(T=4\) [\d.]+ kB; /);
    for (const s of ['read bandwidth ', 'bf16: layer packed in', 'bf16 T=1: ', '100%  bf16 T=4: ']) expect(r.stderr).toContain(s);
    expect(r.stdout).not.toMatch(/\[#|needs ~/);
    expect(r.stdout).toMatch(/tokens +calls +median ms/);
  });
});

describe('Progress in a log (stderr not a terminal)', () => {
  test('a line per finished step, and one at most every 5 s while a step runs, all on stderr', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    const tty = Object.getOwnPropertyDescriptor(process.stderr, 'isTTY');
    Object.defineProperty(process.stderr, 'isTTY', { value: false, configurable: true });
    const lines: string[] = [];
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => lines.push(String(chunk)) > 0);
    const stdout = vi.spyOn(process.stdout, 'write');
    try {
      const progress = new Progress(2);
      let finish!: (value: string) => void;
      let seconds = 0;
      const work = progress.during(new Promise<string>((resolve) => { finish = resolve; }), () => `loading, ${seconds} s`);
      for (seconds = 1; seconds <= 4; seconds++) await vi.advanceTimersByTimeAsync(1000);
      expect(lines).toEqual([]);
      for (; seconds <= 11; seconds++) await vi.advanceTimersByTimeAsync(1000);
      expect(lines).toEqual(['[------------------------]   0%  loading, 5 s\n', '[------------------------]   0%  loading, 10 s\n']);
      finish('done');
      expect(await work).toBe('done');
      progress.step('layer 0 loaded');
      await vi.advanceTimersByTimeAsync(20_000); // the timer stopped with the work
      expect(lines.slice(2)).toEqual(['[############------------]  50%  layer 0 loaded\n']);
      expect(stdout).not.toHaveBeenCalled();
    } finally {
      stderr.mockRestore();
      stdout.mockRestore();
      if (tty) Object.defineProperty(process.stderr, 'isTTY', tty);
      else delete (process.stderr as { isTTY?: boolean }).isTTY;
      vi.useRealTimers();
    }
  });
});

describe('bench footer', () => {
  test('names build/moe_bench and npm run bench:peers only where they exist', () => {
    const footer = (stdout: string) => stdout.trim().split('\n').pop()!;
    const here = footer(cli(TINY_BENCH).stdout);
    expect(here).toMatch(/^% read BW/);
    expect(here.includes('build/moe_bench')).toBe(fs.existsSync(path.join(ROOT, 'build', 'moe_bench')));
    expect(here.includes('npm run bench:peers')).toBe(fs.existsSync(path.join(ROOT, 'bench', 'peers.js')));

    // The layout of an installed package: dist/, package.json and the prebuilds, no build/ or bench/.
    const pkg = path.join(tmp, 'installed');
    fs.mkdirSync(pkg);
    fs.cpSync(path.join(ROOT, 'dist'), path.join(pkg, 'dist'), { recursive: true });
    fs.cpSync(path.join(ROOT, 'prebuilds'), path.join(pkg, 'prebuilds'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'));
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
    const installed = cli(TINY_BENCH, { cli: path.join(pkg, 'dist', 'cli.js') });
    expect(installed.status, installed.stderr).toBe(0);
    const last = footer(installed.stdout);
    expect(last).toMatch(/^% read BW .*which can read faster\)\.$/);
    expect(last).not.toMatch(/moe_bench|bench:peers|ONNX/);
  });
});
