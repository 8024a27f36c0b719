#!/usr/bin/env node
// Checkpoint fuzzer (issue 11, "never crash, never lie"): small synthetic checkpoints of every
// family, each case one mutation of one of them, loaded by the compiled facade (dist/; run
// `npx tsc -p tsconfig.json` first) in worker processes, so that a crash or a hang is seen.
//
//   node scripts/fuzz-checkpoints.js [--count 5000] [--seed S] [--workers 2] [--timeout 20000]
//                                    [--dist DIR] [--json] [--case N] [--verbose]
//
// Each case is openCheckpoint + layerInfo + estimate of every MoE layer, then loadMoeLayer and
// forwardSync of each. Outcomes:
//   checkpoint-error  a CheckpointError (with a documented code, its message free of the bytes
//                     of a planted secret file)                                   good
//   honest            loaded; for mutations that must not change what the checkpoint means
//                     (header/index structure, special files) every output bitwise equal to
//                     the unmutated checkpoint's; for config values every output finite; for
//                     a header that reads the same bytes another way, any values    good
//   lie               loaded, but a structural mutation changed the output, or a config one
//                     gave a non-finite output, or a forward threw                 failure
//   leak              a CheckpointError message quotes a planted secret          failure
//   other-error       anything but a CheckpointError thrown by open / plan / load failure
//   crash             the worker process died                                    failure
//   hang              the case ran past --timeout                                failure
// Prints the counts per outcome and per mutation kind; exits 1 on any failure. `--case N`
// runs case N of the seed in this process and prints what it did.
'use strict';

const { fork, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

// ---------------------------------------------------------------------------------------------
// Arguments

function parseArgs(argv) {
  const o = { count: 500, seed: 1, workers: Math.max(1, Math.min(2, os.availableParallelism?.() ?? os.cpus().length)), timeout: 20000, dist: path.join(__dirname, '..', 'dist'), json: false, verbose: false, case: null, worker: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isSafeInteger(v) || v < 0) usage(`${a}: expected a non-negative integer, got '${argv[i]}'`);
      return v;
    };
    if (a === '--count') o.count = num();
    else if (a === '--seed') o.seed = num();
    else if (a === '--workers') o.workers = Math.max(1, num());
    else if (a === '--timeout') o.timeout = num();
    else if (a === '--case') o.case = num();
    else if (a === '--dist') o.dist = path.resolve(argv[++i]);
    else if (a === '--json') o.json = true;
    else if (a === '--verbose') o.verbose = true;
    else if (a === '--worker') o.worker = true;
    else usage(`unknown argument '${a}'`);
  }
  return o;
}

