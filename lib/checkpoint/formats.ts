// Weight dtypes a checkpoint layer can be loaded as: which one applies by default and why, what
// the packed layer will hold (bytes, derived from the shapes exactly as the packer lays them
// out), and which staging arrays the loader fills to build it.
import type { WeightDtype } from '../quantize';
import type { CheckpointConfig } from './config';
import type { LayerPlan } from './families';
import { elementCount } from './safetensors';
import type { TensorLocation } from './tensors';

/** What a loaded layer holds its expert weights as: MoeLayer's weightDtype. */
export type LoadWeightDtype = WeightDtype;
export const WEIGHT_DTYPES: readonly LoadWeightDtype[] = ['mxfp4', 'int8', 'bf16', 'f16', 'f32'];

/** How a checkpoint stores a layer's expert weights. */
export type StoredFormat = 'mxfp4' | 'bf16' | 'f16' | 'f32';

/** Bits per weight of the packed layer (format/panel.h: mxfp4 16 code bytes + 1 scale byte per 32; int8 32 + 2). */
const BITS: Record<LoadWeightDtype, number> = { f32: 32, bf16: 16, f16: 16, mxfp4: 4.25, int8: 8.5 };
/** Values per quantization block along the input axis (1: dense). */
const BLOCK: Record<LoadWeightDtype, number> = { f32: 1, bf16: 1, f16: 1, mxfp4: 32, int8: 32 };
// format/panel.h: panels of 4 rows, depth in chunks of 32, each panel padded to 64 bytes.
const PANEL_ROWS = 4;
const PANEL_DEPTH = 32;
const PANEL_ALIGN = 64;

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/** Bytes of one packed matrix rows × depth (out × in) in `dtype`, as the native layer allocates it. */
export function packedMatrixBytes(dtype: LoadWeightDtype, rows: number, depth: number): number {
  const panel = roundUp((PANEL_ROWS * roundUp(depth, PANEL_DEPTH) * BITS[dtype]) / 8, PANEL_ALIGN);
  return Math.ceil(rows / PANEL_ROWS) * panel;
}

/** Bytes of a router-sized tensor as the layer keeps it: BF16 as bf16, F16 and F32 as f32. */
function routerBytes(loc: TensorLocation | null): number {
  return loc ? elementCount(loc.entry.shape) * (loc.entry.dtype === 'BF16' ? 2 : 4) : 0;
}

/** Why `dtype` cannot hold this layer, or null when it can. */
export function unsupportedReason(dtype: LoadWeightDtype, plan: LayerPlan, c: CheckpointConfig): string | null {
  const block = BLOCK[dtype];
  if (block === 1) return null;
  const dims: [string, number][] = [['hidden_size', c.hiddenSize], ['intermediate_size', c.intermediateSize]];
  if (plan.shared) dims.push(['shared expert intermediate size', plan.shared.intermediateSize]);
  const bad = dims.filter(([, v]) => v % block !== 0);
  if (bad.length === 0) return null;
  return `'${dtype}' packs blocks of ${block} values along the input axis, so it needs ${dims.map(([k]) => k).join(', ')} ` +
    `to be multiples of ${block}; this checkpoint has ${bad.map(([k, v]) => `${k} ${v}`).join(', ')}`;
}

/**
 * Bytes the loaded block holds (`block.bytes`): packed experts (W13 gate + up, W2), their biases
 * in f32, the router (bf16 stays bf16, else f32; bias f32), the shared expert and its gate.
 */
/** What part of a layer a load holds: `experts` of the routed experts (all: numExperts), and the shared expert or not. */
export interface LayerPart {
  experts: number;
  shared: boolean;
}

export function packedLayerBytes(plan: LayerPlan, c: CheckpointConfig, dtype: LoadWeightDtype, part?: LayerPart): number {
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = c;
  const S = part?.experts ?? E;
  let bytes = S * (2 * packedMatrixBytes(dtype, I, H) + packedMatrixBytes(dtype, H, I));
  if (plan.w13Bias) bytes += S * 2 * I * 4;
  if (plan.w2Bias) bytes += S * H * 4;
  bytes += routerBytes(plan.routerWeight) + (plan.routerBias ? E * 4 : 0);
  if (plan.shared && (part?.shared ?? true)) {
    const Is = plan.shared.intermediateSize;
    bytes += 2 * packedMatrixBytes(dtype, Is, H) + packedMatrixBytes(dtype, H, Is) + routerBytes(plan.shared.gateWeight);
  }
  return bytes;
}

/**
 * The arrays the loader reads a layer's expert weights into before the layer packs them:
 *   'mxfp4': the checkpoint's own blocks and scales (Uint8Array), straight from the file;
 *   'bf16':  Uint16Array of bf16 bits (BF16 read as is, MXFP4 decoded exactly, F32/F16 rounded);
 *   'f16':   Uint16Array of f16 bits, read as is (F16 checkpoints loaded as f16);
 *   'f32':   Float32Array (exact for every stored format).
 * bf16 and f32 layers are packed from their own dtype; the others are rounded or quantized by
 * the packer from the narrowest staging that holds the stored values exactly.
 */
export type StagingFormat = 'mxfp4' | 'bf16' | 'f16' | 'f32';

export function stagingFormat(stored: StoredFormat, dtype: LoadWeightDtype): StagingFormat {
  switch (dtype) {
    case 'f32':
    case 'bf16':
      return dtype;
    case 'f16':
      return stored === 'f16' ? 'f16' : 'f32';
    case 'mxfp4':
    case 'int8':
      if (dtype === 'mxfp4' && stored === 'mxfp4') return 'mxfp4';
      return stored === 'mxfp4' || stored === 'bf16' ? 'bf16' : 'f32';
  }
}

const STAGING_BITS: Record<StagingFormat, number> = { mxfp4: 4.25, bf16: 16, f16: 16, f32: 32 };

/** Bytes of the staging arrays of one layer (experts and shared expert; routers and biases are small and left out). */
export function stagingBytes(plan: LayerPlan, c: CheckpointConfig, dtype: LoadWeightDtype, part?: LayerPart): number {
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = c;
  let bytes = (3 * (part?.experts ?? E) * I * H * STAGING_BITS[stagingFormat(plan.weightFormat, dtype)]) / 8;
  if (plan.shared && (part?.shared ?? true)) bytes += (3 * plan.shared.intermediateSize * H * STAGING_BITS[stagingFormat(plan.shared.format, dtype)]) / 8;
  return bytes;
}

/** The weightDtype used when the caller gives none, and why. */
export function defaultWeightDtype(stored: StoredFormat): { dtype: LoadWeightDtype; reason: string } {
  switch (stored) {
    case 'mxfp4':
      return { dtype: 'mxfp4', reason: 'MXFP4 checkpoints load as mxfp4: the blocks and scales go into the layer as stored (4.25 bits a weight, no decode)' };
    case 'bf16':
      return { dtype: 'bf16', reason: 'BF16 checkpoints load as bf16 (lossless)' };
    case 'f32':
      return { dtype: 'f32', reason: 'F32 checkpoints load as f32 (lossless)' };
    case 'f16':
      return { dtype: 'f32', reason: "F16 checkpoints load as f32 (lossless; weightDtype 'f16' keeps the f16 values at half the memory)" };
  }
}
