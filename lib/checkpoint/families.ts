// Per-family tensor mapping: which tensors make the MoE block of layer n, the shapes
// config.json implies for them, and how W13 is laid out — all decided from the checkpoint.
import type { CheckpointConfig, Family } from './config';
import { CheckpointError } from './errors';
import { defaultWeightDtype, type LoadWeightDtype, type StoredFormat } from './formats';
import { formatShape } from './safetensors';
import type { TensorLocation, TensorSet } from './tensors';

/** Expert weights of the dtypes the loader converts; MXFP4 comes as U8 blocks + U8 scales. */
export const FLOAT_DTYPES = ['F32', 'BF16', 'F16'] as const;
const MXFP4_DTYPES = ['U8'] as const;
/** Values per MXFP4 block along the input axis, and bytes per block (two e2m1 codes a byte). */
export const MXFP4_BLOCK = 32;
export const MXFP4_BLOCK_BYTES = 16;

/** One tensor of the plan, for `inspect`: per-expert tensors are grouped as `{e}` patterns. */
export interface TensorGroup {
  role: string;
  /** Tensor name; per-expert tensors have `{e}` in place of the expert index. */
  name: string;
  count: number;
  dtype: string;
  shape: number[];
  /** Bytes on disk, all `count` tensors together. */
  bytes: number;
  files: string[];
}

export type ExpertSource =
  | { kind: 'mxfp4'; w13Blocks: TensorLocation; w13Scales: TensorLocation; w2Blocks: TensorLocation; w2Scales: TensorLocation }
  | { kind: 'fused'; w13: TensorLocation; w2: TensorLocation }
  | { kind: 'stacked'; gate: TensorLocation[]; up: TensorLocation[]; down: TensorLocation[] };

export interface SharedPlan {
  intermediateSize: number;
  /** Dtype of gate, up and down (one for all three). */
  format: StoredFormat;
  gate: TensorLocation;
  up: TensorLocation;
  down: TensorLocation;
  /** Qwen2-MoE shared_expert_gate [1, H]. */
  gateWeight: TensorLocation | null;
}

export interface LayerPlan {
  layer: number;
  experts: ExpertSource;
  w13Bias: TensorLocation | null;
  w2Bias: TensorLocation | null;
  routerWeight: TensorLocation;
  routerBias: TensorLocation | null;
  correctionBias: TensorLocation | null;
  shared: SharedPlan | null;
  interleaved: boolean;
  transposed: boolean;
  layoutReason: string;
  orientationReason: string;
  /** 'mxfp4', or the float dtype of the expert weights ('bf16', 'f16', 'f32'). */
  weightFormat: StoredFormat;
  /** weightDtype when the caller gives none (formats.ts defaultWeightDtype), and why. */
  defaultWeightDtype: LoadWeightDtype;
  defaultReason: string;
  groups: TensorGroup[];
}

/** Collects tensors with their expected dtypes and shapes; errors name file and tensor. */
class Planner {
  readonly groups = new Map<string, TensorGroup>();
  constructor(readonly tensors: TensorSet, readonly configFile: string) {}

