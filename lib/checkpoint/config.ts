// config.json: the model family and the hyper-parameters of its MoE blocks.
//
// Sizes (hidden, intermediate, experts, top-k, layers) are required; routing knobs a
// config.json may leave out take the defaults of the model's transformers config class, and
// `defaulted` lists them.
//
// Every value read is checked before it is used (ERR_MOE_CHECKPOINT_CONFIG, naming config.json
// and the key): integers are safe integers within bounds no real model comes near (nothing is
// ever allocated from an unchecked count), floats are finite, representable as float32 and in
// the range the computation is defined for; the layer count is then checked against the layers
// the tensors name (checkLayerCount), and every size against the tensors' shapes when a layer
// is planned (families.ts).
import * as path from 'node:path';

import { SWIGLU_ALPHA, SWIGLU_LIMIT, type Activation } from '../activation';
import type { Routing } from '../routing';
import { FLOAT32_MAX } from '../validate';
import { CheckpointError, type CheckpointErrorCode } from './errors';
import { isPresent, readJsonFile } from './files';
import { describeValue } from './json';

export type Family = 'gpt-oss' | 'mixtral' | 'qwen-moe' | 'deepseek-v3';

export interface SharedExpertConfig {
  intermediateSize: number;
  /** Qwen2-MoE: the shared expert's output is scaled by sigmoid(shared_expert_gate · x). */
  gated: boolean;
}

/** What config.json says about the MoE blocks (normalised across families). */
export interface CheckpointConfig {
  /** config.json `model_type` (or '' if absent). */
  modelType: string;
  numLayers: number;
  hiddenSize: number;
  /** Per expert. */
  intermediateSize: number;
  numExperts: number;
  topK: number;
  activation: Activation;
  /** swigluoai only. */
  swigluAlpha?: number;
  swigluLimit?: number;
  /** The family's routing; sigmoid-grouped's correction bias is a tensor, read with the layer. */
  routing: Routing;
  sharedExpert: SharedExpertConfig | null;
  /** config.json keys that were absent, with the default used. */
  defaulted: readonly string[];
}

export interface ModelConfig {
  family: Family;
  /** How the family was recognised, e.g. "config.json model_type 'mixtral'". */
  familyReason: string;
  config: CheckpointConfig;
  moeLayers: number[];
  /** Why layer n has no MoE block (n is a valid layer that is not in moeLayers). */
  denseReason: (n: number) => string;
}

const MODEL_TYPES: Record<string, Family> = {
  gpt_oss: 'gpt-oss', mixtral: 'mixtral', qwen3_moe: 'qwen-moe', qwen2_moe: 'qwen-moe', deepseek_v3: 'deepseek-v3',
};
/** transformers' model classes -> the model_type of their config class. */
const ARCHITECTURES: Record<string, string> = {
  GptOssForCausalLM: 'gpt_oss', MixtralForCausalLM: 'mixtral', Qwen3MoeForCausalLM: 'qwen3_moe',
  Qwen2MoeForCausalLM: 'qwen2_moe', DeepseekV3ForCausalLM: 'deepseek_v3',
};

/**
 * The names config.json may give the expert count, per model_type: the attribute of
 * transformers' config class first, then the aliases its `attribute_map` maps to it
 * (transformers 5.17). transformers accepts either name and writes the attribute's, so a
 * checkpoint saved by transformers 5 spells Qwen3-MoE's count `num_local_experts` where
 * Qwen's own releases say `num_experts`. Qwen2-MoE's config class has no alias. Messages name
 * the first spelling below, the one the model's own releases use.
 */
const EXPERT_COUNT_KEYS: Record<string, readonly string[]> = {
  gpt_oss: ['num_local_experts', 'num_experts'],
  mixtral: ['num_local_experts', 'num_experts'],
  qwen3_moe: ['num_experts', 'num_local_experts'],
  qwen2_moe: ['num_experts'],
  deepseek_v3: ['n_routed_experts', 'num_local_experts'],
};

// transformers' hidden_act names -> ours.
const ACTIVATIONS: Record<string, Activation> = {
  silu: 'silu', swish: 'silu', gelu: 'gelu', gelu_pytorch_tanh: 'gelu_tanh', gelu_new: 'gelu_tanh', gelu_fast: 'gelu_tanh',
};

