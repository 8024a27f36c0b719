#!/usr/bin/env node
'use strict';
// A roofline picture from `moe_bench --json` reports: GFLOP/s against tokens per call, one
// panel per thread count, with the ceilings measured in the same run drawn in: read bandwidth
// times the call's arithmetic intensity (FLOPs per weight byte read, which grows with the
// tokens until every expert is touched) and the arithmetic peaks (f32 FMA, bf16 dot, AMX
// bf16). A point's height over the ceilings says at a glance which bound it is near.
//
//   node bench/roofline.js --out FILE.svg [--title TEXT] [--torch torch.json] REPORT.json...
//
// Each REPORT is one moe_bench run (its kernel set names the series, "moe-cpu amx"); ggml's
// figures come from the first report that has them; --torch adds bench/torch_peer.py's
// medians (its FLOPs are the same per call as ours at the same T: 2·T·K·3·I·H). The limits
// drawn are the first report's. One preset and weight dtype per picture (the first report's).
// Plain SVG, no dependencies, so the README can show it and anyone can regenerate it.

const fs = require('node:fs');

function parseArgs(argv) {
  const args = { reports: [], out: null, title: null, torch: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') args.out = argv[++i];
    else if (a === '--title') args.title = argv[++i];
    else if (a === '--torch') args.torch = argv[++i];
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
    else args.reports.push(a);
  }
  if (!args.out || args.reports.length === 0) {
    throw new Error('usage: node bench/roofline.js --out FILE.svg [--title TEXT] [--torch torch.json] REPORT.json...');
  }
  return args;
}

const COLORS = ['#1f6feb', '#8250df', '#cf222e', '#bf8700', '#1a7f37'];
const CEILING = '#57606a';

