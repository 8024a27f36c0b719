// MoeLayer: packed expert weights + the fused forward.
import { checkSwigluLimit, ACTIVATIONS, SWIGLU_ALPHA, type Activation } from './activation';
import { binding, type KernelChoice, type NativeLayer, type NativeRouter, type NativeTensor } from './binding';
import { fromBf16 } from './bf16';
import {
  checkBlockMultiple, int8Refusal, layerBias, layerWeight, type Int8Tensor, type Mxfp4Tensor, type QuantizedTensor, type TensorShape,
  type WeightDtype,
} from './quantize';
import { checkRouting, checkTopK, type RouteIds, type Routing } from './routing';
import {
  activationArray, boolean, describe, finiteNumber, object, oneOf, optionalBoolean, optionalSignal, positiveInteger, routerValues, sameType,
  threadCount, typedArray, type WeightArray,
} from './validate';
import { ERR_ABORTED, abortError, disposedError, typeError, rangeError } from './errors';

export type { KernelChoice, WeightDtype };

/**
 * A Float16Array (a global of Node >= 24), typed by its shape so that these declarations need
 * no `ESNext.Float16` lib. Its values are f16: an `'f16'` layer keeps them, the others convert
 * them while packing.
 */
export interface Float16ArrayLike extends ArrayBufferView {
  readonly length: number;
  readonly [Symbol.toStringTag]: 'Float16Array';
}

/** mxfp4 blocks and scales per expert: `blocks[e]` [rows, depth/32, 16], `scales[e]` [rows, depth/32]. */
export interface PerExpertMxfp4Tensor {
  blocks: Uint8Array[];
  scales: Uint8Array[];
}

/** int8 codes and scales per expert: `codes[e]` [rows, depth], `scales[e]` [rows, depth/32]. */
export interface PerExpertInt8Tensor {
  codes: Int8Array[];
  scales: Uint16Array[];
}

/**
 * A weight given per expert: E arrays of one type, expert e's part of the tensor each (the
 * way past the 2^32 elements a Node 20 typed array holds). Pre-quantized tensors are given per
 * field (`{ blocks: Uint8Array[], scales: Uint8Array[] }`), not as an array of tensors.
 */
export type PerExpertWeights = Float32Array[] | Uint16Array[] | Float16ArrayLike[] | PerExpertMxfp4Tensor | PerExpertInt8Tensor;

/**
 * One expert weight tensor as `MoeLayer` takes it: f32 values, 16-bit values (bf16 bit patterns,
 * or f16 ones for an `'f16'` layer), f16 values in a Float16Array, or a pre-quantized tensor of
 * the layer's format; whole, or per expert ({@link PerExpertWeights}).
 */
export type WeightInput = WeightArray | Float16ArrayLike | QuantizedTensor | PerExpertWeights;

/** A bias or router weight: f32 values, 16-bit patterns, or a Float16Array (f16 values). One array for all experts. */
export type BiasInput = WeightArray | Float16ArrayLike;

