// The built package as users load it: CJS (require), ESM (import), worker threads, cpuInfo and
// the MOE_CPU_ISA override. Child processes run from the repo root, where Node resolves
// 'moe-cpu' to this package through the package.json "exports" self-reference.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import * as lib from '../lib/index';
import { F32_TOL, expectClose } from './helpers';
import { refMoeForward } from './reference';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const PUBLIC_NAMES = [
  'MoeLayer',
  'cpuInfo',
  'deinterleaveW13',
  'fromBf16',
  'geluAndMul',
  'interleaveW13',
  'selectExperts',
  'siluAndMul',
  'swigluoai',
  'toBf16',
];

function runNode(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function runOk(args: string[], env: Record<string, string> = {}): string {
  const r = runNode(args, env);
  expect(r.status, `exit ${r.status} signal ${r.signal}\n${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

const exportedNames = (keys: string[]) => keys.filter((k) => k !== 'default' && k !== '__esModule').sort();

/**
 * A deterministic small layer built the same way in every process (no PRNG state to share):
 * weights from a formula, so outputs can be compared bitwise across processes and threads.
 */
const DETERMINISTIC_LAYER = `
const E = 6, H = 33, I = 17, K = 2, T = 5;
const fill = (n, s) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s) * 0.3);
const options = { numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'swigluoai',
  isW13Interleaved: true, weightDtype: 'f32', w13: fill(E * 2 * I * H, 1), w2: fill(E * H * I, 2),
  w13Bias: fill(E * 2 * I, 3), w2Bias: fill(E * H, 4) };
const hidden = fill(T * H, 5);
const route = { ids: Int32Array.from({ length: T * K }, (_, i) => (i * 5 + 1) % E),
  weights: Float32Array.from({ length: T * K }, (_, i) => 0.25 + 0.1 * (i % 3)) };
`;

function deterministicReference(): Float64Array {
  const E = 6, H = 33, I = 17, K = 2, T = 5;
  const fill = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s) * 0.3);
  const ids = Int32Array.from({ length: T * K }, (_, i) => (i * 5 + 1) % E);
  const weights = Float32Array.from({ length: T * K }, (_, i) => 0.25 + 0.1 * (i % 3));
  return refMoeForward(
    { numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'swigluoai', layout: 'interleaved', transposed: false, bf16Activations: false },
    { w13: fill(E * 2 * I * H, 1), w2: fill(E * H * I, 2), w13Bias: fill(E * 2 * I, 3), w2Bias: fill(E * H, 4) },
    fill(T * H, 5),
    ids,
    weights,
  );
}

describe('package entry points', () => {
  test('lib/index exports every public name', () => {
    for (const name of PUBLIC_NAMES) expect(lib, name).toHaveProperty(name);
  });

  test("require('moe-cpu') works and exports the public names", () => {
    const names = JSON.parse(runOk(['-e', "console.log(JSON.stringify(Object.keys(require('moe-cpu'))))"]));
    expect(exportedNames(names)).toEqual(expect.arrayContaining(PUBLIC_NAMES));
  });

  test('the ESM entry exports the same names as the CJS one', () => {
    const cjs = exportedNames(JSON.parse(runOk(['-e', "console.log(JSON.stringify(Object.keys(require('moe-cpu'))))"])));
    const esm = exportedNames(JSON.parse(runOk(['--input-type=module', '-e', "import * as m from 'moe-cpu'; console.log(JSON.stringify(Object.keys(m)))"])));
    expect(esm).toEqual(cjs);
  });

  test('CJS and ESM compute the same (and correct) MoE output', () => {
    const print = 'console.log(JSON.stringify(Array.from(new m.MoeLayer(options).forwardSync(hidden, route))));';
    const cjs = JSON.parse(runOk(['-e', `const m = require('moe-cpu');${DETERMINISTIC_LAYER}${print}`]));
    const esm = JSON.parse(runOk(['--input-type=module', '-e', `import * as m from 'moe-cpu';${DETERMINISTIC_LAYER}${print}`]));
    expect(esm).toEqual(cjs);
    expectClose(cjs, deterministicReference(), F32_TOL);
  });

  test("ESM named imports: import { MoeLayer, cpuInfo } from 'moe-cpu'", () => {
    const out = runOk(['--input-type=module', '-e', "import { MoeLayer, cpuInfo } from 'moe-cpu'; console.log(typeof MoeLayer, typeof cpuInfo().kernel)"]);
    expect(out).toBe('function string');
  });
});

describe('cpuInfo()', () => {
  test('arch, features, kernel, threads', () => {
    const info = lib.cpuInfo();
    expect(info.arch).toBe(process.arch);
    expect(typeof info.kernel).toBe('string');
    expect(info.kernel.length).toBeGreaterThan(0);
    expect(Number.isInteger(info.threads)).toBe(true);
    expect(info.threads).toBeGreaterThanOrEqual(1);
    expect(Array.isArray(info.features)).toBe(true);
    for (const f of info.features) expect(typeof f).toBe('string');
  });

  test('MOE_CPU_ISA=scalar forces the scalar kernels, which are correct too', () => {
    const out = runOk(
      ['-e', `const m = require('moe-cpu');${DETERMINISTIC_LAYER}console.log(JSON.stringify({ kernel: m.cpuInfo().kernel, out: Array.from(new m.MoeLayer(options).forwardSync(hidden, route)) }));`],
      { MOE_CPU_ISA: 'scalar' },
    );
    const { kernel, out: values } = JSON.parse(out);
    expect(kernel).toBe('scalar');
    expectClose(values, deterministicReference(), F32_TOL);
  });

  test('MOE_CPU_ISA naming an unknown kernel set is an error, not a silent fallback', () => {
    const r = runNode(['-e', "try { const m = require('moe-cpu'); console.log('kernel ' + m.cpuInfo().kernel); } catch (e) { console.log('error ' + e.message); }"], { MOE_CPU_ISA: 'bogus-isa' });
    expect(r.signal).toBeNull();
    expect(r.stdout).toMatch(/^error .*MOE_CPU_ISA/);
  });
});

describe('worker threads', () => {
  test('two worker threads run layers at once and match the main thread bitwise', () => {
    const script = `
const { Worker } = require('worker_threads');
const m = require('moe-cpu');
${DETERMINISTIC_LAYER}
const mine = Array.from(new m.MoeLayer(options).forwardSync(hidden, route));
const code = \`
const { parentPort, workerData } = require('worker_threads');
const m = require(workerData.path);
${DETERMINISTIC_LAYER.replace(/`/g, '\\`')}
const layer = new m.MoeLayer(options);
(async () => {
  const results = [];
  for (let i = 0; i < 20; i++) results.push(Array.from(i % 2 ? layer.forwardSync(hidden, route) : await layer.forward(hidden, route)));
  parentPort.postMessage(results);
})();
\`;
const path = require.resolve('moe-cpu');
const run = () => new Promise((resolve, reject) => {
  const w = new Worker(code, { eval: true, workerData: { path } });
  w.once('message', resolve);
  w.once('error', reject);
});
Promise.all([run(), run()]).then((all) => {
  const bad = all.flat().filter((r) => JSON.stringify(r) !== JSON.stringify(mine)).length;
  console.log(bad === 0 ? 'ok' : 'mismatch ' + bad);
}, (e) => { console.log('error ' + e.message); });
`;
    expect(runOk(['-e', script])).toBe('ok');
  });

  test('terminating a worker while its forward() is in flight does not crash the process', () => {
    const script = `
const { Worker } = require('worker_threads');
const m = require('moe-cpu');
const code = \`
const { parentPort, workerData } = require('worker_threads');
const m = require(workerData.path);
const E = 4, H = 256, I = 256, K = 2, T = 64;
const fill = (n) => Float32Array.from({ length: n }, (_, i) => ((i * 7919) % 1000) / 1e4 - 0.05);
const layer = new m.MoeLayer({ numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu',
  isW13Interleaved: false, weightDtype: 'f32', w13: fill(E * 2 * I * H), w2: fill(E * H * I), threads: 1 });
const hidden = fill(T * H);
const route = { ids: Int32Array.from({ length: T * K }, (_, i) => i % E), weights: new Float32Array(T * K).fill(0.5) };
for (let i = 0; i < 2; i++) layer.forward(hidden, route);
parentPort.postMessage('started');
\`;
const w = new Worker(code, { eval: true, workerData: { path: require.resolve('moe-cpu') } });
w.once('message', () => w.terminate());
w.once('exit', () => {
  setTimeout(() => {
    ${DETERMINISTIC_LAYER}
    new m.MoeLayer(options).forwardSync(hidden, route);
    console.log('alive');
  }, 500);
});
`;
    expect(runOk(['-e', script])).toBe('alive');
  });
});
