// ESM entry: the CommonJS build re-exported by name (one implementation, one native addon).
import cjs from '../dist/index.js';

export const {
  MoeLayer,
  deinterleaveW13,
  interleaveW13,
  swigluoai,
  siluAndMul,
  geluAndMul,
  selectExperts,
  toBf16,
  fromBf16,
  cpuInfo,
  quantize,
  dequantize,
  openCheckpoint,
  loadMoeLayer,
  Checkpoint,
  MoeBlock,
  CheckpointError,
  LayerFileError,
  ForwardBatcher,
} = cjs;
export default cjs;
