// Benchmark presets: the MoE shapes of docs/spec.md "Shapes that matter".
import type { Activation } from './activation';
import type { Routing } from './routing';

export interface Preset {
  name: string;
  hiddenSize: number;
  intermediateSize: number;
  numExperts: number;
  topK: number;
  activation: Activation;
  isW13Interleaved: boolean;
  biases: boolean;
  routing: Routing;
}

export const PRESETS: readonly Preset[] = [
  { name: 'gpt-oss-20b', hiddenSize: 2880, intermediateSize: 2880, numExperts: 32, topK: 4, activation: 'swigluoai',
    isW13Interleaved: true, biases: true, routing: { mode: 'topk-softmax' } },
  { name: 'gpt-oss-120b', hiddenSize: 2880, intermediateSize: 2880, numExperts: 128, topK: 4, activation: 'swigluoai',
    isW13Interleaved: true, biases: true, routing: { mode: 'topk-softmax' } },
  { name: 'mixtral-8x7b', hiddenSize: 4096, intermediateSize: 14336, numExperts: 8, topK: 2, activation: 'silu',
    isW13Interleaved: false, biases: false, routing: { mode: 'softmax-topk', renormalize: true } },
  { name: 'qwen3-30b-a3b', hiddenSize: 2048, intermediateSize: 768, numExperts: 128, topK: 8, activation: 'silu',
    isW13Interleaved: false, biases: false, routing: { mode: 'softmax-topk', renormalize: true } },
  { name: 'deepseek-v3', hiddenSize: 7168, intermediateSize: 2048, numExperts: 256, topK: 8, activation: 'silu',
    isW13Interleaved: false, biases: false,
    routing: { mode: 'sigmoid-grouped', numGroups: 8, topkGroups: 4, renormalize: true, routedScalingFactor: 2.5 } },
];
