// The package as npm ships it: no install-time script (npm install --strict-allow-scripts takes
// it), metadata, and a tarball that holds what its docs link to and what the source build
// reads. The file list is npm's own (`npm pack --dry-run --json`).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, test } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const requireHere = createRequire(import.meta.url);
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const { INSTALL_SCRIPTS, shippedManifest } = requireHere('../scripts/pack-manifest.js') as {
  INSTALL_SCRIPTS: string[];
  shippedManifest(p: typeof pkg): typeof pkg;
};

describe('package.json', () => {
  test('the shipped manifest has no script npm runs or lists when installing a dependency', () => {
    const shipped = shippedManifest(pkg);
    expect(INSTALL_SCRIPTS).toEqual(['preinstall', 'install', 'postinstall', 'prepare']);
    for (const name of INSTALL_SCRIPTS) expect(shipped.scripts, name).not.toHaveProperty(name);
    // binding.gyp ships (the source build), which would make npm run `node-gyp rebuild`.
    expect(pkg.gypfile).toBe(false);
    // Everything else is kept as it is.
    expect({ ...shipped, scripts: undefined }).toEqual({ ...pkg, scripts: undefined });
    expect(Object.keys(shipped.scripts).length).toBe(Object.keys(pkg.scripts).filter((s) => !INSTALL_SCRIPTS.includes(s)).length);
  });

  test('packing strips the install scripts and puts package.json back', () => {
    expect(pkg.scripts.prepack).toMatch(/node scripts\/pack-manifest\.js strip$/);
    expect(pkg.scripts.postpack).toBe('node scripts/pack-manifest.js restore');
    expect(fs.existsSync(path.join(ROOT, '.pack')), 'an earlier pack left .pack/: node scripts/pack-manifest.js restore').toBe(false);
  });

  test('the addon loads without a script: node-gyp-build is a dependency, the build tools are not', () => {
    expect(pkg.dependencies).toHaveProperty('node-gyp-build');
    expect(pkg.dependencies).toHaveProperty('node-addon-api');  // binding.gyp's include dir
    expect(pkg.dependencies).not.toHaveProperty('node-gyp');
    expect(pkg.scripts['build:gyp']).toBe('node-gyp rebuild');  // npm's own node-gyp, on PATH under npm run
  });

  test('license, repository, homepage and bugs', () => {
    expect(pkg.license).toBe('MIT');
    expect(fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) \d{4} /);
    expect(pkg.repository).toEqual({ type: 'git', url: 'git+https://github.com/moe-cpu/moe-cpu.git' });
    expect(pkg.homepage).toBe('https://github.com/moe-cpu/moe-cpu#readme');
    expect(pkg.bugs).toEqual({ url: 'https://github.com/moe-cpu/moe-cpu/issues' });
    expect(fs.readFileSync(path.join(ROOT, 'CHANGELOG.md'), 'utf8')).toContain(`## ${pkg.version}`);
  });
});

describe('the tarball', () => {
  let files: Set<string>;
  beforeAll(() => {
    // --ignore-scripts: the list only (no prepack, so package.json is not rewritten meanwhile).
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    files = new Set((JSON.parse(r.stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path));
  });

  test('holds the metadata files, the entry points and the prebuilds', () => {
    for (const f of ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'dist/index.js', 'dist/index.d.ts', 'dist/cli.js', 'esm/index.mjs']) {
      expect(files.has(f), f).toBe(true);
    }
    for (const dir of fs.readdirSync(path.join(ROOT, 'prebuilds'))) {
      for (const f of fs.readdirSync(path.join(ROOT, 'prebuilds', dir))) expect(files.has(`prebuilds/${dir}/${f}`), f).toBe(true);
    }
  });

  test('every relative link of the shipped Markdown files leads to a shipped file', () => {
    const docs = [...files].filter((f) => f.endsWith('.md'));
    expect(docs).toEqual(expect.arrayContaining(['README.md', 'docs/release.md', 'docs/errors.md']));
    let links = 0;
    for (const doc of docs) {
      const text = fs.readFileSync(path.join(ROOT, doc), 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target)) continue;  // https:, mailto:
        const file = path.posix.normalize(path.posix.join(path.posix.dirname(doc), target));
        // A link to a folder (`examples/`) holds when the tarball has files in it.
        const shipped = file.endsWith('/') ? [...files].some((f) => f.startsWith(file)) : files.has(file);
        expect(shipped, `${doc} links to ${target}, which the tarball lacks`).toBe(true);
        ++links;
      }
    }
    expect(links).toBeGreaterThan(5);
  });

  test('holds every input of the source build (binding.gyp and the sources it lists), and not the developer build', () => {
    const sources = JSON.parse(fs.readFileSync(path.join(ROOT, 'cpp', 'sources.json'), 'utf8'));
    const isa = Object.values(sources.isa as Record<string, Record<string, { sources: string[] }>>)
      .flatMap((set) => Object.values(set).flatMap((s) => s.sources));
    const needed = ['binding.gyp', 'cpp/sources.json', 'cpp/addon/exports.map', ...sources.kernels, ...sources.addon, ...isa];
    expect(needed.length).toBeGreaterThan(20);
    for (const f of needed) expect(files.has(f), f).toBe(true);
    // Every header the sources include ships too: all of cpp/kernels/.
    const headers = fs.readdirSync(path.join(ROOT, 'cpp', 'kernels'), { recursive: true }).map(String).filter((f) => f.endsWith('.h'));
    for (const h of headers) expect(files.has(`cpp/kernels/${h.split(path.sep).join('/')}`), h).toBe(true);
    // CMakeLists.txt builds the C++ tests and the benchmark, whose sources do not ship.
    expect(files.has('CMakeLists.txt')).toBe(false);
    expect([...files].some((f) => f.startsWith('cpp/tests/') || f.startsWith('cpp/bench/'))).toBe(false);
  });
});
