// Small synthetic checkpoints of every family, in the exact on-disk format of the published
// ones, and the float64 reference of their MoE blocks computed straight from the written values.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll } from 'vitest';

import { mulberry32, type Rng } from '../helpers';
import { refFromBf16, refMoeForward, refSelectExperts, refToBf16, roundBf16, type ActivationName, type Layout, type RefRouting } from '../reference';
import { decodeMxfp4, encodeMxfp4 } from './mxfp4';
import { writeSafetensors, writeSharded, type StTensor } from './safetensors-writer';

export type Kind = 'gpt-oss-mxfp4' | 'gpt-oss-bf16' | 'mixtral' | 'qwen3-moe' | 'qwen2-moe' | 'deepseek-v3';
export type FloatDtype = 'F32' | 'BF16' | 'F16';

export interface Dims {
  H: number;
  I: number;
  E: number;
  K: number;
  /** Layers in config.json. */
  L: number;
  /** Shared expert intermediate size (qwen2-moe, deepseek-v3). */
  Is: number;
}

export const DIMS: Record<Kind, Dims> = {
  // H != 2I, so the orientation of the unquantized gpt-oss tensors is told by their shape.
  'gpt-oss-mxfp4': { H: 96, I: 32, E: 8, K: 4, L: 2, Is: 0 },
  'gpt-oss-bf16': { H: 96, I: 32, E: 8, K: 4, L: 2, Is: 0 },
  mixtral: { H: 48, I: 40, E: 8, K: 2, L: 2, Is: 0 },
  'qwen3-moe': { H: 40, I: 24, E: 12, K: 4, L: 2, Is: 0 },
  'qwen2-moe': { H: 40, I: 24, E: 12, K: 4, L: 2, Is: 48 },
  'deepseek-v3': { H: 48, I: 24, E: 16, K: 4, L: 3, Is: 24 },
};

/** Canonical weights of one MoE layer, as numbers already representable in the file dtype. */
export interface LayerWeights {
  routerW: Float64Array;
  routerB: Float64Array | null;
  correctionBias: Float64Array | null;
  /** [E, 2I, H] in `layout`. */
  w13: Float64Array;
  /** [E, H, I]. */
  w2: Float64Array;
  b13: Float64Array | null;
  b2: Float64Array | null;
  shared: { w13: Float64Array; w2: Float64Array; gate: Float64Array | null } | null;
}

export interface Synthetic {
  kind: Kind;
  dir: string;
  dims: Dims;
  config: Record<string, unknown>;
  moeLayers: number[];
  layers: Map<number, LayerWeights>;
  activation: ActivationName;
  layout: Layout;
  routing: RefRouting;
  tensors: StTensor[];
}

// ---------------------------------------------------------------------------------------------
// Number formats

/** f64 -> f16 bits, round to nearest even (finite inputs within the f16 range). */
export function toF16Bits(v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  const roundEven = (x: number) => {
    const r = Math.round(x);
    return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  };
  if (a < 2 ** -14) return sign | roundEven(a / 2 ** -24); // subnormal (may round up to the smallest normal)
  let e = Math.floor(Math.log2(a));
  let m = roundEven((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e += 1;
  }
  return sign | ((e + 15) << 10) | m;
}

export function fromF16Bits(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Values rounded to `dtype`, as numbers. */
export function roundTo(values: ArrayLike<number>, dtype: FloatDtype): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    out[i] = dtype === 'F32' ? Math.fround(values[i]) : dtype === 'BF16' ? roundBf16(values[i]) : fromF16Bits(toF16Bits(values[i]));
  }
  return out;
}

/** The bytes of `values` (representable in dtype) as stored in the file. */
export function encode(values: ArrayLike<number>, dtype: FloatDtype): ArrayBufferView {
  if (dtype === 'F32') return Float32Array.from(values);
  if (dtype === 'BF16') return refToBf16(values);
  return Uint16Array.from(values, (v) => toF16Bits(v));
}

