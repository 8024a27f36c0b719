// MoeBlock: the MoE block of one transformer layer — routed experts with their router, plus the
// shared expert of Qwen2-MoE / DeepSeek-V3 where there is one — as composition of MoeLayers.
import { fromBf16, toBf16 } from '../bf16';
import { binding } from '../binding';
import { MoeLayer, type ForwardOptions, type Route, type WeightDtype } from '../layer';
import { describe, object, weightArray, type WeightArray } from '../validate';
import type { Family } from './config';
import { disposedError, typeError, rangeError } from '../errors';

export interface MoeBlockOptions {
  /** The routed experts; with a router (routerWeight) `forward(hidden)` needs no route. */
  experts: MoeLayer;
  /** A shared expert every token goes through: a MoeLayer with numExperts 1 and topK 1. */
  sharedExperts?: MoeLayer;
  /** [1, H] (f32 or bf16): scales the shared expert's output by sigmoid(gate · x) (Qwen2-MoE); without it, by 1. */
  sharedExpertGate?: WeightArray;
  /** Metadata of a block loaded from a checkpoint. */
  family?: Family;
  layer?: number;
}

/**
 * out = experts(x) + s(x) · sharedExperts(x), s = sigmoid(sharedExpertGate · x) or 1. With a
 * shared expert the two parts are computed from f32 activations (bf16 hidden is widened,
 * exactly), summed in f32 and rounded to the dtype of hidden once. The block owns its layers:
 * `dispose()` frees them.
 */
export class MoeBlock {
  readonly experts: MoeLayer;
  readonly sharedExperts: MoeLayer | null;
  readonly family: Family | undefined;
  /** Layer index in the checkpoint. */
  readonly layer: number | undefined;
  #sharedGate: WeightArray | null;
  #disposed = false;
  /** forward() calls in flight: dispose() frees the layers once they are done. */
  #inflight = 0;

  constructor(options: MoeBlockOptions) {
    const o = object(options, 'options');
    if (!(o.experts instanceof MoeLayer)) throw typeError(`experts: expected a MoeLayer, got ${describe(o.experts)}`);
    const experts = o.experts;
    let shared: MoeLayer | null = null;
    if (o.sharedExperts !== undefined) {
      if (!(o.sharedExperts instanceof MoeLayer)) throw typeError(`sharedExperts: expected a MoeLayer, got ${describe(o.sharedExperts)}`);
      shared = o.sharedExperts;
      if (shared.numExperts !== 1 || shared.topK !== 1) {
        throw rangeError(`sharedExperts: expected numExperts 1 and topK 1, got ${shared.numExperts} and ${shared.topK}`);
      }
      if (shared.hiddenSize !== experts.hiddenSize) {
        throw rangeError(`sharedExperts: expected hiddenSize ${experts.hiddenSize} (that of experts), got ${shared.hiddenSize}`);
      }
    }
    let gate: WeightArray | null = null;
    if (o.sharedExpertGate !== undefined) {
      if (!shared) throw typeError('sharedExpertGate: given without sharedExperts');
      gate = weightArray(o.sharedExpertGate, 'sharedExpertGate');
      if (gate.length !== experts.hiddenSize) {
        throw rangeError(`sharedExpertGate: expected length ${experts.hiddenSize} ([1, H=${experts.hiddenSize}]), got ${gate.length}`);
      }
      gate = gate.slice();
    }
    this.experts = experts;
    this.sharedExperts = shared;
    this.#sharedGate = gate;
    this.family = o.family as Family | undefined;
    if (o.layer !== undefined && !(Number.isSafeInteger(o.layer) && (o.layer as number) >= 0)) {
      throw rangeError(`layer: expected a non-negative integer, got ${describe(o.layer)}`);
    }
    this.layer = o.layer as number | undefined;
  }

  get hiddenSize(): number { return this.experts.hiddenSize; }
  get numExperts(): number { return this.experts.numExperts; }
  get topK(): number { return this.experts.topK; }
  get weightDtype(): WeightDtype { return this.experts.weightDtype; }

