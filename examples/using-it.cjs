// CommonJS has no top-level await: the same steps inside an async function.
const { MoeLayer, selectExperts, toBf16 } = require('moe-cpu');

async function main() {
  const E = 8, H = 64, I = 64, K = 2, T = 3;
  /** @param {number} n */
  const random = (n) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
  const layer = new MoeLayer({
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'swigluoai',
    isW13Interleaved: true, weightDtype: 'bf16',
    w13: toBf16(random(E * 2 * I * H)), w2: toBf16(random(E * H * I)),
  });
  try {
    const hidden = toBf16(random(T * H));                       // bf16 activations in, bf16 out
    const logits = random(T * E);
    const out = await layer.forward(hidden, { logits });
    const route = selectExperts(logits, { tokens: T, numExperts: E, topK: K, routing: layer.routing });
    console.log(`out: ${out.constructor.name} [${T}, ${H}], routed to experts ${[...route.ids].join(',')}`);
  } finally {
    layer.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