function random(rng: Rng, n: number, scale: number): Float64Array {
  return Float64Array.from({ length: n }, () => (2 * rng() - 1) * scale);
}

/** [outer][rows][cols] -> [outer][cols][rows]. */
export function transpose(src: ArrayLike<number>, outer: number, rows: number, cols: number): Float64Array {
  const out = new Float64Array(outer * rows * cols);
  for (let o = 0; o < outer; o++) {
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[(o * cols + c) * rows + r] = src[(o * rows + r) * cols + c];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Families

const isGptOss = (k: Kind) => k === 'gpt-oss-mxfp4' || k === 'gpt-oss-bf16';

function configOf(kind: Kind, d: Dims): Record<string, unknown> {
  switch (kind) {
    case 'gpt-oss-mxfp4':
    case 'gpt-oss-bf16':
      return {
        architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: d.H, intermediate_size: d.I,
        num_local_experts: d.E, num_experts_per_tok: d.K, experts_per_token: d.K, num_hidden_layers: d.L,
        swiglu_limit: 7.0, hidden_act: 'silu', head_dim: 16, num_attention_heads: 4,
        ...(kind === 'gpt-oss-mxfp4' ? { quantization_config: { quant_method: 'mxfp4', modules_to_not_convert: ['model.layers.*.self_attn', 'model.layers.*.mlp.router'] } } : {}),
      };
    case 'mixtral':
      return { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: d.H, intermediate_size: d.I, num_local_experts: d.E, num_experts_per_tok: d.K, num_hidden_layers: d.L, hidden_act: 'silu' };
    case 'qwen3-moe':
      return { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: d.H, intermediate_size: 3 * d.I, moe_intermediate_size: d.I, num_experts: d.E, num_experts_per_tok: d.K, norm_topk_prob: true, decoder_sparse_step: 1, mlp_only_layers: [], num_hidden_layers: d.L, hidden_act: 'silu' };
    case 'qwen2-moe':
      return { architectures: ['Qwen2MoeForCausalLM'], model_type: 'qwen2_moe', hidden_size: d.H, intermediate_size: 3 * d.I, moe_intermediate_size: d.I, shared_expert_intermediate_size: d.Is, num_experts: d.E, num_experts_per_tok: d.K, norm_topk_prob: false, decoder_sparse_step: 1, mlp_only_layers: [0], num_hidden_layers: d.L, hidden_act: 'silu' };
    case 'deepseek-v3':
      return { architectures: ['DeepseekV3ForCausalLM'], model_type: 'deepseek_v3', hidden_size: d.H, intermediate_size: 4 * d.I, moe_intermediate_size: d.I, n_routed_experts: d.E, n_shared_experts: d.Is / d.I, num_experts_per_tok: d.K, n_group: 4, topk_group: 2, routed_scaling_factor: 2.5, norm_topk_prob: true, scoring_func: 'sigmoid', topk_method: 'noaux_tc', first_k_dense_replace: 1, moe_layer_freq: 1, num_hidden_layers: d.L, hidden_act: 'silu' };
  }
}

function moeLayersOf(kind: Kind, d: Dims): number[] {
  const all = Array.from({ length: d.L }, (_, i) => i);
  if (kind === 'qwen2-moe') return all.filter((n) => n !== 0); // mlp_only_layers [0]
  if (kind === 'deepseek-v3') return all.filter((n) => n >= 1); // first_k_dense_replace 1
  return all;
}

function routingOf(kind: Kind, correctionBias: Float64Array | null): RefRouting {
  if (isGptOss(kind)) return { mode: 'topk-softmax' };
  if (kind === 'deepseek-v3') {
    return { mode: 'sigmoid-grouped', numGroups: 4, topkGroups: 2, renormalize: true, routedScalingFactor: 2.5, correctionBias: Float32Array.from(correctionBias!) };
  }
  return { mode: 'softmax-topk', renormalize: kind !== 'qwen2-moe' };
}

/** Random weights of one layer; `dtype` is that of the float tensors in the file. */
function makeLayer(kind: Kind, d: Dims, rng: Rng, dtype: FloatDtype): LayerWeights {
  const { H, I, E, Is } = d;
  const s13 = 6 / Math.sqrt(H), s2 = 3 / Math.sqrt(I), sr = 3 / Math.sqrt(H);
  // gpt-oss keeps router and biases in BF16 in the MXFP4 file (as published).
  const small: FloatDtype = kind === 'gpt-oss-mxfp4' ? 'BF16' : dtype;
  let w13: Float64Array, w2: Float64Array;
  if (isGptOss(kind)) {
    // Expert weights representable in MXFP4 (and so in bf16): the two gpt-oss variants share them.
    const q13 = encodeMxfp4(random(rng, E * 2 * I * H, s13), E * 2 * I, H);
    const q2 = encodeMxfp4(random(rng, E * H * I, s2), E * H, I);
    w13 = decodeMxfp4(q13.blocks, q13.scales);
    w2 = decodeMxfp4(q2.blocks, q2.scales);
  } else {
    w13 = roundTo(random(rng, E * 2 * I * H, s13), dtype);
    w2 = roundTo(random(rng, E * H * I, s2), dtype);
  }
  const shared = Is > 0 ? {
    w13: roundTo(random(rng, 2 * Is * H, s13), dtype),
    w2: roundTo(random(rng, H * Is, 3 / Math.sqrt(Is)), dtype),
    gate: kind === 'qwen2-moe' ? roundTo(random(rng, H, sr), dtype) : null,
  } : null;
  return {
    routerW: roundTo(random(rng, E * H, sr), small),
    routerB: isGptOss(kind) ? roundTo(random(rng, E, 0.5), small) : null,
    // DeepSeek-V3 ships the correction bias in F32.
    correctionBias: kind === 'deepseek-v3' ? roundTo(random(rng, E, 0.1), 'F32') : null,
    w13, w2,
    b13: isGptOss(kind) ? roundTo(random(rng, E * 2 * I, 0.5), small) : null,
    b2: isGptOss(kind) ? roundTo(random(rng, E * H, 0.5), small) : null,
    shared,
  };
}

/** The checkpoint tensors of one layer, named and shaped as the family publishes them. */
function layerTensors(kind: Kind, d: Dims, n: number, w: LayerWeights, dtype: FloatDtype): StTensor[] {
  const { H, I, E, Is } = d;
  const t = (name: string, dt: FloatDtype, shape: number[], values: ArrayLike<number>): StTensor => ({ name, dtype: dt, shape, data: encode(values, dt) });
  const out: StTensor[] = [];
  const p = `model.layers.${n}.`;
  if (isGptOss(kind)) {
    const small: FloatDtype = kind === 'gpt-oss-mxfp4' ? 'BF16' : dtype;
    out.push(t(`${p}mlp.router.weight`, small, [E, H], w.routerW), t(`${p}mlp.router.bias`, small, [E], w.routerB!));
    if (kind === 'gpt-oss-mxfp4') {
      const q13 = encodeMxfp4(w.w13, E * 2 * I, H), q2 = encodeMxfp4(w.w2, E * H, I);
      out.push(
        { name: `${p}mlp.experts.gate_up_proj_blocks`, dtype: 'U8', shape: [E, 2 * I, H / 32, 16], data: q13.blocks },
        { name: `${p}mlp.experts.gate_up_proj_scales`, dtype: 'U8', shape: [E, 2 * I, H / 32], data: q13.scales },
        { name: `${p}mlp.experts.down_proj_blocks`, dtype: 'U8', shape: [E, H, I / 32, 16], data: q2.blocks },
        { name: `${p}mlp.experts.down_proj_scales`, dtype: 'U8', shape: [E, H, I / 32], data: q2.scales },
      );
    } else {
      // transformers' layout: gate_up_proj [E, H, 2I] (interleaved along the last axis), down_proj [E, I, H].
      out.push(t(`${p}mlp.experts.gate_up_proj`, dtype, [E, H, 2 * I], transpose(w.w13, E, 2 * I, H)));
      out.push(t(`${p}mlp.experts.down_proj`, dtype, [E, I, H], transpose(w.w2, E, H, I)));
    }
    out.push(t(`${p}mlp.experts.gate_up_proj_bias`, small, [E, 2 * I], w.b13!), t(`${p}mlp.experts.down_proj_bias`, small, [E, H], w.b2!));
    return out;
  }
  const [m, router, names] = kind === 'mixtral'
    ? [`${p}block_sparse_moe.`, 'gate', ['w1', 'w3', 'w2']]
    : [`${p}mlp.`, 'gate', ['gate_proj', 'up_proj', 'down_proj']];
  out.push(t(`${m}${router}.weight`, dtype, [E, H], w.routerW));
  if (w.correctionBias) out.push(t(`${m}${router}.e_score_correction_bias`, 'F32', [E], w.correctionBias));
  for (let e = 0; e < E; e++) {
    const w13e = w.w13.subarray(e * 2 * I * H, (e + 1) * 2 * I * H);
    out.push(t(`${m}experts.${e}.${names[0]}.weight`, dtype, [I, H], w13e.subarray(0, I * H)));
    out.push(t(`${m}experts.${e}.${names[1]}.weight`, dtype, [I, H], w13e.subarray(I * H)));
    out.push(t(`${m}experts.${e}.${names[2]}.weight`, dtype, [H, I], w.w2.subarray(e * H * I, (e + 1) * H * I)));
  }
  if (w.shared) {
    const s = kind === 'qwen2-moe' ? `${m}shared_expert.` : `${m}shared_experts.`;
    out.push(t(`${s}gate_proj.weight`, dtype, [Is, H], w.shared.w13.subarray(0, Is * H)));
    out.push(t(`${s}up_proj.weight`, dtype, [Is, H], w.shared.w13.subarray(Is * H)));
    out.push(t(`${s}down_proj.weight`, dtype, [H, Is], w.shared.w2));
    if (w.shared.gate) out.push(t(`${m}shared_expert_gate.weight`, dtype, [1, H], w.shared.gate));
  }
  return out;
}

export interface MakeOptions {
  /** Dtype of the float tensors (gpt-oss-mxfp4: router and biases stay BF16). Default BF16. */
  dtype?: FloatDtype;
  /** Shards with an index file; 0 or undefined: one model.safetensors. */
  shards?: number;
  seed?: number;
  dims?: Partial<Dims>;
  /** Into this folder instead of a new temporary one. */
  dir?: string;
}

export function tempDir(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `moe-cpu-${label}-`));
}