  get(role: string, name: string, dtypes: readonly string[], shape: number[], why: string, pattern = name): TensorLocation {
    const loc = this.tensors.locate(name);
    const { entry, file } = loc;
    if (!dtypes.includes(entry.dtype)) {
      const isFloat = (d: string) => (FLOAT_DTYPES as readonly string[]).includes(d);
      if (dtypes.length === 1 && isFloat(dtypes[0]) && isFloat(entry.dtype)) {
        throw new CheckpointError({ file: file.path, tensor: name, code: 'ERR_MOE_CHECKPOINT_UNSUPPORTED' },
          `dtype ${entry.dtype} differs from ${dtypes[0]}, that of the layer's other expert weights (one dtype per layer is supported)`);
      }
      // A float format moe-cpu does not read (FP8, F64, FP4/FP6 ...) is unsupported; any other dtype is wrong for the tensor.
      const unsupported = /^F\d/.test(entry.dtype) && !isFloat(entry.dtype);
      const hint = entry.dtype.startsWith('F8') ? ' (an FP8-quantized checkpoint: dequantize it to BF16 first)' : '';
      throw new CheckpointError({ file: file.path, tensor: name, code: unsupported ? 'ERR_MOE_CHECKPOINT_UNSUPPORTED' : 'ERR_MOE_CHECKPOINT_TENSOR' },
        `dtype ${entry.dtype} is not supported here (expected ${dtypes.join(' or ')})${hint}`);
    }
    if (formatShape(entry.shape) !== formatShape(shape)) {
      throw new CheckpointError({ file: file.path, tensor: name, code: 'ERR_MOE_CHECKPOINT_TENSOR' }, `shape ${formatShape(entry.shape)} contradicts ${this.configFile}: expected ${why}`);
    }
    const g = this.groups.get(pattern);
    const bytes = entry.end - entry.begin;
    if (g) {
      g.count += 1;
      g.bytes += bytes;
      if (!g.files.includes(file.path)) g.files.push(file.path);
      if (g.dtype !== entry.dtype) g.dtype = `${g.dtype}+${entry.dtype}`;
    } else {
      this.groups.set(pattern, { role, name: pattern, count: 1, dtype: entry.dtype, shape: entry.shape, bytes, files: [file.path] });
    }
    return loc;
  }

  optional(role: string, name: string, dtypes: readonly string[], shape: number[], why: string): TensorLocation | null {
    return this.tensors.has(name) ? this.get(role, name, dtypes, shape, why) : null;
  }
}

function floatFormat(loc: TensorLocation): 'bf16' | 'f16' | 'f32' {
  return loc.entry.dtype.toLowerCase() as 'bf16' | 'f16' | 'f32';
}

function defaults(format: StoredFormat): { defaultWeightDtype: LoadWeightDtype; defaultReason: string } {
  const d = defaultWeightDtype(format);
  return { defaultWeightDtype: d.dtype, defaultReason: d.reason };
}