export interface MoeLayerOptions {
  numExperts: number;
  hiddenSize: number;
  intermediateSize: number;
  topK: number;
  activation: Activation;
  /** Required: true for gpt-oss (g0,u0,g1,u1,…), false for halves (Mixtral, Qwen, DeepSeek). */
  isW13Interleaved: boolean;
  /**
   * Required: the format the layer holds its expert weights in (biases are held in f32).
   * - `'f32'`: w13/w2 and biases are Float32Array; `'bf16'`: Uint16Array of bf16 bit patterns.
   * - `'f16'`: Float32Array (rounded to f16, nearest even) or Uint16Array of f16 bit patterns.
   * - `'mxfp4'` (4.25 bits a weight), `'int8'` (8.5 bits): Float32Array or bf16 Uint16Array
   *   values, quantized while packing (rules: `quantize`), or a pre-quantized tensor of that
   *   format ({@link Mxfp4Tensor}, {@link Int8Tensor}); hiddenSize and intermediateSize must be
   *   multiples of 32 (blocks of 32 along each matrix's input axis). A NaN or infinity becomes
   *   a NaN block in mxfp4 and is a RangeError for int8 (which cannot hold it).
   * - Every layer also takes a Float16Array (Node >= 24) for weights and biases: f16 values,
   *   kept by an `'f16'` layer, converted while packing by the others.
   */
  weightDtype: WeightDtype;
  /**
   * [E, 2I, H] (or [E, H, 2I] when transposed). A pre-quantized tensor is [E, 2I, H/32] blocks
   * (mxfp4: `blocks` [E, 2I, H/32, 16] and `scales` [E, 2I, H/32]; int8: `codes` [E, 2I, H] and
   * `scales` [E, 2I, H/32]) and cannot be transposed.
   *
   * Or per expert: an array of E arrays of one type, each [2I, H] (or [H, 2I] when
   * transposed); pre-quantized, per field: mxfp4 `{ blocks: Uint8Array[], scales: Uint8Array[] }`
   * (each [2I, H/32, 16] and [2I, H/32]), int8 `{ codes: Int8Array[], scales: Uint16Array[] }`.
   * It packs to the same layer as the whole tensor. A Node 20 typed array holds at most 2^32
   * elements: a larger tensor must be given per expert.
   */
  w13: WeightInput;
  /**
   * [E, H, I] (or [E, I, H] when transposed). Pre-quantized: mxfp4 `blocks` [E, H, I/32, 16] and
   * `scales` [E, H, I/32]; int8 `codes` [E, H, I] and `scales` [E, H, I/32]; never transposed.
   * Or per expert, as w13: E arrays of [H, I] (or [I, H]).
   */
  w2: WeightInput;
  /**
   * [E, 2I], in the W13 layout: one array for all experts (biases are small and never per
   * expert). f32 and bf16 layers: the weights' dtype; f16, mxfp4 and int8 layers: Float32Array,
   * or Uint16Array of f16 (an `'f16'` layer) or bf16 bit patterns; any layer: Float16Array.
   */
  w13Bias?: BiasInput;
  /** [E, H]; the same types as w13Bias. */
  w2Bias?: BiasInput;
  /** W13 given as [E, H, 2I] and W2 as [E, I, H] (values only: not with pre-quantized tensors). */
  transposed?: boolean;
  swigluAlpha?: number;
  swigluLimit?: number;
  routing?: Routing;
  /** Native threads for this layer's forward; default: physical cores. */
  threads?: number;
  /**
   * Router [E, H] (Float32Array, Uint16Array bf16, or Float16Array, widened to f32; any
   * weightDtype): with it, `forward(hidden)` routes by itself: logits = hidden · routerWeightᵀ +
   * routerBias (fp32 accumulation), then `routing`.
   */
  routerWeight?: BiasInput;
  /** [E], Float32Array, bf16 Uint16Array or Float16Array; only with routerWeight. */
  routerBias?: BiasInput;
}

/** Options of an async forward. */
export interface ForwardOptions {
  /**
   * Drops the call while it waits in the queue (the promise rejects with an AbortError, code
   * ERR_MOE_ABORTED); a call already running finishes and resolves.
   */
  signal?: AbortSignal;
}

/** Router output, or router logits [T, E] to route with the layer's routing. */
export type Route = { logits: Float32Array } | RouteIds;

/** @internal A block's shared expert, as MoeBlock hands it to the routed experts' forward. */
export interface SharedExpertPart {
  layer: MoeLayer;
  /** sigmoid(gate · x) scales the shared expert's output per token; null: 1. */
  gate: NativeRouter | null;
}

/** @internal MoeBlock's forward: the routed experts and the shared expert in one native call. */
export let forwardBlock!: <T extends WeightArray>(experts: MoeLayer, shared: SharedExpertPart, hidden: T,
  route: Route | undefined, options: ForwardOptions | undefined) => Promise<T>;
/** @internal As forwardBlock, on the calling thread. */
export let forwardBlockSync!: <T extends WeightArray>(experts: MoeLayer, shared: SharedExpertPart, hidden: T,
  route: Route | undefined) => T;

/** The checked arguments of one native block call. */
interface ForwardArgs<T extends WeightArray> {
  hidden: T;
  tokens: number;
  logits: Float32Array | null;
  ids: Int32Array | null;
  weights: Float32Array | null;
  out: T;
}

/**
 * One MoE block's experts. The constructor packs the weights into memory the layer owns (the
 * W13 layout and orientation are resolved there, once) and keeps no reference to the caller's
 * arrays: they can be dropped afterwards. `bytes` says what the layer holds.
 *
 * `forwardSync` runs on the calling thread; `forward` runs on the addon's dispatcher thread that
 * drives the native pool, so neither the event loop nor libuv's pool is held. Both use
 * `threads` native threads, and each is one native call: router logits, routing and the
 * experts (the router weights are copied into native memory once, at construction).
 */
