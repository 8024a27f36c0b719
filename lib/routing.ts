// Router: logits [T, E] -> top-K expert ids and weights per token (docs/spec.md "Routing").
import { binding } from './binding';
import { boolean, finiteNumber, object, oneOf, positiveInteger, typedArray } from './validate';
import { rangeError } from './errors';

/**
 * How router logits [T, E] become K expert ids and weights per token (docs/spec.md, "Routing").
 * Slots are ordered by descending score, ties to the lower expert index.
 */
export type Routing = TopkSoftmaxRouting | SoftmaxTopkRouting | SigmoidGroupedRouting;

/** gpt-oss: the top K logits, then a softmax over those K. */
export interface TopkSoftmaxRouting {
  mode: 'topk-softmax';
}

/** Mixtral, Qwen-MoE: a softmax over all E logits (fp32), then the top K. */
export interface SoftmaxTopkRouting {
  mode: 'softmax-topk';
  /** Required: divide the K weights by their sum (Mixtral, Qwen3: true; Qwen1.5/Qwen2-MoE: false). */
  renormalize: boolean;
}

/**
 * DeepSeek-V3: scores = sigmoid(logits); experts in `numGroups` contiguous groups, each scored
 * by the sum of its top 2 (score + correctionBias); the top K inside the best `topkGroups` groups;
 * weights are the unbiased scores, renormalized if asked, times `routedScalingFactor`.
 */
export interface SigmoidGroupedRouting {
  mode: 'sigmoid-grouped';
  /** Groups the E experts are split into: a divisor of E. */
  numGroups: number;
  /** Groups kept, 1 ≤ topkGroups ≤ numGroups, with topK ≤ topkGroups · E / numGroups. */
  topkGroups: number;
  /**
   * [E], finite: added to the scores to choose experts (never to the weights).
   * @default undefined (no correction: zeros)
   */
  correctionBias?: Float32Array | undefined;
  /** Required: divide the K weights by their sum before scaling. */
  renormalize: boolean;
  /**
   * Multiplies every routing weight; a positive float32.
   * @default 1
   */
  routedScalingFactor?: number | undefined;
}

/** A route: expert ids and their weights, [T, K] each, slot by slot. */
export interface RouteIds {
  /** [T, K] expert ids in [0, E). */
  ids: Int32Array;
  /** [T, K] finite routing weights (the expert's output, W2 bias included, is scaled by it). */
  weights: Float32Array;
}

/** Routing options with defaults filled in, as the binding takes them. */
export interface RoutingArg {
  mode: Routing['mode'];
  renormalize: boolean;
  numGroups: number;
  topkGroups: number;
  correctionBias: Float32Array | null;
  routedScalingFactor: number;
}

const MODES = ['topk-softmax', 'softmax-topk', 'sigmoid-grouped'] as const;

export function checkRouting(value: unknown, numExperts: number, topK: number, name = 'routing'): RoutingArg {
  const r = object(value, name);
  const mode = oneOf(r.mode, `${name}.mode`, MODES);
  const arg: RoutingArg = { mode, renormalize: false, numGroups: 1, topkGroups: 1, correctionBias: null, routedScalingFactor: 1 };
  if (mode === 'softmax-topk') arg.renormalize = boolean(r.renormalize, `${name}.renormalize`);
  if (mode === 'sigmoid-grouped') {
    arg.renormalize = boolean(r.renormalize, `${name}.renormalize`);
    arg.numGroups = positiveInteger(r.numGroups, `${name}.numGroups`);
    if (numExperts % arg.numGroups !== 0) {
      throw rangeError(`${name}.numGroups: expected a divisor of numExperts (${numExperts}), got ${arg.numGroups}`);
    }
    arg.topkGroups = positiveInteger(r.topkGroups, `${name}.topkGroups`);
    if (arg.topkGroups > arg.numGroups) {
      throw rangeError(`${name}.topkGroups: expected at most numGroups (${arg.numGroups}), got ${arg.topkGroups}`);
    }
    const candidates = arg.topkGroups * (numExperts / arg.numGroups);
    if (topK > candidates) {
      throw rangeError(`topK: expected at most topkGroups × experts per group (${candidates}), got ${topK}`);
    }
    if (r.correctionBias !== undefined) {
      const bias = typedArray(r.correctionBias, `${name}.correctionBias`, Float32Array, numExperts, '[E]');
      const bad = bias.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw rangeError(`${name}.correctionBias[${bad}]: expected a finite number, got ${bias[bad]}`);
      arg.correctionBias = bias;
    }
    arg.routedScalingFactor = finiteNumber(r.routedScalingFactor, `${name}.routedScalingFactor`, 1);
    if (!(arg.routedScalingFactor > 0)) {
      throw rangeError(`${name}.routedScalingFactor: expected a positive number, got ${arg.routedScalingFactor}`);
    }
  }
  return arg;
}

export function checkTopK(topK: unknown, numExperts: number): number {
  const k = positiveInteger(topK, 'topK');
  if (k > numExperts) throw rangeError(`topK: expected at most numExperts (${numExperts}), got ${k}`);
  return k;
}

/** Routes already-validated logits; throws RangeError naming `logits` for a non-finite value. */
export function route(logits: Float32Array, tokens: number, numExperts: number, topK: number, routing: RoutingArg): RouteIds {
  const ids = new Int32Array(tokens * topK);
  const weights = new Float32Array(tokens * topK);
  binding.selectExperts(logits, tokens, numExperts, topK, routing, ids, weights);
  return { ids, weights };
}

export interface SelectExpertsOptions {
  /** T: rows of `logits`. */
  tokens: number;
  /** E: columns of `logits`. */
  numExperts: number;
  /** K: experts chosen per token, 1 ≤ K ≤ E. */
  topK: number;
  /** Required: the routing rule. */
  routing: Routing;
}

/** Top-K experts per token from router logits [tokens, numExperts]. */
export function selectExperts(logits: Float32Array, options: SelectExpertsOptions): RouteIds {
  const o = object(options, 'options');
  const tokens = positiveInteger(o.tokens, 'tokens');
  const numExperts = positiveInteger(o.numExperts, 'numExperts');
  const topK = checkTopK(o.topK, numExperts);
  const routing = checkRouting(o.routing, numExperts, topK);
  typedArray(logits, 'logits', Float32Array, tokens * numExperts, `[T=${tokens}, E=${numExperts}]`);
  return route(logits, tokens, numExperts, topK, routing);
}
