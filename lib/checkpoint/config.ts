// config.json: the model family and the hyper-parameters of its MoE blocks.
//
// Sizes (hidden, intermediate, experts, top-k, layers) are required; routing knobs a
// config.json may leave out take the defaults of the model's transformers config class, and
// `defaulted` lists them.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { SWIGLU_ALPHA, SWIGLU_LIMIT, type Activation } from '../activation';
import type { Routing } from '../routing';
import { CheckpointError } from './errors';

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
const ARCHITECTURES: Record<string, Family> = {
  GptOssForCausalLM: 'gpt-oss', MixtralForCausalLM: 'mixtral', Qwen3MoeForCausalLM: 'qwen-moe',
  Qwen2MoeForCausalLM: 'qwen-moe', DeepseekV3ForCausalLM: 'deepseek-v3',
};

// transformers' hidden_act names -> ours.
const ACTIVATIONS: Record<string, Activation> = {
  silu: 'silu', swish: 'silu', gelu: 'gelu', gelu_pytorch_tanh: 'gelu_tanh', gelu_new: 'gelu_tanh', gelu_fast: 'gelu_tanh',
};

/** Typed access to config.json values, with errors that name the key. */
class Fields {
  readonly defaulted: string[] = [];
  constructor(readonly raw: Record<string, unknown>, readonly file: string) {}