/** Writes a synthetic checkpoint; the weights written are kept for the reference. */
export function makeCheckpoint(kind: Kind, options: MakeOptions = {}): Synthetic {
  const dims = { ...DIMS[kind], ...options.dims };
  const dtype = options.dtype ?? 'BF16';
  const rng = mulberry32(options.seed ?? 1234);
  const dir = options.dir ?? tempDir(kind);
  const moeLayers = moeLayersOf(kind, dims);
  const layers = new Map<number, LayerWeights>();
  const tensors: StTensor[] = [
    // Tensors outside the MoE blocks, some of dtypes the loader does not read: never touched.
    { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [16, dims.H], data: new Uint16Array(16 * dims.H) },
    { name: 'model.norm.weight', dtype: 'F32', shape: [dims.H], data: new Float32Array(dims.H).fill(1) },
  ];
  for (let n = 0; n < dims.L; n++) {
    tensors.push({ name: `model.layers.${n}.self_attn.q_proj.weight`, dtype: 'F8_E4M3', shape: [dims.H, dims.H], data: new Uint8Array(dims.H * dims.H) });
    if (moeLayers.includes(n)) {
      const w = makeLayer(kind, dims, rng, dtype);
      layers.set(n, w);
      tensors.push(...layerTensors(kind, dims, n, w, dtype));
    } else {
      tensors.push({ name: `model.layers.${n}.mlp.gate_proj.weight`, dtype: 'BF16', shape: [dims.I, dims.H], data: new Uint16Array(dims.I * dims.H) });
    }
  }
  const config = configOf(kind, dims);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  if (options.shards) writeSharded(dir, tensors, options.shards);
  else writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  const first = layers.values().next().value as LayerWeights;
  return {
    kind, dir, dims, config, moeLayers, layers, tensors,
    activation: isGptOss(kind) ? 'swigluoai' : 'silu',
    layout: isGptOss(kind) ? 'interleaved' : 'halves',
    routing: routingOf(kind, first.correctionBias),
  };
}