export class MoeLayer {
  readonly numExperts: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly topK: number;
  readonly activation: Activation;
  readonly isW13Interleaved: boolean;
  readonly weightDtype: WeightDtype;
  readonly routing: Routing;
  readonly threads: number;
  /** True when built with routerWeight: `forward(hidden)` needs no route. */
  readonly hasRouter: boolean;
  #native: NativeLayer | null;
  /** The routing rule, with the router weights when the layer has them. */
  #router: NativeRouter | null;
  /** dispose() was called: new calls are refused, the native memory goes when #inflight is 0. */
  #disposed = false;
  /** forward() calls that started and have not settled. */
  #inflight = 0;

  /**
   * Packs the weights on the calling thread (a gpt-oss-20b layer: about a second). A service
   * should use `MoeLayer.create`, which packs off the main thread.
   */
  constructor(options: MoeLayerOptions) {
    const adopted = adopting;
    adopting = null;
    const plan = adopted?.plan ?? planLayer(options);
    if (adopted) {
      this.#native = adopted.native;
    } else {
      try {
        this.#native = new binding.NativeLayer(plan.config, plan.w13, plan.w2, plan.w13Bias, plan.w2Bias);
      } catch (err) {
        throw plan.refusal(err);
      }
    }
    const c = plan.config;
    this.numExperts = c.numExperts;
    this.hiddenSize = c.hiddenSize;
    this.intermediateSize = c.intermediateSize;
    this.topK = c.topK;
    this.activation = c.activation;
    this.isW13Interleaved = c.isW13Interleaved;
    this.weightDtype = c.weightDtype;
    this.routing = plan.routing;
    this.threads = c.threads;
    // Copied natively, like the packed weights: the layer keeps no reference to the caller's arrays.
    const bias = plan.routerBias && (plan.routerBias instanceof Uint16Array ? fromBf16(plan.routerBias) : plan.routerBias);
    try {
      this.#router = new binding.NativeRouter(plan.routerWeight, c.numExperts, c.hiddenSize, bias, plan.routingArg, c.topK);
    } catch (err) {
      this.#native?.dispose();
      throw err;
    }
    this.hasRouter = plan.routerWeight !== null;
  }

  static {
    forwardBlock = (experts, shared, hidden, route, options) => experts.#forward(hidden, route, options, shared);
    forwardBlockSync = (experts, shared, hidden, route) => experts.#forwardSync(hidden, route, shared);
  }

  /**
   * As `new MoeLayer(options)`, with the packing on the addon's dispatcher thread: the event
   * loop and libuv's pool stay free. The options are checked before it returns (a bad one
   * rejects); the weight arrays are read until the promise settles: do not change or transfer
   * them meanwhile. Afterwards the layer keeps no reference to them.
   */
  static async create(options: MoeLayerOptions): Promise<MoeLayer> {
    const plan = planLayer(options);
    let native: NativeLayer;
    try {
      native = await binding.createNativeLayer(plan.config, plan.w13, plan.w2, plan.w13Bias, plan.w2Bias);
    } catch (err) {
      throw plan.refusal(err);
    }
    adopting = { plan, native };
    return new MoeLayer(options);
  }

  /**
   * The micro-kernels this layer's forward runs (on this CPU, under the kernel set in use):
   * `decode` below `prefillMinTokensPerExpert` tokens per selected expert on average, `prefill`
   * from there on (and for bf16 hidden where the prefill kernel takes bf16 rows).
   */
  get kernels(): KernelChoice {
    return this.#live().kernels;
  }