  #fail(key: string, expected: string): never {
    const got = this.raw[key];
    throw new CheckpointError({ file: this.file }, `${key}: expected ${expected}, got ${got === undefined ? 'nothing (missing)' : JSON.stringify(got)}`);
  }
  #get(key: string, fallback: unknown): unknown {
    const v = this.raw[key];
    if (v !== undefined && v !== null) return v;
    if (fallback === undefined) return undefined;
    this.defaulted.push(`${key} = ${JSON.stringify(fallback)}`);
    return fallback;
  }
  int(key: string, fallback?: number, min = 1): number {
    const v = this.#get(key, fallback);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) this.#fail(key, min === 0 ? 'a non-negative integer' : 'a positive integer');
    return v;
  }
  /** The first of several keys present (some families have two names for one value). */
  intOf(keys: string[]): number {
    const key = keys.find((k) => this.raw[k] !== undefined && this.raw[k] !== null) ?? keys[0];
    return this.int(key);
  }
  number(key: string, fallback?: number): number {
    const v = this.#get(key, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.#fail(key, 'a finite number');
    return v;
  }
  boolean(key: string, fallback?: boolean): boolean {
    const v = this.#get(key, fallback);
    if (typeof v !== 'boolean') this.#fail(key, 'true or false');
    return v;
  }
  string(key: string, fallback?: string): string {
    const v = this.#get(key, fallback);
    if (typeof v !== 'string') this.#fail(key, 'a string');
    return v;
  }
  intList(key: string, fallback: number[]): number[] {
    const v = this.#get(key, fallback);
    if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x))) this.#fail(key, 'a list of layer indices');
    return v as number[];
  }
  activation(key: string, fallback: string): Activation {
    const name = this.string(key, fallback);
    const act = ACTIVATIONS[name];
    if (!act) this.#fail(key, `one of ${Object.keys(ACTIVATIONS).map((a) => `'${a}'`).join(', ')}`);
    return act;
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function detectFamily(raw: Record<string, unknown>, file: string): { family: Family; reason: string } {
  const modelType = raw.model_type;
  if (typeof modelType === 'string' && MODEL_TYPES[modelType]) {
    return { family: MODEL_TYPES[modelType], reason: `config.json model_type '${modelType}'` };
  }
  const archs = Array.isArray(raw.architectures) ? raw.architectures : [];
  const arch = archs.find((a): a is string => typeof a === 'string' && ARCHITECTURES[a] !== undefined);
  if (arch) return { family: ARCHITECTURES[arch], reason: `config.json architectures ['${arch}']` };
  throw new CheckpointError(
    { file },
    `unsupported model: model_type ${JSON.stringify(modelType)}, architectures ${JSON.stringify(raw.architectures)}; ` +
      `supported model_type: ${Object.keys(MODEL_TYPES).join(', ')}`,
  );
}

export async function readModelConfig(dir: string): Promise<ModelConfig> {
  const file = path.resolve(dir, 'config.json');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CheckpointError({ file }, code === 'ENOENT'
      ? 'not found: a Hugging Face model folder has config.json next to its .safetensors files'
      : `cannot read (${code ?? (err as Error).message})`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError({ file }, `not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CheckpointError({ file }, 'not a JSON object');
  const f = new Fields(raw as Record<string, unknown>, file);
  const { family, reason } = detectFamily(f.raw, file);
  const modelType = typeof f.raw.model_type === 'string' ? f.raw.model_type : '';
  const L = f.int('num_hidden_layers');
  const H = f.int('hidden_size');
  const all = range(L);

  const base = (c: Omit<CheckpointConfig, 'modelType' | 'numLayers' | 'hiddenSize' | 'defaulted'>): CheckpointConfig =>
    ({ modelType, numLayers: L, hiddenSize: H, ...c, defaulted: f.defaulted });
  const result = (config: CheckpointConfig, moeLayers: number[], denseReason: (n: number) => string): ModelConfig => {
    if (config.topK > config.numExperts) {
      throw new CheckpointError({ file }, `num_experts_per_tok ${config.topK} exceeds the number of experts ${config.numExperts}`);
    }
    return { family, familyReason: reason, config, moeLayers, denseReason };
  };

  switch (family) {
    case 'gpt-oss': {
      const config = base({
        intermediateSize: f.int('intermediate_size'),
        numExperts: f.int('num_local_experts'),
        topK: f.intOf(['num_experts_per_tok', 'experts_per_token']),
        activation: 'swigluoai',
        swigluAlpha: SWIGLU_ALPHA,
        swigluLimit: f.number('swiglu_limit', SWIGLU_LIMIT),
        routing: { mode: 'topk-softmax' },
        sharedExpert: null,
      });
      return result(config, all, () => '');
    }
    case 'mixtral': {
      const config = base({
        intermediateSize: f.int('intermediate_size'),
        numExperts: f.int('num_local_experts'),
        topK: f.int('num_experts_per_tok'),
        activation: f.activation('hidden_act', 'silu'),
        routing: { mode: 'softmax-topk', renormalize: true },
        sharedExpert: null,
      });
      return result(config, all, () => '');
    }
    case 'qwen-moe': {
      const E = f.int('num_experts');
      const step = f.int('decoder_sparse_step', 1);
      const mlpOnly = new Set(f.intList('mlp_only_layers', []));
      const shared = modelType === 'qwen2_moe' || f.raw.shared_expert_intermediate_size !== undefined
        ? f.int('shared_expert_intermediate_size', undefined, 0) : 0;
      const config = base({
        intermediateSize: f.int('moe_intermediate_size'),
        numExperts: E,
        topK: f.int('num_experts_per_tok'),
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
      if (scoring !== 'sigmoid') throw new CheckpointError({ file }, `scoring_func: only 'sigmoid' (DeepSeek-V3 routing) is supported, got '${scoring}'`);
      const method = f.string('topk_method', 'noaux_tc');
      if (method !== 'noaux_tc') throw new CheckpointError({ file }, `topk_method: only 'noaux_tc' (DeepSeek-V3 routing) is supported, got '${method}'`);
      const I = f.int('moe_intermediate_size');
      // null means no shared expert (DeepSeek's modeling code tests `is not None`).
      const nShared = f.raw.n_shared_experts === null ? 0 : f.int('n_shared_experts', 1, 0);
      const firstMoe = f.int('first_k_dense_replace', 3, 0);
      const freq = f.int('moe_layer_freq', 1);
      const config = base({
        intermediateSize: I,
        numExperts: f.int('n_routed_experts'),
        topK: f.int('num_experts_per_tok'),
        activation: f.activation('hidden_act', 'silu'),
        routing: {
          mode: 'sigmoid-grouped',
          numGroups: f.int('n_group', 8),
          topkGroups: f.int('topk_group', 4),
          renormalize: f.boolean('norm_topk_prob', true),
          routedScalingFactor: f.number('routed_scaling_factor', 2.5),
        },
        sharedExpert: nShared > 0 ? { intermediateSize: nShared * I, gated: false } : null,
      });
      const r = config.routing as Extract<Routing, { mode: 'sigmoid-grouped' }>;
      if (config.numExperts % r.numGroups !== 0 || r.topkGroups > r.numGroups || config.topK > r.topkGroups * (config.numExperts / r.numGroups)) {
        throw new CheckpointError({ file }, `n_group ${r.numGroups}, topk_group ${r.topkGroups}: do not fit n_routed_experts ${config.numExperts} and num_experts_per_tok ${config.topK}`);
      }
      const isMoe = (n: number) => n >= firstMoe && n % freq === 0;
      return result(config, all.filter(isMoe), (n) => n < firstMoe
        ? `layer ${n} has a dense MLP (first_k_dense_replace = ${firstMoe})`
        : `layer ${n} has a dense MLP (moe_layer_freq = ${freq})`);
    }
  }
}
