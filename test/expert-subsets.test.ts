// Layers holding a subset of the model's experts (`experts`): the partial outputs of layers that
// hold a partition of the experts sum to the whole layer's output — bit for bit where each
// token's slots add in the same order (two partitions, top-2, decode), within the precision
// contract otherwise — for every weight format, given routes and the layer's own router, ranges
// and lists; routes to experts not held add exactly nothing; the subset survives save/open and
// share/adopt; bad subsets are TypeError / RangeError naming `experts`.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { MoeLayer, openCheckpoint, toBf16, type MoeLayerOptions, type WeightDtype } from '../lib/index';
import { checkpointMaker, randomHidden } from './checkpoint/synthetic';
import { BF16_TOL, F32_TOL, bitsEqual, expectClose, expectThrows, mulberry32, randF32 } from './helpers';

const E = 8, H = 64, I = 96, K = 2;
const rng = mulberry32(0x5b5e7);
const w13 = randF32(rng, E * 2 * I * H, -0.3, 0.3), w2 = randF32(rng, E * H * I, -0.2, 0.2);
const b13 = randF32(rng, E * 2 * I, -0.5, 0.5), b2 = randF32(rng, E * H, -0.5, 0.5);
const routerWeight = randF32(rng, E * H);

/** Rows of expert e of an [E, rows] tensor, for the experts listed, concatenated. */
function pick(a: Float32Array, ids: readonly number[]): Float32Array {
  const n = a.length / E;
  const out = new Float32Array(ids.length * n);
  ids.forEach((e, i) => out.set(a.subarray(e * n, (e + 1) * n), i * n));
  return out;
}

function layer(dtype: WeightDtype, ids: readonly number[] | null, extra: Partial<MoeLayerOptions> = {}): MoeLayer {
  const all = Array.from({ length: E }, (_, e) => e);
  const held = ids ?? all;
  const values = (a: Float32Array) => (dtype === 'bf16' ? toBf16(pick(a, held)) : pick(a, held));
  return new MoeLayer({
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'swigluoai', isW13Interleaved: true,
    weightDtype: dtype, w13: values(w13), w2: values(w2), w13Bias: values(b13), w2Bias: values(b2), routerWeight,
    ...(ids ? { experts: ids } : {}), ...extra,
  } as MoeLayerOptions);
}

function routeFor(T: number) {
  const ids = new Int32Array(T * K), weights = new Float32Array(T * K);
  for (let t = 0; t < T; t++) {
    const a = Math.floor(rng() * E), b = (a + 1 + Math.floor(rng() * (E - 1))) % E;
    ids.set([a, b], t * K);
    weights.set([0.2 + rng(), 0.2 + rng()], t * K);
  }
  return { ids, weights };
}

/** Sum of partial outputs, rounded to f32 once per element (as the whole layer rounds its sum). */
function sum(parts: Float32Array[]): Float32Array {
  return parts[0].map((_, i) => Math.fround(parts.reduce((a, p) => a + p[i], 0)));
}

const PARTITIONS: { label: string; parts: number[][] }[] = [
  { label: 'two ranges', parts: [[0, 1, 2, 3], [4, 5, 6, 7]] },
  { label: 'two interleaved lists', parts: [[0, 2, 4, 6], [1, 3, 5, 7]] },
  { label: 'three uneven', parts: [[0], [1, 2, 3, 4, 5], [6, 7]] },
  { label: 'one expert each', parts: Array.from({ length: E }, (_, e) => [e]) },
];

