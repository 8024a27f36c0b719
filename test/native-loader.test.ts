// Where the addon comes from (lib/native-loader.ts): MOE_CPU_BINARY, the package folder, a
// bundle's folder; and what each failure says. Loads that succeed run in a child Node (a second
// copy of the addon in this process would be a second thread pool); failures run here, since
// they load nothing.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';

import { SOURCE_BUILD_SCRIPT, loadNativeAddon, searchRoot, sourceBuildCommand } from '../lib/native-loader';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST = path.join(ROOT, 'dist');
const requireHere = createRequire(import.meta.url);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-loader-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// The environment of a child: this one without the variables that steer the loader.
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.MOE_CPU_BINARY;
  delete env.MOE_CPU_PREBUILD;
  delete env.PREBUILDS_ONLY;
  return { ...env, ...extra };
}

// Requires `entry` in a child and prints the .node files it loaded and the kernel set.
function loadInChild(entry: string, cwd: string, env: NodeJS.ProcessEnv) {
  const code = `const m = require(${JSON.stringify(entry)}); ` +
    "console.log(JSON.stringify({ addons: Object.keys(require.cache).filter((f) => f.endsWith('.node')), kernel: m.cpuInfo().kernel }))";
  const r = spawnSync(process.execPath, ['-e', code], { cwd, env, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { addons: string[]; kernel: string };
}

// The addon this checkout loads by default (build/Release, or the prebuild).
function defaultAddon(): string {
  const r = spawnSync(process.execPath, ['-p', `require(${JSON.stringify(requireHere.resolve('node-gyp-build'))}).resolve(${JSON.stringify(ROOT)})`],
    { env: cleanEnv(), encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim();
}

function expectNoBinary(fn: () => unknown, contains: string[], absent: RegExp[] = []): string {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected an error').toBeInstanceOf(Error);
  const err = caught as Error & { code?: string };
  expect(err.code).toBe('ERR_MOE_NO_BINARY');
  for (const s of contains) expect(err.message).toContain(s);
  for (const re of absent) expect(err.message).not.toMatch(re);
  return err.message;
}

// A folder laid out as the installed package (package.json named moe-cpu, dist/ inside), with
// the given files; the loader is pointed at its dist/.
function fakePackage(name: string, files: Record<string, string>): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(path.join(dir, 'dist'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'moe-cpu', version: '0.0.0' }));
  for (const [file, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), text);
  }
  return dir;
}

const here = `${process.platform}-${process.arch}`;
// A platform no binary will ever match here, to stand for "another platform's prebuild".
const other = process.arch === 'x64' ? `${process.platform}-arm64` : `${process.platform}-x64`;
const hasPrebuild = fs.existsSync(path.join(ROOT, 'prebuilds', here));

describe('MOE_CPU_BINARY', () => {
  test('loads exactly the file it names, absolute or relative to the working directory', () => {
    const custom = path.join(tmp, 'custom', 'renamed-addon.node');
    fs.mkdirSync(path.dirname(custom), { recursive: true });
    fs.copyFileSync(defaultAddon(), custom);
    const absolute = loadInChild(path.join(DIST, 'index.js'), ROOT, cleanEnv({ MOE_CPU_BINARY: custom }));
    expect(absolute.addons).toEqual([custom]);
    const relative = loadInChild(path.join(DIST, 'index.js'), tmp, cleanEnv({ MOE_CPU_BINARY: path.join('custom', 'renamed-addon.node') }));
    expect(relative.addons).toEqual([custom]);
    expect(relative.kernel).toBe(absolute.kernel);
  });

  test('a missing file is an error naming it, with no fall-back to the package binary', () => {
    const missing = path.join(tmp, 'no-such-dir', 'moe-cpu.node');
    expectNoBinary(() => loadNativeAddon(DIST, { MOE_CPU_BINARY: missing }), [`MOE_CPU_BINARY=${missing}`, 'no such file']);
  });

  test('a path that is not a .node file is refused before anything is loaded', () => {
    expectNoBinary(() => loadNativeAddon(DIST, { MOE_CPU_BINARY: path.join(ROOT, 'package.json') }),
      ['MOE_CPU_BINARY=', 'expected the path of a .node file']);
  });

  test('a .node file that is not an addon for this platform: the file and the way out', () => {
    const bogus = path.join(tmp, 'not-an-addon.node');
    fs.writeFileSync(bogus, 'not a shared object');
    expectNoBinary(() => loadNativeAddon(DIST, { MOE_CPU_BINARY: bogus }),
      [bogus, 'could not be loaded', here, 'Point MOE_CPU_BINARY at a binary built for this platform']);
  });
});

describe('the package folder', () => {
  test('is found from dist/ (and lib/) by its package.json; another parent makes a bundle', () => {
    expect(searchRoot(DIST)).toEqual({ dir: path.join(DIST, '..'), bundled: false });
    expect(searchRoot(path.join(ROOT, 'lib'))).toEqual({ dir: path.join(ROOT, 'lib', '..'), bundled: false });
    const app = fakeApp('root-app');
    expect(searchRoot(path.join(app, 'out'))).toEqual({ dir: path.join(app, 'out'), bundled: true });
  });

  test('no binary for this platform: the prebuilt platforms listed and the exact source-build command', () => {
    const pkg = fakePackage('other-platform', { [`prebuilds/${other}/moe-cpu.glibc.node`]: 'x', 'prebuilds/win32-x64/moe-cpu.node': 'x' });
    const message = expectNoBinary(() => loadNativeAddon(path.join(pkg, 'dist'), {}),
      [`no binary for ${here}`, `${other} (glibc), win32-x64 only`, `cd ${pkg} && npm run ${SOURCE_BUILD_SCRIPT}`, 'MOE_CPU_BINARY']);
    expect(message).not.toMatch(/none/);
  });

  test('no prebuilds folder at all is said as such, not as "none prebuilt"', () => {
    const pkg = fakePackage('no-prebuilds', {});
    expectNoBinary(() => loadNativeAddon(path.join(pkg, 'dist'), {}),
      [`there is no ${path.join(pkg, 'prebuilds')} folder`, sourceBuildCommand(pkg)], [/prebuilt.*none/i]);
  });

  test('a prebuild that does not load (e.g. a glibc too old): the file and the source-build command', () => {
    const pkg = fakePackage('broken-prebuild', { [`prebuilds/${here}/moe-cpu.napi.node`]: 'not a shared object' });
    expectNoBinary(() => loadNativeAddon(path.join(pkg, 'dist'), {}),
      [path.join(pkg, 'prebuilds', here, 'moe-cpu.napi.node'), 'could not be loaded', sourceBuildCommand(pkg)]);
  });

  test('the command quotes a folder with spaces, and names a script the package has', () => {
    expect(sourceBuildCommand('/a b/node_modules/moe-cpu')).toBe(`cd "/a b/node_modules/moe-cpu" && npm run ${SOURCE_BUILD_SCRIPT}`);
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.scripts[SOURCE_BUILD_SCRIPT]).toBe('node-gyp rebuild');
  });
});

