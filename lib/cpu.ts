import { binding } from './binding';

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
}

export function cpuInfo(): CpuInfo {
  return binding.cpuInfo();
}