  /** True once dispose() was called (a forward in flight may still be finishing). */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Bytes of packed weights and biases held by the layer, router included (0 once disposed). */
  get bytes(): number {
    if (!this.#native || this.#disposed) return 0;
    return this.#native.bytes + (this.#router?.bytes ?? 0);
  }

  /**
   * hidden [T, H] (Float32Array, or Uint16Array bf16) -> [T, H] of the same dtype, off the main
   * thread (router logits and routing too). `route` may be left out when the layer has a router.
   */
  async forward<T extends WeightArray>(hidden: T, route?: Route, options?: ForwardOptions): Promise<T> {
    return this.#forward(hidden, route, options, null);
  }

  /** As `forward`, on the calling thread. */
  forwardSync<T extends WeightArray>(hidden: T, route?: Route): T {
    return this.#forwardSync(hidden, route, null);
  }

  async #forward<T extends WeightArray>(hidden: T, route: Route | undefined, options: ForwardOptions | undefined,
    shared: SharedExpertPart | null): Promise<T> {
    const native = this.#live();
    const sharedNative = shared && shared.layer.#live();
    const signal = options === undefined ? undefined : optionalSignal(object(options, 'options').signal, 'options.signal');
    const aborted = () => abortError('forward', signal!.reason);
    if (signal?.aborted) throw aborted();
    // Copied by the addon: the caller may reuse `hidden` and the route while the call runs.
    const a = this.#prepare(hidden, route);
    // Set on abort: the dispatcher drops the call if it has not started (a running one finishes).
    const cancel = signal && new Int32Array(1);
    const onAbort = () => Atomics.store(cancel!, 0, 1);
    signal?.addEventListener('abort', onAbort, { once: true });
    const layers = shared ? [this, shared.layer] : [this];
    for (const l of layers) l.#inflight++;
    try {
      return await binding.forwardBlock(native, this.#router!, sharedNative, shared?.gate ?? null,
        a.hidden, a.tokens, a.logits, a.ids, a.weights, a.out, cancel);
    } catch (err) {
      throw (err as { code?: string }).code === ERR_ABORTED && signal ? aborted() : err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      for (const l of layers) if (--l.#inflight === 0 && l.#disposed) l.#release();
    }
  }

  #forwardSync<T extends WeightArray>(hidden: T, route: Route | undefined, shared: SharedExpertPart | null): T {
    const native = this.#live();
    const sharedNative = shared && shared.layer.#live();
    const a = this.#prepare(hidden, route);
    return binding.forwardBlockSync(native, this.#router!, sharedNative, shared?.gate ?? null,
      a.hidden, a.tokens, a.logits, a.ids, a.weights, a.out);
  }

  /**
   * Frees the packed weights: now, or when the forward calls in flight have finished (they
   * complete normally). Later calls throw ERR_MOE_DISPOSED. Idempotent.
   */
  dispose(): void {
    this.#disposed = true;
    if (this.#inflight === 0) this.#release();
  }

  #release(): void {
    this.#native?.dispose();
    this.#native = null;
    this.#router?.dispose();
    this.#router = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #live(): NativeLayer {
    if (this.#disposed || !this.#native) throw disposedError('MoeLayer');
    return this.#native;
  }

  #checkHidden<T extends WeightArray>(hiddenArg: T): { hidden: T; tokens: number } {
    this.#live();
    const H = this.hiddenSize;
    const hidden = activationArray(hiddenArg, 'hidden') as T;
    if (hidden.length % H !== 0) {
      throw rangeError(`hidden: expected a length that is a multiple of hiddenSize (${H}), got ${hidden.length}`);
    }
    return { hidden, tokens: hidden.length / H };
  }

  /** Checks hidden and the route (their values too: ids in range, finite weights). */
  #prepare<T extends WeightArray>(hiddenArg: T, routeArg: Route | undefined): ForwardArgs<T> {
    const { hidden, tokens } = this.#checkHidden(hiddenArg);
    const E = this.numExperts, K = this.topK;
    const out = sameType(hidden, hidden.length);
    if (routeArg === undefined) {
      if (!this.hasRouter) {
        throw typeError('route: required, as { logits } or { ids, weights }, because this layer has no router (routerWeight); got undefined');
      }
      return { hidden, tokens, logits: null, ids: null, weights: null, out };
    }
    const r = object(routeArg, 'route');
    if (r.logits !== undefined) {
      const logits = typedArray(r.logits, 'route.logits', Float32Array, tokens * E, `[T=${tokens}, E=${E}]`);
      return { hidden, tokens, logits, ids: null, weights: null, out };
    }
    if (r.ids !== undefined || r.weights !== undefined) {
      const ids = typedArray(r.ids, 'route.ids', Int32Array, tokens * K, `[T=${tokens}, K=${K}]`);
      const weights = typedArray(r.weights, 'route.weights', Float32Array, tokens * K, `[T=${tokens}, K=${K}]`);
      for (let i = 0; i < ids.length; i++) {
        if (!(ids[i] >= 0 && ids[i] < E)) {
          throw rangeError(`route.ids[${i}]: expected an expert id in [0, ${E}), got ${ids[i]}`);
        }
        if (!Number.isFinite(weights[i])) {
          throw rangeError(`route.weights[${i}]: expected a finite number, got ${weights[i]}`);
        }
      }
      return { hidden, tokens, logits: null, ids, weights, out };
    }
    throw typeError(`route: expected { logits } or { ids, weights }, got ${describe(routeArg)}`);
  }
}