function usage(message) {
  console.error(`fuzz-checkpoints: ${message}\nusage: node scripts/fuzz-checkpoints.js [--count N] [--seed S] [--workers W] [--timeout MS] [--dist DIR] [--json] [--case N] [--verbose]`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Random numbers

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function caseSeed(seed, i) {
  let h = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(i + 1, 0xc2b2ae35)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}

const int = (rng, lo, hi) => lo + Math.floor(rng() * (hi - lo + 1)); // [lo, hi]
const pick = (rng, list) => list[Math.floor(rng() * list.length)];
function shuffle(rng, list) {
  const a = [...list];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// Synthetic checkpoints (the on-disk format of the published ones; independent of lib/)

const DTYPE_BITS = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, I16: 16, U16: 16, F16: 16, BF16: 16,
  I32: 32, U32: 32, F32: 32, F64: 64, I64: 64, U64: 64, F4: 4, F6_E2M3: 6, F6_E3M2: 6,
};

const VARIANTS = [
  { kind: 'gpt-oss-mxfp4', dtype: 'BF16', shards: 0 },
  { kind: 'gpt-oss-bf16', dtype: 'BF16', shards: 0 },
  { kind: 'gpt-oss-bf16', dtype: 'F32', shards: 2 },
  { kind: 'mixtral', dtype: 'BF16', shards: 0 },
  { kind: 'mixtral', dtype: 'F16', shards: 3 },
  { kind: 'qwen3-moe', dtype: 'F32', shards: 0 },
  { kind: 'qwen2-moe', dtype: 'BF16', shards: 2 },
  { kind: 'deepseek-v3', dtype: 'BF16', shards: 0 },
  { kind: 'deepseek-v3', dtype: 'F32', shards: 2 },
];

const DIMS = {
  'gpt-oss-mxfp4': { H: 64, I: 32, E: 4, K: 2, L: 2, Is: 0 },
  'gpt-oss-bf16': { H: 64, I: 16, E: 4, K: 2, L: 2, Is: 0 },
  mixtral: { H: 32, I: 24, E: 4, K: 2, L: 2, Is: 0 },
  'qwen3-moe': { H: 24, I: 16, E: 6, K: 2, L: 2, Is: 0 },
  'qwen2-moe': { H: 24, I: 16, E: 6, K: 2, L: 3, Is: 32 },
  'deepseek-v3': { H: 32, I: 16, E: 8, K: 2, L: 3, Is: 16 },
};

function configOf(kind, d) {
  switch (kind) {
    case 'gpt-oss-mxfp4':
    case 'gpt-oss-bf16':
      return {
        architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: d.H, intermediate_size: d.I,
        num_local_experts: d.E, num_experts_per_tok: d.K, experts_per_token: d.K, num_hidden_layers: d.L,
        swiglu_limit: 7.0, hidden_act: 'silu', head_dim: 16, num_attention_heads: 4,
        ...(kind === 'gpt-oss-mxfp4' ? { quantization_config: { quant_method: 'mxfp4' } } : {}),
      };
    case 'mixtral':
      return { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: d.H, intermediate_size: d.I, num_local_experts: d.E, num_experts_per_tok: d.K, num_hidden_layers: d.L, hidden_act: 'silu' };
    case 'qwen3-moe':
      return { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: d.H, intermediate_size: 3 * d.I, moe_intermediate_size: d.I, num_experts: d.E, num_experts_per_tok: d.K, norm_topk_prob: true, decoder_sparse_step: 1, mlp_only_layers: [], num_hidden_layers: d.L, hidden_act: 'silu' };
    case 'qwen2-moe':
      return { architectures: ['Qwen2MoeForCausalLM'], model_type: 'qwen2_moe', hidden_size: d.H, intermediate_size: 3 * d.I, moe_intermediate_size: d.I, shared_expert_intermediate_size: d.Is, num_experts: d.E, num_experts_per_tok: d.K, norm_topk_prob: false, decoder_sparse_step: 1, mlp_only_layers: [0], num_hidden_layers: d.L, hidden_act: 'silu' };
    case 'deepseek-v3':
      return { architectures: ['DeepseekV3ForCausalLM'], model_type: 'deepseek_v3', hidden_size: d.H, intermediate_size: 4 * d.I, moe_intermediate_size: d.I, n_routed_experts: d.E, n_shared_experts: d.Is / d.I, num_experts_per_tok: d.K, n_group: 4, topk_group: 2, routed_scaling_factor: 2.5, norm_topk_prob: true, scoring_func: 'sigmoid', topk_method: 'noaux_tc', first_k_dense_replace: 1, moe_layer_freq: 1, num_hidden_layers: d.L, hidden_act: 'silu' };
  }
  throw new Error(kind);
}

/** Keys a config of the family may have (present or not), for config mutations. */
const CONFIG_KEYS = {
  gpt: ['hidden_size', 'intermediate_size', 'num_local_experts', 'num_experts_per_tok', 'experts_per_token', 'num_hidden_layers', 'swiglu_limit', 'swiglu_alpha', 'model_type', 'architectures'],
  mixtral: ['hidden_size', 'intermediate_size', 'num_local_experts', 'num_experts_per_tok', 'num_hidden_layers', 'hidden_act', 'model_type', 'architectures'],
  qwen: ['hidden_size', 'moe_intermediate_size', 'num_experts', 'num_experts_per_tok', 'norm_topk_prob', 'decoder_sparse_step', 'mlp_only_layers', 'shared_expert_intermediate_size', 'num_hidden_layers', 'hidden_act', 'model_type', 'architectures'],
  deepseek: ['hidden_size', 'moe_intermediate_size', 'n_routed_experts', 'n_shared_experts', 'num_experts_per_tok', 'n_group', 'topk_group', 'routed_scaling_factor', 'norm_topk_prob', 'scoring_func', 'topk_method', 'first_k_dense_replace', 'moe_layer_freq', 'num_hidden_layers', 'hidden_act', 'model_type', 'architectures'],
};
const configKeys = (kind) => CONFIG_KEYS[kind.startsWith('gpt') ? 'gpt' : kind.startsWith('qwen') ? 'qwen' : kind.startsWith('deepseek') ? 'deepseek' : 'mixtral'];

function moeLayersOf(kind, d) {
  const all = Array.from({ length: d.L }, (_, i) => i);
  if (kind === 'qwen2-moe') return all.filter((n) => n !== 0);
  if (kind === 'deepseek-v3') return all.filter((n) => n >= 1);
  return all;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function bf16Bits(v) {
  f32[0] = v;
  const u = u32[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
function f16Bits(v) {
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  if (a < 2 ** -14) return sign | Math.round(a / 2 ** -24);
  let e = Math.floor(Math.log2(a));
  let m = Math.round((a / 2 ** e - 1) * 1024);
  if (m === 1024) { m = 0; e += 1; }
  return sign | ((e + 15) << 10) | m;
}

function floats(rng, n, scale, dtype) {
  if (dtype === 'F32') return Float32Array.from({ length: n }, () => (2 * rng() - 1) * scale);
  const enc = dtype === 'BF16' ? bf16Bits : f16Bits;
  return Uint16Array.from({ length: n }, () => enc((2 * rng() - 1) * scale));
}

function tensorsOf(kind, d, dtype, rng) {
  const { H, I, E, Is } = d;
  const out = [
    { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [16, H], data: new Uint16Array(16 * H) },
    { name: 'model.norm.weight', dtype: 'F32', shape: [H], data: new Float32Array(H).fill(1) },
  ];
  const moe = moeLayersOf(kind, d);
  const t = (name, dt, shape, scale) => ({ name, dtype: dt, shape, data: floats(rng, shape.reduce((a, b) => a * b, 1), scale, dt) });
  for (let n = 0; n < d.L; n++) {
    const p = `model.layers.${n}.`;
    out.push({ name: `${p}self_attn.q_proj.weight`, dtype: 'F8_E4M3', shape: [H, H], data: new Uint8Array(H * H).map(() => int(rng, 0, 0x7e)) });
    if (!moe.includes(n)) {
      out.push(t(`${p}mlp.gate_proj.weight`, 'BF16', [I, H], 0.1));
      continue;
    }
    const s13 = 2 / Math.sqrt(H), s2 = 2 / Math.sqrt(I), sr = 2 / Math.sqrt(H);
    if (kind.startsWith('gpt-oss')) {
      const small = kind === 'gpt-oss-mxfp4' ? 'BF16' : dtype;
      out.push(t(`${p}mlp.router.weight`, small, [E, H], sr), t(`${p}mlp.router.bias`, small, [E], 0.5));
      if (kind === 'gpt-oss-mxfp4') {
        const blocks = (rows, depth) => new Uint8Array(E * rows * (depth / 32) * 16).map(() => int(rng, 0, 255));
        const scales = (rows, depth) => new Uint8Array(E * rows * (depth / 32)).map(() => int(rng, 120, 125));
        out.push(
          { name: `${p}mlp.experts.gate_up_proj_blocks`, dtype: 'U8', shape: [E, 2 * I, H / 32, 16], data: blocks(2 * I, H) },
          { name: `${p}mlp.experts.gate_up_proj_scales`, dtype: 'U8', shape: [E, 2 * I, H / 32], data: scales(2 * I, H) },
          { name: `${p}mlp.experts.down_proj_blocks`, dtype: 'U8', shape: [E, H, I / 32, 16], data: blocks(H, I) },
          { name: `${p}mlp.experts.down_proj_scales`, dtype: 'U8', shape: [E, H, I / 32], data: scales(H, I) },
        );
      } else {
        out.push(t(`${p}mlp.experts.gate_up_proj`, dtype, [E, H, 2 * I], s13), t(`${p}mlp.experts.down_proj`, dtype, [E, I, H], s2));
      }
      out.push(t(`${p}mlp.experts.gate_up_proj_bias`, small, [E, 2 * I], 0.5), t(`${p}mlp.experts.down_proj_bias`, small, [E, H], 0.5));
      continue;
    }
    const [m, names] = kind === 'mixtral' ? [`${p}block_sparse_moe.`, ['w1', 'w3', 'w2']] : [`${p}mlp.`, ['gate_proj', 'up_proj', 'down_proj']];
    out.push(t(`${m}gate.weight`, dtype, [E, H], sr));
    if (kind === 'deepseek-v3') out.push(t(`${m}gate.e_score_correction_bias`, 'F32', [E], 0.1));
    for (let e = 0; e < E; e++) {
      out.push(t(`${m}experts.${e}.${names[0]}.weight`, dtype, [I, H], s13), t(`${m}experts.${e}.${names[1]}.weight`, dtype, [I, H], s13),
        t(`${m}experts.${e}.${names[2]}.weight`, dtype, [H, I], s2));
    }
    if (Is > 0) {
      const s = kind === 'qwen2-moe' ? `${m}shared_expert.` : `${m}shared_experts.`;
      out.push(t(`${s}gate_proj.weight`, dtype, [Is, H], s13), t(`${s}up_proj.weight`, dtype, [Is, H], s13), t(`${s}down_proj.weight`, dtype, [H, Is], 2 / Math.sqrt(Is)));
      if (kind === 'qwen2-moe') out.push(t(`${m}shared_expert_gate.weight`, dtype, [1, H], sr));
    }
  }
  return out;
}

const bytesOf = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Header object and data of a safetensors file holding `tensors` in order. */
function encode(tensors) {
  const header = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  return { header, data: Buffer.concat(tensors.map((t) => bytesOf(t.data))) };
}

/** Header text padded with spaces to a multiple of 8 bytes. */
function padded(text) {
  return text + ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8);
}

/** prefix + header bytes + data; `length` overrides the header length written in the prefix. */
function stBytes(headerBytes, data, length = headerBytes.length) {
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt.asUintN(64, BigInt(length)));
  return Buffer.concat([prefix, headerBytes, data]);
}

const shardName = (i, n) => `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;

/** Writes the base checkpoint of variant v into dir; returns its description. */
function writeBase(v, dir) {
  const d = DIMS[v.kind];
  const rng = mulberry32(1000 + VARIANTS.indexOf(v));
  const tensors = tensorsOf(v.kind, d, v.dtype, rng);
  const config = configOf(v.kind, d);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const files = {};
  let index = null;
  const groups = v.shards ? Array.from({ length: v.shards }, () => []) : [tensors];
  if (v.shards) {
    index = { metadata: { total_size: tensors.reduce((a, t) => a + t.data.byteLength, 0) }, weight_map: {} };
    tensors.forEach((t, i) => {
      groups[i % v.shards].push(t);
      index.weight_map[t.name] = shardName(i % v.shards, v.shards);
    });
  }
  groups.forEach((g, i) => {
    const name = v.shards ? shardName(i, v.shards) : 'model.safetensors';
    const { header, data } = encode(g);
    files[name] = { header, data };
    fs.writeFileSync(path.join(dir, name), stBytes(Buffer.from(padded(JSON.stringify(header))), data));
  });
  if (index) fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index, null, 2));
  return { v, dims: d, dir, config, files, index, tensors };
}

// ---------------------------------------------------------------------------------------------
// Mutations. Each returns { expect, what }: 'same' mutations must not change what the
// checkpoint means (load bitwise equal, or refuse); 'valid' ones may (config values: load with
// finite outputs, or refuse); 'data' ones make the header read the same bytes another way (a
// dtype of the same width, two tensors' offsets swapped): a valid file whose values may be
// anything, so it must load (any values) or be refused, and a forward must not throw.

const SECRET = 'root:x:0:0:LEAKCANARY:/root:/bin/bash\nsecret-key = LEAKCANARY-0123456789\n'.repeat(8);
const leaks = (message) => /LEAKCANARY|root:x:0/.test(message);

const KINDS = ['truncate', 'append', 'header-length', 'header-reformat', 'header-entry', 'dtype', 'shape', 'offsets', 'metadata', 'header-bytes', 'index', 'config-value', 'config-json', 'special'];

/** Which mutation kind a case is, and its variant: decided from the case seed alone. */
function planCase(seed, i) {
  const rng = mulberry32(caseSeed(seed, i));
  const vi = Math.floor(rng() * VARIANTS.length);
  const kinds = KINDS.filter((k) => k !== 'index' || VARIANTS[vi].shards > 0);
  const kind = pick(rng, kinds);
  return { vi, kind, rng };
}

function rewriteSt(file, text, data, length) {
  const bytes = Buffer.from(text, 'utf8');
  fs.writeFileSync(file, stBytes(bytes, data, length ?? bytes.length));
}

const tensorNames = (header) => Object.keys(header).filter((k) => k !== '__metadata__');
const clone = (x) => JSON.parse(JSON.stringify(x));

/** A JSON-ish value to put where a number, string, list or object is expected. */
function oddValue(rng) {
  return pick(rng, [null, true, false, 0, -1, 1.5, 2 ** 53, 1e20, -0, '', 'x', 'BF16', [], [1], [1, 2, 3], {}, { a: 1 }, [[1]], 'NaN']);
}

function mutate(base, dir, kind, rng, ctx) {
  const stNames = Object.keys(base.files);
  const stName = pick(rng, stNames);
  const stPath = path.join(dir, stName);
  const { header, data } = base.files[stName];
  const names = tensorNames(header);
  const name = pick(rng, names);
  const headerText = padded(JSON.stringify(header));
  const configPath = path.join(dir, 'config.json');
  const indexPath = path.join(dir, 'model.safetensors.index.json');
  const same = (what) => ({ expect: 'same', what });
  const valid = (what) => ({ expect: 'valid', what });
  const withHeader = (h, what, expect = 'same') => {
    rewriteSt(stPath, padded(JSON.stringify(h)), data);
    return { expect, what: `${stName}: ${what}` };
  };

  switch (kind) {
    case 'truncate': {
      const targets = [stPath, configPath, ...(base.index ? [indexPath] : [])];
      const file = rng() < 0.75 ? stPath : pick(rng, targets);
      const size = fs.statSync(file).size;
      const r = rng();
      const to = r < 0.3 ? int(rng, 0, Math.min(size - 1, 8 + headerText.length)) : r < 0.6 ? int(rng, Math.max(0, size - 64), size - 1) : int(rng, 0, size - 1);
      fs.truncateSync(file, to);
      return same(`${path.basename(file)} truncated from ${size} to ${to} bytes`);
    }
    case 'append': {
      const json = rng() < 0.2;
      const file = json ? (base.index && rng() < 0.5 ? indexPath : configPath) : stPath;
      const n = int(rng, 1, 64);
      const bytes = rng() < 0.3 ? Buffer.alloc(n, 0x20) : Buffer.from(Array.from({ length: n }, () => int(rng, 0, 255)));
      fs.appendFileSync(file, bytes);
      return same(`${path.basename(file)}: ${n} bytes appended`);
    }
    case 'header-length': {
      const real = Buffer.byteLength(headerText);
      const pad = headerText.length - headerText.trimEnd().length;
      const r = rng();
      let length;
      if (r < 0.25) length = real - int(rng, 1, Math.max(1, pad));
      else if (r < 0.5) length = real + int(rng, 1, 16);
      else if (r < 0.6) length = real - int(rng, 1, 64);
      else if (r < 0.7) length = real + (rng() < 0.5 ? -1 : 1) * int(rng, 1, 1000);
      else length = pick(rng, [0, 1, 2, 2 ** 63, 2 ** 64 - 1, 2 ** 53, 100_000_001, real + data.length, real + data.length + 1, -1]);
      rewriteSt(stPath, headerText, data, length);
      return same(`${stName}: header length ${length} instead of ${real} (padding ${pad})`);
    }
    case 'header-reformat': {
      const r = rng();
      if (r < 0.4) {
        // The data laid out in another order, the offsets following it: the same tensors.
        const order = shuffle(rng, names);
        const h = { __metadata__: header.__metadata__ };
        const parts = [];
        let at = 0;
        for (const n of order) {
          const [b, e] = header[n].data_offsets;
          h[n] = { ...header[n], data_offsets: [at, at + e - b] };
          parts.push(data.subarray(b, e));
          at += e - b;
        }
        rewriteSt(stPath, padded(JSON.stringify(h)), Buffer.concat(parts));
        return same(`${stName}: data relaid out in another tensor order`);
      }
      const keys = shuffle(rng, Object.keys(header));
      const h = {};
      for (const k of keys) h[k] = header[k];
      if (rng() < 0.3) delete h.__metadata__;
      else if (rng() < 0.3) h.__metadata__ = { format: 'pt', note: 'x y z', empty: '' };
      const indent = pick(rng, [0, 1, 2, '\t']);
      let text = JSON.stringify(h, null, indent);
      text = rng() < 0.5 ? text + ' '.repeat(int(rng, 0, 40)) : padded(text);
      rewriteSt(stPath, text, data);
      return same(`${stName}: header keys shuffled, indent ${JSON.stringify(indent)}, padding changed`);
    }
    case 'header-entry': {
      const h = clone(header);
      const other = pick(rng, names);
      const op = int(rng, 0, 9);
      if (op === 0) {
        delete h[name];
        return withHeader(h, `entry ${name} deleted`);
      }
      if (op === 1 || op === 2) {
        const entry = JSON.stringify(op === 1 ? header[name] : header[other]);
        const text = JSON.stringify(header).replace(`"${name}":${JSON.stringify(header[name])}`, `"${name}":${JSON.stringify(header[name])},"${name}":${entry}`);
        rewriteSt(stPath, padded(text), data);
        return same(`${stName}: entry ${name} duplicated${op === 2 ? ` with the value of ${other}` : ''}`);
      }
      if (op === 3) {
        h[`${name}.renamed`] = h[name];
        delete h[name];
        return withHeader(h, `${name} renamed`);
      }
      if (op === 4) {
        h[other] = h[name];
        delete h[name];
        return withHeader(h, `${name} renamed to ${other}`);
      }
      if (op === 5) {
        h[name] = oddValue(rng);
        return withHeader(h, `entry ${name} := ${JSON.stringify(h[name])}`);
      }
      if (op === 6) {
        const field = pick(rng, ['dtype', 'shape', 'data_offsets']);
        delete h[name][field];
        return withHeader(h, `${name}.${field} deleted`);
      }
      if (op === 7) {
        h[name][pick(rng, ['extra', 'offsets', 'Dtype', '__proto__'])] = oddValue(rng);
        return withHeader(h, `${name}: an unknown key added`);
      }
      if (op === 8) {
        // Two entries' values swapped: the same bytes under the other name.
        [h[name], h[other]] = [h[other], h[name]];
        const alike = header[name].dtype === header[other].dtype && JSON.stringify(header[name].shape) === JSON.stringify(header[other].shape);
        return withHeader(h, `entries ${name} and ${other} swapped`, alike ? 'valid' : 'same');
      }
      h[name] = { data_offsets: h[name].data_offsets, shape: h[name].shape, dtype: h[name].dtype }; // field order
      return withHeader(h, `${name}: fields reordered`);
    }
    case 'dtype': {
      const h = clone(header);
      const old = h[name].dtype;
      const dtype = rng() < 0.7 ? pick(rng, Object.keys(DTYPE_BITS)) : pick(rng, ['bf16', 'BF16 ', 'Q4_K', '', 'F8', 'C64', 'FLOAT', 7, null, true, [], {}, ['BF16']]);
      h[name].dtype = dtype;
      const reinterpret = typeof dtype === 'string' && DTYPE_BITS[dtype] !== undefined && DTYPE_BITS[dtype] === DTYPE_BITS[old] && dtype !== old;
      return withHeader(h, `${name}: dtype ${old} -> ${JSON.stringify(dtype)}`, reinterpret ? 'data' : 'same');
    }
    case 'shape': {
      const h = clone(header);
      const shape = h[name].shape;
      const k = int(rng, 0, Math.max(0, shape.length - 1));
      const op = int(rng, 0, 11);
      if (op === 0) shape[k] += 1;
      else if (op === 1) shape[k] -= 1;
      else if (op === 2) shape[k] *= 2;
      else if (op === 3) shape[k] = pick(rng, [0, -1, 1.5, '4', null, 2 ** 53, 1e20, 2 ** 31, true]);
      else if (op === 4) h[name].shape = [];
      else if (op === 5) shape.push(1);
      else if (op === 6) shape.unshift(1);
      else if (op === 7) shape.reverse();
      else if (op === 8) h[name].shape = [2 ** 26, 2 ** 26, 2 ** 26];
      else if (op === 9) h[name].shape = oddValue(rng);
      else if (op === 10 && shape.length >= 2) h[name].shape = [shape[0] * shape[1], ...shape.slice(2)];
      else h[name].shape = Array(int(rng, 20, 200)).fill(1).concat(shape);
      return withHeader(h, `${name}: shape ${JSON.stringify(header[name].shape)} -> ${JSON.stringify(h[name].shape).slice(0, 80)}`);
    }
    case 'offsets': {
      const h = clone(header);
      const o = h[name].data_offsets;
      const k = int(rng, 1, 64);
      const op = int(rng, 0, 11);
      if (op === 0) o[0] += k;
      else if (op === 1) o[0] -= k;
      else if (op === 2) o[1] += k;
      else if (op === 3) o[1] -= k;
      else if (op === 4) { o[0] += k; o[1] += k; }
      else if (op === 5) { o[0] -= k; o[1] -= k; }
      else if (op === 6) h[name].data_offsets = [o[0]];
      else if (op === 7) h[name].data_offsets = [o[0], o[1], o[1]];
      else if (op === 8) h[name].data_offsets = [o[1], o[0]];
      else if (op === 9) o[int(rng, 0, 1)] = pick(rng, [-1, 1.5, '8', null, 2 ** 53, 2 ** 64, 1e300, [], true]);
      else if (op === 10) h[name].data_offsets = oddValue(rng);
      else {
        const other = pick(rng, names);
        const oo = h[other].data_offsets;
        const equal = o[1] - o[0] === oo[1] - oo[0];
        h[name].data_offsets = oo;
        h[other].data_offsets = o;
        return withHeader(h, `offsets of ${name} and ${other} swapped`, equal && other !== name ? 'data' : 'same');
      }
      return withHeader(h, `${name}: data_offsets ${JSON.stringify(header[name].data_offsets)} -> ${JSON.stringify(h[name].data_offsets)}`);
    }
    case 'metadata': {
      const h = clone(header);
      const v = pick(rng, [null, 1, 'pt', [], ['pt'], { format: 1 }, { format: null }, { format: {} }, { format: 'pt', extra: 'x' }, {}, undefined, { format: 'pt', nested: ['a'] }]);
      if (v === undefined) delete h.__metadata__;
      else h.__metadata__ = v;
      return withHeader(h, `__metadata__ := ${JSON.stringify(v)}`);
    }
    case 'header-bytes': {
      const text = JSON.stringify(header);
      const op = int(rng, 0, 11);
      const at = int(rng, 1, text.length - 2);
      const raw = Buffer.from(padded(text));
      if (op === 0 || op === 1) {
        raw[int(rng, 0, raw.length - 1)] = op === 0 ? int(rng, 0, 255) : pick(rng, [0x30, 0x31, 0x39, 0x22, 0x2c, 0x5b, 0x7d, 0x20, 0x0a, 0x41, 0x5c]);
        fs.writeFileSync(stPath, stBytes(raw, data));
        return same(`${stName}: one header byte replaced`);
      }
      if (op === 2) {
        const bad = pick(rng, [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]]);
        const q = text.indexOf('"', at);
        const b = Buffer.concat([Buffer.from(text.slice(0, q + 1)), Buffer.from(bad), Buffer.from(text.slice(q + 1))]);
        fs.writeFileSync(stPath, stBytes(Buffer.concat([b, Buffer.alloc((8 - (b.length % 8)) % 8, 0x20)]), data));
        return same(`${stName}: invalid UTF-8 ${JSON.stringify(bad)} in a string`);
      }
      if (op === 3) {
        rewriteSt(stPath, padded(pick(rng, [' ', '[', '\ufeff', '\n']) + text.slice(1)), data);
        return same(`${stName}: first character changed`);
      }
      if (op === 4) {
        rewriteSt(stPath, padded('\ufeff' + text), data);
        return same(`${stName}: byte-order mark before the header`);
      }
      if (op === 5) {
        const h = clone(header);
        const bad = pick(rng, ['\u0001', '\u001f', '\u007f', '\n', '\u0000']);
        h[`${name}${bad}`] = h[name];
        delete h[name];
        return withHeader(h, `${name}: a control character in the name`);
      }
      if (op === 6) {
        const t2 = text.replace(`"${name}"`, `"${name}\u0001"`);
        rewriteSt(stPath, padded(t2), data);
        return same(`${stName}: a raw control character in a name`);
      }
      if (op === 7) {
        const depth = int(rng, 100, 20000);
        const t2 = text.replace(`"shape":${JSON.stringify(header[name].shape)}`, `"shape":${'['.repeat(depth)}${']'.repeat(depth)}`);
        rewriteSt(stPath, padded(t2), data);
        return same(`${stName}: ${name}.shape nested ${depth} deep`);
      }
      if (op === 8) {
        rewriteSt(stPath, padded(pick(rng, ['[]', 'null', '1', '"x"', '{}', '{"__metadata__":{}}', 'true', `[${text}]`])), data);
        return same(`${stName}: header not the object of tensors`);
      }
      if (op === 9) {
        // Numbers written another way: 1e2 for 100, 100.0: JSON numbers of the same value.
        const o = header[name].data_offsets;
        const t2 = text.replace(`"data_offsets":[${o[0]},${o[1]}]`, `"data_offsets":[${o[0] === 0 ? '-0' : `${o[0]}.0`},${o[1]}E0]`);
        rewriteSt(stPath, padded(t2), data);
        return same(`${stName}: ${name} offsets written as ${o[0]}.0 / ${o[1]}E0`);
      }
      if (op === 10) {
        rewriteSt(stPath, padded(text.slice(0, at)), data);
        return same(`${stName}: header text cut at ${at}`);
      }
      const t2 = text.slice(0, at) + pick(rng, [',', ':', '}', ']', '"', '\\', 'NaN', '//', ' ', '\t\n']) + text.slice(at);
      rewriteSt(stPath, padded(t2), data);
      return same(`${stName}: a character inserted in the header at ${at}`);
    }
    case 'index': {
      const idx = clone(base.index);
      const map = idx.weight_map;
      const shards = Object.keys(base.files);
      const t = pick(rng, Object.keys(map));
      const writeIndex = (value, what, expect = 'same') => {
        fs.writeFileSync(indexPath, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
        return { expect, what: `index: ${what}` };
      };
      const op = int(rng, 0, 15);
      if (op === 0) {
        fs.rmSync(path.join(dir, pick(rng, shards)));
        return same('a shard deleted');
      }
      if (op === 1) {
        map[t] = pick(rng, shards.filter((s) => s !== map[t]));
        return writeIndex(idx, `${t} mapped to another shard`);
      }
      if (op === 2) {
        map[t] = pick(rng, ['../' + map[t], '/etc/passwd', `/${map[t]}`, `sub/${map[t]}`, '..', '.', '', 'config.json', 'model.safetensors.index.json', `${map[t]}\u0000`, `.\\${map[t]}`, `./${map[t]}`]);
        return writeIndex(idx, `${t} mapped to ${JSON.stringify(map[t])}`);
      }
      if (op === 3) {
        map[t] = 'model-09999-of-09999.safetensors';
        return writeIndex(idx, `${t} mapped to a shard that does not exist`);
      }
      if (op === 4) {
        delete map[t];
        return writeIndex(idx, `${t} dropped from weight_map`);
      }
      if (op === 5) {
        map[`${t}.extra`] = pick(rng, shards);
        return writeIndex(idx, 'a tensor no shard has added');
      }
      if (op === 6) {
        map['model.extra.weight'] = 'model-extra.safetensors';
        return writeIndex(idx, 'a tensor of an absent shard added');
      }
      if (op === 7) {
        map[t] = oddValue(rng);
        return writeIndex(idx, `${t} mapped to ${JSON.stringify(map[t])}`);
      }
      if (op === 8) {
        idx.weight_map = pick(rng, [[], null, 'x', {}, 1, undefined, [map]]);
        return writeIndex(idx, `weight_map := ${JSON.stringify(idx.weight_map)?.slice(0, 40)}`);
      }
      if (op === 9) return writeIndex(pick(rng, [[], 'x', 1, null, [idx]]), 'not an object');
      if (op === 10) {
        idx.metadata = pick(rng, [null, 1, 'x', [], { total_size: -5 }, { total_size: 'big' }, undefined]);
        return writeIndex(idx, 'metadata changed (not read)');
      }
      if (op === 11) {
        const text = (rng() < 0.5 ? '\ufeff' : '') + JSON.stringify(Object.fromEntries(shuffle(rng, Object.entries(idx))), null, pick(rng, [0, 1, '\t']));
        return writeIndex(text, 'reformatted');
      }
      if (op === 12) {
        const text = JSON.stringify(idx);
        return writeIndex(rng() < 0.5 ? text.slice(0, int(rng, 0, text.length - 1)) : text.replace('{', '{,'), 'broken JSON');
      }
      if (op === 13) {
        const [a, b] = shuffle(rng, shards);
        fs.renameSync(path.join(dir, a), path.join(dir, 'tmp'));
        fs.renameSync(path.join(dir, b), path.join(dir, a));
        fs.renameSync(path.join(dir, 'tmp'), path.join(dir, b));
        return same(`shard files ${a} and ${b} swapped`);
      }
      if (op === 14) {
        fs.rmSync(indexPath);
        return same('index removed (every *.safetensors file is read)');
      }
      const a = pick(rng, shards);
      fs.renameSync(path.join(dir, a), path.join(dir, a.replace('model-', 'renamed-')));
      return same(`shard ${a} renamed`);
    }
    case 'config-value': {
      const cfg = clone(base.config);
      const key = pick(rng, configKeys(base.v.kind));
      const old = cfg[key];
      const num = typeof old === 'number' ? old : 4;
      const choices = [1e9, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e308, 0, -1, -0.5, 0.5, 1.5, 'NaN', 'Infinity', '7', true, false, null, [], {}, [1], 3.5e38, -3.5e38, 1e-45, 3.4e38,
        num + 1, num - 1, num * 2, num / 2, 'silu', 'gelu', 'relu', 'sigmoid', 'softmax', 'mixtral', 'qwen3_moe', 'deepseek_v3', 'gpt_oss', 'llama', ['MixtralForCausalLM'], [0], [0, 1], [5], [-1], 65536, 65537, 1 << 24, (1 << 24) + 1];
      const r = rng();
      let text;
      let what;
      if (r < 0.08) {
        delete cfg[key];
        text = JSON.stringify(cfg);
        what = `${key} deleted`;
      } else if (r < 0.14) {
        text = JSON.stringify({ ...cfg, [key]: 12345 }).replace('12345', pick(rng, ['1e999', '-1e999', '1E400', '4.9e-325', '123456789012345678901234567890']));
        what = `${key} := a number out of double range`;
      } else {
        cfg[key] = pick(rng, choices);
        text = JSON.stringify(cfg);
        what = `${key}: ${JSON.stringify(old)} -> ${JSON.stringify(cfg[key])}`;
      }
      fs.writeFileSync(configPath, text);
      return valid(`config.json ${what}`);
    }
    case 'config-json': {
      const text = JSON.stringify(base.config, null, 2);
      const op = int(rng, 0, 8);
      if (op === 0) fs.writeFileSync(configPath, text.slice(0, int(rng, 0, text.length - 2)));
      else if (op === 1) fs.writeFileSync(configPath, pick(rng, ['[]', 'null', '"x"', '1', '', ' ', '{}', `[${text}]`]));
      else if (op === 2) fs.writeFileSync(configPath, '\ufeff' + text);
      else if (op === 3) fs.writeFileSync(configPath, Buffer.concat([Buffer.from(text.slice(0, 20)), Buffer.from(pick(rng, [[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80]])), Buffer.from(text.slice(20))]));
      else if (op === 4) fs.writeFileSync(configPath, JSON.stringify(Object.fromEntries(shuffle(rng, Object.entries(base.config)))));
      else if (op === 5) fs.writeFileSync(configPath, text.replace('{', `{\n  "num_hidden_layers": ${pick(rng, [1, 1e9, 2 ** 32, 0])},`));
      else if (op === 6) fs.writeFileSync(configPath, text.replace('{', '{ // a comment\n'));
      else if (op === 7) fs.writeFileSync(configPath, text.replace(/\n}$/, ',\n}'));
      else fs.writeFileSync(configPath, text.replace('"hidden_act": "silu"', '"hidden_act": NaN'));
      return { expect: op === 2 || op === 4 ? 'same' : 'valid', what: `config.json text mutation ${op}` };
    }
    case 'special': {
      const targets = [stPath, configPath, ...(base.index ? [indexPath] : [])];
      const file = rng() < 0.6 ? stPath : pick(rng, targets);
      const elsewhere = path.join(ctx.scratch, `elsewhere-${ctx.caseId}`);
      fs.mkdirSync(elsewhere, { recursive: true });
      const op = pick(rng, ['fifo', 'fifo-link', 'dir', 'dev-zero', 'dev-null', 'dev-urandom', 'dangling', 'loop', 'empty', 'socket', 'link-copy', 'link-chain', 'hardlink', 'secret', 'link-dir']);
      const original = path.join(elsewhere, 'original');
      fs.renameSync(file, original);
      switch (op) {
        case 'fifo': execFileSync('mkfifo', [file]); break;
        case 'fifo-link': execFileSync('mkfifo', [path.join(elsewhere, 'pipe')]); fs.symlinkSync(path.join(elsewhere, 'pipe'), file); break;
        case 'dir': fs.mkdirSync(file); break;
        case 'dev-zero': fs.symlinkSync('/dev/zero', file); break;
        case 'dev-null': fs.symlinkSync('/dev/null', file); break;
        case 'dev-urandom': fs.symlinkSync('/dev/urandom', file); break;
        case 'dangling': fs.symlinkSync(path.join(elsewhere, 'nothing'), file); break;
        case 'loop': fs.symlinkSync(file, file); break;
        case 'empty': fs.writeFileSync(file, ''); break;
        case 'socket': {
          const sock = path.join(elsewhere, 's');
          ctx.server = net.createServer();
          ctx.server.listen(sock);
          ctx.waitFor = new Promise((resolve) => ctx.server.on('listening', resolve));
          fs.symlinkSync(sock, file);
          break;
        }
        case 'link-copy': fs.symlinkSync(original, file); break;
        case 'link-chain': fs.symlinkSync(original, path.join(elsewhere, 'hop')); fs.symlinkSync(path.relative(path.dirname(file), path.join(elsewhere, 'hop')), file); break;
        case 'hardlink': fs.linkSync(original, file); break;
        case 'secret': fs.writeFileSync(path.join(elsewhere, 'secret'), SECRET); fs.symlinkSync(path.join(elsewhere, 'secret'), file); break;
        case 'link-dir': fs.symlinkSync(elsewhere, file); break;
      }
      return same(`${path.basename(file)} replaced: ${op}`);
    }
  }
  throw new Error(`unknown mutation kind ${kind}`);
}

// ---------------------------------------------------------------------------------------------
// Worker: runs cases, reports outcomes

const CODES = new Set(['ERR_MOE_CHECKPOINT_FILE', 'ERR_MOE_CHECKPOINT_HEADER', 'ERR_MOE_CHECKPOINT_CONFIG', 'ERR_MOE_CHECKPOINT_TENSOR', 'ERR_MOE_CHECKPOINT_UNSUPPORTED']);

function hiddenFor(H) {
  const rng = mulberry32(7 + H);
  return Float32Array.from({ length: 2 * H }, () => 2 * rng() - 1);
}

class Runner {
  constructor(dist, scratch) {
    this.lib = require(path.join(dist, 'index.js'));
    this.scratch = scratch;
    this.bases = new Map();
  }

  /** The base checkpoint of variant vi and its outputs, built on first use. */
  async base(vi) {
    let b = this.bases.get(vi);
    if (!b) {
      b = writeBase(VARIANTS[vi], path.join(this.scratch, `base-${process.pid}-${vi}`));
      const r = await this.load(b.dir);
      if (r.error) throw new Error(`the unmutated ${VARIANTS[vi].kind} checkpoint does not load: ${r.error.stack}`);
      b.outputs = r.outputs;
      this.bases.set(vi, b);
    }
    return b;
  }

  /** Opens and loads every MoE layer; { outputs } or { error, phase }. */
  async load(dir) {
    const { openCheckpoint } = this.lib;
    let phase = 'open';
    const outputs = new Map();
    try {
      const ckpt = await openCheckpoint(dir);
      phase = 'plan';
      for (const n of ckpt.moeLayers) ckpt.layerInfo(n);
      ckpt.estimate();
      for (const n of ckpt.moeLayers) {
        phase = 'load';
        const block = await ckpt.loadMoeLayer(n, { threads: 1 });
        phase = 'forward';
        try {
          const hidden = hiddenFor(ckpt.config.hiddenSize);
          const out = block.forwardSync(hidden);
          const again = await block.forward(hidden);
          if (Buffer.compare(bytesOf(out), bytesOf(again)) !== 0) throw new Error('forward and forwardSync differ');
          outputs.set(n, Buffer.from(bytesOf(out)));
        } finally {
          block.dispose();
        }
      }
      return { outputs };
    } catch (error) {
      return { error, phase };
    }
  }

  async run(seed, i) {
    const { vi, kind, rng } = planCase(seed, i);
    const base = await this.base(vi);
    const dir = path.join(this.scratch, `case-${i}`);
    fs.cpSync(base.dir, dir, { recursive: true });
    const ctx = { scratch: this.scratch, caseId: i, server: null, waitFor: null };
    let m;
    try {
      m = mutate(base, dir, kind, rng, ctx);
      if (ctx.waitFor) await ctx.waitFor;
      const r = await this.load(dir);
      return { i, kind, variant: `${base.v.kind}/${base.v.dtype}${base.v.shards ? `/${base.v.shards} shards` : ''}`, what: m.what, ...classify(this.lib, base, m, r) };
    } finally {
      ctx.server?.close();
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(path.join(this.scratch, `elsewhere-${i}`), { recursive: true, force: true });
    }
  }
}

function classify(lib, base, m, r) {
  if (r.error) {
    const e = r.error;
    const message = String(e?.stack ?? e);
    if (r.phase === 'forward') return { outcome: 'lie', detail: `a forward threw: ${message}` };
    if (e instanceof lib.CheckpointError) {
      if (!CODES.has(e.code)) return { outcome: 'other-error', detail: `CheckpointError with code ${e.code}: ${e.message}` };
      if (leaks(e.message)) return { outcome: 'leak', detail: e.message };
      return { outcome: 'checkpoint-error', code: e.code, detail: e.message };
    }
    return { outcome: 'other-error', detail: `${r.phase}: ${message}` };
  }
  for (const [n, out] of r.outputs) {
    const values = new Float32Array(out.buffer, out.byteOffset, out.byteLength / 4);
    if (m.expect !== 'data' && !values.every(Number.isFinite)) return { outcome: 'lie', detail: `layer ${n}: the output is not finite` };
  }
  if (m.expect === 'same') {
    const want = [...base.outputs.keys()].join(','), got = [...r.outputs.keys()].join(',');
    if (want !== got) return { outcome: 'lie', detail: `loaded MoE layers ${got}, not ${want}` };
    for (const [n, out] of r.outputs) {
      if (Buffer.compare(out, base.outputs.get(n)) !== 0) return { outcome: 'lie', detail: `layer ${n}: the output differs from the unmutated checkpoint's` };
    }
  }
  return { outcome: 'honest', detail: m.expect === 'same' ? 'bitwise equal' : m.expect === 'valid' ? 'finite' : 'loaded as the header says' };
}

async function workerMain(o) {
  const scratch = process.env.MOE_FUZZ_SCRATCH;
  const runner = new Runner(o.dist, scratch);
  process.on('message', async (msg) => {
    if (msg.type === 'case') {
      let result;
      try {
        result = await runner.run(msg.seed, msg.i);
      } catch (err) {
        result = { i: msg.i, outcome: 'other-error', detail: `fuzzer: ${err?.stack ?? err}` };
      }
      process.send({ type: 'result', result });
    } else if (msg.type === 'exit') {
      process.exit(0);
    }
  });
  process.send({ type: 'ready' });
}

// ---------------------------------------------------------------------------------------------
// Parent: schedules cases on workers, detects crashes and hangs, prints the counts

const FAILURES = new Set(['lie', 'leak', 'other-error', 'crash', 'hang']);
const OUTCOMES = ['checkpoint-error', 'honest', 'lie', 'leak', 'other-error', 'crash', 'hang'];

function staleDist(dist) {
  const lib = path.join(__dirname, '..', 'lib', 'checkpoint');
  if (!fs.existsSync(lib)) return false;
  const built = (f) => path.join(dist, 'checkpoint', f.replace(/\.ts$/, '.js'));
  return fs.readdirSync(lib).some((f) => f.endsWith('.ts') && (!fs.existsSync(built(f)) || fs.statSync(built(f)).mtimeMs < fs.statSync(path.join(lib, f)).mtimeMs));
}

async function parentMain(o) {
  if (!fs.existsSync(path.join(o.dist, 'index.js'))) usage(`${o.dist}/index.js not found: run \`npx tsc -p tsconfig.json\` first`);
  if (staleDist(o.dist)) console.error(`fuzz-checkpoints: warning: ${o.dist} is older than lib/checkpoint: run \`npx tsc -p tsconfig.json\``);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-fuzz-'));
  const results = [];
  const started = Date.now();
  try {
    if (o.case !== null) {
      process.env.MOE_FUZZ_SCRATCH = scratch;
      const r = await new Runner(o.dist, scratch).run(o.seed, o.case);
      console.log(JSON.stringify(r, null, 2));
      return FAILURES.has(r.outcome) ? 1 : 0;
    }
    let next = 0;
    const pending = new Set();
    await new Promise((resolveAll) => {
      const startWorker = () => {
        const child = fork(__filename, ['--worker', '--dist', o.dist], { env: { ...process.env, MOE_FUZZ_SCRATCH: scratch }, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
        let current = null, timer = null, stderr = '';
        child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
        const give = () => {
          if (next >= o.count) {
            current = null;
            child.send({ type: 'exit' });
            return;
          }
          current = next++;
          timer = setTimeout(() => {
            const { vi, kind } = planCase(o.seed, current);
            results.push({ i: current, kind, variant: VARIANTS[vi].kind, outcome: 'hang', detail: `no result after ${o.timeout} ms` });
            current = null;
            child.kill('SIGKILL');
          }, o.timeout);
          child.send({ type: 'case', seed: o.seed, i: current });
        };
        pending.add(child);
        child.on('message', (msg) => {
          if (msg.type === 'ready') give();
          else if (msg.type === 'result') {
            clearTimeout(timer);
            results.push(msg.result);
            if (results.length % 500 === 0 && !o.json) process.stderr.write(`  ${results.length}/${o.count} cases\n`);
            give();
          }
        });
        child.on('exit', (code, signal) => {
          clearTimeout(timer);
          pending.delete(child);
          if (current !== null) {
            const { vi, kind } = planCase(o.seed, current);
            results.push({ i: current, kind, variant: VARIANTS[vi].kind, outcome: 'crash', detail: `worker exited (code ${code}, signal ${signal}): ${stderr.trim().slice(-1500)}` });
            current = null;
          }
          if (next < o.count) startWorker();
          else if (pending.size === 0) resolveAll();
        });
      };
      for (let w = 0; w < Math.min(o.workers, Math.max(1, o.count)); w++) startWorker();
      if (o.count === 0) resolveAll();
    });
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  results.sort((a, b) => a.i - b.i);
  return report(o, results, Date.now() - started);
}

function report(o, results, ms) {
  const byOutcome = Object.fromEntries(OUTCOMES.map((k) => [k, 0]));
  const byKind = {};
  const codes = {};
  for (const r of results) {
    byOutcome[r.outcome] = (byOutcome[r.outcome] ?? 0) + 1;
    byKind[r.kind] ??= Object.fromEntries(OUTCOMES.map((k) => [k, 0]));
    byKind[r.kind][r.outcome] += 1;
    if (r.code) codes[r.code] = (codes[r.code] ?? 0) + 1;
  }
  const failures = results.filter((r) => FAILURES.has(r.outcome));
  if (o.json) {
    console.log(JSON.stringify({ seed: o.seed, count: results.length, ms, byOutcome, byKind, codes, failures: failures.slice(0, 50) }));
  } else {
    console.log(`checkpoint fuzz: ${results.length} cases, seed ${o.seed}, ${(ms / 1000).toFixed(1)} s`);
    const cols = OUTCOMES.filter((k) => byOutcome[k] > 0 || !FAILURES.has(k));
    const w = Math.max(...Object.keys(byKind).map((k) => k.length), 7);
    console.log(`  ${'kind'.padEnd(w)}  ${cols.map((c) => c.padStart(16)).join('')}`);
    for (const k of KINDS.filter((k) => byKind[k])) console.log(`  ${k.padEnd(w)}  ${cols.map((c) => String(byKind[k][c]).padStart(16)).join('')}`);
    console.log(`  ${'all'.padEnd(w)}  ${cols.map((c) => String(byOutcome[c]).padStart(16)).join('')}`);
    console.log(`  codes: ${Object.entries(codes).map(([c, n]) => `${c} ${n}`).join(', ')}`);
    for (const f of failures.slice(0, o.verbose ? failures.length : 20)) {
      console.log(`FAIL case ${f.i} (${f.variant}, ${f.kind}: ${f.what ?? ''}): ${f.outcome}: ${String(f.detail).slice(0, 600)}`);
    }
    if (failures.length) console.log(`${failures.length} failure(s); reproduce one with: node scripts/fuzz-checkpoints.js --seed ${o.seed} --case N`);
  }
  return failures.length ? 1 : 0;
}

const opts = parseArgs(process.argv.slice(2));
if (opts.worker) {
  workerMain(opts);
} else {
  parentMain(opts).then((code) => { process.exitCode = code; }, (err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