function collect(args) {
  const reports = args.reports.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
  const first = reports[0];
  const key = first.moe[0];
  const same = (r) => r.preset === key.preset && r.weight_dtype === key.weight_dtype;
  const series = [];
  for (const rep of reports) {
    series.push({ name: `moe-cpu ${rep.machine.kernel}`, points: rep.moe.filter(same).map((r) => ({ threads: r.threads, tokens: r.tokens, gflops: r.gflops, ms: r.median_ms })) });
  }
  const withGgml = reports.find((rep) => rep.moe.some((r) => same(r) && r.ggml_gflops > 0));
  if (withGgml) {
    series.push({ name: 'ggml', points: withGgml.moe.filter((r) => same(r) && r.ggml_gflops > 0).map((r) => ({ threads: r.threads, tokens: r.tokens, gflops: r.ggml_gflops, ms: r.ggml_median_ms })) });
  }
  // The first report's calls: their FLOPs (route-based, so the same for any implementation at
  // the same T) and the weight bytes they read give the read-bandwidth ceiling.
  const calls = first.moe.filter(same);
  const flopsAt = new Map(calls.map((r) => [r.tokens, r.flops]));
  if (args.torch) {
    const t = JSON.parse(fs.readFileSync(args.torch, 'utf8'));
    const points = t.rows.filter((r) => flopsAt.has(r.tokens))
      .map((r) => ({ threads: r.threads, tokens: r.tokens, gflops: flopsAt.get(r.tokens) / (r.median_ms * 1e6), ms: r.median_ms }));
    series.push({ name: `torch ${t.torch.split('+')[0]}`, points });
  }
  const threads = [...new Set(first.limits.map((l) => l.threads))].sort((a, b) => a - b);
  const panels = threads.map((n) => {
    const limits = first.limits.find((l) => l.threads === n);
    const own = calls.filter((r) => r.threads === n).sort((a, b) => a.tokens - b.tokens);
    return {
      threads: n, limits,
      bandwidth: own.map((r) => ({ tokens: r.tokens, gflops: limits.read_gbps * (r.flops / r.weight_bytes) })),
      peaks: [['f32 FMA', limits.fma_gflops], ['bf16 dot', limits.bf16_dot_gflops], ['AMX bf16', limits.amx_bf16_gflops]]
        .filter(([, v]) => v > 0),
      series: series.map((s) => ({ name: s.name, points: s.points.filter((p) => p.threads === n).sort((a, b) => a.tokens - b.tokens) })),
    };
  });
  return { key, machine: first.machine, panels, names: series.map((s) => s.name) };
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

function svg(data, title) {
  const W = 460, Hp = 376, m = { l: 64, r: 96, t: 72, b: 48 };
  const width = W * data.panels.length, height = Hp + m.t - m.b + 28;
  const all = data.panels.flatMap((p) => [...p.peaks.map(([, v]) => v), ...p.bandwidth.map((b) => b.gflops),
    ...p.series.flatMap((s) => s.points.map((q) => q.gflops))]);
  const yMin = 10 ** Math.floor(Math.log10(Math.min(...all))), yMax = 10 ** Math.ceil(Math.log10(Math.max(...all)));
  const tokens = [...new Set(data.panels.flatMap((p) => p.bandwidth.map((b) => b.tokens)))].sort((a, b) => a - b);
  const xMin = tokens[0], xMax = tokens[tokens.length - 1];
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${width / 2}" y="18" text-anchor="middle" font-size="13" font-weight="600">${esc(title)}</text>`);
  data.panels.forEach((p, i) => {
    const x0 = i * W + m.l, x1 = (i + 1) * W - m.r, y0 = m.t, y1 = Hp - m.b + m.t - 16;
    const X = (t) => x0 + (Math.log(t / xMin) / Math.log(xMax / xMin)) * (x1 - x0);
    const Y = (g) => y1 - (Math.log(g / yMin) / Math.log(yMax / yMin)) * (y1 - y0);
    out.push(`<text x="${(x0 + x1) / 2}" y="${y0 - 8}" text-anchor="middle" font-size="12">${p.threads} thread${p.threads === 1 ? '' : 's'}</text>`);
    out.push(`<rect x="${x0}" y="${y0}" width="${x1 - x0}" height="${y1 - y0}" fill="none" stroke="#d0d7de"/>`);
    for (let g = yMin; g <= yMax; g *= 10) {
      out.push(`<line x1="${x0}" x2="${x1}" y1="${Y(g)}" y2="${Y(g)}" stroke="#eaeef2"/>`);
      out.push(`<text x="${x0 - 6}" y="${Y(g) + 4}" text-anchor="end">${g >= 1000 ? `${g / 1000}k` : g}</text>`);
    }
    for (const t of tokens) {
      out.push(`<line x1="${X(t)}" x2="${X(t)}" y1="${y0}" y2="${y1}" stroke="#eaeef2"/>`);
      out.push(`<text x="${X(t)}" y="${y1 + 16}" text-anchor="middle">${t}</text>`);
    }
    out.push(`<text x="${(x0 + x1) / 2}" y="${y1 + 34}" text-anchor="middle">tokens per call</text>`);
    out.push(`<text transform="translate(${x0 - 46} ${(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">GFLOP/s</text>`);
    // Ceilings: the read-bandwidth line (its slope is the intensity's growth) and the peaks.
    const bw = p.bandwidth.map((b) => `${X(b.tokens).toFixed(1)},${Y(b.gflops).toFixed(1)}`).join(' ');
    out.push(`<polyline points="${bw}" fill="none" stroke="${CEILING}" stroke-width="1.5" stroke-dasharray="6 3"/>`);
    const last = p.bandwidth[p.bandwidth.length - 1];
    out.push(`<text x="${x1 + 4}" y="${Y(last.gflops) + 4}" fill="${CEILING}">read ${p.limits.read_gbps.toFixed(0)} GB/s</text>`);
    for (const [name, v] of p.peaks) {
      out.push(`<line x1="${x0}" x2="${x1}" y1="${Y(v)}" y2="${Y(v)}" stroke="${CEILING}" stroke-width="1" stroke-dasharray="2 2"/>`);
      out.push(`<text x="${x1 + 4}" y="${Y(v) + 4}" fill="${CEILING}">${esc(name)} ${fmt(v)}</text>`);
    }
    p.series.forEach((s, j) => {
      if (s.points.length === 0) return;
      const c = COLORS[j % COLORS.length];
      out.push(`<polyline points="${s.points.map((q) => `${X(q.tokens).toFixed(1)},${Y(q.gflops).toFixed(1)}`).join(' ')}" fill="none" stroke="${c}" stroke-width="2"/>`);
      for (const q of s.points) {
        out.push(`<circle cx="${X(q.tokens).toFixed(1)}" cy="${Y(q.gflops).toFixed(1)}" r="3.5" fill="${c}"><title>${esc(s.name)}: T=${q.tokens}, ${fmt(q.ms)} ms, ${fmt(q.gflops)} GFLOP/s</title></circle>`);
      }
    });
  });
  // Legend under the title.
  let lx = m.l;
  data.names.forEach((name, j) => {
    const c = COLORS[j % COLORS.length];
    out.push(`<line x1="${lx}" x2="${lx + 18}" y1="32" y2="32" stroke="${c}" stroke-width="2"/><text x="${lx + 22}" y="36">${esc(name)}</text>`);
    lx += 30 + name.length * 6.5;
  });
  out.push(`<line x1="${lx}" x2="${lx + 18}" y1="32" y2="32" stroke="${CEILING}" stroke-dasharray="6 3" stroke-width="1.5"/><text x="${lx + 22}" y="36">ceilings measured in the same run</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const data = collect(args);
  const title = args.title ?? `${data.key.preset} MoE layer, ${data.key.weight_dtype} weights, cold weights (medians)`;
  fs.writeFileSync(args.out, svg(data, title));
  console.log(`${args.out}: ${data.panels.length} panel(s), series ${data.names.join(', ')}`);
}

if (require.main === module) {
  try {
    main();
  } catch (e) {
    console.error(`roofline: ${e.message}`);
    process.exit(1);
  }
}

module.exports = { collect, svg };
