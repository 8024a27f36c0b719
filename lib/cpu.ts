import { binding } from './binding';
import type { WeightDtype } from './quantize';

/**
 * The kernel sets (instruction-set families) moe-cpu is built with: `'scalar'` everywhere,
 * `'avx2'`, `'avx512'` and `'amx'` (Intel AMX tiles for prefill, the rest on avx512; Linux) on
 * x64, `'neon'` and `'sve'` on arm64 (SVE on Linux). `MOE_CPU_ISA` takes one of these names.
 */
export type KernelSet = 'scalar' | 'avx2' | 'avx512' | 'amx' | 'neon' | 'sve';

/** What `cpuInfo()` reports. */
export interface CpuInfo {
  /** 'x64', 'arm64', … */
  arch: string;
  /** Instruction-set features the CPU and OS support, e.g. 'avx2', 'avx512bf16', 'sve'. */
  features: string[];
  /** The kernel set in use: the best this CPU runs, unless MOE_CPU_ISA=name forces one. */
  kernel: KernelSet;
  /** Every kernel set this build can run on this CPU, best last. */
  kernels: KernelSet[];
  /** Physical cores available to this process: the default thread count of a layer. */
  threads: number;
  /** Every micro-kernel compiled into this build, best first, scalar last (what `layer.kernels` picks from). */
  ukernels: MicroKernelInfo[];
}

/** One entry of the micro-kernel registry. */
export interface MicroKernelInfo {
  /** gemm_<weights>_<activations>__<isa>_<rows>x<tokens>[_panel], e.g. 'gemm_int8_f32__avx2_4x3'. */
  name: string;
  /** The packed weight format it reads. */
  weights: WeightDtype;
  /** The activation rows it multiplies: f32, or bf16 (native bf16 dot products). */
  activations: 'f32' | 'bf16';
  /** What it is chosen for: decode (few tokens per expert), prefill (many), or both. */
  regime: 'decode' | 'prefill' | 'any';
  /** The kernel set (MOE_CPU_ISA name) it belongs to. */
  kernelSet: KernelSet;
  /** Whether this CPU can run it. */
  runnable: boolean;
}

/** The CPU, the kernel sets and the micro-kernels of this build; reads a cached answer of the addon. */
export function cpuInfo(): CpuInfo {
  return binding.cpuInfo() as CpuInfo;
}
