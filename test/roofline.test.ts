// bench/roofline.js turns moe_bench --json reports into the README's roofline SVG: the points
// are the reports' GFLOP/s, the ceilings the limits measured in the same run.
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';

const require = createRequire(import.meta.url);
const { collect, svg } = require('../bench/roofline.js');
const R = path.join(__dirname, '..', 'bench', 'results', '2026-12-03-xeon-amx');

describe('bench/roofline.js', () => {
  const data = collect({ reports: [path.join(R, 'bench-amx.json'), path.join(R, 'bench-avx512.json')], torch: path.join(R, 'torch.json') });

  test('one panel per thread count, each series from its report, torch at our FLOPs per call', () => {
    expect(data.panels.map((p: { threads: number }) => p.threads)).toEqual([1, 16]);
    expect(data.names).toEqual(['moe-cpu amx', 'moe-cpu avx512', 'ggml', 'torch 2.11.0']);
    const one = data.panels[0];
    const amx = one.series[0].points.find((q: { tokens: number }) => q.tokens === 256);
    expect(amx.ms).toBeCloseTo(212.349529, 5);
    expect(amx.gflops).toBeCloseTo(50960793600 / 212.349529e6, 5);
    const torch = one.series[3].points.find((q: { tokens: number }) => q.tokens === 256);
    expect(torch.gflops).toBeCloseTo(50960793600 / 404.298264e6, 3);
    // The read ceiling is bandwidth x FLOPs per weight byte of the call: at T=1 one FLOP a byte.
    expect(one.bandwidth[0].gflops).toBeCloseTo(one.limits.read_gbps, 6);
    expect(one.peaks.map(([name]: [string]) => name)).toEqual(['f32 FMA', 'bf16 dot', 'AMX bf16']);
  });

  test('the SVG draws every point and ceiling', () => {
    const text = svg(data, 'title');
    expect(text.startsWith('<svg')).toBe(true);
    const points = data.panels.flatMap((p: { series: { points: unknown[] }[] }) => p.series.flatMap((s) => s.points)).length;
    expect((text.match(/<circle /g) ?? []).length).toBe(points);
    expect(text).toContain('AMX bf16 27352');
    expect(text).toContain('read 164 GB/s');
  });
});
