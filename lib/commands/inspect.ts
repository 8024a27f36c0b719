// `moe-cpu inspect <dir>`: what a checkpoint holds and how moe-cpu will load it, from the
// config and the safetensors headers only (no weights are read).
import * as path from 'node:path';

import { formatLayers, openCheckpoint, type Checkpoint, type LoadWeightDtype, type MoeLayerInfo } from '../checkpoint/checkpoint';
import { WEIGHT_DTYPES } from '../checkpoint/formats';
import { formatShape } from '../checkpoint/safetensors';
import { nonNegativeInteger, oneOf, stringOption, UsageError } from './args';
import type { Command, CommandOutput, CommandResult } from './command';
import type { ParsedArgs } from './args';

const INSPECT_USAGE = `moe-cpu inspect <dir> [--layer N] [--dtype mxfp4|int8|bf16|f16|f32] [--json]
  family, MoE layers, tensors (dtype, shape, file), W13 layout and how it was decided, each
  layer's stored format and the weightDtype it loads as (the default, or --dtype), bytes;
  reads config.json and the safetensors headers only, and checks every MoE layer against
  config.json (exit code 1 if one cannot be loaded)
  --layer N   the layer whose tensors are listed (default: the first MoE layer)
  --dtype X   show the layers as loaded with weightDtype X`;

