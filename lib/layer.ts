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
import { ERR_ABORTED, LayerFileError, abortError, disposedError, typeError, rangeError, type LayerFileErrorCode } from './errors';

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
 * the layer's format; whole, or per expert ({@link PerExpertWeights}). Which of these a layer
 * takes depends on its `weightDtype`: see {@link WeightsOf}.
 */
export type WeightInput = WeightArray | Float16ArrayLike | QuantizedTensor | PerExpertWeights;

/** A bias or router weight: f32 values, 16-bit patterns, or a Float16Array (f16 values). One array for all experts. */
export type BiasInput = WeightArray | Float16ArrayLike;

/** `A[]` for each member of the union A: per-expert arrays are all of one type. */
type PerExpert<A> = A extends unknown ? A[] : never;

/** The value arrays (not pre-quantized tensors) a layer of each `weightDtype` takes for w13 and w2, whole. */
export interface ValuesOf {
  /** f32 values; a Float16Array's f16 values are widened exactly. */
  f32: Float32Array | Float16ArrayLike;
  /** bf16 bit patterns; a Float16Array's f16 values are rounded to bf16. */
  bf16: Uint16Array | Float16ArrayLike;
  /** f32 values (rounded to f16, nearest even), f16 bit patterns, or a Float16Array. */
  f16: Float32Array | Uint16Array | Float16ArrayLike;
  /** f32 values, bf16 bit patterns or a Float16Array, quantized while packing. */
  mxfp4: Float32Array | Uint16Array | Float16ArrayLike;
  /** f32 values, bf16 bit patterns or a Float16Array, quantized while packing. */
  int8: Float32Array | Uint16Array | Float16ArrayLike;
}

/**
 * What w13 and w2 may be for a layer of weightDtype D: D's value arrays, whole or per expert,
 * and for `'mxfp4'` and `'int8'` also a pre-quantized tensor of that format, whole or per field.
 */
export type WeightsOf<D extends WeightDtype> =
  | ValuesOf[D]
  | PerExpert<ValuesOf[D]>
  | (D extends 'mxfp4' ? Mxfp4Tensor | PerExpertMxfp4Tensor : never)
  | (D extends 'int8' ? Int8Tensor | PerExpertInt8Tensor : never);

/**
 * What w13Bias and w2Bias may be for a layer of weightDtype D: one array for all experts. f32
 * and bf16 layers take their own dtype; f16, mxfp4 and int8 layers f32 values or 16-bit patterns
 * (f16 for `'f16'`, bf16 for the others); every layer a Float16Array.
 */
export type BiasOf<D extends WeightDtype> = ValuesOf[D];

/** The options every `MoeLayer` takes, whatever its `weightDtype`. */
export interface MoeLayerBaseOptions {
  /** E: the model's experts, what routing and the router see. A positive integer. */
  numExperts: number;
  /**
   * Hold a subset of the model's experts (a model split by experts over processes or hosts):
   * their ids in [0, numExperts), strictly increasing, or a range `{ first, count }`. The
   * weights (w13, w2, biases) are then those experts' only, in that order ([S, 2I, H] for S
   * experts held); routing and the router stay the model's ([E, H]). `forward` returns the
   * partial output of the routes to the experts held (a route to another expert adds nothing),
   * so the caller sums the partial outputs of the layers holding the other experts.
   * @default all experts
   */
  experts?: readonly number[] | { first: number; count: number } | undefined;
  /** H: the model's hidden size, the length of one token's row in `hidden`. A positive integer (a multiple of 32 for `'mxfp4'` and `'int8'`). */
  hiddenSize: number;
  /** I: the intermediate size of one expert (W13 has 2I rows). A positive integer (a multiple of 32 for `'mxfp4'` and `'int8'`). */
  intermediateSize: number;
  /** K: experts per token, 1 ≤ K ≤ E. */
  topK: number;
  /** The gated activation: `'swigluoai'` (gpt-oss), `'silu'` (SwiGLU: Mixtral, Qwen, DeepSeek), `'gelu'` or `'gelu_tanh'` (GeGLU). */
  activation: Activation;
  /**
   * Required, no default: true when W13's gate and up rows alternate (g0,u0,g1,u1,…: gpt-oss),
   * false when they are halves (g0…g(I-1), u0…u(I-1): Mixtral, Qwen, DeepSeek). Applies to
   * w13Bias too.
   */
  isW13Interleaved: boolean;
  /**
   * W13 given as [E, H, 2I] and W2 as [E, I, H] (Hugging Face transformers' in-memory GptOss
   * tensors); values only, not with pre-quantized tensors.
   * @default false
   */
  transposed?: boolean | undefined;
  /**
   * `'swigluoai'` only: the alpha of `g · sigmoid(alpha · g)`. A finite float32.
   * @default 1.702
   */
  swigluAlpha?: number | undefined;
  /**
   * `'swigluoai'` only: gate clamped to at most `limit`, up to [-limit, limit]. A positive
   * number, or Infinity for no clamp.
   * @default 7
   */
  swigluLimit?: number | undefined;
  /**
   * How router logits become K expert ids and weights per token (see {@link Routing}).
   * @default { mode: 'topk-softmax' }
   */
  routing?: Routing | undefined;
  /**
   * Native threads this layer's forward uses, 1 to 1024 (from one pool shared by all layers).
   * @default cpuInfo().threads (the physical cores available to the process)
   */
  threads?: number | undefined;
  /**
   * Router [E, H] (Float32Array, Uint16Array bf16, or Float16Array, widened to f32; any
   * weightDtype): with it, `forward(hidden)` routes by itself: logits = hidden · routerWeightᵀ +
   * routerBias (fp32 accumulation), then `routing`.
   * @default undefined (no router: every forward needs a route)
   */
  routerWeight?: BiasInput | undefined;
  /**
   * [E], Float32Array, bf16 Uint16Array or Float16Array; only with routerWeight.
   * @default undefined (no router bias)
   */
  routerBias?: BiasInput | undefined;
}

