// The memory a CLI run will need, stated on stderr before it allocates anything: the packed
// layers (the panel arithmetic of checkpoint/formats), what they are packed from, and the
// activations of the largest forward.
import { availableMemory } from '../checkpoint/memory';
import { formatBytes } from './inspect';

export interface MemoryPart {
  /** Its name in the --json object, e.g. 'packedWeights'. */
  key: string;
  /** What the bytes are, in the text, e.g. 'packed weights'. */
  what: string;
  bytes: number;
}

export interface MemoryNeeds {
  /** The sum of the parts: the most the run holds at once. */
  bytes: number;
  parts: MemoryPart[];
  /** Memory available now (MemAvailable, os.freemem() or MOE_CPU_AVAILABLE_MEMORY) and where the figure comes from. */
  available: number;
  availableSource: string;
  fits: boolean;
}

export function memoryNeeds(parts: MemoryPart[]): MemoryNeeds {
  const bytes = parts.reduce((a, p) => a + p.bytes, 0);
  const available = availableMemory();
  return { bytes, parts, available: available.bytes, availableSource: available.source, fits: bytes <= available.bytes };
}

export interface ForwardShape {
  tokens: number;
  hiddenSize: number;
  intermediateSize: number;
  numExperts: number;
  topK: number;
  /** Intermediate size of a shared expert, 0 without one. */
  sharedIntermediateSize: number;
  /** Bytes of one activation value: 4 (f32) or 2 (bf16). */
  hiddenBytes: number;
  /** Output arrays kept at once (one per layer run in turn). */
  outputs: number;
}

/**
 * Bytes of one forward's arrays: input and outputs [T, H], router logits [T, E] and route
 * [T, K] ids + weights, and the layer's scratch of T·K·(I + H) floats (the shared expert's
 * T·(2·Is + H) on top).
 */
export function activationBytes(s: ForwardShape): number {
  const { tokens: T, hiddenSize: H, intermediateSize: I, numExperts: E, topK: K } = s;
  const io = T * H * s.hiddenBytes * (1 + s.outputs);
  const routing = T * E * 4 + T * K * 8;
  const scratch = 4 * (T * K * (I + H) + (s.sharedIntermediateSize ? T * (2 * s.sharedIntermediateSize + H) : 0));
  return io + routing + scratch;
}

/** "needs ~X: a Y + b Z; W available (source)". */
export function describeNeeds(n: MemoryNeeds): string {
  return `needs ~${formatBytes(n.bytes)}: ${n.parts.map((p) => `${p.what} ${formatBytes(p.bytes)}`).join(' + ')}; ` +
    `${formatBytes(n.available)} available (${n.availableSource})`;
}

/** The JSON form: every figure in bytes. */
export function needsReport(n: MemoryNeeds): Record<string, unknown> {
  return {
    bytes: n.bytes, parts: Object.fromEntries(n.parts.map((p) => [p.key, p.bytes])),
    availableBytes: n.available, availableSource: n.availableSource, fits: n.fits,
  };
}