/** Decimal units, as disk and memory sizes are usually quoted. */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${units[i]}`;
}

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]))).join('  ').trimEnd());
}

function describeModel(ckpt: Checkpoint): string[] {
  const c = ckpt.config;
  const act = c.activation === 'swigluoai' ? `swigluoai (alpha ${c.swigluAlpha}, limit ${c.swigluLimit})` : c.activation;
  const r = c.routing;
  const routing = r.mode === 'topk-softmax' ? 'topk-softmax'
    : r.mode === 'softmax-topk' ? `softmax-topk, ${r.renormalize ? '' : 'not '}renormalized`
      : `sigmoid-grouped (${r.numGroups} groups, keep ${r.topkGroups}, ${r.renormalize ? 'renormalized' : 'not renormalized'}, × ${r.routedScalingFactor}; correction bias from the checkpoint)`;
  const shared = c.sharedExpert
    ? `intermediate ${c.sharedExpert.intermediateSize}, output × ${c.sharedExpert.gated ? 'sigmoid(shared_expert_gate · x)' : '1'}`
    : 'none';
  return [
    `family       ${ckpt.family} (${ckpt.familyReason})`,
    `experts      E=${c.numExperts}, top-${c.topK}, H=${c.hiddenSize}, I=${c.intermediateSize}, ${act}`,
    `routing      ${routing}`,
    `shared       ${shared}`,
    `MoE layers   ${formatLayers(ckpt.moeLayers)} (${ckpt.moeLayers.length} of ${c.numLayers} layers)`,
    ...(c.defaulted.length ? [`defaults     config.json lacks ${c.defaulted.join(', ')} (transformers defaults)`] : []),
  ];
}

const STORED: Record<MoeLayerInfo['weightFormat'], string> = { mxfp4: 'MXFP4', bf16: 'BF16', f16: 'F16', f32: 'F32' };

/** The weightDtype a layer loads as: --dtype if given, else its default. */
function loadsAs(info: MoeLayerInfo, dtype: LoadWeightDtype | undefined): string {
  if (dtype === undefined) return `${info.defaultWeightDtype} (default: ${info.defaultReason})`;
  if (info.unsupported[dtype]) return `cannot load as ${dtype}: ${info.unsupported[dtype]}`;
  const how = dtype === info.defaultWeightDtype ? 'the default too'
    : dtype === 'mxfp4' || dtype === 'int8' ? `quantized while packing; default ${info.defaultWeightDtype}`
      : `converted while packing; default ${info.defaultWeightDtype}`;
  return `${dtype} (--dtype; ${how})`;
}

function describeLayer(ckpt: Checkpoint, info: MoeLayerInfo, dtype: LoadWeightDtype | undefined): string[] {
  const rel = (f: string) => path.relative(ckpt.dir, f) || f;
  const rows = [['tensor', 'dtype', 'shape', 'bytes', 'file'], ...info.tensors.map((g) => [
    g.count > 1 ? `${g.name} ×${g.count}` : g.name, g.dtype, formatShape(g.shape), formatBytes(g.bytes),
    g.files.length > 2 ? `${g.files.length} files` : g.files.map(rel).join(', '),
  ])];
  const format = info.weightFormat === 'mxfp4' ? 'MXFP4 (U8 e2m1 blocks + e8m0 scales)' : STORED[info.weightFormat];
  const loaded = WEIGHT_DTYPES.filter((d) => info.loadedBytes[d] !== undefined).map((d) => `${formatBytes(info.loadedBytes[d]!)} (${d})`);
  return [
    `layer ${info.layer}`,
    ...table(rows).map((l) => `  ${l}`),
    `  W13 layout   ${info.isW13Interleaved ? 'interleaved' : 'halves'}: ${info.layoutReason}`,
    `  orientation  ${info.orientationReason}`,
    `  stored       ${format}`,
    `  loads as     ${loadsAs(info, dtype)}`,
    `  bytes        ${formatBytes(info.diskBytes)} on disk; loaded: ${loaded.join(', ')}`,
  ];
}

interface LayerRow {
  layer: number;
  stored: string;
  weightDtype: LoadWeightDtype | null;
  loadsAs: string;
  bytes: number | null;
  error: string | null;
}

/** One line per run of consecutive layers that load alike: stored format, loads as, bytes each. */
function layerTable(rows: LayerRow[]): string[] {
  const groups: { layers: number[]; row: LayerRow }[] = [];
  for (const r of rows) {
    const last = groups[groups.length - 1];
    const same = last && !r.error && !last.row.error && last.row.stored === r.stored && last.row.loadsAs === r.loadsAs && last.row.bytes === r.bytes;
    if (same) last.layers.push(r.layer);
    else groups.push({ layers: [r.layer], row: r });
  }
  const lines = table([['layers', 'stored', 'loads as', 'holds'], ...groups.map(({ layers, row }) => [
    formatLayers(layers), row.stored, row.loadsAs,
    row.error ?? `${formatBytes(row.bytes!)}${layers.length > 1 ? ' each' : ''}`,
  ])]);
  return lines.map((l) => `  ${l}`);
}

async function inspect(parsed: ParsedArgs, out: CommandOutput): Promise<CommandResult> {
  const { positionals } = parsed;
  if (positionals.length !== 1) throw new UsageError(`inspect: expected one folder, got ${positionals.length}`);
  const dtypeArg = stringOption(parsed, 'dtype');
  const dtype = dtypeArg === undefined ? undefined : oneOf('dtype', dtypeArg, WEIGHT_DTYPES);
  const layerArg = stringOption(parsed, 'layer');
  const layerGiven = layerArg === undefined ? undefined : nonNegativeInteger('layer', layerArg);
  const ckpt = await openCheckpoint(positionals[0]);
  const layer = layerGiven ?? ckpt.moeLayers[0];
  // Every MoE layer is planned (headers only): a missing or inconsistent tensor shows up here.
  const problems: { layer: number; error: string }[] = [];
  const rows: LayerRow[] = [];
  for (const n of ckpt.moeLayers) {
    try {
      const i = ckpt.layerInfo(n);
      const as = dtype ?? i.defaultWeightDtype;
      const unsupported = i.unsupported[as];
      if (unsupported) problems.push({ layer: n, error: `weightDtype ${as}: ${unsupported}` });
      rows.push({ layer: n, stored: STORED[i.weightFormat], weightDtype: as, loadsAs: dtype ? as : `${as} (default)`, bytes: i.loadedBytes[as] ?? null, error: unsupported ? `cannot load as ${as}` : null });
    } catch (err) {
      problems.push({ layer: n, error: (err as Error).message });
      rows.push({ layer: n, stored: '?', weightDtype: null, loadsAs: '-', bytes: null, error: 'cannot be loaded (see check)' });
    }
  }
  const estimate = problems.length === 0 ? ckpt.estimate({ weightDtype: dtype }) : null;
  let info: MoeLayerInfo | null = null;
  let layerError: string | null = null;
  if (layer !== undefined) {
    try {
      info = ckpt.layerInfo(layer);
    } catch (err) {
      layerError = (err as Error).message;
    }
  }
  const failed = problems.length > 0 || layerError !== null;
  const { dir, family, familyReason, config, moeLayers, files, missingFiles } = ckpt;
  const layers = rows.map(({ layer: n, stored, weightDtype, bytes, error }) => ({ layer: n, stored, weightDtype, bytes, error }));
  const report = { dir, family, familyReason, config, moeLayers, files, missingFiles, layer: info ?? layerError, layers, estimate, problems };
  if (out.json) return { report, failed };
  const print = out.print;
  const size = ckpt.files.length;
  print(`checkpoint   ${ckpt.dir} (${size} safetensors file${size === 1 ? '' : 's'}${ckpt.missingFiles.length ? `, ${ckpt.missingFiles.length} missing` : ''})`);
  for (const line of describeModel(ckpt)) print(line);
  print();
  if (info) for (const line of describeLayer(ckpt, info, dtype)) print(line);
  if (layerError) print(`layer ${layer}: ${layerError}`);
  print();
  print(`MoE layers, as ${dtype === undefined ? 'each loads by default' : `--dtype ${dtype}`}:`);
  for (const line of layerTable(rows)) print(line);
  if (estimate) {
    print(`  all ${estimate.layers.length}: ${formatBytes(estimate.bytes)} packed, ${formatBytes(estimate.peakBytes)} at peak while loading ` +
      `(loadMoeLayers); ${formatBytes(estimate.available)} available (${estimate.availableSource})${estimate.fits ? '' : ': does not fit'}`);
  }
  print();
  if (problems.length === 0) {
    const n = ckpt.moeLayers.length;
    print(`check        ${n === 1 ? 'the MoE layer' : `all ${n} MoE layers`}: tensors present, dtypes supported, shapes consistent with config.json`);
  } else {
    print(`check        ${problems.length} of ${ckpt.moeLayers.length} MoE layers cannot be loaded:`);
    for (const p of problems) print(`  layer ${p.layer}: ${p.error}`);
  }
  for (const f of ckpt.missingFiles) print(`missing      ${f} (named by the index, not in the folder)`);
  return { report, failed };
}

export const inspectCommand: Command = {
  summary: 'what a checkpoint folder holds and how each MoE layer loads (reads headers only)',
  usage: INSPECT_USAGE,
  options: { layer: 'string', dtype: 'string' },
  run: inspect,
};
