import { describe, expect, test } from 'vitest';
import { selectExperts } from '../lib/index';
import { F32_TOL, expectClose, mulberry32, randF32, randLogits, snapshot, unchanged } from './helpers';
import { RefRouting, refSelectExperts } from './reference';

interface Shape {
  tokens: number;
  numExperts: number;
  topK: number;
}

function check(logits: Float32Array, s: Shape, routing: RefRouting, label: string) {
  const before = snapshot(logits);
  const got = selectExperts(logits, { ...s, routing });
  expect(unchanged(logits, before)).toBe(true);
  expect(got.ids).toBeInstanceOf(Int32Array);
  expect(got.weights).toBeInstanceOf(Float32Array);
  expect(got.ids.length).toBe(s.tokens * s.topK);
  expect(got.weights.length).toBe(s.tokens * s.topK);
  const ref = refSelectExperts(logits, s.tokens, s.numExperts, s.topK, routing);
  expect(Array.from(got.ids), `${label} ids`).toEqual(Array.from(ref.ids));
  expectClose(got.weights, ref.weights, F32_TOL, `${label} weights`);
  return got;
}

const SHAPES: Shape[] = [
  { tokens: 1, numExperts: 5, topK: 2 },
  { tokens: 3, numExperts: 5, topK: 5 },
  { tokens: 17, numExperts: 33, topK: 4 },
  { tokens: 33, numExperts: 128, topK: 8 },
  { tokens: 3, numExperts: 1, topK: 1 },
];

describe.each<[string, RefRouting]>([
  ['topk-softmax', { mode: 'topk-softmax' }],
  ['softmax-topk renormalized', { mode: 'softmax-topk', renormalize: true }],
  ['softmax-topk not renormalized', { mode: 'softmax-topk', renormalize: false }],
])('%s', (name, routing) => {
  test.each(SHAPES)('T=$tokens E=$numExperts K=$topK matches the reference', (s) => {
    const logits = randLogits(mulberry32(s.tokens * 1000 + s.numExperts), s.tokens, s.numExperts, 4);
    check(logits, s, routing, name);
  });

  test('ties go to the lower expert index', () => {
    const logits = new Float32Array([1, 3, 3, 2, 3, /**/ 0, 0, 0, 0, 0, /**/ 4, 1, 4, 1, 4]);
    const s = { tokens: 3, numExperts: 5, topK: 3 };
    const got = check(logits, s, routing, name);
    expect(Array.from(got.ids)).toEqual([1, 2, 4, 0, 1, 2, 0, 2, 4]);
  });

  test('slots are ordered by descending score', () => {
    const logits = new Float32Array([0.5, -1, 2, 0.25, 1.5]);
    const got = check(logits, { tokens: 1, numExperts: 5, topK: 4 }, routing, name);
    expect(Array.from(got.ids)).toEqual([2, 4, 0, 3]);
    for (let k = 1; k < 4; k++) expect(got.weights[k]).toBeLessThan(got.weights[k - 1]);
  });
});

describe('softmax over which values', () => {
  test('topk-softmax: weights are the softmax of the K chosen logits (sum to 1)', () => {
    const got = selectExperts(new Float32Array([0, Math.log(3), 5, -2]), {
      tokens: 1, numExperts: 4, topK: 2, routing: { mode: 'topk-softmax' },
    });
    expect(Array.from(got.ids)).toEqual([2, 1]);
    const e = Math.exp(5 - Math.log(3));
    expectClose(got.weights, [e / (e + 1), 1 / (e + 1)], F32_TOL);
  });

  test('softmax-topk without renormalize: weights are the probabilities over all E', () => {
    const logits = new Float32Array([0, 0, Math.log(2), Math.log(4)]);
    const p = [1, 1, 2, 4].map((v) => v / 8);
    const got = selectExperts(logits, {
      tokens: 1, numExperts: 4, topK: 2, routing: { mode: 'softmax-topk', renormalize: false },
    });
    expect(Array.from(got.ids)).toEqual([3, 2]);
    expectClose(got.weights, [p[3], p[2]], F32_TOL);
    const r = selectExperts(logits, {
      tokens: 1, numExperts: 4, topK: 2, routing: { mode: 'softmax-topk', renormalize: true },
    });
    expectClose(r.weights, [4 / 6, 2 / 6], F32_TOL);
  });
});