describe('expert subsets: partial outputs sum to the whole layer', () => {
  for (const dtype of ['f32', 'bf16', 'mxfp4', 'int8'] as WeightDtype[]) {
    test.each(PARTITIONS)(`${dtype}: $label`, async ({ parts }) => {
      const whole = layer(dtype, null);
      const layers = parts.map((ids) => layer(dtype, ids));
      expect(layers.map((l) => l.experts)).toEqual(parts);
      expect(layers.reduce((a, l) => a + l.bytes, 0)).toBeGreaterThan(0);
      for (const T of [1, 3, 64]) {
        const hidden = randF32(rng, T * H);
        const route = routeFor(T);
        const expected = await whole.forward(hidden, route);
        const total = sum(await Promise.all(layers.map((l) => l.forward(hidden, route))));
        // Two partitions of a top-2 layer: each token's slots add in the whole layer's order.
        if (parts.length === 2 && T <= 3) expect(bitsEqual(total, expected), `T=${T}`).toBe(true);
        expectClose(total, expected, T <= 3 || dtype === 'f32' ? F32_TOL : BF16_TOL, `T=${T}`);
        // Routed by the layers' own router (the model's router, whole in each).
        const routed = sum(await Promise.all(layers.map((l) => l.forward(hidden))));
        expectClose(routed, await whole.forward(hidden), T <= 3 || dtype === 'f32' ? F32_TOL : BF16_TOL, `T=${T}, router`);
      }
      whole.dispose();
      layers.forEach((l) => l.dispose());
    });
  }

  test('routes to experts not held add exactly nothing', async () => {
    const l = layer('f32', [5]);
    const hidden = randF32(rng, 4 * H);
    const route = { ids: Int32Array.from([0, 1, 2, 3, 4, 6, 7, 0]), weights: new Float32Array(8).fill(0.5) };
    const out = await l.forward(hidden, route);
    expect(out.every((v) => Object.is(v, 0))).toBe(true);
    // One of the routes held: that route alone.
    const mixed = { ids: Int32Array.from([5, 1]), weights: Float32Array.from([0.75, 0.25]) };
    const alone = { ids: Int32Array.from([5, 5]), weights: Float32Array.from([0.75, 0]) };
    expect(bitsEqual(await l.forward(hidden.subarray(0, H), mixed), await l.forward(hidden.subarray(0, H), alone))).toBe(true);
    l.dispose();
  });

  test('the subset survives save/open and share/adopt', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'moe-cpu-subset-'));
    const l = layer('mxfp4', [1, 4, 6], { routing: { mode: 'softmax-topk', renormalize: true } });
    await l.save(join(dir, 's.moe'));
    const opened = await MoeLayer.open(join(dir, 's.moe'));
    const adopted = MoeLayer.adopt(l.share());
    const hidden = randF32(rng, 5 * H);
    const expected = await l.forward(hidden);
    for (const other of [opened, adopted]) {
      expect(other.experts).toEqual([1, 4, 6]);
      expect(other.numExperts).toBe(E);
      expect(bitsEqual(await other.forward(hidden), expected)).toBe(true);
      other.dispose();
    }
    l.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  test('bad subsets: TypeError / RangeError naming experts, nothing built', () => {
    const base = (experts: unknown, n = 2) => () => new MoeLayer({
      numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', isW13Interleaved: false,
      weightDtype: 'f32', w13: new Float32Array(n * 2 * I * H), w2: new Float32Array(n * H * I), experts: experts as number[],
    });
    expectThrows(base([]), RangeError, ['experts', 'at least one']);
    expectThrows(base([1, 1]), RangeError, ['experts[1]', 'increasing']);
    expectThrows(base([3, 2]), RangeError, ['experts[1]', 'increasing']);
    expectThrows(base([0, E]), RangeError, ['experts[1]', `[0, ${E})`]);
    expectThrows(base([0, 1.5]), RangeError, ['experts[1]']);
    expectThrows(base(['0', 1]), TypeError, ['experts[0]']);
    expectThrows(base('all'), TypeError, ['experts']);
    expectThrows(base({ first: 6, count: 4 }), RangeError, ['experts.count', 'at most 2']);
    expectThrows(base({ first: -1, count: 2 }), RangeError, ['experts.first']);
    expectThrows(base({ first: 0, count: 0 }), RangeError, ['experts.count']);
    // The weights are the held experts' only: [S, 2I, H].
    expectThrows(base([0, 1, 2]), RangeError, ['w13', 'S=3']);
    const range = base({ first: 6, count: 2 })();
    expect(range.experts).toEqual([6, 7]);
    range.dispose();
  });
});

describe('checkpoints loaded in parts (loadMoeLayer(s) with experts)', () => {
  const { make } = checkpointMaker();
  const CASES = [
    { kind: 'gpt-oss-mxfp4', weightDtype: 'mxfp4' }, { kind: 'gpt-oss-mxfp4', weightDtype: 'bf16' },
    { kind: 'gpt-oss-bf16', weightDtype: 'bf16' }, { kind: 'mixtral', weightDtype: 'f32' },
    { kind: 'deepseek-v3', weightDtype: 'bf16' }, { kind: 'qwen2-moe', weightDtype: 'f32' },
  ] as const;
  test.each(CASES)('$kind as $weightDtype: the parts sum to the whole block', async ({ kind, weightDtype }) => {
    const s = make(kind);
    const ckpt = await openCheckpoint(s.dir);
    const n = s.moeLayers[0];
    const E = s.dims.E;
    const whole = await ckpt.loadMoeLayer(n, { weightDtype });
    // Three parts: the first range holds the shared expert (where there is one), the others not.
    const cut = [0, Math.floor(E / 3), Math.floor((2 * E) / 3), E];
    const parts = await Promise.all([0, 1, 2].map((p) => ckpt.loadMoeLayer(n, {
      weightDtype, experts: { first: cut[p], count: cut[p + 1] - cut[p] }, sharedExperts: p === 0,
    })));
    expect(parts.map((b) => b.experts.experts.length)).toEqual([cut[1], cut[2] - cut[1], E - cut[2]]);
    expect(parts.map((b) => b.sharedExperts !== null)).toEqual([whole.sharedExperts !== null, false, false]);
    const estimate = ckpt.estimate({ layers: [n], weightDtype, experts: [0], sharedExperts: false });
    expect(estimate.bytes).toBeLessThan(ckpt.estimate({ layers: [n], weightDtype }).bytes / 2);
    const { hidden } = randomHidden(3, 3, s.dims.H, false);
    const total = sum(await Promise.all(parts.map((b) => b.forward(hidden) as Promise<Float32Array>)));
    expectClose(total, await whole.forward(hidden) as Float32Array, F32_TOL, kind);
    whole.dispose();
    parts.forEach((b) => b.dispose());
  });

  test('bad parts: TypeError / RangeError naming experts or sharedExperts', async () => {
    const s = make('mixtral');
    const ckpt = await openCheckpoint(s.dir);
    await expect(ckpt.loadMoeLayer(0, { experts: [s.dims.E] })).rejects.toThrow(/^experts\[0\]: expected an expert id in \[0, 8\)/);
    await expect(ckpt.loadMoeLayer(0, { experts: 'x' as never })).rejects.toBeInstanceOf(TypeError);
    await expect(ckpt.loadMoeLayer(0, { sharedExperts: 1 as never })).rejects.toThrow(/^sharedExperts/);
    await expect(ckpt.loadMoeLayers({ experts: [] })).rejects.toBeInstanceOf(RangeError);
  });
});

describe('examples/expert-parallel.cjs', () => {
  test.each([1, 2, 4])('split over %i worker threads: the summed partial outputs match the whole layer', (workers) => {
    const r = spawnSync(process.execPath, [path.join(__dirname, '..', 'examples', 'expert-parallel.cjs'), String(workers)], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${workers} workers holding experts .*max \\|diff\\| / max \\|ref\\| = `));
  }, 60_000);
});
