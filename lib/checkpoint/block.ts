// MoeBlock: the MoE block of one transformer layer — routed experts with their router, plus the
// shared expert of Qwen2-MoE / DeepSeek-V3 where there is one — as composition of MoeLayers.
import { binding, type NativeRouter } from '../binding';
import { MoeLayer, forwardBlock, forwardBlockSync, type BiasInput, type ForwardOptions, type Route, type SharedExpertPart, type WeightDtype } from '../layer';
import { describe, object, routerValues, type WeightArray } from '../validate';
import type { Family } from './config';
import { disposedError, typeError, rangeError } from '../errors';

/** Options of `new MoeBlock(options)`. */
export interface MoeBlockOptions {
  /** The routed experts; with a router (routerWeight) `forward(hidden)` needs no route. */
  experts: MoeLayer;
  /**
   * A shared expert every token goes through: a MoeLayer with numExperts 1 and topK 1, of the same hiddenSize.
   * @default undefined (no shared expert)
   */
  sharedExperts?: MoeLayer | undefined;
  /**
   * [1, H] (f32, bf16, or a Float16Array widened to f32): scales the shared expert's output by
   * sigmoid(gate · x) (Qwen2-MoE); only with sharedExperts.
   * @default undefined (the shared expert's output is scaled by 1)
   */
  sharedExpertGate?: BiasInput | undefined;
  /**
   * The model family of a block loaded from a checkpoint (metadata only).
   * @default undefined
   */
  family?: Family | undefined;
  /**
   * The layer index of a block loaded from a checkpoint (metadata only).
   * @default undefined
   */
  layer?: number | undefined;
}

/**
 * out = experts(x) + s(x) · sharedExperts(x), s = sigmoid(sharedExpertGate · x) or 1. With a
 * shared expert the two parts are computed from f32 activations (bf16 hidden is widened,
 * exactly), summed in f32 and rounded to the dtype of hidden once. A forward is one native
 * call: router, routing, routed experts, the gate and the shared expert (nothing of the math
 * runs on the JavaScript thread). The block owns its layers: `dispose()` frees them.
 */
export class MoeBlock {
  readonly experts: MoeLayer;
  readonly sharedExperts: MoeLayer | null;
  readonly family: Family | undefined;
  /** Layer index in the checkpoint. */
  readonly layer: number | undefined;
  /** The routed experts' shared expert and its gate (copied natively), or null. */
  #shared: SharedExpertPart | null;
  #gateBytes: number;
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
      gate = routerValues(o.sharedExpertGate, 'sharedExpertGate');
      if (gate.length !== experts.hiddenSize) {
        throw rangeError(`sharedExpertGate: expected length ${experts.hiddenSize} ([1, H=${experts.hiddenSize}]), got ${gate.length}`);
      }
    }
    this.experts = experts;
    this.sharedExperts = shared;
    const nativeGate: NativeRouter | null = gate && new binding.NativeRouter(gate, 1, experts.hiddenSize, null, ONE_OUTPUT, 1);
    this.#shared = shared && { layer: shared, gate: nativeGate };
    this.#gateBytes = nativeGate?.bytes ?? 0;
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
    return this.experts.bytes + (this.sharedExperts?.bytes ?? 0) + (this.experts.bytes ? this.#gateBytes : 0);
  }

  /** hidden [T, H] (f32 or bf16) -> [T, H], same dtype, off the main thread. */
  async forward<T extends WeightArray>(hidden: T, route?: Route, options?: ForwardOptions): Promise<T> {
    if (this.#disposed) throw disposedError('MoeBlock');
    if (!this.#shared) return this.experts.forward(hidden, route, options);
    this.#inflight++;
    try {
      return await forwardBlock(this.experts, this.#shared, hidden, route, options);
    } finally {
      if (--this.#inflight === 0 && this.#disposed) this.#release();
    }
  }

  /** As `forward`, on the calling thread. */
  forwardSync<T extends WeightArray>(hidden: T, route?: Route): T {
    if (this.#disposed) throw disposedError('MoeBlock');
    if (!this.#shared) return this.experts.forwardSync(hidden, route);
    return forwardBlockSync(this.experts, this.#shared, hidden, route);
  }

  /** Frees both layers: now, or once the forward calls in flight have finished. Idempotent. */
  dispose(): void {
    this.#disposed = true;
    if (this.#inflight === 0) this.#release();
  }

  #release(): void {
    this.experts.dispose();
    this.sharedExperts?.dispose();
    this.#shared?.gate?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** The gate is a router of one output whose routing is never used. */
const ONE_OUTPUT = { mode: 'topk-softmax', renormalize: false, numGroups: 1, topkGroups: 1, correctionBias: null, routedScalingFactor: 1 } as const;
