#!/usr/bin/env node
// Checks the README's Bundling recipe with a real esbuild (not a dependency of moe-cpu: bring
// your own, e.g. `npm install --prefix /tmp/esb esbuild`):
//   node scripts/check-bundle.js /tmp/esb/node_modules/.bin/esbuild
// A small app that requires moe-cpu (this checkout, as node_modules/moe-cpu: run `npx tsc -p
// tsconfig.json` first) is bundled as CommonJS and as ESM, the bundles and prebuilds/ are
// copied to a folder without node_modules, and each must run a layer from the prebuild next to
// it; without prebuilds/ the error must say what to copy. Ends with `N passed, N failed`.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const esbuild = process.argv[2] || process.env.ESBUILD;
if (!esbuild) {
  console.error('usage: node scripts/check-bundle.js PATH_TO_ESBUILD');
  process.exit(2);
}

// The banner the README gives for ESM output: esbuild's ESM bundle has neither require (which
// the CommonJS parts of moe-cpu and node-gyp-build call) nor __dirname (where the loader looks).
const ESM_BANNER = "import { createRequire } from 'node:module'; import { dirname } from 'node:path'; " +
  "import { fileURLToPath } from 'node:url'; const require = createRequire(import.meta.url); " +
  'const __filename = fileURLToPath(import.meta.url); const __dirname = dirname(__filename);';

const APP = `
const { MoeLayer, cpuInfo } = require('moe-cpu');
const E = 4, H = 32, I = 32;
const layer = new MoeLayer({ numExperts: E, hiddenSize: H, intermediateSize: I, topK: 2, activation: 'swigluoai',
  isW13Interleaved: true, weightDtype: 'f32', w13: new Float32Array(E * 2 * I * H).fill(0.01),
  w2: new Float32Array(E * H * I).fill(0.01), routing: { mode: 'topk-softmax' } });
const out = layer.forwardSync(new Float32Array(H).fill(1), { logits: new Float32Array([1, 2, 3, 4]) });
const addons = Object.keys(require.cache).filter((f) => f.endsWith('.node'));
console.log(JSON.stringify({ kernel: cpuInfo().kernel, out0: out[0], addons }));
`;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-bundle-'));
let passed = 0, failed = 0;
function check(name, ok, detail) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
  ok ? ++passed : ++failed;
}
const run = (cmd, args, cwd, env = {}) => {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
};

try {
  const app = path.join(tmp, 'app');
  fs.mkdirSync(path.join(app, 'node_modules'), { recursive: true });
  fs.writeFileSync(path.join(app, 'package.json'), '{ "name": "bundling-app", "private": true }\n');
  fs.symlinkSync(root, path.join(app, 'node_modules', 'moe-cpu'), 'dir');
  fs.writeFileSync(path.join(app, 'main.js'), APP);
  // The app's own run, unbundled: the reference output.
  const direct = run(process.execPath, ['main.js'], app, { PREBUILDS_ONLY: '1' });
  check('the app runs unbundled', direct.status === 0, direct.out.split('\n').pop());
  const expected = direct.status === 0 ? JSON.parse(direct.out.split('\n').pop()).out0 : NaN;

  const deploy = path.join(tmp, 'deploy');  // no node_modules anywhere above it
  fs.mkdirSync(deploy);
  fs.cpSync(path.join(root, 'prebuilds'), path.join(deploy, 'prebuilds'), { recursive: true });
  const here = `${process.platform}-${process.arch}`;
  for (const [format, file, extra] of [['cjs', 'bundle.cjs', []], ['esm', 'bundle.mjs', [`--banner:js=${ESM_BANNER}`]]]) {
    const built = run(esbuild, ['main.js', '--bundle', '--platform=node', `--format=${format}`, `--outfile=${path.join(deploy, file)}`, ...extra], app);
    check(`esbuild --format=${format}`, built.status === 0, built.out.split('\n').pop());
    const r = run(process.execPath, [file], deploy);
    const result = r.status === 0 ? JSON.parse(r.out.split('\n').pop()) : null;
    check(`${format} bundle runs a layer from prebuilds/ beside it`,
      result !== null && result.out0 === expected && result.addons.length === 1 &&
        path.dirname(result.addons[0]) === path.join(deploy, 'prebuilds', here), r.out.split('\n').pop());
  }
  fs.renameSync(path.join(deploy, 'prebuilds'), path.join(tmp, 'prebuilds-aside'));
  for (const file of ['bundle.cjs', 'bundle.mjs']) {
    const r = run(process.execPath, [file], deploy);
    const line = /Error: (moe-cpu: .*)/.exec(r.out)?.[1] ?? r.out.slice(-300);
    check(`${file} without prebuilds/: says what to copy where, not "prebuilt: none"`,
      r.status !== 0 && line.includes(`Copy node_modules/moe-cpu/prebuilds/ to ${path.join(deploy, 'prebuilds')}/`) && !/none/.test(line), line);
    const forced = run(process.execPath, [file], deploy,
      { MOE_CPU_BINARY: path.join(tmp, 'prebuilds-aside', here, fs.readdirSync(path.join(tmp, 'prebuilds-aside', here))[0]) });
    check(`${file} without prebuilds/, MOE_CPU_BINARY set: runs`, forced.status === 0, forced.out.split('\n').pop());
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