// ---------------------------------------------------------------------------------------------
// Reference

/**
 * The MoE block of layer n on hidden [T, H] (values; `bf16` says the caller passes bf16
 * activations), float64: router logits, routing, routed experts, shared expert.
 */
export function referenceForward(s: Synthetic, n: number, hidden: ArrayLike<number>, bf16: boolean): Float64Array {
  const { H, I, E, K, Is } = s.dims;
  const w = s.layers.get(n)!;
  const T = hidden.length / H;
  const logits = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      let sum = w.routerB ? w.routerB[e] : 0;
      for (let h = 0; h < H; h++) sum += hidden[t * H + h] * w.routerW[e * H + h];
      logits[t * E + e] = sum;
    }
  }
  const routing = s.kind === 'deepseek-v3'
    ? { ...(s.routing as Extract<RefRouting, { mode: 'sigmoid-grouped' }>), correctionBias: Float32Array.from(w.correctionBias!) }
    : s.routing;
  const sel = refSelectExperts(logits, T, E, K, routing);
  // With a shared expert the block computes both parts from f32 activations and rounds once.
  const bf16Activations = bf16 && !w.shared;
  const base = { hiddenSize: H, activation: s.activation, transposed: false, bf16Activations };
  const routed = refMoeForward({ ...base, numExperts: E, intermediateSize: I, topK: K, layout: s.layout },
    { w13: w.w13, w2: w.w2, w13Bias: w.b13 ?? undefined, w2Bias: w.b2 ?? undefined }, hidden, sel.ids, sel.weights);
  if (!w.shared) return routed;
  const scales = new Float64Array(T).fill(1);
  if (w.shared.gate) {
    for (let t = 0; t < T; t++) {
      let g = 0;
      for (let h = 0; h < H; h++) g += hidden[t * H + h] * w.shared.gate[h];
      scales[t] = 1 / (1 + Math.exp(-g));
    }
  }
  const shared = refMoeForward({ ...base, numExperts: 1, intermediateSize: Is, topK: 1, layout: 'halves' },
    { w13: w.shared.w13, w2: w.shared.w2 }, hidden, new Int32Array(T), scales);
  return routed.map((v, i) => (bf16 ? roundBf16(v + shared[i]) : v + shared[i]));
}

/** Random hidden [T, H]: f32, or bf16 bits; `values` are what the layer sees. */
export function randomHidden(seed: number, T: number, H: number, bf16: boolean): { hidden: Float32Array | Uint16Array; values: Float32Array } {
  const rng = mulberry32(seed);
  const x = Float32Array.from({ length: T * H }, () => 2 * rng() - 1);
  if (!bf16) return { hidden: x, values: x };
  const bits = refToBf16(x);
  return { hidden: bits, values: refFromBf16(bits) };
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * makeCheckpoint for one test file: every checkpoint it makes, and every folder given to
 * `track`, is removed after the file's tests (call at the top level of the file).
 */
export function checkpointMaker(): { make: (kind: Kind, options?: MakeOptions) => Synthetic; track: (dir: string) => void } {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach(removeDir));
  return {
    make: (kind, options = {}) => {
      const s = makeCheckpoint(kind, options);
      dirs.push(s.dir);
      return s;
    },
    track: (dir) => void dirs.push(dir),
  };
}