/** Builds (and so validates) the plan of layer n; throws CheckpointError. */
export function planLayer(family: Family, c: CheckpointConfig, tensors: TensorSet, configFile: string, n: number): LayerPlan {
  const p = new Planner(tensors, configFile);
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = c;
  const sizes = `H = hidden_size ${H}, I = ${family === 'gpt-oss' || family === 'mixtral' ? 'intermediate_size' : 'moe_intermediate_size'} ${I}, E = ${E}`;
  const router = `[E, H] = [${E}, ${H}]`;
  const prefix = `model.layers.${n}.`;
  switch (family) {
    case 'gpt-oss': {
      const m = `${prefix}mlp.`;
      const routerWeight = p.get('router.weight', `${m}router.weight`, FLOAT_DTYPES, [E, H], router);
      const routerBias = p.get('router.bias', `${m}router.bias`, FLOAT_DTYPES, [E], `[E] = [${E}]`);
      const w13Bias = p.get('w13.bias', `${m}experts.gate_up_proj_bias`, FLOAT_DTYPES, [E, 2 * I], `[E, 2I] = [${E}, ${2 * I}] (${sizes})`);
      const w2Bias = p.get('w2.bias', `${m}experts.down_proj_bias`, FLOAT_DTYPES, [E, H], `[E, H] = [${E}, ${H}]`);
      const layoutReason =
        'gpt-oss stores gate and up fused in one tensor, gate at even and up at odd rows (OpenAI gpt-oss reference and transformers GptOssExperts: gate = x[..., ::2], up = x[..., 1::2])';
      const blocksName = `${m}experts.gate_up_proj_blocks`;
      if (tensors.has(blocksName)) {
        for (const [what, dim] of [['H', H], ['I', I]] as const) {
          if (dim % MXFP4_BLOCK !== 0) throw new CheckpointError({ file: configFile, code: 'ERR_MOE_CHECKPOINT_CONFIG' }, `MXFP4 weights need ${what} to be a multiple of ${MXFP4_BLOCK}, got ${dim}`);
        }
        const hb = H / MXFP4_BLOCK, ib = I / MXFP4_BLOCK;
        const w13Blocks = p.get('w13.blocks', blocksName, MXFP4_DTYPES, [E, 2 * I, hb, MXFP4_BLOCK_BYTES], `[E, 2I, H/32, 16] = [${E}, ${2 * I}, ${hb}, 16] (${sizes})`);
        const w13Scales = p.get('w13.scales', `${m}experts.gate_up_proj_scales`, MXFP4_DTYPES, [E, 2 * I, hb], `[E, 2I, H/32] = [${E}, ${2 * I}, ${hb}]`);
        const w2Blocks = p.get('w2.blocks', `${m}experts.down_proj_blocks`, MXFP4_DTYPES, [E, H, ib, MXFP4_BLOCK_BYTES], `[E, H, I/32, 16] = [${E}, ${H}, ${ib}, 16] (${sizes})`);
        const w2Scales = p.get('w2.scales', `${m}experts.down_proj_scales`, MXFP4_DTYPES, [E, H, ib], `[E, H, I/32] = [${E}, ${H}, ${ib}]`);
        return {
          layer: n, experts: { kind: 'mxfp4', w13Blocks, w13Scales, w2Blocks, w2Scales }, w13Bias, w2Bias, routerWeight, routerBias,
          correctionBias: null, shared: null, interleaved: true, transposed: false, layoutReason,
          orientationReason: 'W13 [E, 2I, H], W2 [E, H, I] (out × in): MXFP4 blocks group the input axis in blocks of 32 (gate_up_proj_blocks [E, 2I, H/32, 16])',
          weightFormat: 'mxfp4', ...defaults('mxfp4'), groups: [...p.groups.values()],
        };
      }
      const w13Name = `${m}experts.gate_up_proj`, w2Name = `${m}experts.down_proj`;
      if (!tensors.has(w13Name)) {
        tensors.locate(blocksName); // throws: names the tensor and where it should be
      }
      // transformers' unquantized GptOss tensors are [E, H, 2I] and [E, I, H] (in × out); a
      // checkpoint written out × in is recognised by its shape when H != 2I.
      const w13Shape = tensors.locate(w13Name).entry.shape;
      const outByIn = H !== 2 * I && formatShape(w13Shape) === formatShape([E, 2 * I, H]);
      const w13 = p.get('w13', w13Name, FLOAT_DTYPES, outByIn ? [E, 2 * I, H] : [E, H, 2 * I],
        `[E, H, 2I] = [${E}, ${H}, ${2 * I}] or [E, 2I, H] = [${E}, ${2 * I}, ${H}] (${sizes})`);
      const w2 = p.get('w2', w2Name, [w13.entry.dtype], outByIn ? [E, H, I] : [E, I, H],
        outByIn ? `[E, H, I] = [${E}, ${H}, ${I}], out × in like gate_up_proj` : `[E, I, H] = [${E}, ${I}, ${H}], in × out like gate_up_proj`);
      const format = floatFormat(w13);
      return {
        layer: n, experts: { kind: 'fused', w13, w2 }, w13Bias, w2Bias, routerWeight, routerBias, correctionBias: null, shared: null,
        interleaved: true, transposed: !outByIn, layoutReason,
        orientationReason: outByIn
          ? `W13 [E, 2I, H], W2 [E, H, I] (out × in): the shape of gate_up_proj ${formatShape(w13Shape)} has 2I = ${2 * I} on axis 1`
          : H === 2 * I
            ? `W13 [E, H, 2I], W2 [E, I, H] (in × out, transposed): H = 2I makes the shape ambiguous; transformers' GptOss convention assumed`
            : `W13 [E, H, 2I], W2 [E, I, H] (in × out, transposed): the shape of gate_up_proj ${formatShape(w13Shape)} has H = ${H} on axis 1 (transformers' GptOss convention)`,
        weightFormat: format, ...defaults(format), groups: [...p.groups.values()],
      };
    }
    case 'mixtral':
      return stackedPlan(p, n, c, sizes, `${prefix}block_sparse_moe.`, 'gate', ['w1', 'w3', 'w2'], null);
    case 'qwen-moe':
      return stackedPlan(p, n, c, sizes, `${prefix}mlp.`, 'gate', ['gate_proj', 'up_proj', 'down_proj'], 'shared_expert');
    case 'deepseek-v3':
      return stackedPlan(p, n, c, sizes, `${prefix}mlp.`, 'gate', ['gate_proj', 'up_proj', 'down_proj'], 'shared_experts');
  }
}

