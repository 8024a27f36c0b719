// MoeLayerOptions: the weight and bias array types follow weightDtype; optional options take
// `undefined` (exactOptionalPropertyTypes); the ESM entry's types. Each `@ts-expect-error` is
// a mistake the compiler must catch.
import moeCpu, {
  MoeLayer, cpuInfo, dequantize, quantize, type BatcherOptions, type EstimateOptions, type ForwardOptions, type Float16ArrayLike,
  type GeluAndMulOptions, type KernelSet, type LoadMoeLayerOptions, type LoadMoeLayersOptions, type MoeBlockOptions,
  type MoeLayerBaseOptions, type MoeLayerOptions, type MoeLayerOptionsOf, type OpenCheckpointOptions,
  type SigmoidGroupedRouting, type SwigluoaiOptions, type W13Shape, type WeightDtype,
} from 'moe-cpu';

declare const f32: Float32Array;
declare const u16: Uint16Array;
declare const f16: Float16ArrayLike;
declare const maybeThreads: number | undefined;

const shape = { numExperts: 4, hiddenSize: 64, intermediateSize: 64, topK: 2, activation: 'silu', isW13Interleaved: false } as const;

// Each weightDtype with the arrays it takes.
new MoeLayer({ ...shape, weightDtype: 'f32', w13: f32, w2: f32, w13Bias: f32, w2Bias: f32 });
new MoeLayer({ ...shape, weightDtype: 'bf16', w13: u16, w2: u16, w13Bias: u16, w2Bias: u16 });
new MoeLayer({ ...shape, weightDtype: 'f16', w13: f32, w2: u16, w13Bias: u16, w2Bias: f32 });
new MoeLayer({ ...shape, weightDtype: 'mxfp4', w13: f32, w2: u16 });
new MoeLayer({ ...shape, weightDtype: 'int8', w13: u16, w2: f32, w13Bias: u16 });
new MoeLayer({ ...shape, weightDtype: 'bf16', w13: f16, w2: f16, w13Bias: f16, routerWeight: f16, routerBias: f16 });

// @ts-expect-error Float32Array weights for a bf16 layer (a TypeError at run time)
new MoeLayer({ ...shape, weightDtype: 'bf16', w13: f32, w2: u16 });
// @ts-expect-error Uint16Array weights for an f32 layer
new MoeLayer({ ...shape, weightDtype: 'f32', w13: f32, w2: u16 });
// @ts-expect-error a Float32Array bias for a bf16 layer
new MoeLayer({ ...shape, weightDtype: 'bf16', w13: u16, w2: u16, w13Bias: f32 });
// @ts-expect-error a Uint16Array bias for an f32 layer
new MoeLayer({ ...shape, weightDtype: 'f32', w13: f32, w2: f32, w2Bias: u16 });
// @ts-expect-error weightDtype is required
new MoeLayer({ ...shape, w13: f32, w2: f32 });
// @ts-expect-error isW13Interleaved is required: no default layout
new MoeLayer({ numExperts: 4, hiddenSize: 64, intermediateSize: 64, topK: 2, activation: 'silu', weightDtype: 'f32', w13: f32, w2: f32 });
// @ts-expect-error not an activation
new MoeLayer({ ...shape, activation: 'relu', weightDtype: 'f32', w13: f32, w2: f32 });

// Pre-quantized tensors only for their own format.
const mx = quantize(f32, [512, 64], 'mxfp4');
const q8 = quantize(f32, [512, 64], 'int8');
new MoeLayer({ ...shape, weightDtype: 'mxfp4', w13: mx, w2: mx });
new MoeLayer({ ...shape, weightDtype: 'int8', w13: q8, w2: q8 });
// @ts-expect-error an int8 tensor for an mxfp4 layer
new MoeLayer({ ...shape, weightDtype: 'mxfp4', w13: q8, w2: mx });
// @ts-expect-error an mxfp4 tensor for an int8 layer
new MoeLayer({ ...shape, weightDtype: 'int8', w13: q8, w2: mx });
// @ts-expect-error a pre-quantized tensor for a bf16 layer
new MoeLayer({ ...shape, weightDtype: 'bf16', w13: mx, w2: u16 });

// dequantize: each format with its own input.
dequantize(mx, [512, 64], 'mxfp4');
dequantize(f16, [512, 64], 'f16');
dequantize(u16, [512, 64], 'bf16');
const decoded: Float32Array = dequantize(q8, [512, 64], 'int8');
// @ts-expect-error the values come back as f32
const notBf16: Uint16Array = dequantize(q8, [512, 64], 'int8');

