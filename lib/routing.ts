// Router: logits [T, E] -> top-K expert ids and weights per token (docs/spec.md "Routing").
import { binding } from './binding';
import { boolean, finiteNumber, object, oneOf, positiveInteger, typedArray } from './validate';
import { rangeError } from './errors';

export type Routing =
  | { mode: 'topk-softmax' }
  | { mode: 'softmax-topk'; renormalize: boolean }
  | {
      mode: 'sigmoid-grouped';
      numGroups: number;
      topkGroups: number;
      correctionBias?: Float32Array;
      renormalize: boolean;
      routedScalingFactor?: number;
    };

export interface RouteIds {
  ids: Int32Array;
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
  tokens: number;
  numExperts: number;
  topK: number;
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
