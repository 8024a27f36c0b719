// One layer's weights in each format a layer can hold: f32 and f16 values, int8 quantized while
// packing, mxfp4 pre-quantized (as gpt-oss checkpoints store it), whole and per expert.
import { MoeLayer, dequantize, quantize, type Mxfp4Tensor, type MoeLayerBaseOptions } from 'moe-cpu';

const E = 4, H = 64, I = 32, K = 2, T = 2;        // mxfp4 and int8: H and I multiples of 32
const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
const w13 = random(E * 2 * I * H), w2 = random(E * H * I);
const shape: MoeLayerBaseOptions = {
  numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', isW13Interleaved: false,
};
const hidden = random(T * H);
const route = { ids: Int32Array.from([0, 1, 2, 3]), weights: Float32Array.from([0.6, 0.4, 0.7, 0.3]) };

/** max|a − b| / max|b|: the precision measure of docs/spec.md. */
function relativeError(a: Float32Array, b: Float32Array): number {
  let diff = 0, ref = 0;
  a.forEach((v, i) => {
    diff = Math.max(diff, Math.abs(v - b[i]!));
    ref = Math.max(ref, Math.abs(b[i]!));
  });
  return diff / ref;
}

const f32 = new MoeLayer({ ...shape, weightDtype: 'f32', w13, w2 });
const f16 = new MoeLayer({ ...shape, weightDtype: 'f16', w13, w2 });      // rounded to f16 while packing
const int8 = new MoeLayer({ ...shape, weightDtype: 'int8', w13, w2 });    // quantized while packing

// Pre-quantized: rows of W13 run along H, rows of W2 along I (blocks of 32 along each row).
const mx13 = quantize(w13, [E * 2 * I, H], 'mxfp4'), mx2 = quantize(w2, [E * H, I], 'mxfp4');
const mxfp4 = new MoeLayer({ ...shape, weightDtype: 'mxfp4', w13: mx13, w2: mx2 });

// The same tensors per expert, given per field: E arrays of blocks, E arrays of scales.
const perExpert = (t: Mxfp4Tensor): { blocks: Uint8Array[]; scales: Uint8Array[] } => ({
  blocks: Array.from({ length: E }, (_, e) => t.blocks.subarray(e * t.blocks.length / E, (e + 1) * t.blocks.length / E)),
  scales: Array.from({ length: E }, (_, e) => t.scales.subarray(e * t.scales.length / E, (e + 1) * t.scales.length / E)),
});
const mxfp4PerExpert = new MoeLayer({ ...shape, weightDtype: 'mxfp4', w13: perExpert(mx13), w2: perExpert(mx2) });

// The reference of a quantized layer: the f32 layer of the exactly decoded weights.
const decoded = new MoeLayer({
  ...shape, weightDtype: 'f32', w13: dequantize(mx13, [E * 2 * I, H], 'mxfp4'), w2: dequantize(mx2, [E * H, I], 'mxfp4'),
});

const reference = f32.forwardSync(hidden, route);
for (const [name, layer] of Object.entries({ f32, f16, int8, mxfp4 })) {
  const err = relativeError(layer.forwardSync(hidden, route), reference);
  console.log(`${name.padEnd(5)} ${String(layer.bytes).padStart(6)} bytes, error against f32 ${err.toExponential(1)}`);
}
const mx = mxfp4.forwardSync(hidden, route);
console.log(`mxfp4 per expert equals mxfp4 whole: ${mxfp4PerExpert.forwardSync(hidden, route).every((v, i) => v === mx[i])}`);
console.log(`mxfp4 against its decoded f32 layer: ${relativeError(mx, decoded.forwardSync(hidden, route)) <= 1e-5 ? 'within' : 'outside'} 1e-5`);
for (const layer of [f32, f16, int8, mxfp4, mxfp4PerExpert, decoded]) layer.dispose();