/**
 * `MoeLayer`'s options for weightDtype D: the weight and bias array types follow from D, so a
 * Float32Array for a `'bf16'` layer is a compile-time error.
 */
export interface MoeLayerOptionsOf<D extends WeightDtype> extends MoeLayerBaseOptions {
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
  weightDtype: D;
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
  w13: WeightsOf<D>;
  /**
   * [E, H, I] (or [E, I, H] when transposed). Pre-quantized: mxfp4 `blocks` [E, H, I/32, 16] and
   * `scales` [E, H, I/32]; int8 `codes` [E, H, I] and `scales` [E, H, I/32]; never transposed.
   * Or per expert, as w13: E arrays of [H, I] (or [I, H]).
   */
  w2: WeightsOf<D>;
  /**
   * [E, 2I], in the W13 layout: one array for all experts (biases are small and never per
   * expert). f32 and bf16 layers: the weights' dtype; f16, mxfp4 and int8 layers: Float32Array,
   * or Uint16Array of f16 (an `'f16'` layer) or bf16 bit patterns; any layer: Float16Array.
   * @default undefined (no bias: zeros)
   */
  w13Bias?: BiasOf<D> | undefined;
  /**
   * [E, H]; the same types as w13Bias.
   * @default undefined (no bias: zeros)
   */
  w2Bias?: BiasOf<D> | undefined;
}

/**
 * The options of `new MoeLayer(options)` and `MoeLayer.create(options)`: one member per
 * `weightDtype`, which decides the types w13, w2 and the biases may have.
 */
export type MoeLayerOptions = { [D in WeightDtype]: MoeLayerOptionsOf<D> }[WeightDtype];

/** Options of an async forward. */
export interface ForwardOptions {
  /**
   * Drops the call while it waits in the queue (the promise rejects with an AbortError, code
   * ERR_MOE_ABORTED); a call already running finishes and resolves.
   * @default undefined (not cancellable)
   */
  signal?: AbortSignal | undefined;
}

/** Options of `MoeLayer.open`. */
export interface OpenLayerOptions {
  /**
   * Native threads for the layer's forward.
   * @default cpuInfo().threads (the physical cores available)
   */
  threads?: number | undefined;
  /**
   * Check every section's checksum, the packed weights included (one pass over the file at
   * memory speed), before the layer is used; false checks the header and the section table
   * only (a damaged weight byte then goes unnoticed: it is a valid weight).
   * @default true
   */
  verify?: boolean | undefined;
}

/**
 * A MoeLayer handed to another thread of this process (`layer.share()`, then
 * `MoeLayer.adopt(handle)` in that thread). A plain object: post it to a Worker as it is.
 */
