// The sanitizer suite of scripts/test.js (`node scripts/test.js sanitize`, and `all`): the code
// of the addon and the kernels under AddressSanitizer and UndefinedBehaviorSanitizer, built by
// cmake -DMOE_SANITIZE=ON into build-asan/ (gcc's runtimes, libasan and libubsan, which come
// with Debian's g++). Once per kernel set this CPU can run, forced with MOE_CPU_ISA:
//   1. the C++ kernel tests (build-asan/build/moe_kernel_tests), leak checking on;
//   2. a slice of vitest (SLICE) against the sanitized addon. Node itself is not sanitized, so
//      it runs with the ASan runtime in LD_PRELOAD (an ASan-built library refuses to load
//      otherwise) and without leak checking (V8 and Node keep memory until exit by design).
//      node-gyp-build loads <MOE_CPU_PREBUILD>/build/Release/*.node before anything else
//      (<NAME>_PREBUILD, NAME from package.json), hence build-asan/build/: lib/ is untouched.
// Any report fails the suite, and each counts as a failed test: the build does not recover
// (-fno-sanitize-recover=all, halt_on_error=1), so the process also exits non-zero, and the
// output is scanned as well, so a report in a process whose exit status is lost (a vitest
// worker, a child a test spawns) still counts. ASan's reports in vitest's processes go to files
// (log_path), so that one in a child whose stderr a test captures is counted too; UBSan's go to
// stderr (gcc 12's libubsan, loaded next to libasan, does not honour log_path), which vitest
// passes on from its workers.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { readVitestReport } = require('./vitest-report.js');

const root = path.join(__dirname, '..');
const stage = path.join(root, 'build-asan');
const buildDir = path.join(stage, 'build');
const addon = path.join(buildDir, 'Release', 'moe_cpu.node');
const tests = path.join(buildDir, 'moe_kernel_tests');

// Every entry point of the addon (cpuInfo, permuteW13, gatedActivation, selectExperts,
// convertBf16, decodeMxfp4, quantize, dequantize, NativeLayer and NativeRouter: construction,
// dispose; forwardBlock, forwardBlockSync) and the forward in every weight format, with the argument
// errors that end in the addon; about 25 s per kernel set under ASan on 2 cores. Left out: the
// files that mostly spawn Node processes (checkpoint-cli, exports, kernels, worker-termination:
// their children would run the sanitized addon too, at several times the cost), and the
// checkpoint readers, which are TypeScript.
const SLICE = ['activation', 'async', 'bf16', 'layout', 'routing', 'errors', 'moe', 'quantized',
  'checkpoint-router', 'checkpoint-load', 'bad-input-table', 'robustness', 'block-native'].map((name) => `test/${name}.test.ts`);

// What a report starts with: ASan's and LSan's `==pid==ERROR: ...`, UBSan's
// `file:line:col: runtime error: ...`.
const REPORT = /^==\d+==ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: /gm;
const reportsIn = (text) => (text.match(REPORT) ?? []).length;

const compiler = () => process.env.CXX || 'c++';
// The ASan runtime the build links against, to preload into Node; null when the compiler has
// none (print-file-name echoes the bare name back when it finds no such file).
function asanRuntime() {
  const r = spawnSync(compiler(), ['-print-file-name=libasan.so'], { encoding: 'utf8' });
  const file = r.status === 0 ? r.stdout.trim() : '';
  return path.isAbsolute(file) && fs.existsSync(file) ? fs.realpathSync(file) : null;
}

// Tools the suite needs and this machine lacks (test.js skips or fails the suite on them).
function missing() {
  const absent = ['cmake', compiler()].filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  if (absent.length === 0 && !asanRuntime()) absent.push(`the ASan runtime of ${compiler()} (libasan.so: Debian's libgcc-12-dev, which g++ brings)`);
  return absent;
}

