import { binding } from './binding';
import type { WeightDtype } from './quantize';

export interface CpuInfo {
  /** 'x64', 'arm64', … */
  arch: string;
  /** Instruction-set features the CPU and OS support, e.g. 'avx2', 'avx512bf16', 'sve'. */
  features: string[];
  /** The kernel set in use ('scalar', 'avx2', 'avx512', …); MOE_CPU_ISA=name forces one. */
  kernel: string;
  /** Every kernel set this build can run on this CPU, best last. */
  kernels: string[];
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
  kernelSet: string;
  /** Whether this CPU can run it. */
  runnable: boolean;
}

export function cpuInfo(): CpuInfo {
  return binding.cpuInfo() as CpuInfo;
}
