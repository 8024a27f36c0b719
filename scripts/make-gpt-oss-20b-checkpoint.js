#!/usr/bin/env node
// Writes a synthetic gpt-oss-20b checkpoint with one layer, at full size, in the on-disk format
// of the published MXFP4 one: config.json and model.safetensors holding layer 0's MoE block
// (router BF16 + bias, experts' gate_up/down as MXFP4 blocks + e8m0 scales, biases BF16).
// The config is gpt-oss-20b's with num_hidden_layers 1 (the only layer written).
//
//   node scripts/make-gpt-oss-20b-checkpoint.js <dir> [--seed N]
//
// Random but deterministic. Never run by the tests (about 420 MB); `npx moe-cpu inspect <dir>`
// and `npx moe-cpu run <dir> --layer 0` use it.
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

function main() {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { seed: { type: 'string', default: '1' } } });
  if (positionals.length !== 1) {
    console.error('usage: node scripts/make-gpt-oss-20b-checkpoint.js <dir> [--seed N]');
    process.exit(2);
  }
  const dir = positionals[0];
  fs.mkdirSync(dir, { recursive: true });
  const next = xorshift(Number(values.seed));
  const p = 'model.layers.0.mlp.';
  const tensors = [
    { name: `${p}router.weight`, dtype: 'BF16', shape: [E, H], bytes: E * H * 2, fill: randomBf16(next, 122) },
    { name: `${p}router.bias`, dtype: 'BF16', shape: [E], bytes: E * 2, fill: randomBf16(next, 122) },
    { name: `${p}experts.gate_up_proj_blocks`, dtype: 'U8', shape: [E, 2 * I, H / BLOCK, BLOCK_BYTES], bytes: E * 2 * I * (H / BLOCK) * BLOCK_BYTES, fill: randomBytes(next) },
    { name: `${p}experts.gate_up_proj_scales`, dtype: 'U8', shape: [E, 2 * I, H / BLOCK], bytes: E * 2 * I * (H / BLOCK), fill: randomScales(next) },
    { name: `${p}experts.gate_up_proj_bias`, dtype: 'BF16', shape: [E, 2 * I], bytes: E * 2 * I * 2, fill: randomBf16(next, 122) },
    { name: `${p}experts.down_proj_blocks`, dtype: 'U8', shape: [E, H, I / BLOCK, BLOCK_BYTES], bytes: E * H * (I / BLOCK) * BLOCK_BYTES, fill: randomBytes(next) },
    { name: `${p}experts.down_proj_scales`, dtype: 'U8', shape: [E, H, I / BLOCK], bytes: E * H * (I / BLOCK), fill: randomScales(next) },
    { name: `${p}experts.down_proj_bias`, dtype: 'BF16', shape: [E, H], bytes: E * H * 2, fill: randomBf16(next, 122) },
  ];
  const header = { __metadata__: { format: 'pt', note: 'synthetic gpt-oss-20b layer (moe-cpu scripts/make-gpt-oss-20b-checkpoint.js)' } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes] };
    offset += t.bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const file = path.join(dir, 'model.safetensors');
  const fd = fs.openSync(file, 'w');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  fs.writeSync(fd, prefix);
  fs.writeSync(fd, json);
  const chunk = Buffer.alloc(CHUNK_BYTES);
  for (const t of tensors) {
    for (let done = 0; done < t.bytes; done += CHUNK_BYTES) {
      const part = chunk.subarray(0, Math.min(CHUNK_BYTES, t.bytes - done));
      t.fill(part);
      fs.writeSync(fd, part);
    }
  }
  fs.closeSync(fd);

  const config = {
    architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', attention_bias: true, attention_dropout: 0.0,
    eos_token_id: 200002, pad_token_id: 199999, experts_per_token: K, num_experts_per_tok: K, head_dim: 64,
    hidden_act: 'silu', hidden_size: H, intermediate_size: I, initial_context_length: 4096, initializer_range: 0.02,
    layer_types: ['sliding_attention'], max_position_embeddings: 131072, num_attention_heads: 64,
    num_hidden_layers: 1, num_key_value_heads: 8, num_local_experts: E, output_router_logits: false,
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
  console.log(`wrote ${file} (${(fs.statSync(file).size / 1e6).toFixed(1)} MB) and config.json`);
}

main();
