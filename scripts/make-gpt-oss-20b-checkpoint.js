#!/usr/bin/env node
// Writes a synthetic gpt-oss-20b checkpoint at full size, in the on-disk format of the published
// MXFP4 one: config.json (gpt-oss-20b's, num_hidden_layers N) and the MoE blocks of layers
// 0..N-1 (router BF16 + bias, experts' gate_up/down as MXFP4 blocks + e8m0 scales, biases BF16).
// One layer is one model.safetensors (about 420 MB); more layers are sharded as the real
// checkpoint is — model-0000i-of-0000n.safetensors of whole layers, up to --shard-gb each, plus
// model.safetensors.index.json. Attention, embeddings and norms are not written (moe-cpu never
// reads them).
//
//   node scripts/make-gpt-oss-20b-checkpoint.js <dir> [--layers N] [--seed N] [--shard-gb G]
//
// Random but deterministic. Written tensor by tensor in 16 MB chunks: memory stays flat whatever
// N is (24 layers: ~10.2 GB on disk). Never run by the tests; `npx moe-cpu inspect <dir>`,
// `npx moe-cpu run <dir> --layer 0` and `npx moe-cpu run <dir> --all-layers` use it.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const H = 2880, I = 2880, E = 32, K = 4;
const BLOCK = 32, BLOCK_BYTES = 16;
// e8m0 scales 2^(s - 127) with s in [SCALE_MIN, SCALE_MIN + 3]: weights of magnitude ~2^-9..2^-3,
// the range gpt-oss's own expert weights have.
const SCALE_MIN = 117;
// Bytes generated per write: keeps memory flat while writing hundreds of MB.
const CHUNK_BYTES = 16 << 20;

function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s;
  };
}

// Byte generators for each tensor: fill(dst Uint8Array, offsetInTensor).
function randomBytes(next) {
  return (dst) => {
    const words = new Uint32Array(dst.buffer, dst.byteOffset, dst.byteLength >> 2);
    for (let i = 0; i < words.length; i++) words[i] = next();
    for (let i = words.length * 4; i < dst.length; i++) dst[i] = next() & 0xff;
  };
}
function randomScales(next) {
  return (dst) => { for (let i = 0; i < dst.length; i++) dst[i] = SCALE_MIN + (next() & 3); };
}
// bf16 values of random sign, magnitude in [2^(e-127), 2^(e-126)) for e in [maxExponent - 7, maxExponent].
function randomBf16(next, maxExponent) {
  return (dst) => {
    const v = new Uint16Array(dst.buffer, dst.byteOffset, dst.byteLength >> 1);
    for (let i = 0; i < v.length; i++) {
      const r = next();
      v[i] = (r & 0x8000) | ((maxExponent - ((r >>> 8) % 8)) << 7) | (r & 0x7f);
    }
  };
}

/** The MoE tensors of layer n, with the generator of each one's bytes. */
function layerTensors(n, next) {
  const p = `model.layers.${n}.mlp.`;
  return [
    { name: `${p}router.weight`, dtype: 'BF16', shape: [E, H], bytes: E * H * 2, fill: randomBf16(next, 122) },
    { name: `${p}router.bias`, dtype: 'BF16', shape: [E], bytes: E * 2, fill: randomBf16(next, 122) },
    { name: `${p}experts.gate_up_proj_blocks`, dtype: 'U8', shape: [E, 2 * I, H / BLOCK, BLOCK_BYTES], bytes: E * 2 * I * (H / BLOCK) * BLOCK_BYTES, fill: randomBytes(next) },
    { name: `${p}experts.gate_up_proj_scales`, dtype: 'U8', shape: [E, 2 * I, H / BLOCK], bytes: E * 2 * I * (H / BLOCK), fill: randomScales(next) },
    { name: `${p}experts.gate_up_proj_bias`, dtype: 'BF16', shape: [E, 2 * I], bytes: E * 2 * I * 2, fill: randomBf16(next, 122) },
    { name: `${p}experts.down_proj_blocks`, dtype: 'U8', shape: [E, H, I / BLOCK, BLOCK_BYTES], bytes: E * H * (I / BLOCK) * BLOCK_BYTES, fill: randomBytes(next) },
    { name: `${p}experts.down_proj_scales`, dtype: 'U8', shape: [E, H, I / BLOCK], bytes: E * H * (I / BLOCK), fill: randomScales(next) },
    { name: `${p}experts.down_proj_bias`, dtype: 'BF16', shape: [E, H], bytes: E * H * 2, fill: randomBf16(next, 122) },
  ];
}

