// Loading MoE blocks from a Hugging Face model folder. Pass a folder (`node checkpoint.mjs
// /models/gpt-oss-20b`); without one, this writes a tiny gpt-oss-shaped MXFP4 checkpoint to a
// temporary folder first (writeTinyGptOss, below), so that it runs anywhere in a second.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CheckpointError, loadMoeLayer, openCheckpoint, quantize, toBf16 } from 'moe-cpu';

const dir = process.argv[2] ?? writeTinyGptOss(fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-example-')));

const ckpt = await openCheckpoint(dir);                         // config.json + safetensors headers only
console.log(`${ckpt.family}: MoE layers ${ckpt.moeLayers.join(', ')}, E=${ckpt.config.numExperts}, K=${ckpt.config.topK}`);
const first = ckpt.moeLayers[0]!;
const info = ckpt.layerInfo(first);
console.log(`layer ${first}: stored as ${info.weightFormat}, interleaved W13: ${info.isW13Interleaved}`);  // info.layoutReason says why

const block = await ckpt.loadMoeLayer(first, { threads: 1 });   // gpt-oss: mxfp4, the checkpoint's blocks as they are
const hidden = Float32Array.from({ length: 2 * ckpt.config.hiddenSize }, () => Math.random() - 0.5);
const out = await block.forward(hidden);                        // the router's logits, then the family's routing
console.log(`forward: ${out.length / ckpt.config.hiddenSize} tokens; block holds ${block.bytes} bytes as ${block.weightDtype}`);
block.dispose();

const estimate = ckpt.estimate({ weightDtype: 'int8' });         // from the headers: will every layer fit?
console.log(`all layers as int8: ${estimate.bytes} bytes, fits: ${estimate.fits}`);
const blocks = await ckpt.loadMoeLayers({
  weightDtype: 'int8',
  onProgress: ({ layer, index, count }) => console.log(`loaded layer ${layer} (${index + 1} of ${count})`),
  signal: AbortSignal.timeout(60_000),                          // cancels: AbortError (ERR_MOE_ABORTED)
});
for (const b of blocks) b.dispose();

const same = await loadMoeLayer(dir, first);                    // openCheckpoint + loadMoeLayer in one call
same.dispose();
try {
  await openCheckpoint(path.join(dir, 'no-such-folder'));
} catch (err) {
  if (!(err instanceof CheckpointError)) throw err;
  console.log(`${err.name} ${err.code}`);
}
if (process.argv[2] === undefined) fs.rmSync(dir, { recursive: true });

/**
 * A gpt-oss checkpoint of 2 MoE layers at a tiny size, in the published MXFP4 layout: router
 * and biases in BF16, expert weights as `*_blocks` and `*_scales` (which `quantize` makes).
 */
function writeTinyGptOss(folder: string): string {
  const E = 4, H = 64, I = 32, K = 2, L = 2;
  const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
  fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify({
    architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: H, intermediate_size: I,
    num_local_experts: E, num_experts_per_tok: K, experts_per_token: K, num_hidden_layers: L, swiglu_limit: 7,
    hidden_act: 'silu', head_dim: 16, num_attention_heads: 4, quantization_config: { quant_method: 'mxfp4' },
  }));
  const tensors: { name: string; dtype: 'BF16' | 'U8'; shape: number[]; data: Uint8Array | Uint16Array }[] = [];
  for (let n = 0; n < L; n++) {
    const p = `model.layers.${n}.mlp.`;
    const w13 = quantize(random(E * 2 * I * H), [E * 2 * I, H], 'mxfp4'), w2 = quantize(random(E * H * I), [E * H, I], 'mxfp4');
    tensors.push(
      { name: `${p}router.weight`, dtype: 'BF16', shape: [E, H], data: toBf16(random(E * H)) },
      { name: `${p}router.bias`, dtype: 'BF16', shape: [E], data: toBf16(random(E)) },
      { name: `${p}experts.gate_up_proj_blocks`, dtype: 'U8', shape: [E, 2 * I, H / 32, 16], data: w13.blocks },
      { name: `${p}experts.gate_up_proj_scales`, dtype: 'U8', shape: [E, 2 * I, H / 32], data: w13.scales },
      { name: `${p}experts.gate_up_proj_bias`, dtype: 'BF16', shape: [E, 2 * I], data: toBf16(random(E * 2 * I)) },
      { name: `${p}experts.down_proj_blocks`, dtype: 'U8', shape: [E, H, I / 32, 16], data: w2.blocks },
      { name: `${p}experts.down_proj_scales`, dtype: 'U8', shape: [E, H, I / 32], data: w2.scales },
      { name: `${p}experts.down_proj_bias`, dtype: 'BF16', shape: [E, H], data: toBf16(random(E * H)) },
    );
  }
  // safetensors: u64 LE header length, the JSON header (padded with spaces to 8 bytes), the data.
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = JSON.stringify(header);
  const head = Buffer.from(json + ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(head.length));
  const data = tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  fs.writeFileSync(path.join(folder, 'model.safetensors'), Buffer.concat([length, head, ...data]));
  return folder;
}
