#!/usr/bin/env node
// Builds the prebuilt binaries shipped in prebuilds/ (N-API 8, stripped):
//   prebuilds/linux-x64/moe-cpu.glibc.node    native build
//   prebuilds/linux-arm64/moe-cpu.glibc.node  cross build (g++-aarch64-linux-gnu)
//   and, cross-built with Zig (scripts/prebuild-zig.js), linux-x64-musl, linux-arm64-musl,
//   win32-x64, darwin-x64 and darwin-arm64.
// Usage: npm run prebuild [-- x64|arm64|<zig target>...]   (all by default; run through npm,
// which passes ~/.npmrc's nodedir to node-gyp). A target that could not be built is named at
// the end, with why, and the exit status is 1.
//
// prebuildify runs `node-gyp rebuild`, which deletes ./build (the cmake-js build the tests
// use), so each architecture is built in a staging copy, build-prebuild/<arch>/, that is kept
// for scripts/check-binaries.js (it reads the object files to prove which code has AVX or
// SVE instructions). MOE_CPU_PORTABLE=1 makes binding.gyp link libstdc++ in (see there).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { TARGETS, zig, buildTarget } = require('./prebuild-zig.js');

const root = path.join(__dirname, '..');

// What node-gyp needs from the package; everything else stays out of the staging copy.
const STAGED = ['package.json', 'binding.gyp', 'cpp/sources.json', 'cpp/kernels', 'cpp/addon'];

const CROSS = {
  arm64: {
    env: {
      CC: 'aarch64-linux-gnu-gcc',
      CXX: 'aarch64-linux-gnu-g++',
      LINK: 'aarch64-linux-gnu-g++',
      AR: 'aarch64-linux-gnu-ar',
    },
    args: ['--arch', 'arm64', '--strip-bin', 'aarch64-linux-gnu-strip'],
  },
};

function stage(arch) {
  const dir = path.join(root, 'build-prebuild', arch);
  fs.rmSync(dir, { recursive: true, force: true });
  for (const item of STAGED) {
    fs.cpSync(path.join(root, item), path.join(dir, item), { recursive: true });
  }
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  return dir;
}

function prebuild(arch) {
  if (process.platform !== 'linux') throw new Error('prebuilds are made on linux (see docs/release.md for the others)');
  const cross = arch === process.arch ? { env: {}, args: [] } : CROSS[arch];
  if (!cross) throw new Error(`cannot build ${arch} on ${process.arch}`);
  const dir = stage(arch);
  const env = {
    ...process.env,
    ...cross.env,
    MOE_CPU_PORTABLE: '1',
    PATH: `${path.join(root, 'node_modules', '.bin')}${path.delimiter}${process.env.PATH}`,
  };
  const bin = path.join(root, 'node_modules', 'prebuildify', 'bin.js');
  const args = [bin, '--napi', '--strip', '--tag-libc', ...cross.args];
  console.log(`\n=== prebuild linux-${arch}: prebuildify ${args.slice(1).join(' ')} (in ${path.relative(root, dir)})`);
  const r = spawnSync(process.execPath, args, { cwd: dir, env, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`prebuildify for ${arch} failed (exit ${r.status})`);
  const from = path.join(dir, 'prebuilds', `linux-${arch}`);
  const to = path.join(root, 'prebuilds', `linux-${arch}`);
  fs.rmSync(to, { recursive: true, force: true });
  fs.cpSync(from, to, { recursive: true });
  for (const f of fs.readdirSync(to)) {
    console.log(`${path.relative(root, path.join(to, f))}: ${fs.statSync(path.join(to, f)).size} bytes`);
  }
}

async function main() {
  const zigTargets = Object.keys(TARGETS);
  const wanted = process.argv.length > 2 ? process.argv.slice(2) : ['x64', 'arm64', ...zigTargets];
  const unknown = wanted.filter((t) => !['x64', 'arm64', ...zigTargets].includes(t));
  if (unknown.length) throw new Error(`unknown target ${unknown.join(', ')}: x64, arm64, ${zigTargets.join(', ')}`);
  const notBuilt = [];
  for (const arch of wanted.filter((t) => !zigTargets.includes(t))) {
    try {
      prebuild(arch);
    } catch (e) {
      notBuilt.push(`linux-${arch}: ${e.message}`);
    }
  }
  const cross = wanted.filter((t) => zigTargets.includes(t));
  const toolchain = cross.length ? zig() : {};
  for (const name of cross) {
    if (toolchain.why) {
      notBuilt.push(`${name}: ${toolchain.why}`);
      continue;
    }
    try {
      await buildTarget(name);
    } catch (e) {
      notBuilt.push(`${name}: ${e.message}`);
    }
  }
  if (notBuilt.length) {
    console.log(`\nnot built:\n  ${notBuilt.join('\n  ')}`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exitCode = 1;
});