/** config.json files are a few kB; anything near this is not one. */
const MAX_CONFIG_BYTES = 16 << 20;
/** Bounds of config.json counts and sizes: far above any real model, far below what would not fit. */
export const MAX_LAYERS = 1 << 16;
export const MAX_EXPERTS = 1 << 16;
/** hidden_size, intermediate sizes. */
export const MAX_SIZE = 1 << 24;
/** routed_scaling_factor and swiglu_alpha: real models use 1 to 16 and 1.702. */
const MAX_SCALE = 1e3;

const CONFIG: CheckpointErrorCode = 'ERR_MOE_CHECKPOINT_CONFIG';

/** Typed access to config.json values, with errors that name the key. */
class Fields {
  readonly defaulted: string[] = [];
  constructor(readonly raw: Record<string, unknown>, readonly file: string) {}

  fail(key: string, expected: string, code: CheckpointErrorCode = CONFIG): never {
    throw new CheckpointError({ file: this.file, code }, `${key}: expected ${expected}, got ${describeValue(this.raw[key])}`);
  }
  #get(key: string, fallback: unknown): unknown {
    const v = this.raw[key];
    if (v !== undefined && v !== null) return v;
    if (fallback === undefined) return undefined;
    this.defaulted.push(`${key} = ${JSON.stringify(fallback)}`);
    return fallback;
  }
  /** An integer in [min, max] (max: a bound no real model reaches, named in the message as `what`). */
  int(key: string, max: number, what: string, fallback?: number, min = 1): number {
    const v = this.#get(key, fallback);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) this.fail(key, min === 0 ? 'a non-negative integer' : 'a positive integer');
    if (v > max) this.fail(key, `at most ${max} ${what}`);
    return v;
  }
  /**
   * One setting config.json may spell several ways (`keys`, the usual spelling first): each
   * spelling present is checked, and all present must agree; none present fails naming them all.
   */
  intOf(keys: readonly string[], max: number, what: string): number {
    const present = keys.filter((k) => this.raw[k] !== undefined && this.raw[k] !== null);
    if (present.length === 0) {
      const others = keys.length > 1 ? ` (or ${keys.slice(1).join(', ')}: the same setting)` : '';
      throw new CheckpointError({ file: this.file, code: CONFIG }, `${keys[0]}${others}: expected a positive integer, got nothing (missing)`);
    }
    const values = present.map((k) => this.int(k, max, what));
    const other = values.findIndex((v) => v !== values[0]);
    if (other > 0) {
      this.fail(present[other], `the value of ${present[0]} (${values[0]}): both spell one setting, transformers reads either`);
    }
    return values[0];
  }
  /** A finite number representable as float32, in (0, max] (the computation is defined for positive values only). */
  positive(key: string, fallback: number | undefined, max = FLOAT32_MAX): number {
    const v = this.#get(key, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, 'a finite number');
    if (!(v > 0) || v > max) this.fail(key, `a number in (0, ${max === FLOAT32_MAX ? '3.4028235e38 (float32)' : max}]`);
    return v;
  }
  boolean(key: string, fallback?: boolean): boolean {
    const v = this.#get(key, fallback);
    if (typeof v !== 'boolean') this.fail(key, 'true or false');
    return v;
  }
  string(key: string, fallback?: string): string {
    const v = this.#get(key, fallback);
    if (typeof v !== 'string') this.fail(key, 'a string');
    return v;
  }
  /** A list of distinct indices of layers in [0, L). */
  layerList(key: string, fallback: number[], L: number): number[] {
    const v = this.#get(key, fallback);
    if (!Array.isArray(v) || v.length > L || !v.every((x) => Number.isSafeInteger(x) && x >= 0 && x < L)) {
      this.fail(key, `a list of layer indices in [0, num_hidden_layers = ${L})`);
    }
    return v as number[];
  }
  activation(key: string, fallback: string): Activation {
    const name = this.string(key, fallback);
    const act = Object.hasOwn(ACTIVATIONS, name) ? ACTIVATIONS[name] : undefined;
    if (!act) this.fail(key, `one of ${Object.keys(ACTIVATIONS).map((a) => `'${a}'`).join(', ')}`, 'ERR_MOE_CHECKPOINT_UNSUPPORTED');
    return act;
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** The family, and the model_type whose config class reads config.json (given, or implied by architectures). */
function detectFamily(raw: Record<string, unknown>, file: string): { family: Family; reason: string; configType: string } {
  const modelType = raw.model_type;
  if (typeof modelType === 'string' && Object.hasOwn(MODEL_TYPES, modelType)) {
    return { family: MODEL_TYPES[modelType], reason: `config.json model_type '${modelType}'`, configType: modelType };
  }
  const archs = Array.isArray(raw.architectures) ? raw.architectures : [];
  const arch = archs.find((a): a is string => typeof a === 'string' && Object.hasOwn(ARCHITECTURES, a));
  if (arch) return { family: MODEL_TYPES[ARCHITECTURES[arch]], reason: `config.json architectures ['${arch}']`, configType: ARCHITECTURES[arch] };
  const names = Array.isArray(raw.architectures) && raw.architectures.length <= 8
    ? `[${raw.architectures.map(describeValue).join(', ')}]`
    : describeValue(raw.architectures);
  throw new CheckpointError(
    { file, code: 'ERR_MOE_CHECKPOINT_UNSUPPORTED' },
    `unsupported model: model_type ${describeValue(modelType)}, architectures ${names}; ` +
      `supported model_type: ${Object.keys(MODEL_TYPES).join(', ')}`,
  );
}

export async function readModelConfig(dir: string): Promise<ModelConfig> {
  const file = path.resolve(dir, 'config.json');
  if (!(await isPresent(file))) {
    throw new CheckpointError({ file, code: 'ERR_MOE_CHECKPOINT_FILE' }, 'not found: a Hugging Face model folder has config.json next to its .safetensors files');
  }
  const raw = await readJsonFile(file, MAX_CONFIG_BYTES, CONFIG);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CheckpointError({ file, code: CONFIG }, `the file holds ${describeValue(raw)}, not a JSON object`);
  }
  const f = new Fields(raw as Record<string, unknown>, file);
  const { family, reason, configType } = detectFamily(f.raw, file);
  const modelType = typeof f.raw.model_type === 'string' ? f.raw.model_type : '';
  const L = f.int('num_hidden_layers', MAX_LAYERS, 'layers');
  const H = f.int('hidden_size', MAX_SIZE, '(the largest size moe-cpu accepts)');
  const all = range(L);
  const size = (key: string, fallback?: number, min = 1) => f.int(key, MAX_SIZE, '(the largest size moe-cpu accepts)', fallback, min);
  const experts = () => f.intOf(EXPERT_COUNT_KEYS[configType], MAX_EXPERTS, 'experts');
  const topK = (keys: string[]) => f.intOf(keys, MAX_EXPERTS, 'experts');

  const base = (c: Omit<CheckpointConfig, 'modelType' | 'numLayers' | 'hiddenSize' | 'defaulted'>): CheckpointConfig =>
    ({ modelType, numLayers: L, hiddenSize: H, ...c, defaulted: f.defaulted });
  const result = (config: CheckpointConfig, moeLayers: number[], denseReason: (n: number) => string): ModelConfig => {
    if (config.topK > config.numExperts) {
      throw new CheckpointError({ file, code: CONFIG }, `num_experts_per_tok ${config.topK} exceeds the number of experts ${config.numExperts}`);
    }
    return { family, familyReason: reason, config, moeLayers, denseReason };
  };

  switch (family) {
    case 'gpt-oss': {
      const config = base({
        intermediateSize: size('intermediate_size'),
        numExperts: experts(),
        topK: topK(['num_experts_per_tok', 'experts_per_token']),
        activation: 'swigluoai',
        // transformers' GptOss has alpha fixed at 1.702; a config that names it is honoured.
        swigluAlpha: f.raw.swiglu_alpha === undefined ? SWIGLU_ALPHA : f.positive('swiglu_alpha', undefined, MAX_SCALE),
        swigluLimit: f.positive('swiglu_limit', SWIGLU_LIMIT),
        routing: { mode: 'topk-softmax' },
        sharedExpert: null,
      });
      return result(config, all, () => '');
    }
    case 'mixtral': {
      const config = base({
        intermediateSize: size('intermediate_size'),
        numExperts: experts(),
        topK: topK(['num_experts_per_tok']),
        activation: f.activation('hidden_act', 'silu'),
        routing: { mode: 'softmax-topk', renormalize: true },
        sharedExpert: null,
      });
      return result(config, all, () => '');
    }
    case 'qwen-moe': {
      const E = experts();
      const step = f.int('decoder_sparse_step', MAX_LAYERS, 'layers', 1);
      const mlpOnly = new Set(f.layerList('mlp_only_layers', [], L));
      const shared = modelType === 'qwen2_moe' || f.raw.shared_expert_intermediate_size !== undefined
        ? size('shared_expert_intermediate_size', undefined, 0) : 0;
      const config = base({
        intermediateSize: size('moe_intermediate_size'),
        numExperts: E,
        topK: topK(['num_experts_per_tok']),
        activation: f.activation('hidden_act', 'silu'),
        routing: { mode: 'softmax-topk', renormalize: f.boolean('norm_topk_prob', false) },
        sharedExpert: shared > 0 ? { intermediateSize: shared, gated: true } : null,
      });
      const isMoe = (n: number) => !mlpOnly.has(n) && (n + 1) % step === 0;
      return result(config, all.filter(isMoe), (n) => mlpOnly.has(n)
        ? `layer ${n} is in mlp_only_layers (dense MLP)`
        : `layer ${n} has a dense MLP (decoder_sparse_step = ${step}: MoE where (layer + 1) % ${step} = 0)`);
    }
    case 'deepseek-v3': {
      const scoring = f.string('scoring_func', 'sigmoid');
      if (scoring !== 'sigmoid') f.fail('scoring_func', "'sigmoid' (DeepSeek-V3 routing; the only one supported)", 'ERR_MOE_CHECKPOINT_UNSUPPORTED');
      const method = f.string('topk_method', 'noaux_tc');
      if (method !== 'noaux_tc') f.fail('topk_method', "'noaux_tc' (DeepSeek-V3 routing; the only one supported)", 'ERR_MOE_CHECKPOINT_UNSUPPORTED');
      const I = size('moe_intermediate_size');
      // null means no shared expert (DeepSeek's modeling code tests `is not None`).
      const nShared = f.raw.n_shared_experts === null ? 0 : f.int('n_shared_experts', MAX_EXPERTS, 'experts', 1, 0);
      if (nShared * I > MAX_SIZE) f.fail('n_shared_experts', `at most ${Math.floor(MAX_SIZE / I)}: n_shared_experts × moe_intermediate_size ${I} is the shared expert's size, at most ${MAX_SIZE}`);
      const firstMoe = f.int('first_k_dense_replace', MAX_LAYERS, 'layers', 3, 0);
      const freq = f.int('moe_layer_freq', MAX_LAYERS, 'layers', 1);
      const E = experts();
      const K = topK(['num_experts_per_tok']);
      const numGroups = f.int('n_group', MAX_EXPERTS, 'groups', 8);
      if (E % numGroups !== 0) f.fail('n_group', `a divisor of n_routed_experts (${E})`);
      const topkGroups = f.int('topk_group', numGroups, `groups (n_group)`, 4);
      if (K > topkGroups * (E / numGroups)) {
        f.fail('num_experts_per_tok', `at most topk_group × experts per group = ${topkGroups} × ${E / numGroups} = ${topkGroups * (E / numGroups)}`);
      }
      const config = base({
        intermediateSize: I,
        numExperts: E,
        topK: K,
        activation: f.activation('hidden_act', 'silu'),
        routing: {
          mode: 'sigmoid-grouped',
          numGroups,
          topkGroups,
          renormalize: f.boolean('norm_topk_prob', true),
          routedScalingFactor: f.positive('routed_scaling_factor', 2.5, MAX_SCALE),
        },
        sharedExpert: nShared > 0 ? { intermediateSize: nShared * I, gated: false } : null,
      });
      const isMoe = (n: number) => n >= firstMoe && n % freq === 0;
      return result(config, all.filter(isMoe), (n) => n < firstMoe
        ? `layer ${n} has a dense MLP (first_k_dense_replace = ${firstMoe})`
        : `layer ${n} has a dense MLP (moe_layer_freq = ${freq})`);
    }
  }
}

/**
 * num_hidden_layers against the tensors: every layer has tensors named model.layers.<n>.…, so
 * there cannot be more layers than layer indices the index or the headers name (there may be
 * fewer: DeepSeek-V3's multi-token-prediction layer follows the last one).
 */
export function checkLayerCount(model: ModelConfig, layersNamed: ReadonlySet<number>, file: string): void {
  const L = model.config.numLayers;
  if (L > layersNamed.size) {
    const named = layersNamed.size === 0 ? 'no layer (no tensor model.layers.<n>.…)' : `only ${layersNamed.size} layer${layersNamed.size === 1 ? '' : 's'}`;
    throw new CheckpointError({ file, code: CONFIG }, `num_hidden_layers: ${L} layers, but the checkpoint's tensors name ${named}`);
  }
}
