// Inputs of one preset, the same values in every dtype a peer takes.
//
// Weights are bf16 values of magnitude [2^-8, 2^-4) with a random sign: exactly representable
// in bf16, f16 and f32, so every implementation multiplies the same numbers and the output
// check measures arithmetic only. A random block is made once and repeated (copyWithin runs at
// memcpy speed); the timing only needs the bytes to be there.
//
// W13 is given to every implementation in the interleaved layout (ONNX Runtime's CPU MoE only
// takes interleaved SwiGLU). moe-cpu resolves the layout once, when it packs, so its forward is
// the same code whichever layout the preset's checkpoints use.
'use strict';

const RANDOM_WORDS = (1 << 20) + 7; // odd: repeats do not line up with rows

function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s;
  };
}

function repeat(array, n) {
  for (let filled = n; filled < array.length; filled *= 2) array.copyWithin(filled, 0, Math.min(filled, array.length - filled));
}

/** { f32: Float32Array, bf16: Uint16Array, f16: Uint16Array } of `length` equal weights. */
function weights(length, seed) {
  const next = xorshift(seed);
  const f32 = new Float32Array(length), bf16 = new Uint16Array(length), f16 = new Uint16Array(length);
  const f32Bits = new Uint32Array(f32.buffer);
  const n = Math.min(length, RANDOM_WORDS);
  for (let i = 0; i < n; i++) {
    const r = next();
    const sign = r & 0x8000, exp = 119 + ((r >>> 7) & 3), mant = r & 0x7f; // bf16 fields
    bf16[i] = sign | (exp << 7) | mant;
    f32Bits[i] = bf16[i] << 16;
    f16[i] = sign | ((exp - 127 + 15) << 10) | (mant << 3);
  }
  repeat(f32, n); repeat(bf16, n); repeat(f16, n);
  return { f32, bf16, f16 };
}

/** Round to bf16 (and so to f16's precision too; |x| < 2^-14 flushed to 0 to stay f16-normal). */
function bf16Exact(x) {
  if (Math.abs(x) < 2 ** -14) return 0;
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) & 0xffff0000;
  return f[0];
}

/** hidden [T, H]: normal-ish values exact in bf16 and f16. */
function hidden(T, H, seed) {
  const next = xorshift(seed);
  const out = new Float32Array(T * H);
  for (let i = 0; i < out.length; i++) {
    // Sum of 4 uniforms: close enough to a normal distribution.
    const s = (next() + next() + next() + next()) / 2 ** 32 - 2;
    out[i] = bf16Exact(s * 1.7);
  }
  return out;
}

/**
 * logits [T, E]: each row a random permutation of (j - E/2) / 8, j < E. Distinct (ONNX Runtime
 * breaks top-k ties toward the higher index, moe-cpu toward the lower), exact in f16.
 */
function logits(T, E, seed) {
  const next = xorshift(seed);
  const out = new Float32Array(T * E);
  const row = Array.from({ length: E }, (_, j) => (j - E / 2) / 8);
  for (let t = 0; t < T; t++) {
    for (let j = E - 1; j > 0; j--) {
      const k = next() % (j + 1);
      [row[j], row[k]] = [row[k], row[j]];
    }
    out.set(row, t * E);
  }
  return out;
}

/** The weights of a preset: { w13, w2, b13?, b2? }, each { f32, bf16, f16 }; W13 interleaved. */
function presetWeights(p) {
  const E = p.numExperts, H = p.hiddenSize, I = p.intermediateSize;
  return {
    w13: weights(E * 2 * I * H, 1),
    w2: weights(E * H * I, 2),
    b13: p.biases ? weights(E * 2 * I, 3) : undefined,
    b2: p.biases ? weights(E * H, 4) : undefined,
  };
}

module.exports = { presetWeights, hidden, logits };