/** What the constructor hands the addon, checked. */
interface LayerPlan {
  config: {
    numExperts: number; hiddenSize: number; intermediateSize: number; topK: number; activation: Activation;
    isW13Interleaved: boolean; transposed: boolean; swigluAlpha: number; swigluLimit: number; threads: number;
    weightDtype: WeightDtype;
  };
  w13: NativeTensor; w2: NativeTensor; w13Bias: NativeTensor | null; w2Bias: NativeTensor | null;
  routing: Routing; routingArg: ReturnType<typeof checkRouting>;
  routerWeight: WeightArray | null; routerBias: WeightArray | null;
  /** The error to throw for a packing error of the addon. */
  refusal(err: unknown): unknown;
}

/** A layer packed by MoeLayer.create, handed to the constructor. */
let adopting: { plan: LayerPlan; native: NativeLayer } | null = null;

function planLayer(options: MoeLayerOptions): LayerPlan {
    const o = object(options, 'options');
    const E = positiveInteger(o.numExperts, 'numExperts');
    const H = positiveInteger(o.hiddenSize, 'hiddenSize');
    const I = positiveInteger(o.intermediateSize, 'intermediateSize');
    const K = checkTopK(o.topK, E);
    const activation = oneOf(o.activation, 'activation', ACTIVATIONS);
    if (o.isW13Interleaved === undefined) {
      throw typeError(
        'isW13Interleaved: required (true for gpt-oss-style interleaved gate/up rows, false for halves); got undefined',
      );
    }
    const interleaved = boolean(o.isW13Interleaved, 'isW13Interleaved');
    const dtype = oneOf(o.weightDtype, 'weightDtype', ['f32', 'bf16', 'f16', 'mxfp4', 'int8'] as const);
    checkBlockMultiple(dtype, H, 'hiddenSize', 'W13');
    checkBlockMultiple(dtype, I, 'intermediateSize', 'W2');
    const transposed = optionalBoolean(o.transposed, 'transposed', false);
    const alpha = finiteNumber(o.swigluAlpha, 'swigluAlpha', SWIGLU_ALPHA);
    const limit = checkSwigluLimit(o.swigluLimit, 'swigluLimit');
    const routing = (o.routing ?? { mode: 'topk-softmax' }) as Routing;
    const routingArg = checkRouting(routing, E, K);
    const threads = o.threads === undefined ? binding.cpuInfo().threads : threadCount(o.threads, 'threads');

    const w13Shape: TensorShape = { outer: [['E', E], ['2I', 2 * I]], depthName: 'H', depth: H };
    const w2Shape: TensorShape = { outer: [['E', E], ['H', H]], depthName: 'I', depth: I };
    const w13 = layerWeight(o.w13, 'w13', dtype, w13Shape, transposed);
    const w2 = layerWeight(o.w2, 'w2', dtype, w2Shape, transposed);
    const w13Bias = o.w13Bias === undefined ? null : layerBias(o.w13Bias, 'w13Bias', dtype, E * 2 * I, `[E=${E}, 2I=${2 * I}]`);
    const w2Bias = o.w2Bias === undefined ? null : layerBias(o.w2Bias, 'w2Bias', dtype, E * H, `[E=${E}, H=${H}]`);
    const routerWeight = o.routerWeight === undefined ? null : routerArray(o.routerWeight, 'routerWeight', E * H, `[E=${E}, H=${H}]`);
    if (o.routerBias !== undefined && !routerWeight) {
      throw typeError('routerBias: given without routerWeight; pass routerWeight [E, H] too, or drop routerBias');
    }
    const routerBias = o.routerBias === undefined ? null : routerArray(o.routerBias, 'routerBias', E, `[E=${E}]`);

  return {
    config: {
      numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation,
      isW13Interleaved: interleaved, transposed, swigluAlpha: alpha, swigluLimit: limit, threads, weightDtype: dtype,
    },
    w13, w2, w13Bias, w2Bias, routing, routingArg, routerWeight, routerBias,
    refusal: (err) => (dtype === 'int8' ? int8Refusal(err, [['w13', w13], ['w2', w2]], 'weightDtype') : err),
  };
}

/** routerWeight / routerBias: Float32Array or bf16 Uint16Array of `length` elements (a Float16Array is widened to f32). */
function routerArray(value: unknown, name: string, length: number, shape: string): WeightArray {
  const array = routerValues(value, name);
  if (array.length !== length) throw rangeError(`${name}: expected length ${length} (${shape}), got ${array.length}`);
  return array;
}
