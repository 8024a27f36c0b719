// The MoE forward in straightforward JavaScript loops: f32 weights (Float32Array), sums in JS
// numbers (float64). It is both a peer (what a JS-only project would write) and the reference
// the output checks compare against (docs/spec.md "The MoE forward for one token").
'use strict';

const ACTIVATIONS = {
  // gpt-oss: g' = min(g, limit), u' = clamp(u, ±limit), g' · sigmoid(alpha · g') · (u' + 1)
  swigluoai: (g, u) => {
    const gc = Math.min(g, 7), uc = Math.max(-7, Math.min(7, u));
    return gc / (1 + Math.exp(-1.702 * gc)) * (uc + 1);
  },
  silu: (g, u) => g / (1 + Math.exp(-g)) * u,
};

/** Top-K of the row's logits (ties to the lower index), softmax over those K. */
function route(logits, t, E, K) {
  const row = Array.from({ length: E }, (_, e) => [logits[t * E + e], e]);
  row.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  const top = row.slice(0, K);
  const max = top[0][0];
  const ex = top.map(([v]) => Math.exp(v - max));
  const sum = ex.reduce((a, b) => a + b, 0);
  return top.map(([, e], k) => ({ expert: e, weight: ex[k] / sum }));
}

/**
 * out [tokens, H] for the first `tokens` rows of hidden. Weights: w13 [E, 2I, H] interleaved,
 * w2 [E, H, I], biases [E, 2I] / [E, H] or undefined; all Float32Array.
 */
function plainMoe({ E, H, I, K, activation }, { w13, w2, b13, b2 }, hidden, logits, tokens) {
  const act = ACTIVATIONS[activation];
  if (!act) throw new RangeError(`plain JS: no activation '${activation}'`);
  const out = new Float32Array(tokens * H);
  const h = new Float64Array(2 * I), a = new Float64Array(I), y = new Float64Array(H);
  for (let t = 0; t < tokens; t++) {
    const x = hidden.subarray(t * H, (t + 1) * H);
    y.fill(0);
    for (const { expert: e, weight } of route(logits, t, E, K)) {
      for (let r = 0; r < 2 * I; r++) {
        const row = (e * 2 * I + r) * H;
        let acc = b13 ? b13[e * 2 * I + r] : 0;
        for (let c = 0; c < H; c++) acc += w13[row + c] * x[c];
        h[r] = acc;
      }
      for (let j = 0; j < I; j++) a[j] = act(h[2 * j], h[2 * j + 1]);
      for (let o = 0; o < H; o++) {
        const row = (e * H + o) * I;
        let acc = b2 ? b2[e * H + o] : 0;
        for (let j = 0; j < I; j++) acc += w2[row + j] * a[j];
        y[o] += weight * acc;
      }
    }
    out.set(y, t * H);
  }
  return out;
}

module.exports = { plainMoe };