/** Writes one safetensors file: the header (sizes are known up front), then each tensor in chunks. */
function writeFile(file, tensors, chunk) {
  const header = { __metadata__: { format: 'pt', note: 'synthetic gpt-oss-20b MoE blocks (moe-cpu scripts/make-gpt-oss-20b-checkpoint.js)' } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes] };
    offset += t.bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = fs.openSync(file, 'w');
  try {
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    fs.writeSync(fd, prefix);
    fs.writeSync(fd, json);
    for (const t of tensors) {
      for (let done = 0; done < t.bytes; done += CHUNK_BYTES) {
        const part = chunk.subarray(0, Math.min(CHUNK_BYTES, t.bytes - done));
        t.fill(part);
        fs.writeSync(fd, part);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return 8 + json.length + offset;
}

function positive(value, name) {
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n)) {
    console.error(`--${name}: expected a positive number, got '${value}'`);
    process.exit(2);
  }
  return n;
}

function main() {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { seed: { type: 'string', default: '1' }, layers: { type: 'string', default: '1' }, 'shard-gb': { type: 'string', default: '5' } },
  });
  if (positionals.length !== 1) {
    console.error('usage: node scripts/make-gpt-oss-20b-checkpoint.js <dir> [--layers N] [--seed N] [--shard-gb G]');
    process.exit(2);
  }
  const dir = positionals[0];
  const L = positive(values.layers, 'layers');
  if (!Number.isSafeInteger(L)) {
    console.error(`--layers: expected a whole number of layers, got '${values.layers}'`);
    process.exit(2);
  }
  const shardBytes = positive(values['shard-gb'], 'shard-gb') * 1e9;
  fs.mkdirSync(dir, { recursive: true });
  const next = xorshift(Number(values.seed));
  // Tensors are described lazily (their generators share one random stream, in write order).
  const layerBytes = layerTensors(0, next).reduce((a, t) => a + t.bytes, 0);
  const perShard = Math.max(1, Math.floor(shardBytes / layerBytes));
  const shards = L === 1 ? 1 : Math.ceil(L / perShard);
  const name = (i) => (L === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`);
  const chunk = Buffer.alloc(CHUNK_BYTES);
  const weightMap = {};
  let total = 0, tensorBytes = 0;
  const t0 = Date.now();
  for (let s = 0; s < shards; s++) {
    const tensors = [];
    for (let n = s * perShard; n < Math.min(L, (s + 1) * perShard); n++) tensors.push(...layerTensors(n, next));
    for (const t of tensors) {
      weightMap[t.name] = name(s);
      tensorBytes += t.bytes;
    }
    const file = path.join(dir, name(s));
    const bytes = writeFile(file, tensors, chunk);
    total += bytes;
    console.log(`wrote ${file} (${(bytes / 1e6).toFixed(1)} MB, layers ${s * perShard}-${Math.min(L, (s + 1) * perShard) - 1}; ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }
  if (L > 1) {
    const index = { metadata: { total_size: tensorBytes }, weight_map: weightMap };
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index, null, 2));
  } else {
    fs.rmSync(path.join(dir, 'model.safetensors.index.json'), { force: true });
  }

  const config = {
    architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', attention_bias: true, attention_dropout: 0.0,
    eos_token_id: 200002, pad_token_id: 199999, experts_per_token: K, num_experts_per_tok: K, head_dim: 64,
    hidden_act: 'silu', hidden_size: H, intermediate_size: I, initial_context_length: 4096, initializer_range: 0.02,
    // gpt-oss alternates sliding-window and full attention layers.
    layer_types: Array.from({ length: L }, (_, n) => (n % 2 === 0 ? 'sliding_attention' : 'full_attention')),
    max_position_embeddings: 131072, num_attention_heads: 64,
    num_hidden_layers: L, num_key_value_heads: 8, num_local_experts: E, output_router_logits: false,
    quantization_config: {
      modules_to_not_convert: ['model.layers.*.self_attn', 'model.layers.*.mlp.router', 'model.embed_tokens', 'lm_head'],
      quant_method: 'mxfp4',
    },
    rms_norm_eps: 1e-5,
    rope_scaling: { beta_fast: 32.0, beta_slow: 1.0, factor: 32.0, original_max_position_embeddings: 4096, rope_type: 'yarn', truncate: false },
    rope_theta: 150000, router_aux_loss_coef: 0.9, sliding_window: 128, swiglu_limit: 7.0,
    tie_word_embeddings: false, use_cache: true, vocab_size: 201088,
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  console.log(`wrote ${L} layer${L === 1 ? '' : 's'} in ${shards} file${shards === 1 ? '' : 's'} (${(total / 1e9).toFixed(2)} GB) and config.json in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

main();