// An app that bundled moe-cpu into out/: its own package.json, and in its build/Release an
// addon of its own, which the loader must never take for moe-cpu's.
function fakeApp(name: string): string {
  const app = path.join(tmp, name);
  fs.mkdirSync(path.join(app, 'out'), { recursive: true });
  fs.mkdirSync(path.join(app, 'build', 'Release'), { recursive: true });
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'some-app', private: true }));
  fs.writeFileSync(path.join(app, 'build', 'Release', 'other_addon.node'), 'the app\'s own addon');
  return app;
}

describe('a bundle', () => {
  test('without prebuilds/ beside it: says so and what to copy, never "prebuilt: none", never the app\'s build/', () => {
    const app = fakeApp('bundle-bare');
    expectNoBinary(() => loadNativeAddon(path.join(app, 'out'), {}),
      ['runs from a bundle in', `there is no ${path.join(app, 'out', 'prebuilds')} folder`,
        `Copy node_modules/moe-cpu/prebuilds/ to ${path.join(app, 'out', 'prebuilds')}/`, 'Bundling'],
      [/prebuilt.*none/i, /other_addon/, /could not be loaded/]);
  });

  test.skipIf(!hasPrebuild)('with prebuilds/ copied beside it: loads the prebuild from there', () => {
    // The compiled library copied into out/ stands for the bundle: the loader runs from out/,
    // whose parent is the app.
    const app = fakeApp('bundle-copied');
    fs.cpSync(DIST, path.join(app, 'out'), { recursive: true });
    fs.cpSync(path.join(ROOT, 'prebuilds'), path.join(app, 'out', 'prebuilds'), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(app, 'node_modules'), 'dir');
    const loaded = loadInChild(path.join(app, 'out', 'index.js'), app, cleanEnv());
    expect(loaded.addons).toHaveLength(1);
    expect(path.dirname(loaded.addons[0])).toBe(path.join(app, 'out', 'prebuilds', here));
  });
});

describe('MOE_CPU_ISA', () => {
  // The binary loads; its start-up refuses the setting. The error is the RangeError that names
  // MOE_CPU_ISA (the setting is what to fix), not ERR_MOE_NO_BINARY's advice to rebuild.
  test.each(['bogus', process.arch === 'x64' ? 'sve' : 'avx2'])('=%s is a RangeError naming it, with no advice to rebuild', (isa) => {
    const code = "try { require('./dist/index.js'); console.log('loaded') } catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })) }";
    const r = spawnSync(process.execPath, ['-e', code], { cwd: ROOT, env: cleanEnv({ MOE_CPU_ISA: isa }), encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const err = JSON.parse(r.stdout.trim()) as { name: string; code: string; message: string };
    expect([err.name, err.code]).toEqual(['RangeError', 'ERR_MOE_INVALID_ARGUMENT']);
    expect(err.message).toMatch(new RegExp(`^MOE_CPU_ISA=${isa}: this build has no such kernel set`));
    expect(err.message).not.toMatch(/build:gyp|from source/);
  });
});