describe('sigmoid-grouped', () => {
  test('DeepSeek-V3 style: E=32, 8 groups, keep 4, K=8, correction bias, routedScalingFactor 2.5', () => {
    const rng = mulberry32(2024);
    const E = 32;
    const tokens = 17;
    const routing: RefRouting = {
      mode: 'sigmoid-grouped', numGroups: 8, topkGroups: 4,
      correctionBias: randF32(rng, E, -0.5, 0.5), renormalize: true, routedScalingFactor: 2.5,
    };
    const bias = snapshot(routing.correctionBias!);
    const logits = randLogits(rng, tokens, E, 3);
    const got = check(logits, { tokens, numExperts: E, topK: 8 }, routing, 'deepseek');
    expect(unchanged(routing.correctionBias!, bias)).toBe(true);
    for (let t = 0; t < tokens; t++) {
      let sum = 0;
      for (let k = 0; k < 8; k++) sum += got.weights[t * 8 + k];
      expect(Math.abs(sum - 2.5)).toBeLessThan(1e-5);
      const groups = new Set(Array.from(got.ids.subarray(t * 8, t * 8 + 8), (e) => Math.floor(e / 4)));
      expect(groups.size).toBeLessThanOrEqual(4);
    }
  });

  test.each<[string, Omit<Extract<RefRouting, { mode: 'sigmoid-grouped' }>, 'mode'>, Shape]>([
    ['no bias, not renormalized, factor 1 (default)', { numGroups: 3, topkGroups: 2, renormalize: false }, { tokens: 17, numExperts: 9, topK: 3 }],
    ['bias, renormalized', { numGroups: 4, topkGroups: 1, renormalize: true, correctionBias: randF32(mulberry32(3), 12, -1, 1) }, { tokens: 3, numExperts: 12, topK: 3 }],
    ['one group', { numGroups: 1, topkGroups: 1, renormalize: true }, { tokens: 5, numExperts: 7, topK: 7 }],
    ['every group kept', { numGroups: 8, topkGroups: 8, renormalize: false, routedScalingFactor: 0.5 }, { tokens: 17, numExperts: 64, topK: 6 }],
  ])('%s', (name, r, s) => {
    const logits = randLogits(mulberry32(s.numExperts), s.tokens, s.numExperts, 3);
    check(logits, s, { mode: 'sigmoid-grouped', ...r }, name);
  });

  test('groups are scored by the sum of their top-2; experts outside the kept groups are never chosen', () => {
    // 4 groups of 2. Group 0 = {5, -5}: sum sigmoid = 1.0; group 1 = {2, 2}: sum 1.76.
    const logits = new Float32Array([5, -5, 2, 2, 0, 0, -1, -1]);
    const got = check(logits, { tokens: 1, numExperts: 8, topK: 2 },
      { mode: 'sigmoid-grouped', numGroups: 4, topkGroups: 1, renormalize: false }, 'groups');
    expect(Array.from(got.ids)).toEqual([2, 3]);
  });

  test('the bias steers the choice; the weights are the unbiased scores', () => {
    const logits = new Float32Array([1, 0, 0.5, -1]);
    const correctionBias = new Float32Array([0, 0, 0, 10]);
    const got = check(logits, { tokens: 1, numExperts: 4, topK: 2 },
      { mode: 'sigmoid-grouped', numGroups: 2, topkGroups: 2, correctionBias, renormalize: false, routedScalingFactor: 2 }, 'bias');
    expect(Array.from(got.ids)).toEqual([3, 0]);
    const sig = (x: number) => 1 / (1 + Math.exp(-x));
    expectClose(got.weights, [2 * sig(-1), 2 * sig(1)], F32_TOL);
  });

  test('ties go to the lower index (groups and experts)', () => {
    // 4 groups of 2, every group scores the same: the first topkGroups groups are kept.
    const logits = new Float32Array([0, 1, 1, 0, 0, 1, 1, 0]);
    const got = check(logits, { tokens: 1, numExperts: 8, topK: 3 },
      { mode: 'sigmoid-grouped', numGroups: 4, topkGroups: 2, renormalize: false }, 'ties');
    expect(Array.from(got.ids)).toEqual([1, 2, 0]);
    const flat = new Float32Array(8).fill(0.25);
    const all = check(flat, { tokens: 1, numExperts: 8, topK: 4 },
      { mode: 'sigmoid-grouped', numGroups: 4, topkGroups: 3, renormalize: true }, 'flat');
    expect(Array.from(all.ids)).toEqual([0, 1, 2, 3]);
  });
});
