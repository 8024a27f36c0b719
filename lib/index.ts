// moe-cpu: the Mixture-of-Experts layer of modern LLMs, on the CPU, from Node.js.
export { MoeLayer, type MoeLayerOptions, type Route, type WeightDtype } from './layer';
export { deinterleaveW13, interleaveW13, type W13Shape } from './layout';
export { swigluoai, siluAndMul, geluAndMul, type Activation, type GatedShape } from './activation';
export { selectExperts, type Routing, type RouteIds, type SelectExpertsOptions } from './routing';
export { toBf16, fromBf16 } from './bf16';
export { cpuInfo, type CpuInfo } from './cpu';
export type { WeightArray } from './validate';
