// API-level test of a built package, for `node --test` (no dependencies, no TypeScript): run by
// scripts/test.js against the arm64 prebuild under qemu-aarch64 (a real arm64 Node), against
// the x64 prebuild under qemu-x86_64 with a CPU without AVX, and from a tarball installed with
// `npm install --strict-allow-scripts`. A gpt-oss-style layer (swigluoai, biases, topk-softmax
// routing from logits) in both W13 layouts, f32 and bf16, against a float64 reference written
// here from docs/spec.md, with SPEC's precision contract.
//   MOE_CPU_PACKAGE          the package folder to test (default: this repository)
//   MOE_CPU_ISA              the kernel set that must be the one running (cpuInfo().kernel)
//   MOE_CPU_EXPECTED_BINARY  the addon file, relative to the package, that must be the one
//                            loaded (not MOE_CPU_BINARY, which would make the loader load it)
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');

const pkg = process.env.MOE_CPU_PACKAGE || path.join(__dirname, '..', '..');
const moe = require(pkg);

// ---- bf16 and data, independent of the library -------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function bf16Bits(x) {
  f32[0] = x;
  const b = u32[0];
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;  // round to nearest even (no NaN here)
}
function bf16Value(bits) {
  u32[0] = bits << 16;
  return f32[0];
}
function roundBf16(x) { return bf16Value(bf16Bits(x)); }

