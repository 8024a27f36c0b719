// Every kernel set this machine can run, forced with MOE_CPU_ISA in a child process, against
// the reference: the suite itself only exercises the default (best) kernel set.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { BF16_TOL, Dtype, F32_TOL, asDtype, expectClose, mulberry32, randF32, randLogits, valuesOf } from './helpers';
import { moeCase, randomRoute } from './moe-case';
import { ActivationName, Layout, RefRouting, refGatedActivation, refMoeForward, refSelectExperts } from './reference';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Kernel sets docs/design.md names, per architecture. */
const ISAS: Record<string, string[]> = {
  x64: ['scalar', 'avx2', 'avx512', 'amx'],
  arm64: ['scalar', 'neon', 'sve'],
};

type Typed = Float32Array | Uint16Array | Int32Array;
type Wire = { t: 'f32' | 'u16' | 'i32'; d: number[] };

function enc(a: Typed): Wire {
  return { t: a instanceof Float32Array ? 'f32' : a instanceof Uint16Array ? 'u16' : 'i32', d: Array.from(a) };
}
function encObj(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(o).map(([k, v]) => [k, ArrayBuffer.isView(v) ? enc(v as Typed) : v && typeof v === 'object' ? encObj(v as Record<string, unknown>) : v]),
  );
}
function dec(w: Wire): Typed {
  return w.t === 'f32' ? Float32Array.from(w.d) : w.t === 'u16' ? Uint16Array.from(w.d) : Int32Array.from(w.d);
}

/** Runs in the child: reads cases on stdin, prints { kernel, results } or { error }. */
const CHILD = `
const types = { f32: Float32Array, u16: Uint16Array, i32: Int32Array };
const isWire = (v) => v && typeof v === 'object' && typeof v.t === 'string' && Array.isArray(v.d);
const dec = (v) => isWire(v) ? types[v.t].from(v.d) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, dec(x)])) : v;
const enc = (a) => ({ t: a instanceof Float32Array ? 'f32' : a instanceof Uint16Array ? 'u16' : 'i32', d: Array.from(a) });
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  let m, kernel;
  try { m = require('moe-cpu'); kernel = m.cpuInfo().kernel; }
  catch (e) { process.stdout.write(JSON.stringify({ error: e.message, code: e.code, name: e.name })); return; }
  const results = JSON.parse(input).map((c) => {
    if (c.kind === 'moe') return enc(new m.MoeLayer(dec(c.options)).forwardSync(dec(c.hidden), dec(c.route)));
    if (c.kind === 'route') { const r = m.selectExperts(dec(c.logits), dec(c.options)); return [enc(r.ids), enc(r.weights)]; }
    return enc(m[c.fn](dec(c.x), c.options));
  });
  process.stdout.write(JSON.stringify({ kernel, results }));
});
`;

interface Case {
  label: string;
  wire: Record<string, unknown>;
  /** Checks the child's result. */
  check: (result: unknown) => void;
}

function moeCases(): Case[] {
  const cases: Case[] = [];
  const acts: ActivationName[] = ['swigluoai', 'silu', 'gelu', 'gelu_tanh'];
  let seed = 500;
  const shapes = [
    { E: 9, H: 17, I: 33, K: 3, T: 17 },
    { E: 4, H: 130, I: 97, K: 2, T: 65 },
  ];
  for (const s of shapes)
    for (const wd of ['f32', 'bf16'] as Dtype[])
      for (const hd of ['f32', 'bf16'] as Dtype[])
        for (const act of acts) {
          if (s.H > 17 && act !== acts[seed % 4]) { seed++; continue; } // big shape: one activation per dtype pair
          const interleaved = seed % 2 === 0;
          const transposed = seed % 3 === 0;
          const c = moeCase({ ...s, activation: act, interleaved, transposed, weightDtype: wd, bias: true, seed: seed++ });
          const hidden = asDtype(randF32(c.rng, s.T * s.H), hd);
          const route = randomRoute(c.rng, s.T, s.E, s.K);
          const ref = refMoeForward({ ...c.ref, bf16Activations: hd === 'bf16' }, c.weights, valuesOf(hidden), route.ids, route.weights);
          const tol = wd === 'f32' && hd === 'f32' ? F32_TOL : BF16_TOL;
          const label = `moe E=${s.E} H=${s.H} I=${s.I} ${act} weights ${wd} hidden ${hd} interleaved ${interleaved} transposed ${transposed}`;
          cases.push({
            label,
            wire: { kind: 'moe', options: encObj(c.options), hidden: enc(hidden), route: encObj(route) },
            check: (r) => {
              const out = dec(r as Wire) as Float32Array | Uint16Array;
              expect(out.constructor, label).toBe(hidden.constructor);
              expectClose(valuesOf(out), ref, tol, label);
            },
          });
        }
  return cases;
}