function run({ tally }) {
  const started = Date.now();
  const header = (label) => console.log(`\n=== ${label}`);
  let reports = 0;

  // A step that must work for the suites after it (not a test).
  function step(label, cmd, args) {
    header(`${label}: ${[cmd, ...args].join(' ')}`);
    const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) {
      console.log(`${label}: failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ''})`);
      tally(0, 0, false);
      return false;
    }
    return true;
  }

  // Reports found in `text` are counted as failed tests and fail the suite; printed whole
  // unless `shown` (already on the console).
  function scan(label, text, shown = false) {
    const n = reportsIn(text);
    if (n > 0) {
      console.log(`${label}: ${n} sanitizer report${n > 1 ? 's' : ''}${shown ? ' (above)' : `:\n${text}`}`);
      reports += n;
    }
    return n;
  }

  // cmake-js supplies the Node-API headers (CMAKE_JS_INC) that the addon target needs; its
  // output directory is build-asan/build, so the addon lands in build-asan/build/Release. Only
  // the two targets the suite runs are built (not moe_bench).
  const configured = fs.existsSync(path.join(buildDir, 'CMakeCache.txt')) ||
    step('configure build-asan/build', process.execPath, [path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js'),
      'configure', '--out', path.relative(root, buildDir), '--CDMOE_SANITIZE=ON']);
  if (!configured || !step('build build-asan/build (ASan + UBSan)', 'cmake', ['--build', path.relative(root, buildDir),
    '--target', 'moe_cpu', 'moe_kernel_tests', '-j', String(os.availableParallelism?.() ?? 2)])) return;

  const runtime = asanRuntime();
  const nodeEnv = (logs) => ({
    LD_PRELOAD: [runtime, process.env.LD_PRELOAD].filter(Boolean).join(':'),
    ASAN_OPTIONS: `detect_leaks=0:abort_on_error=0:halt_on_error=1${logs ? `:log_path=${path.join(logs, 'asan')}` : ''}`,
    UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
    MOE_CPU_PREBUILD: stage,
  });
  const node = (code, env) => spawnSync(process.execPath, ['-p', code],
    { cwd: root, encoding: 'utf8', env: { ...process.env, MOE_CPU_ISA: '', ...env } });

  // The vitest slice must run the sanitized addon, not build/Release or a prebuild: the one
  // node-gyp-build picks, and one that cannot load without the ASan runtime.
  header('sanitizer: the addon vitest loads');
  const loaded = node("require('node-gyp-build').resolve('.')", nodeEnv()).stdout?.trim();
  const unpreloaded = node(`require(${JSON.stringify(addon)}) && 'loaded'`, { ...nodeEnv(), LD_PRELOAD: process.env.LD_PRELOAD ?? '' });
  const listed = node(`require(${JSON.stringify(addon)}).cpuInfo().kernels.join(' ')`, nodeEnv());
  const checks = [
    { name: `node-gyp-build loads ${path.relative(root, addon)}`, ok: loaded === addon, detail: loaded },
    { name: 'the addon is sanitized: it will not load without the ASan runtime preloaded',
      ok: unpreloaded.status !== 0 && /ASan runtime does not come first/.test(unpreloaded.stderr), detail: unpreloaded.stderr.trim().split('\n').pop() },
    { name: 'the sanitized addon lists its kernel sets', ok: listed.status === 0 && listed.stdout.trim() !== '',
      detail: `${listed.stdout}${listed.stderr}`.trim() },
  ];
  for (const c of checks) if (!c.ok) console.log(`FAIL ${c.name}: ${c.detail}`);
  const okCount = checks.filter((c) => c.ok).length;
  console.log(`sanitizer: the addon vitest loads: ${okCount} passed, ${checks.length - okCount} failed`);
  tally(okCount, checks.length - okCount, true);
  if (!checks.every((c) => c.ok)) return;

  for (const isa of listed.stdout.trim().split(' ')) {
    // ---- 1. C++ kernel tests: they print `N passed, N failed` last -------------------------
    const label = `sanitizer: C++ kernel tests (MOE_CPU_ISA=${isa})`;
    header(`${label}: ${path.relative(root, tests)}`);
    let t = Date.now();
    const k = spawnSync(tests, [], {
      cwd: root, encoding: 'utf8', maxBuffer: 1 << 28, env: {
        ...process.env, MOE_CPU_ISA: isa,
        ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0:halt_on_error=1', UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
      },
    });
    const out = `${k.stdout ?? ''}${k.stderr ?? ''}`;
    process.stdout.write(out.split('\n').filter((l) => /^(FAIL|SKIP)|passed, \d+ failed/.test(l)).join('\n') + '\n');
    const n = scan(label, k.stderr ?? '');
    const m = /(\d+) passed, (\d+) failed\s*$/.exec(k.stdout ?? '');
    if (!m) {
      if (n === 0) console.log(out.slice(-4000));
      console.log(`${label}: did not report a count (exit ${k.status}${k.signal ? `, ${k.signal}` : ''}${k.error ? `, ${k.error.message}` : ''})`);
      tally(0, n, false);
    } else {
      console.log(`${label}: ${m[1]} passed, ${Number(m[2]) + n} failed (${((Date.now() - t) / 1000).toFixed(1)} s)`);
      if (k.status !== 0 && Number(m[2]) + n === 0) exitedWithoutFailure(label, k, out);
      tally(Number(m[1]), Number(m[2]) + n, k.status === 0 && n === 0 && Number(m[1]) + Number(m[2]) > 0);
    }

    // ---- 2. the vitest slice: counts from its JSON report -----------------------------------
    const vlabel = `sanitizer: vitest slice (MOE_CPU_ISA=${isa})`;
    const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-sanitizer-'));
    const report = path.join(logs, 'vitest.json');
    const args = [path.join(path.dirname(require.resolve('vitest/package.json')), 'vitest.mjs'), 'run', '--reporter=dot',
      '--reporter=json', `--outputFile=${report}`, ...SLICE];
    header(`${vlabel}: vitest ${args.slice(1).join(' ')}`);
    t = Date.now();
    const v = spawnSync(process.execPath, args, {
      cwd: root, stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8', maxBuffer: 1 << 28,
      env: { ...process.env, ...nodeEnv(logs), MOE_CPU_ISA: isa },
    });
    process.stderr.write(v.stderr ?? '');
    let vn = scan(vlabel, v.stderr ?? '', true);
    for (const f of fs.readdirSync(logs).filter((f) => f.startsWith('asan.'))) {
      vn += scan(`${vlabel}, ${f}`, fs.readFileSync(path.join(logs, f), 'utf8'));
    }
    const counts = readVitestReport(report, root);
    fs.rmSync(logs, { recursive: true, force: true });
    if (!counts) {
      console.log(`${vlabel}: no report (exit ${v.status}${v.signal ? `, ${v.signal}` : ''})`);
      tally(0, vn, false);
      continue;
    }
    console.log(`${vlabel}: ${counts.passed} passed, ${counts.failed + vn} failed` +
      ` (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    if (v.status !== 0 && counts.failed + vn === 0) exitedWithoutFailure(vlabel, v, v.stderr ?? '');
    tally(counts.passed, counts.failed + vn, v.status === 0 && vn === 0 && counts.total > 0);
  }
  console.log(`\nsanitizer suite: ${reports} sanitizer report${reports === 1 ? '' : 's'}, ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

// A run that exited non-zero with nothing counted as failed (a crash at exit, an error outside
// any test, a sanitizer that could not start) fails the suite: show why, since no count does.
function exitedWithoutFailure(label, r, out) {
  console.log(`${out.slice(-4000)}\n${label}: exit ${r.status}${r.signal ? ` (signal ${r.signal})` : ''} with no failed test`);
}

module.exports = { missing, run };
