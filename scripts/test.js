#!/usr/bin/env node
// Runs every test suite and ends with one line totalling them: `N passed, N failed, N skipped`.
//   vitest (the public API against the TypeScript reference) and the C++ kernel tests
//   (build/moe_kernel_tests), once per kernel set this CPU can run, forced with MOE_CPU_ISA.
//   Then the sanitizer suite: the C++ tests and a slice of vitest under ASan and UBSan
//   (scripts/test-sanitize.js), and the platform suites: the prebuilds and the Arm kernels under
//   qemu (scripts/test-platforms.js). `local`, `js`, `kernels`, `sanitize` and `platforms` run
//   one group only; the default is all of them. `quick` (npm run test:quick, the inner loop)
//   runs vitest and the C++ tests once, with the kernel set this CPU picks by itself.
// A suite that cannot run here is named on the total line as skipped, never counted as passed.
// Exit code is non-zero if any suite failed or ran no test.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { readVitestReport } = require('./vitest-report.js');

const root = path.join(__dirname, '..');
let passed = 0;
let failed = 0;
let broken = false;
const skipped = [];  // suites that could not run here, with why
let skippedTests = 0;  // tests a suite skipped (vitest's skip/todo): neither passed nor failed

function run(label, cmd, args, env = {}) {
  console.log(`\n=== ${label}: ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) console.log(`${label}: exit ${r.status}${r.signal ? ` (signal ${r.signal})` : ''}${r.error ? `, ${r.error.message}` : ''}`);
  return r.status === 0;
}

// Test files that check the package's types, docs and tarball (the TypeScript compiler, publint,
// attw): they do not depend on the kernel set, so they run with the first one only.
const KERNEL_INDEPENDENT = ['test/types.test.ts', 'test/api-docs.test.ts', 'test/package-lint.test.ts'];

// vitest: counts from its JSON report.
function vitest(label, env = {}, args = []) {
  const report = path.join(os.tmpdir(), `moe-cpu-vitest-${process.pid}.json`);
  const ok = run(label, process.execPath,
    [path.join(path.dirname(require.resolve('vitest/package.json')), 'vitest.mjs'), 'run', '--reporter=default', '--reporter=json', `--outputFile=${report}`, ...args], env);
  const r = readVitestReport(report, root);
  if (!r) {
    console.log(`${label}: no report`);
    broken = true;
    return;
  }
  passed += r.passed;
  failed += r.failed;
  skippedTests += r.skipped;
  // vitest exits non-zero on an error outside any test (its "Unhandled Errors" section above)
  if (!ok && r.failed === 0) console.log(`${label}: vitest failed with no failed test: see its "Unhandled Errors" above`);
  if (!ok || r.total === 0) broken = true;
}

// C++ tests print `N passed, N failed` as their last line.
function kernelTests(label, env) {
  const bin = path.join(root, 'build', 'moe_kernel_tests');
  console.log(`\n=== ${label}: ${bin}`);
  const r = spawnSync(bin, [], { cwd: root, encoding: 'utf8', env: { ...process.env, ...env } });
  process.stdout.write(r.stdout ?? '');
  process.stderr.write(r.stderr ?? '');
  const m = /(\d+) passed, (\d+) failed\s*$/.exec(r.stdout ?? '');
  if (!m) {
    console.log(`${label}: did not report a count (exit ${r.status}${r.error ? `, ${r.error.message}` : ''})`);
    broken = true;
    return;
  }
  passed += Number(m[1]);
  failed += Number(m[2]);
  // A crash after the count (at exit, say) fails the suite too: say so, the count alone won't.
  if (r.status !== 0 && Number(m[2]) === 0) console.log(`${label}: exit ${r.status}${r.signal ? ` (signal ${r.signal})` : ''} with no failed test`);
  if (r.status !== 0 || Number(m[1]) + Number(m[2]) === 0) broken = true;
}

// Kernel sets this machine can run, as the addon reports them (best last).
function kernelSets() {
  const r = spawnSync(process.execPath, ['-p', "require('./dist/index.js').cpuInfo().kernels.join(' ')"],
    { cwd: root, encoding: 'utf8', env: { ...process.env, MOE_CPU_ISA: '' } });
  if (r.status !== 0) {
    console.log(`cannot load the addon:\n${r.stderr}`);
    broken = true;
    return [];
  }
  return r.stdout.trim().split(' ');
}

const only = process.argv[2] ?? 'all';
if (!['local', 'all', 'quick', 'js', 'kernels', 'sanitize', 'platforms'].includes(only)) {
  console.error(`unknown suite group "${only}": expected local, quick, js, kernels, sanitize, platforms or all`);
  process.exit(2);
}
// The sanitizer suite asks its own (sanitized) addon, so `sanitize` alone needs no build/.
const sets = only === 'sanitize' ? [] : kernelSets();
// quick: the kernel set the CPU picks (the last, best one) only; the rest: every set, the
// tests that do not depend on the kernel set (KERNEL_INDEPENDENT) with the first one only.
const runSets = only === 'quick' ? sets.slice(-1) : sets;
for (const [i, isa] of runSets.entries()) {
  const env = { MOE_CPU_ISA: isa };
  const args = i === 0 ? [] : KERNEL_INDEPENDENT.flatMap((file) => ['--exclude', file]);
  if (['local', 'all', 'quick', 'js'].includes(only)) vitest(`vitest (MOE_CPU_ISA=${isa})`, env, args);
  if (['local', 'all', 'quick', 'kernels'].includes(only)) kernelTests(`C++ kernel tests (MOE_CPU_ISA=${isa})`, env);
}
// The amx set (Intel AMX tiles) runs only where the CPU has them and the OS lets this process
// use them; elsewhere its suites are named as skipped (its kernels are in every x64 build).
if (process.arch === 'x64' && sets.length > 0 && !sets.includes('amx') && only !== 'sanitize') {
  console.log('\nkernel set amx not run: this CPU or OS offers no AMX tiles (cpuInfo().features has no amx-bf16);' +
    ' its vitest and C++ kernel tests run with MOE_CPU_ISA=amx where it does');
  skipped.push('kernel set amx (no AMX tiles here)');
}
if (only === 'quick' && sets.length > 1) {
  console.log(`\nquick: kernel sets ${sets.slice(0, -1).join(', ')} not run, nor the sanitizer and platform suites (npm test runs them)`);
}
const totals = {  // what the sanitizer and platform suites add to the total line
  tally(p, f, ok) {
    passed += p;
    failed += f;
    if (!ok) broken = true;
  },
};
// The sanitizer suite builds build-asan/ itself (cmake, a C++ compiler with the ASan and UBSan
// runtimes: g++ on Debian brings both). Missing tools are handled as for the platform suites
// below: a skip that says so for a developer, a failure under CI.
if (['all', 'sanitize'].includes(only)) {
  const sanitize = require('./test-sanitize.js');
  const absent = sanitize.missing();
  if (absent.length > 0 && (only === 'sanitize' || process.env.CI)) {
    console.log(`\nsanitizer suite cannot run, missing: ${absent.join(', ')}`);
    broken = true;
  } else if (absent.length > 0) {
    console.log(`\nsanitizer suite skipped, missing: ${absent.join(', ')} (apt-get install cmake g++; or run .ci/run)`);
    skipped.push(`sanitizer suite (missing ${absent.join(', ')})`);
  } else {
    sanitize.run(totals);
  }
}
// The platform suites need the cross compiler, qemu and both prebuilds (.ci/run installs the
// tools and runs `npm run prebuild`). Without them a developer's `npm test` says so and skips
// them; under CI a missing piece is a failure, never a silent skip.
function platformToolsMissing() {
  const missing = ['aarch64-linux-gnu-g++', 'qemu-aarch64', 'qemu-x86_64'].filter(
    (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  for (const arch of ['x64', 'arm64']) {
    if (!fs.existsSync(path.join(root, 'prebuilds', `linux-${arch}`, 'moe-cpu.glibc.node'))) {
      missing.push(`prebuilds/linux-${arch} (npm run prebuild)`);
    }
  }
  return missing;
}

// The static binary checks read the object files of the prebuild staging build
// (build-prebuild/<arch>), which only `npm run prebuild` makes: a fresh clone has the committed
// prebuilds but not those, so build them here (this rebuilds prebuilds/ too, as CI does).
function ensurePrebuildObjects() {
  const missing = [
    ...['x64', 'arm64'].filter((arch) => !fs.existsSync(path.join(root, 'build-prebuild', arch, 'build', 'Release', 'obj.target'))),
    ...Object.keys(require('./prebuild-zig.js').TARGETS).filter((name) => !fs.existsSync(path.join(root, 'build-prebuild', name, 'obj'))),
  ];
  if (missing.length === 0) return;
  if (!run(`prebuild (no staging objects for ${missing.join(', ')})`, process.execPath, [path.join(root, 'scripts', 'prebuild.js'), ...missing])) {
    console.log('npm run prebuild failed: the platform suites cannot run');
    broken = true;
  }
}

const crossToolsMissing = ['all', 'platforms'].includes(only) &&
  ['aarch64-linux-gnu-g++', 'qemu-aarch64', 'qemu-x86_64'].some((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
if (['all', 'platforms'].includes(only) && !crossToolsMissing) ensurePrebuildObjects();
const missingTools = ['all', 'platforms'].includes(only) ? platformToolsMissing() : [];
if (missingTools.length > 0 && (only === 'platforms' || process.env.CI)) {
  console.log(`\nplatform suites cannot run, missing: ${missingTools.join(', ')}`);
  broken = true;
} else if (missingTools.length > 0) {
  console.log(`\nplatform suites skipped, missing: ${missingTools.join(', ')}` +
    ' (apt-get install g++-aarch64-linux-gnu qemu-user; npm run prebuild; or run .ci/run)');
  skipped.push(`platform suites (missing ${missingTools.join(', ')})`);
} else if (['all', 'platforms'].includes(only)) {
  require('./test-platforms.js')(totals);
}
// The total line stands alone and last, as CI reads it: `N passed, N failed, N skipped`.
console.log('');
if (skipped.length) console.log(`suites skipped: ${skipped.join('; ')}`);
if (broken && failed === 0) console.log('a suite failed without a failed test (see above): exit 1');
console.log(`${passed} passed, ${failed} failed, ${skippedTests} skipped`);
process.exit(failed > 0 || broken ? 1 : 0);
