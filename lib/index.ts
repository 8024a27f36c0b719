// moe-cpu: the Mixture-of-Experts layer of modern LLMs, on the CPU, from Node.js.
export {
  MoeLayer, type MoeLayerOptions, type MoeLayerOptionsOf, type MoeLayerBaseOptions, type WeightsOf, type BiasOf, type ValuesOf,
  type ForwardOptions, type OpenLayerOptions, type SharedLayerHandle, type Route, type WeightInput, type BiasInput, type PerExpertWeights,
  type PerExpertMxfp4Tensor, type PerExpertInt8Tensor, type Float16ArrayLike, type KernelChoice,
} from './layer';
export { ForwardBatcher, type BatcherOptions } from './batcher';
export {
  quantize, dequantize, type WeightDtype, type QuantizedFormat, type Mxfp4Tensor, type Int8Tensor, type QuantizedTensor,
} from './quantize';
export { deinterleaveW13, interleaveW13, type W13Shape } from './layout';
export {
  swigluoai, siluAndMul, geluAndMul, type Activation, type GatedShape, type SwigluoaiOptions, type GeluAndMulOptions,
} from './activation';
export {
  selectExperts, type Routing, type TopkSoftmaxRouting, type SoftmaxTopkRouting, type SigmoidGroupedRouting, type RouteIds,
  type SelectExpertsOptions,
} from './routing';
export { toBf16, fromBf16 } from './bf16';
export { cpuInfo, type CpuInfo, type KernelSet, type MicroKernelInfo } from './cpu';
export type { WeightArray } from './validate';
export {
  openCheckpoint, loadMoeLayer, Checkpoint, type LoadMoeLayerOptions, type LoadWeightDtype, type MoeLayerInfo, type OpenCheckpointOptions,
} from './checkpoint/checkpoint';
export { MoeBlock, type MoeBlockOptions } from './checkpoint/block';
export { CheckpointError, type CheckpointErrorCode } from './checkpoint/errors';
export { LayerFileError, type LayerFileErrorCode, type MoeErrorCode } from './errors';
export type { CheckpointConfig, Family as CheckpointFamily, SharedExpertConfig } from './checkpoint/config';
export type { TensorGroup } from './checkpoint/families';
export type {
  LoadMoeLayersOptions, LoadProgress, EstimateOptions, CheckpointEstimate,
} from './checkpoint/checkpoint';
