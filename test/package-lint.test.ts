// The packed package as npm would publish it, linted: publint --strict (package.json, exports,
// files) and @arethetypeswrong/cli (each entry point's types match its JavaScript: ESM types for
// `import`, CommonJS types for `require`). Both run from devDependencies, offline.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ROOT, buildPackage } from './tsc';

/** A devDependency's command-line script (read from its package.json: publint does not export that file). */
const bin = (pkg: string, name: string) => {
  const home = path.join(ROOT, 'node_modules', pkg);
  const json = JSON.parse(fs.readFileSync(path.join(home, 'package.json'), 'utf8')) as { bin: Record<string, string> | string };
  return path.join(home, typeof json.bin === 'string' ? json.bin : json.bin[name]);
};
const PUBLINT = bin('publint', 'publint');
const ATTW = bin('@arethetypeswrong/cli', 'attw');

function run(cmd: string, args: string[], cwd = ROOT) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 120_000, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } });
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

let dir = '';
let tarball = '';

beforeAll(() => {
  buildPackage();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-pack-'));
  // --ignore-scripts: `prepare` (tsc) has run in buildPackage; the tarball holds what is built.
  const r = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir]);
  expect(r.status, r.output).toBe(0);
  tarball = path.join(dir, (JSON.parse(r.output.slice(r.output.indexOf('['))) as { filename: string }[])[0].filename);
}, 120_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('the packed package', () => {
  test('publint --strict reports no error and no warning', () => {
    const r = run(process.execPath, [PUBLINT, 'run', tarball, '--strict']);
    expect(r.output).not.toMatch(/Errors?:|Warnings?:/);
    expect(r.status, r.output).toBe(0);
  });

  test('attw: every entry point resolves to types of its own module kind', () => {
    const r = run(process.execPath, [ATTW, tarball, '--format', 'json']);
    const report = JSON.parse(r.output) as { analysis: { problems: unknown[] } };
    expect(report.analysis.problems).toEqual([]);
    expect(r.status).toBe(0);
  });

  // The check bites: the import condition pointed back at the CommonJS declarations (as it was)
  // is "Masquerading as CJS".
  test('attw flags ESM code typed by CommonJS declarations', () => {
    const work = path.join(dir, 'masquerading');
    fs.mkdirSync(work);
    expect(run('tar', ['xzf', tarball, '-C', work]).status).toBe(0);
    const pkgFile = path.join(work, 'package', 'package.json');
    const pkg = JSON.parse(fs.readFileSync(pkgFile, 'utf8'));
    pkg.exports['.'].import.types = './dist/index.d.ts';
    fs.writeFileSync(pkgFile, JSON.stringify(pkg, null, 2));
    const broken = path.join(dir, 'masquerading.tgz');
    expect(run('tar', ['czf', broken, '-C', work, 'package']).status).toBe(0);
    const r = run(process.execPath, [ATTW, broken, '--format', 'json']);
    const report = JSON.parse(r.output) as { analysis: { problems: { kind: string }[] } };
    expect(report.analysis.problems.map((p) => p.kind)).toContain('FalseCJS');
    expect(r.status).not.toBe(0);
  });
});