/** Families with one tensor per expert and projection (gate, up, down), stacked into halves. */
function stackedPlan(
  p: Planner, n: number, c: CheckpointConfig, sizes: string, m: string, routerName: string,
  [gateName, upName, downName]: [string, string, string], sharedName: string | null,
): LayerPlan {
  const { hiddenSize: H, intermediateSize: I, numExperts: E } = c;
  const routerWeight = p.get('router.weight', `${m}${routerName}.weight`, FLOAT_DTYPES, [E, H], `[E, H] = [${E}, ${H}]`);
  const correctionBias = c.routing.mode === 'sigmoid-grouped'
    ? p.get('router.correction_bias', `${m}${routerName}.e_score_correction_bias`, FLOAT_DTYPES, [E], `[E] = [${E}]`)
    : null;
  const gate: TensorLocation[] = [], up: TensorLocation[] = [], down: TensorLocation[] = [];
  const inShape = `[I, H] = [${I}, ${H}] (${sizes})`, outShape = `[H, I] = [${H}, ${I}] (${sizes})`;
  let dtype: string | null = null;
  for (let e = 0; e < E; e++) {
    const x = `${m}experts.${e}.`, pat = `${m}experts.{e}.`;
    // Every expert tensor has the dtype of the first, so the layer converts one way.
    const dtypes = dtype ? [dtype] : FLOAT_DTYPES;
    gate.push(p.get('w13.gate', `${x}${gateName}.weight`, dtypes, [I, H], inShape, `${pat}${gateName}.weight`));
    dtype ??= gate[0].entry.dtype;
    up.push(p.get('w13.up', `${x}${upName}.weight`, [dtype], [I, H], inShape, `${pat}${upName}.weight`));
    down.push(p.get('w2', `${x}${downName}.weight`, [dtype], [H, I], outShape, `${pat}${downName}.weight`));
  }
  let shared: SharedPlan | null = null;
  if (c.sharedExpert && sharedName) {
    const Is = c.sharedExpert.intermediateSize, s = `${m}${sharedName}.`;
    const why = (shape: number[]) => `${formatShape(shape)} (shared expert intermediate size ${Is})`;
    const sharedGate = p.get('shared.gate', `${s}${gateName}.weight`, FLOAT_DTYPES, [Is, H], why([Is, H]));
    // One dtype for the three, as for the routed experts: the shared expert converts one way.
    const same = [sharedGate.entry.dtype];
    shared = {
      intermediateSize: Is,
      format: floatFormat(sharedGate),
      gate: sharedGate,
      up: p.get('shared.up', `${s}${upName}.weight`, same, [Is, H], why([Is, H])),
      down: p.get('shared.down', `${s}${downName}.weight`, same, [H, Is], why([H, Is])),
      gateWeight: c.sharedExpert.gated
        ? p.get('shared.gate_weight', `${m}${sharedName}_gate.weight`, FLOAT_DTYPES, [1, H], `[1, H] = [1, ${H}]`)
        : null,
    };
  }
  const format = floatFormat(gate[0]);
  return {
    layer: n, experts: { kind: 'stacked', gate, up, down }, w13Bias: null, w2Bias: null, routerWeight, routerBias: null,
    correctionBias, shared, interleaved: false, transposed: false,
    layoutReason: `the checkpoint stores ${gateName} (gate) and ${upName} (up) as separate tensors per expert; they are stacked gate rows first, then up rows`,
    orientationReason: `W13 [E, 2I, H], W2 [E, H, I] (out × in, as torch.nn.Linear stores ${gateName}.weight [I, H] and ${downName}.weight [H, I])`,
    weightFormat: format, ...defaults(format), groups: [...p.groups.values()],
  };
}
