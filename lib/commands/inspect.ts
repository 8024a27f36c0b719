// `moe-cpu inspect <dir>`: what a checkpoint holds and how moe-cpu will load it, from the
// config and the safetensors headers only (no weights are read).
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { formatLayers, openCheckpoint, type Checkpoint, type MoeLayerInfo } from '../checkpoint/checkpoint';
import { formatShape } from '../checkpoint/safetensors';

export const INSPECT_USAGE = `moe-cpu inspect <dir> [--layer N] [--json]
  family, MoE layers, tensors (dtype, shape, file), W13 layout and how it was decided, bytes;
  checks every MoE layer against config.json (exit code 1 if one cannot be loaded)`;

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

function describeLayer(ckpt: Checkpoint, info: MoeLayerInfo): string[] {
  const rel = (f: string) => path.relative(ckpt.dir, f) || f;
  const rows = [['tensor', 'dtype', 'shape', 'bytes', 'file'], ...info.tensors.map((g) => [
    g.count > 1 ? `${g.name} ×${g.count}` : g.name, g.dtype, formatShape(g.shape), formatBytes(g.bytes),
    g.files.length > 2 ? `${g.files.length} files` : g.files.map(rel).join(', '),
  ])];
  const format = info.weightFormat === 'mxfp4' ? 'MXFP4 (U8 e2m1 blocks + e8m0 scales), decoded exactly at load' : info.weightFormat.toUpperCase();
  return [
    `layer ${info.layer}`,
    ...table(rows).map((l) => `  ${l}`),
    `  W13 layout   ${info.isW13Interleaved ? 'interleaved' : 'halves'}: ${info.layoutReason}`,
    `  orientation  ${info.orientationReason}`,
    `  weights      ${format}; default weightDtype ${info.defaultWeightDtype}`,
    `  bytes        ${formatBytes(info.diskBytes)} on disk; loaded ${formatBytes(info.loadedBytes.bf16)} (bf16) / ${formatBytes(info.loadedBytes.f32)} (f32)`,
  ];
}

export async function inspect(args: string[]): Promise<void> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { layer: { type: 'string' }, json: { type: 'boolean' } } });
  if (positionals.length !== 1) throw new RangeError(`inspect: expected one folder, got ${positionals.length}\n${INSPECT_USAGE}`);
  const ckpt = await openCheckpoint(positionals[0]);
  const layer = values.layer === undefined ? ckpt.moeLayers[0] : Number(values.layer);
  // Every MoE layer is planned (headers only): a missing or inconsistent tensor shows up here.
  const problems: { layer: number; error: string }[] = [];
  for (const n of ckpt.moeLayers) {
    try {
      ckpt.layerInfo(n);
    } catch (err) {
      problems.push({ layer: n, error: (err as Error).message });
    }
  }
  let info: MoeLayerInfo | null = null;
  let layerError: string | null = null;
  if (layer !== undefined) {
    try {
      info = ckpt.layerInfo(layer);
    } catch (err) {
      layerError = (err as Error).message;
    }
  }
  process.exitCode = problems.length || layerError ? 1 : 0;
  if (values.json) {
    const { dir, family, familyReason, config, moeLayers, files, missingFiles } = ckpt;
    console.log(JSON.stringify({ dir, family, familyReason, config, moeLayers, files, missingFiles, layer: info ?? layerError, problems }, null, 2));
    return;
  }
  const size = ckpt.files.length;
  console.log(`checkpoint   ${ckpt.dir} (${size} safetensors file${size === 1 ? '' : 's'}${ckpt.missingFiles.length ? `, ${ckpt.missingFiles.length} missing` : ''})`);
  for (const line of describeModel(ckpt)) console.log(line);
  console.log();
  if (info) for (const line of describeLayer(ckpt, info)) console.log(line);
  if (layerError) console.log(`layer ${layer}: ${layerError}`);
  console.log();
  if (problems.length === 0) {
    const n = ckpt.moeLayers.length;
    console.log(`check        ${n === 1 ? 'the MoE layer' : `all ${n} MoE layers`}: tensors present, dtypes supported, shapes consistent with config.json`);
  } else {
    console.log(`check        ${problems.length} of ${ckpt.moeLayers.length} MoE layers cannot be loaded:`);
    for (const p of problems) console.log(`  layer ${p.layer}: ${p.error}`);
  }
  for (const f of ckpt.missingFiles) console.log(`missing      ${f} (named by the index, not in the folder)`);
}