  /** True once dispose() was called (a forward in flight may still be finishing). */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Bytes held: packed experts, shared expert, routers (0 once disposed). */
  get bytes(): number {
    if (this.#disposed) return 0;
    const gate = this.#sharedGate && this.experts.bytes ? this.#sharedGate.byteLength : 0;
    return this.experts.bytes + (this.sharedExperts?.bytes ?? 0) + gate;
  }

  /** hidden [T, H] (f32 or bf16) -> [T, H], same dtype, off the main thread. */
  async forward<T extends WeightArray>(hidden: T, route?: Route, options?: ForwardOptions): Promise<T> {
    if (this.#disposed) throw disposedError('MoeBlock');
    if (!this.sharedExperts) return this.experts.forward(hidden, route, options);
    const sharedExperts = this.sharedExperts;
    this.#inflight++;
    try {
      const { x, tokens } = this.#widen(hidden, true);
      const gate = this.#sharedGate;
      const scales = gate
        ? gateScales(await binding.routerLogitsAsync(x, tokens, this.hiddenSize, gate, 1, null, this.experts.threads))
        : new Float32Array(tokens).fill(1);
      const [routed, shared] = await Promise.all([
        this.experts.forward(x, route, options),
        sharedExperts.forward(x, { ids: new Int32Array(tokens), weights: scales }, options),
      ]);
      return this.#sum(hidden, routed, shared);
    } finally {
      if (--this.#inflight === 0 && this.#disposed) this.#release();
    }
  }

  /** As `forward`, on the calling thread. */
  forwardSync<T extends WeightArray>(hidden: T, route?: Route): T {
    if (this.#disposed) throw disposedError('MoeBlock');
    if (!this.sharedExperts) return this.experts.forwardSync(hidden, route);
    const { x, tokens } = this.#widen(hidden, false);
    const gate = this.#sharedGate;
    const scales = gate
      ? gateScales(binding.routerLogits(x, tokens, this.hiddenSize, gate, 1, null, this.experts.threads))
      : new Float32Array(tokens).fill(1);
    const routed = this.experts.forwardSync(x, route);
    return this.#sum(hidden, routed, this.sharedExperts.forwardSync(x, { ids: new Int32Array(tokens), weights: scales }));
  }

  /** Frees both layers: now, or once the forward calls in flight have finished. Idempotent. */
  dispose(): void {
    this.#disposed = true;
    if (this.#inflight === 0) this.#release();
  }

  #release(): void {
    this.experts.dispose();
    this.sharedExperts?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** f32 activations for both parts; a private copy when async (the caller may reuse hidden). */
  #widen(hiddenArg: WeightArray, copy: boolean): { x: Float32Array; tokens: number } {
    const hidden = weightArray(hiddenArg, 'hidden');
    const H = this.hiddenSize;
    if (hidden.length % H !== 0) {
      throw rangeError(`hidden: expected a length that is a multiple of hiddenSize (${H}), got ${hidden.length}`);
    }
    const x = hidden instanceof Uint16Array ? fromBf16(hidden) : copy ? hidden.slice() : hidden;
    return { x, tokens: hidden.length / H };
  }

  #sum<T extends WeightArray>(hidden: T, routed: Float32Array, shared: Float32Array): T {
    for (let i = 0; i < routed.length; i++) routed[i] += shared[i];
    return (hidden instanceof Uint16Array ? toBf16(routed) : routed) as T;
  }
}

/** sigmoid(gate · x) per token; a non-finite gate logit comes from `hidden`. */
function gateScales(logits: Float32Array): Float32Array {
  for (let t = 0; t < logits.length; t++) {
    if (!Number.isFinite(logits[t])) {
      throw rangeError(`hidden: the shared-expert gate computed from token ${t} is ${logits[t]}; check hidden for NaN or Infinity`);
    }
  }
  return logits.map((v) => 1 / (1 + Math.exp(-v)));
}