function rng(seed) {
  let s = seed >>> 0;
  return (lo, hi) => {  // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  };
}

// ---- float64 reference (docs/spec.md "The MoE forward") ------------------------------------------

function swigluoai(g, u, alpha = 1.702, limit = 7) {
  const gc = Math.min(g, limit);
  const uc = Math.max(-limit, Math.min(u, limit));
  return (gc / (1 + Math.exp(-alpha * gc))) * (uc + 1);
}

// topk-softmax: top-K logits (ties to the lower index), softmax over them.
function route(logits, T, E, K) {
  const ids = [], weights = [];
  for (let t = 0; t < T; ++t) {
    const row = Array.from(logits.subarray(t * E, (t + 1) * E), (v, e) => ({ v, e }));
    row.sort((a, b) => b.v - a.v || a.e - b.e);
    const top = row.slice(0, K);
    const sum = top.reduce((s, x) => s + Math.exp(x.v - top[0].v), 0);
    for (const x of top) {
      ids.push(x.e);
      weights.push(Math.exp(x.v - top[0].v) / sum);
    }
  }
  return { ids, weights };
}

// Canonical (halves, [E, 2I, H] / [E, H, I]) float values; x [T, H].
function reference(L, x, T, logits, bf16Activations) {
  const { E, H, I, K } = L;
  const { ids, weights } = route(logits, T, E, K);
  const out = new Float64Array(T * H);
  for (let t = 0; t < T; ++t) {
    for (let k = 0; k < K; ++k) {
      const e = ids[t * K + k];
      const a = new Float64Array(I);
      for (let j = 0; j < I; ++j) {
        let g = L.b13[e * 2 * I + j], u = L.b13[e * 2 * I + I + j];
        for (let h = 0; h < H; ++h) {
          g += L.w13[(e * 2 * I + j) * H + h] * x[t * H + h];
          u += L.w13[(e * 2 * I + I + j) * H + h] * x[t * H + h];
        }
        a[j] = bf16Activations ? roundBf16(swigluoai(g, u)) : swigluoai(g, u);
      }
      for (let h = 0; h < H; ++h) {
        let y = L.b2[e * H + h];
        for (let j = 0; j < I; ++j) y += L.w2[(e * H + h) * I + j] * a[j];
        out[t * H + h] += weights[t * K + k] * y;
      }
    }
  }
  return out;
}

function relativeError(ref, got) {
  let diff = 0, max = 0;
  for (let i = 0; i < ref.length; ++i) {
    diff = Math.max(diff, Math.abs(got[i] - ref[i]));
    max = Math.max(max, Math.abs(ref[i]));
  }
  return diff / max;
}

// ---- the cases -------------------------------------------------------------------------------

// Odd sizes (no vector or tile width divides them); E·K large enough that T = 13 reaches the
// native bf16 dot products (moe.cpp uses them from 4 tokens per expert on average).
const E = 4, H = 37, I = 29, K = 2;

function makeLayer(dtype, seed) {
  const r = rng(seed);
  const round = dtype === 'bf16' ? roundBf16 : Math.fround;
  const fill = (n, s) => Float64Array.from({ length: n }, () => round(r(-s, s)));
  return {
    E, H, I, K,
    w13: fill(E * 2 * I * H, 6 / Math.sqrt(H)),  // W13·x reaches swigluoai's clamps at ±7
    w2: fill(E * H * I, 2 / Math.sqrt(I)),
    b13: fill(E * 2 * I, 1),
    b2: fill(E * H, 0.5),
  };
}

// The layer's arrays in `dtype`, W13 and its bias in the given layout.
function options(L, dtype, interleaved, transposed) {
  const rowOf = (r) => (!interleaved ? r : r < I ? 2 * r : 2 * (r - I) + 1);
  const w13 = new Float64Array(L.w13.length), b13 = new Float64Array(L.b13.length);
  for (let e = 0; e < E; ++e) {
    for (let r = 0; r < 2 * I; ++r) {
      b13[e * 2 * I + rowOf(r)] = L.b13[e * 2 * I + r];
      for (let h = 0; h < H; ++h) {
        const v = L.w13[(e * 2 * I + r) * H + h];
        if (transposed) w13[(e * H + h) * 2 * I + rowOf(r)] = v;
        else w13[(e * 2 * I + rowOf(r)) * H + h] = v;
      }
    }
  }
  let w2 = L.w2;
  if (transposed) {
    w2 = new Float64Array(L.w2.length);
    for (let e = 0; e < E; ++e)
      for (let h = 0; h < H; ++h)
        for (let j = 0; j < I; ++j) w2[(e * I + j) * H + h] = L.w2[(e * H + h) * I + j];
  }
  const typed = (v) => (dtype === 'bf16' ? Uint16Array.from(v, bf16Bits) : Float32Array.from(v));
  return {
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K,
    activation: 'swigluoai', isW13Interleaved: interleaved, transposed, weightDtype: dtype,
    w13: typed(w13), w2: typed(w2), w13Bias: typed(b13), w2Bias: typed(L.b2),
    routing: { mode: 'topk-softmax' }, threads: 2,
  };
}

test('the expected binary is the one loaded', { skip: !process.env.MOE_CPU_EXPECTED_BINARY }, () => {
  const loaded = Object.keys(require.cache).filter((f) => f.endsWith('.node'));
  assert.deepEqual(loaded.map((f) => path.relative(pkg, f)), [process.env.MOE_CPU_EXPECTED_BINARY]);
});

test('the forced kernel set is the one running', () => {
  const info = moe.cpuInfo();
  assert.ok(info.kernels.includes(info.kernel), JSON.stringify(info));
  if (process.env.MOE_CPU_ISA) assert.equal(info.kernel, process.env.MOE_CPU_ISA);
});

let seed = 1;
for (const weightDtype of ['f32', 'bf16'])
  for (const actDtype of ['f32', 'bf16'])
    for (const [interleaved, transposed] of [[false, false], [true, false], [true, true]]) {
      const name = `gpt-oss layer: weights ${weightDtype}, activations ${actDtype}, ` +
        `${interleaved ? 'interleaved' : 'halves'}${transposed ? ', transposed' : ''}`;
      const s = seed++;
      test(name, async () => {
        const L = makeLayer(weightDtype, s);
        const layer = new moe.MoeLayer(options(L, weightDtype, interleaved, transposed));
        const r = rng(1000 + s);
        for (const T of [1, 13]) {
          const x = Float64Array.from({ length: T * H }, () =>
            actDtype === 'bf16' ? roundBf16(r(-1, 1)) : Math.fround(r(-1, 1)));
          const logits = Float32Array.from({ length: T * E }, () => r(-3, 3));
          const hidden = actDtype === 'bf16' ? Uint16Array.from(x, bf16Bits) : Float32Array.from(x);
          const ref = reference(L, x, T, logits, actDtype === 'bf16');
          const widen = (o) => (actDtype === 'bf16' ? Float64Array.from(o, bf16Value) : o);
          const tol = weightDtype === 'f32' && actDtype === 'f32' ? 1e-5 : 1e-2;
          const sync = widen(layer.forwardSync(hidden, { logits }));
          assert.ok(relativeError(ref, sync) <= tol, `T=${T} forwardSync: error ${relativeError(ref, sync)} > ${tol}`);
          const async = widen(await layer.forward(hidden, { logits }));
          assert.deepEqual(async, sync, `T=${T}: forward and forwardSync differ`);
        }
        layer.dispose();
      });
    }
