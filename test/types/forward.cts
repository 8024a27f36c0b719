// The CommonJS entry's types (`import x = require()`): forward keeps the dtype of hidden, routes
// are { logits } or { ids, weights }, and routing modes have their required fields.
import moeCpu = require('moe-cpu');

declare const layer: moeCpu.MoeLayer;
declare const f32: Float32Array;
declare const u16: Uint16Array;
declare const ids: Int32Array;

async function main(): Promise<void> {
  const out: Float32Array = await layer.forward(f32, { logits: f32 });
  const outBf16: Uint16Array = layer.forwardSync(u16, { ids, weights: f32 });
  // @ts-expect-error a bf16 hidden gives bf16 out, not f32
  const wrong: Float32Array = layer.forwardSync(u16, { ids, weights: f32 });
  await layer.forward(f32, undefined, { signal: AbortSignal.timeout(1000) });
  await layer.forward(f32, undefined, { signal: undefined });
  // @ts-expect-error ids without weights is not a route
  layer.forwardSync(f32, { ids });
  // @ts-expect-error Int8Array is not an activation dtype
  layer.forwardSync(new Int8Array(4), { logits: f32 });
  moeCpu.selectExperts(f32, { tokens: 1, numExperts: 4, topK: 2, routing: { mode: 'softmax-topk', renormalize: true } });
  // @ts-expect-error softmax-topk needs renormalize (no default: Mixtral and Qwen2-MoE differ)
  moeCpu.selectExperts(f32, { tokens: 1, numExperts: 4, topK: 2, routing: { mode: 'softmax-topk' } });
  moeCpu.selectExperts(f32, {
    tokens: 1, numExperts: 8, topK: 2,
    routing: { mode: 'sigmoid-grouped', numGroups: 4, topkGroups: 2, renormalize: true, routedScalingFactor: undefined },
  });
  const mx: moeCpu.Mxfp4Tensor = moeCpu.quantize(f32, [1, 32], 'mxfp4');
  // @ts-expect-error quantize to int8 gives an Int8Tensor
  const notMx: moeCpu.Mxfp4Tensor = moeCpu.quantize(f32, [1, 32], 'int8');
  const err = new moeCpu.CheckpointError({ file: undefined, tensor: undefined }, 'message');
  const code: moeCpu.CheckpointErrorCode = err.code;
  void [out, outBf16, wrong, mx, notMx, code];
}
void main;