// Per expert: E arrays of one type, or a pre-quantized tensor per field.
new MoeLayer({ ...shape, weightDtype: 'f32', w13: [f32, f32, f32, f32], w2: [f16, f16, f16, f16] });
new MoeLayer({ ...shape, weightDtype: 'mxfp4', w13: { blocks: [mx.blocks], scales: [mx.scales] }, w2: [u16] });
new MoeLayer({ ...shape, weightDtype: 'int8', w13: { codes: [q8.codes], scales: [q8.scales] }, w2: q8 });
// @ts-expect-error per-expert arrays of mixed types
new MoeLayer({ ...shape, weightDtype: 'f16', w13: [f32, u16], w2: f32 });
// @ts-expect-error per-expert bf16 arrays for an f32 layer
new MoeLayer({ ...shape, weightDtype: 'f32', w13: [u16], w2: f32 });
// @ts-expect-error biases are never per expert
new MoeLayer({ ...shape, weightDtype: 'f32', w13: f32, w2: f32, w13Bias: [f32] });

// A weightDtype known only at run time: MoeLayerOptionsOf<D> keeps the pairing in generic code.
function f32Or16<D extends 'f16' | 'mxfp4' | 'int8'>(weightDtype: D): MoeLayerOptionsOf<D> {
  return { ...shape, weightDtype, w13: f32, w2: f32 };
}
new MoeLayer(f32Or16('int8'));
declare const anyDtype: WeightDtype;
// @ts-expect-error Float32Array weights are not taken by every weightDtype ('bf16')
new MoeLayer({ ...shape, weightDtype: anyDtype, w13: f32, w2: f32 });

// exactOptionalPropertyTypes: every optional option takes `undefined`, e.g. `x ?? undefined`.
const options: MoeLayerOptions = {
  ...shape, weightDtype: 'f32', w13: f32, w2: f32, w13Bias: undefined, w2Bias: undefined, transposed: undefined,
  swigluAlpha: undefined, swigluLimit: undefined, routing: undefined, threads: maybeThreads ?? undefined,
  routerWeight: undefined, routerBias: undefined,
};
new MoeLayer(options);

/** Keys of T whose property may be left out. */
type OptionalKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? K : never }[keyof T];
/** The optional keys of T that do not take `undefined` (never when all do). */
type RejectsUndefined<T> = { [K in OptionalKeys<T>]-?: { [P in K]: undefined } extends Pick<T, K> ? never : K }[OptionalKeys<T>];
/** Compiles only when A is never. */
type None<A extends never> = A;
export type EveryOptionalTakesUndefined = [
  None<RejectsUndefined<MoeLayerBaseOptions>>, None<RejectsUndefined<MoeLayerOptionsOf<'f32'>>>,
  None<RejectsUndefined<MoeLayerOptionsOf<'mxfp4'>>>, None<RejectsUndefined<ForwardOptions>>,
  None<RejectsUndefined<BatcherOptions>>, None<RejectsUndefined<W13Shape>>, None<RejectsUndefined<SwigluoaiOptions>>,
  None<RejectsUndefined<GeluAndMulOptions>>, None<RejectsUndefined<SigmoidGroupedRouting>>,
  None<RejectsUndefined<LoadMoeLayerOptions>>, None<RejectsUndefined<LoadMoeLayersOptions>>,
  None<RejectsUndefined<EstimateOptions>>, None<RejectsUndefined<OpenCheckpointOptions>>,
  None<RejectsUndefined<MoeBlockOptions>>,
];
// @ts-expect-error the check above bites: an optional `?: number` without `| undefined`
export type CheckBites = None<RejectsUndefined<{ a?: number }>>;

// cpuInfo().kernel is one of the kernel set names.
const kernel: KernelSet = cpuInfo().kernel;
const sets: KernelSet[] = ['scalar', 'avx2', 'avx512', 'neon', 'sve'];
sets.includes(kernel);
// @ts-expect-error no such kernel set
const typo: KernelSet = 'avx3';
// @ts-expect-error a comparison that can never be true
if (cpuInfo().kernel === 'avx512f') throw new Error('unreachable');
cpuInfo().ukernels.map((u): KernelSet => u.kernelSet);

// The default export is the whole API.
const layer: MoeLayer = new moeCpu.MoeLayer(options);
export { layer, typo, decoded, notBf16 };