export interface SharedLayerHandle {
  readonly kind: 'moe-cpu shared layer';
  readonly id: number;
  /** The layer's description (JSON). */
  readonly meta: string;
  readonly threads: number;
  readonly correctionBias: number[] | null;
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
  /** The model's number of experts (routing's E). */
  readonly numExperts: number;
  /** The model's experts this layer holds (all of them, 0 … numExperts − 1, unless built with `experts`). */
  readonly experts: readonly number[];
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
  /**
   * True when the packed weights are a read-only mapping of a packed-layer file (`MoeLayer.open`),
   * shared with every process that maps the same file; false when the layer owns them.
   */
  readonly mapped: boolean;
  #native: NativeLayer | null;
  /** What a packed-layer file needs besides the packed weights and the router. */
  readonly #meta: LayerMeta;
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
    let plan: AdoptedPlan;
    if (adopted) {
      plan = adopted.plan;
      this.#native = adopted.native;
    } else {
      const packing = planLayer(options);
      plan = packing;
      try {
        this.#native = new binding.NativeLayer(packing.config, packing.w13, packing.w2, packing.w13Bias, packing.w2Bias);
      } catch (err) {
        throw packing.refusal(err);
      }
    }
    const c = plan.config;
    this.numExperts = c.numExperts;
    this.experts = Object.freeze(c.experts ? [...c.experts] : Array.from({ length: c.numExperts }, (_, e) => e));
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
    if (adopted?.router) {
      this.#router = adopted.router.native;
    } else {
      try {
        this.#router = new binding.NativeRouter(plan.routerWeight, c.numExperts, c.hiddenSize, bias, plan.routingArg, c.topK);
      } catch (err) {
        this.#native?.dispose();
        throw err;
      }
    }
    this.hasRouter = adopted?.router ? adopted.router.hasWeights : plan.routerWeight !== null;
    this.mapped = adopted?.mapped ?? false;
    this.#meta = {
      format: LAYER_META_FORMAT, numExperts: c.numExperts, experts: c.experts ? [...c.experts] : null,
      hiddenSize: c.hiddenSize, intermediateSize: c.intermediateSize,
      topK: c.topK, activation: c.activation, isW13Interleaved: c.isW13Interleaved, weightDtype: c.weightDtype,
      swigluAlpha: c.swigluAlpha, swigluLimit: c.swigluLimit,
      routing: { ...plan.routingArg, correctionBias: plan.routingArg.correctionBias !== null },
      router: adopted?.router ? adopted.router.dtype : plan.routerWeight === null ? null : plan.routerWeight instanceof Uint16Array ? 'bf16' : 'f32',
      routerBias: adopted?.router ? adopted.router.bias : plan.routerBias !== null,
    };
  }

  /**
   * A handle to hand this layer to another thread of this process (worker_threads): post it,
   * and call `MoeLayer.adopt(handle)` there, once. No copy: both threads use the same packed
   * weights (and router), each holding its own reference, so disposing one layer never frees
   * memory the other uses. A handle never adopted keeps the weights until the process exits.
   */
  share(): SharedLayerHandle {
    const native = this.#live();
    const id = binding.shareLayer(native, this.#router);
    const bias = this.routing.mode === 'sigmoid-grouped' ? this.routing.correctionBias : undefined;
    return { kind: 'moe-cpu shared layer', id, meta: JSON.stringify(this.#meta), threads: this.threads, correctionBias: bias ? [...bias] : null };
  }

  /** The layer a `share()` handle stands for, in this thread (each handle once). */
  static adopt(handle: SharedLayerHandle): MoeLayer {
    const h = object(handle, 'handle');
    if (h.kind !== 'moe-cpu shared layer' || typeof h.meta !== 'string' || typeof h.id !== 'number') {
      throw typeError(`handle: expected what layer.share() returned, got ${describe(handle)}`);
    }
    let meta: LayerMeta;
    try {
      meta = JSON.parse(h.meta) as LayerMeta;
    } catch {
      throw typeError('handle.meta: not what layer.share() made (not JSON)');
    }
    const correction = Array.isArray(h.correctionBias) ? Float32Array.from(h.correctionBias as number[]) : undefined;
    const plan = planFromMeta(meta, threadCount(h.threads, 'handle.threads'), () => undefined, correction, (why) => typeError(`handle: ${why}`), false);
    const adopted = binding.adoptLayer(h.id);
    adopting = {
      plan, native: adopted.layer, mapped: false,
      router: { native: adopted.router!, hasWeights: meta.router !== null, dtype: meta.router, bias: meta.routerBias },
    };
    return new MoeLayer(undefined as unknown as MoeLayerOptions);
  }

  /**
   * Writes the packed layer (weights, biases, router, configuration) to a packed-layer file at
   * `path`, on the addon's dispatcher thread: into a temporary file next to it, renamed over
   * `path` when complete, so a reader never sees a partial file. `MoeLayer.open(path)` maps it
   * back without packing. Rejects with a LayerFileError (`ERR_MOE_LAYER_FILE_IO`) if it cannot
   * be written.
   */
  async save(path: string): Promise<void> {
    const native = this.#live();
    const file = filePath(path);
    this.#inflight++;
    try {
      await binding.saveLayer(native, this.#router, file, JSON.stringify(this.#meta));
    } catch (err) {
      throw layerFileError(err, file);
    } finally {
      if (--this.#inflight === 0 && this.#disposed) this.#release();
    }
  }

  /**
   * A layer from a packed-layer file written by `save`: mapped read-only and shared (no copy,
   * no packing; every process mapping the file shares its page-cache copy), on the dispatcher
   * thread. Checked before use (header, sections, checksums with `verify`); a file of another
   * format version, architecture or panel layout rejects with `ERR_MOE_LAYER_FILE_INCOMPATIBLE`,
   * a damaged one with `ERR_MOE_LAYER_FILE`. The file must not be changed while mapped (a
   * rename over it is fine).
   */
  static async open(path: string, options: OpenLayerOptions = {}): Promise<MoeLayer> {
    const file = filePath(path);
    const o = object(options, 'options');
    const threads = o.threads === undefined ? binding.cpuInfo().threads : threadCount(o.threads, 'options.threads');
    const verify = optionalBoolean(o.verify, 'options.verify', true);
    let opened: Awaited<ReturnType<typeof binding.openLayer>>;
    try {
      opened = await binding.openLayer(file, threads, verify);
    } catch (err) {
      throw layerFileError(err, file);
    }
    try {
      adopting = { plan: planFromFile(file, opened.blobs, threads), native: opened.layer, mapped: opened.mapped };
      return new MoeLayer(undefined as unknown as MoeLayerOptions);
    } catch (err) {
      adopting = null;
      opened.layer.dispose();
      throw err;
    }
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
   * from there on (and for bf16 hidden where the prefill kernel takes bf16 rows), and `tiles`
   * (AMX, kernel set 'amx') from `tilesMinTokensPerExpert`.
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
    /** The experts held, when a subset. */
    experts: Uint32Array | null;
    isW13Interleaved: boolean; transposed: boolean; swigluAlpha: number; swigluLimit: number; threads: number;
    weightDtype: WeightDtype;
  };
  w13: NativeTensor; w2: NativeTensor; w13Bias: NativeTensor | null; w2Bias: NativeTensor | null;
  routing: Routing; routingArg: ReturnType<typeof checkRouting>;
  routerWeight: WeightArray | null; routerBias: WeightArray | null;
  /** The error to throw for a packing error of the addon. */
  refusal(err: unknown): unknown;
}

/** What the constructor needs of a plan when the native layer is made elsewhere (create, open). */
type AdoptedPlan = Pick<LayerPlan, 'config' | 'routing' | 'routingArg' | 'routerWeight' | 'routerBias'>;

/** A layer packed by MoeLayer.create or mapped by MoeLayer.open, handed to the constructor. */
let adopting: {
  plan: AdoptedPlan; native: NativeLayer; mapped?: boolean;
  /** A router made elsewhere (adopt): used as it is. */
  router?: { native: NativeRouter; hasWeights: boolean; dtype: 'f32' | 'bf16' | null; bias: boolean };
} | null = null;

// ---------------------------------------------------------------------------------------------
// Packed-layer files: the facade's part (the blob "meta" and the router's blobs)

const LAYER_META_FORMAT = 'moe-cpu layer 1';

/** The blob "meta" of a packed-layer file: the facade's view of the layer (JSON). */
interface LayerMeta {
  format: typeof LAYER_META_FORMAT;
  numExperts: number; hiddenSize: number; intermediateSize: number; topK: number;
  experts: number[] | null;
  activation: Activation; isW13Interleaved: boolean; weightDtype: WeightDtype; swigluAlpha: number; swigluLimit: number;
  /** The routing rule; its correction bias (when true) is the blob "router.correction". */
  routing: Omit<ReturnType<typeof checkRouting>, 'correctionBias'> & { correctionBias: boolean };
  /** The router weights' dtype in the blob "router.weight", or null without a router. */
  router: 'f32' | 'bf16' | null;
  routerBias: boolean;
}

function filePath(path: unknown): string {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw typeError(`path: expected a file path (a non-empty string), got ${describe(path)}`);
  }
  return path;
}

/** A native error of a packed-layer file as a LayerFileError; anything else as it is. */
function layerFileError(err: unknown, path: string): unknown {
  const code = (err as { code?: string } | null)?.code;
  if (code === 'ERR_MOE_LAYER_FILE' || code === 'ERR_MOE_LAYER_FILE_INCOMPATIBLE' || code === 'ERR_MOE_LAYER_FILE_IO') {
    return new LayerFileError(code as LayerFileErrorCode, path, (err as Error).message);
  }
  return err;
}

/** The constructor's plan from a file's blobs, each checked (a file that lies is ERR_MOE_LAYER_FILE). */
function planFromFile(path: string, blobs: Record<string, ArrayBuffer>, threads: number): AdoptedPlan {
  const bad = (why: string) => new LayerFileError('ERR_MOE_LAYER_FILE', path, `${path}: ${why}`);
  let meta: LayerMeta;
  try {
    meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(blobs.meta ?? new ArrayBuffer(0))) as LayerMeta;
  } catch {
    throw bad('no readable layer description (blob "meta")');
  }
  return planFromMeta(meta, threads, (name) => blobs[name], undefined, bad);
}

/**
 * The constructor's plan from a layer description and its arrays (`array(name)`: the blobs
 * "router.weight", "router.bias", "router.correction"; or the correction bias given); `bad`
 * makes the error for a description that does not hold. Without `routerArrays` (a layer
 * adopted from another thread brings its native router) the router's arrays are not read.
 */
function planFromMeta(meta: LayerMeta, threads: number, array: (name: string) => ArrayBuffer | undefined,
  correction: Float32Array | undefined, bad: (why: string) => Error, routerArrays = true): AdoptedPlan {
  if (meta === null || typeof meta !== 'object' || meta.format !== LAYER_META_FORMAT) {
    throw bad(`layer description of format ${describe((meta as { format?: unknown } | null)?.format)}, expected '${LAYER_META_FORMAT}'`);
  }
  const floats = (name: string, length: number): Float32Array => {
    const b = array(name);
    if (!b || b.byteLength !== length * 4) throw bad(`blob "${name}": expected ${length * 4} bytes, got ${b ? b.byteLength : 'none'}`);
    return new Float32Array(b);
  };
  try {
    const E = positiveInteger(meta.numExperts, 'numExperts'), H = positiveInteger(meta.hiddenSize, 'hiddenSize');
    const K = checkTopK(meta.topK, E);
    const r = meta.routing;
    const routing: Routing = r.mode === 'sigmoid-grouped'
      ? {
        mode: r.mode, numGroups: r.numGroups, topkGroups: r.topkGroups, renormalize: r.renormalize,
        routedScalingFactor: r.routedScalingFactor, ...(r.correctionBias ? { correctionBias: correction ?? floats('router.correction', E) } : {}),
      }
      : r.mode === 'softmax-topk' ? { mode: r.mode, renormalize: r.renormalize } : { mode: 'topk-softmax' };
    let routerWeight: WeightArray | null = null;
    const weight = array('router.weight');
    if (meta.router !== null && weight) {
      const bytes = meta.router === 'bf16' ? 2 : 4;
      if (weight.byteLength !== E * H * bytes) throw bad(`blob "router.weight": expected ${E * H * bytes} bytes, got ${weight.byteLength}`);
      routerWeight = meta.router === 'bf16' ? new Uint16Array(weight) : new Float32Array(weight);
    } else if (meta.router !== null && routerArrays) {
      throw bad('blob "router.weight": missing');
    }
    return {
      config: {
        numExperts: E, hiddenSize: H, intermediateSize: positiveInteger(meta.intermediateSize, 'intermediateSize'), topK: K,
        experts: meta.experts === null || meta.experts === undefined ? null : expertSubset(meta.experts, E),
        activation: oneOf(meta.activation, 'activation', ACTIVATIONS), isW13Interleaved: boolean(meta.isW13Interleaved, 'isW13Interleaved'),
        transposed: false, swigluAlpha: finiteNumber(meta.swigluAlpha, 'swigluAlpha', SWIGLU_ALPHA),
        swigluLimit: checkSwigluLimit(meta.swigluLimit, 'swigluLimit'), threads,
        weightDtype: oneOf(meta.weightDtype, 'weightDtype', ['f32', 'bf16', 'f16', 'mxfp4', 'int8'] as const),
      },
      routing, routingArg: checkRouting(routing, E, K), routerWeight,
      routerBias: meta.routerBias && routerArrays ? floats('router.bias', E) : null,
    };
  } catch (err) {
    if (err instanceof LayerFileError) throw err;
    throw bad(`bad layer description: ${(err as Error).message}`);
  }
}

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

    const held = o.experts === undefined ? null : expertSubset(o.experts, E);
    // The experts' tensors: those of the experts held ([S, ...] for a subset of S).
    const S = held ? held.length : E;
    const expertsDim = held ? `S=${S} experts held` : `E=${E}`;
    const w13Shape: TensorShape = { outer: [held ? ['S', S] : ['E', E], ['2I', 2 * I]], depthName: 'H', depth: H };
    const w2Shape: TensorShape = { outer: [held ? ['S', S] : ['E', E], ['H', H]], depthName: 'I', depth: I };
    const w13 = layerWeight(o.w13, 'w13', dtype, w13Shape, transposed);
    const w2 = layerWeight(o.w2, 'w2', dtype, w2Shape, transposed);
    const w13Bias = o.w13Bias === undefined ? null : layerBias(o.w13Bias, 'w13Bias', dtype, S * 2 * I, `[${expertsDim}, 2I=${2 * I}]`);
    const w2Bias = o.w2Bias === undefined ? null : layerBias(o.w2Bias, 'w2Bias', dtype, S * H, `[${expertsDim}, H=${H}]`);
    const routerWeight = o.routerWeight === undefined ? null : routerArray(o.routerWeight, 'routerWeight', E * H, `[E=${E}, H=${H}]`);
    if (o.routerBias !== undefined && !routerWeight) {
      throw typeError('routerBias: given without routerWeight; pass routerWeight [E, H] too, or drop routerBias');
    }
    const routerBias = o.routerBias === undefined ? null : routerArray(o.routerBias, 'routerBias', E, `[E=${E}]`);

  return {
    config: {
      numExperts: E, experts: held, hiddenSize: H, intermediateSize: I, topK: K, activation,
      isW13Interleaved: interleaved, transposed, swigluAlpha: alpha, swigluLimit: limit, threads, weightDtype: dtype,
    },
    w13, w2, w13Bias, w2Bias, routing, routingArg, routerWeight, routerBias,
    refusal: (err) => (dtype === 'int8' ? int8Refusal(err, [['w13', w13], ['w2', w2]], 'weightDtype') : err),
  };
}

/** `experts`: ids strictly increasing in [0, E), or { first, count }; as a Uint32Array. */
export function expertSubset(value: unknown, E: number): Uint32Array {
  if (Array.isArray(value)) {
    if (value.length === 0) throw rangeError('experts: expected at least one expert id, got []');
    const ids = new Uint32Array(value.length);
    value.forEach((id, i) => {
      if (typeof id !== 'number') throw typeError(`experts[${i}]: expected an expert id, got ${describe(id)}`);
      if (!Number.isInteger(id) || id < 0 || id >= E) throw rangeError(`experts[${i}]: expected an expert id in [0, ${E}), got ${id}`);
      if (i > 0 && id <= ids[i - 1]) throw rangeError(`experts[${i}]: expected ids in increasing order, got ${id} after ${ids[i - 1]}`);
      ids[i] = id;
    });
    return ids;
  }
  const r = object(value, 'experts');
  if (typeof r.first !== 'number') throw typeError(`experts.first: expected a number, got ${describe(r.first)}`);
  if (!Number.isInteger(r.first) || r.first < 0 || r.first >= E) throw rangeError(`experts.first: expected an expert id in [0, ${E}), got ${r.first}`);
  const count = positiveInteger(r.count, 'experts.count');
  if (r.first + count > E) throw rangeError(`experts.count: expected at most ${E - r.first} (experts ${r.first} … ${E - 1}), got ${count}`);
  return Uint32Array.from({ length: count }, (_, i) => (r.first as number) + i);
}

/** routerWeight / routerBias: Float32Array or bf16 Uint16Array of `length` elements (a Float16Array is widened to f32). */
function routerArray(value: unknown, name: string, length: number, shape: string): WeightArray {
  const array = routerValues(value, name);
  if (array.length !== length) throw rangeError(`${name}: expected length ${length} (${shape}), got ${array.length}`);
  return array;
}
