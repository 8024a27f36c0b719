// The native addon's interface, and the addon itself (found by lib/native-loader.ts).
import { loadNativeAddon } from './native-loader';
import type { RoutingArg } from './routing';


/** The raw binding (cpp/addon/addon.cc). Callers are the facade modules only. */
export interface NativeBinding {
  cpuInfo(): {
    arch: string; features: string[]; kernel: string; kernels: string[]; threads: number;
    ukernels: { name: string; weights: string; activations: string; regime: string; kernelSet: string; runnable: boolean }[];
  };
  permuteW13(w: Float32Array | Uint16Array, out: Float32Array | Uint16Array, outer: number,
    intermediate: number, inner: number, toInterleaved: boolean): void;
  gatedActivation(x: Float32Array | Uint16Array, out: Float32Array | Uint16Array, tokens: number,
    intermediate: number, isInterleaved: boolean, kind: string, alpha: number, limit: number): void;
  selectExperts(logits: Float32Array, tokens: number, numExperts: number, topK: number,
    routing: RoutingArg, ids: Int32Array, weights: Float32Array): void;
  convertBf16(src: Float32Array | Uint16Array, dst: Float32Array | Uint16Array): void;
  /** MXFP4 blocks [n, 16] + e8m0 scales [n] -> 32·n values (f32, or bf16 bit patterns). */
  decodeMxfp4(blocks: Uint8Array, scales: Uint8Array, out: Float32Array | Uint16Array): void;
  /** decodeMxfp4 on the dispatcher thread (checkpoint loads); the arrays must not change until it settles. */
  decodeMxfp4Async(blocks: Uint8Array, scales: Uint8Array, out: Float32Array | Uint16Array): Promise<void>;
  /**
   * On the dispatcher thread: f32 -> bf16 and bf16 -> f32 (as convertBf16), f16 bits -> f32
   * (exact) or -> bf16 (one rounding). dst: Float32Array, or Uint16Array for bf16.
   */
  convertAsync(src: Float32Array | Uint16Array, srcFormat: 'f32' | 'bf16' | 'f16', dst: Float32Array | Uint16Array): Promise<void>;
  /** f32 rows [rows, depth] -> blocks and scales as checkpoints store them (mxfp4: u8 codes and e8m0 scales; int8: i8 codes and f16 scales). */
  quantize(format: 'mxfp4' | 'int8', values: Float32Array, rows: number, depth: number,
    codes: Uint8Array | Int8Array, scales: Uint8Array | Uint16Array): void;
  /** The exact decode of a tensor in any format to f32. */
  dequantize(format: string, codes: TensorData, scales: Uint8Array | Uint16Array | null, rows: number, depth: number,
    out: Float32Array): void;
  NativeLayer: new (config: object, w13: NativeTensor, w2: NativeTensor, w13Bias: NativeTensor | null,
    w2Bias: NativeTensor | null) => NativeLayer;
  createNativeLayer: (config: object, w13: NativeTensor, w2: NativeTensor, w13Bias: NativeTensor | null,
    w2Bias: NativeTensor | null) => Promise<NativeLayer>;
  /** Writes a packed-layer file (temporary file, then rename); `meta` is stored as the blob "meta". */
  saveLayer(layer: NativeLayer, router: NativeRouter | null, path: string, meta: string): Promise<void>;
  /** Maps a packed-layer file; blobs: "meta", "router.weight", "router.bias", "router.correction" as present. */
  /** Registers the native layer and router for adoptLayer in another thread; returns the handle number. */
  shareLayer(layer: NativeLayer, router: NativeRouter | null): number;
  /** Takes a shared layer out of the registry (once), in this environment. */
  adoptLayer(handle: number): { layer: NativeLayer; router: NativeRouter | null };
  openLayer(path: string, threads: number, verify: boolean): Promise<{ layer: NativeLayer; mapped: boolean; blobs: Record<string, ArrayBuffer> }>;
  /** The routing rule and, when given, router weights [E, H] (+ bias [E]), copied. */
  NativeRouter: new (weight: Float32Array | Uint16Array | null, numExperts: number, hiddenSize: number,
    bias: Float32Array | null, routing: RoutingArg, topK: number) => NativeRouter;
  /**
   * One block forward on the dispatcher thread: route (from logits, or the router's weights
   * when neither logits nor ids/weights are given), routed experts, shared expert and gate.
   */
  forwardBlock<T extends Float32Array | Uint16Array>(experts: NativeLayer, router: NativeRouter,
    shared: NativeLayer | null, gate: NativeRouter | null, hidden: T, tokens: number, logits: Float32Array | null,
    ids: Int32Array | null, weights: Float32Array | null, out: T, cancel?: Int32Array): Promise<T>;
  /** As forwardBlock, on the calling thread; returns out. */
  forwardBlockSync<T extends Float32Array | Uint16Array>(experts: NativeLayer, router: NativeRouter,
    shared: NativeLayer | null, gate: NativeRouter | null, hidden: T, tokens: number, logits: Float32Array | null,
    ids: Int32Array | null, weights: Float32Array | null, out: T): T;
}

export interface NativeRouter {
  readonly bytes: number;
  dispose(): void;
}

export type TensorData = Float32Array | Uint16Array | Uint8Array | Int8Array;
/**
 * A weight tensor as the addon takes it: values or codes in `format`, with scales for mxfp4 and
 * int8; for w13 and w2, either field may instead be an array of one typed array per expert (both
 * fields alike).
 */
export interface NativeTensor {
  format: string;
  data: TensorData | TensorData[];
  scales?: Uint8Array | Uint16Array | (Uint8Array | Uint16Array)[];
}

/** The micro-kernels a layer runs (`layer.kernels`); names as in `cpuInfo().ukernels`. */
export interface KernelChoice {
  /**
   * Few tokens per selected expert (bound by the weight stream): f32 activations times the
   * exactly decoded weights, e.g. 'gemm_mxfp4_f32__avx512_4x6' (gemm_<weights>_<activations>__<isa>_<tile>).
   */
  decode: string;
  /** Many tokens per selected expert (bound by arithmetic); may take bf16 activation rows, e.g. 'gemm_mxfp4_bf16__avx512bf16_4x6_panel'. */
  prefill: string;
  /** From this many tokens per selected expert (T·K / experts hit, on average) a forward uses `prefill`. */
  prefillMinTokensPerExpert: number;
  /**
   * The matrix-unit kernel (kernel set 'amx': Intel AMX tiles), used in place of `prefill` from
   * `tilesMinTokensPerExpert` tokens per selected expert, e.g. 'gemm_bf16_bf16__amx_32x32';
   * null where the kernel set has none.
   */
  tiles: string | null;
  /** From this many tokens per selected expert a forward uses `tiles` (0 when `tiles` is null). */
  tilesMinTokensPerExpert: number;
}

export interface NativeLayer {
  readonly bytes: number;
  readonly kernels: KernelChoice;
  dispose(): void;
}

export const binding: NativeBinding = loadNativeAddon<NativeBinding>(__dirname);
