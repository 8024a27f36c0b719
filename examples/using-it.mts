import { MoeLayer, selectExperts, toBf16 } from 'moe-cpu';

const E = 8, H = 64, I = 64, K = 2, T = 3;        // gpt-oss-20b: E = 32, H = I = 2880, K = 4
const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);

const layer = new MoeLayer({
  numExperts: E, hiddenSize: H, intermediateSize: I, topK: K,
  activation: 'swigluoai',          // gpt-oss: alpha 1.702, limit 7 (swigluAlpha / swigluLimit)
  isW13Interleaved: true,           // required: gpt-oss true; Mixtral, Qwen, DeepSeek false
  weightDtype: 'bf16',              // Uint16Array of bf16 bit patterns, or 'f32' with Float32Array
  w13: toBf16(random(E * 2 * I * H)),   // [E,2I,H] (transposed: true for [E,H,2I])
  w2: toBf16(random(E * H * I)),        // [E,H,I]  (transposed: [E,I,H])
  w13Bias: toBf16(random(E * 2 * I)),   // [E,2I], optional
  w2Bias: toBf16(random(E * H)),        // [E,H], optional
  routing: { mode: 'topk-softmax' },
});

const hidden = random(T * H);                                   // [T,H]: Float32Array, or bf16 Uint16Array
const logits = random(T * E);                                   // router logits [T,E]
const out = await layer.forward(hidden, { logits });             // -> [T,H], the dtype of hidden
const route = selectExperts(logits, { tokens: T, numExperts: E, topK: K, routing: layer.routing });
const out2 = layer.forwardSync(hidden, route);                  // or precomputed routing { ids, weights } [T,K]
console.log(`out [${T}, ${H}], same both ways: ${out2.every((v, i) => v === out[i])}`);
layer.dispose();                                                // or `using layer = new MoeLayer(…)`