function activationCases(): Case[] {
  const cases: Case[] = [];
  const fns: [ActivationName, string, Record<string, unknown>][] = [
    ['swigluoai', 'swigluoai', {}],
    ['silu', 'siluAndMul', {}],
    ['gelu', 'geluAndMul', { approximate: 'none' }],
    ['gelu_tanh', 'geluAndMul', { approximate: 'tanh' }],
  ];
  let seed = 900;
  for (const [kind, fn, extra] of fns)
    for (const layout of ['halves', 'interleaved'] as Layout[])
      for (const dtype of ['f32', 'bf16'] as Dtype[])
        for (const [T, I] of [[1, 4097], [3, 33]]) {
          const x = randF32(mulberry32(seed++), T * 2 * I, -9, 9);
          // Channel 0 of token 0 = (1.5, 1.25): keeps max|ref| of order 1 (gate 0 is x[0] in both layouts).
          x[0] = 1.5;
          x[layout === 'interleaved' ? 1 : I] = 1.25;
          const xs = asDtype(x, dtype);
          const ref = refGatedActivation(kind, valuesOf(xs), T, I, layout);
          const label = `${kind} ${layout} ${dtype} T=${T} I=${I}`;
          cases.push({
            label,
            wire: { kind: 'act', fn, x: enc(xs), options: { tokens: T, intermediateSize: I, isInterleaved: layout === 'interleaved', ...extra } },
            check: (r) => expectClose(valuesOf(dec(r as Wire) as Float32Array | Uint16Array), ref, dtype === 'f32' ? F32_TOL : BF16_TOL, label),
          });
        }
  return cases;
}

function routingCases(): Case[] {
  const routings: [RefRouting, number, number][] = [
    [{ mode: 'topk-softmax' }, 33, 4],
    [{ mode: 'softmax-topk', renormalize: true }, 128, 8],
    [{ mode: 'sigmoid-grouped', numGroups: 8, topkGroups: 4, renormalize: true, routedScalingFactor: 2.5, correctionBias: randF32(mulberry32(1), 32, -0.5, 0.5) }, 32, 8],
  ];
  return routings.map(([routing, E, K], i) => {
    const T = 17;
    const logits = randLogits(mulberry32(40 + i), T, E, 3);
    const ref = refSelectExperts(logits, T, E, K, routing);
    const label = `route ${routing.mode} E=${E} K=${K}`;
    return {
      label,
      wire: { kind: 'route', logits: enc(logits), options: encObj({ tokens: T, numExperts: E, topK: K, routing }) },
      check: (r) => {
        const [ids, weights] = (r as Wire[]).map(dec);
        expect(Array.from(ids), label).toEqual(Array.from(ref.ids));
        expectClose(weights, ref.weights, F32_TOL, label);
      },
    };
  });
}

describe('every kernel set, forced with MOE_CPU_ISA, against the reference', () => {
  const cases = [...moeCases(), ...activationCases(), ...routingCases()];
  const input = JSON.stringify(cases.map((c) => c.wire));

  test.for(ISAS[process.arch] ?? ['scalar'])('MOE_CPU_ISA=%s', (isa, { skip }) => {
    const r = spawnSync(process.execPath, ['-e', CHILD], {
      cwd: ROOT, input, encoding: 'utf8', env: { ...process.env, MOE_CPU_ISA: isa }, timeout: 60_000, maxBuffer: 1 << 28,
    });
    expect(r.status, `exit ${r.status} signal ${r.signal}\n${r.stderr}`).toBe(0);
    const reply = JSON.parse(r.stdout) as { kernel?: string; results?: unknown[]; error?: string; code?: string; name?: string };
    if (reply.error !== undefined) {
      // Not runnable here (not built, or this CPU lacks it): must be a clear error, never 'scalar' in disguise.
      expect(isa, `scalar must always run: ${reply.error}`).not.toBe('scalar');
      expect(reply.error).toMatch(new RegExp(`^MOE_CPU_ISA=${isa}: this (CPU lacks|build has no such kernel set)`));
      expect([reply.name, reply.code]).toEqual(['RangeError', 'ERR_MOE_INVALID_ARGUMENT']);
      // A kernel set that cannot run here is a skip, never a pass.
      skip(`MOE_CPU_ISA=${isa}: not available here (${reply.error})`);
    }
    expect(reply.kernel).toBe(isa);
    cases.forEach((c, i) => c.check(reply.results![i]));
  });
});
