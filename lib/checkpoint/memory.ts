// How much memory a load may use: MemAvailable of /proc/meminfo on Linux (what the kernel says
// can be allocated without swapping: free memory plus reclaimable page cache), os.freemem()
// elsewhere. MOE_CPU_AVAILABLE_MEMORY (bytes) overrides both — for tests and experiments.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { rangeError } from '../errors';

export interface AvailableMemory {
  bytes: number;
  /** Where the figure comes from, for messages. */
  source: string;
}

export const AVAILABLE_MEMORY_ENV = 'MOE_CPU_AVAILABLE_MEMORY';

export function availableMemory(): AvailableMemory {
  const env = process.env[AVAILABLE_MEMORY_ENV];
  if (env !== undefined && env !== '') {
    const bytes = Number(env);
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw rangeError(`${AVAILABLE_MEMORY_ENV}: expected a number of bytes, got '${env}'`);
    }
    return { bytes, source: AVAILABLE_MEMORY_ENV };
  }
  if (process.platform === 'linux') {
    try {
      const m = /^MemAvailable:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
      if (m) return { bytes: Number(m[1]) * 1024, source: 'MemAvailable in /proc/meminfo' };
    } catch {
      // fall through: no /proc (a container without it)
    }
  }
  return { bytes: os.freemem(), source: 'os.freemem()' };
}

/** Peak resident memory of this process so far: VmHWM of /proc/self/status on Linux, else getrusage's maxRSS. */
export function peakRss(): number {
  if (process.platform === 'linux') {
    try {
      const m = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
      if (m) return Number(m[1]) * 1024;
    } catch {
      // fall through
    }
  }
  return process.resourceUsage().maxRSS * 1024;
}
