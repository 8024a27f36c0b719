// One factory per competing implementation. create(setup) builds it for one preset and thread
// count and returns { run(hidden, logits, tokens) -> Promise<Float32Array [T, H]>, dispose() };
// it throws (with the reason) when the implementation cannot run here. The runner (peers.js)
// checks and times every implementation the same way.
//   setup = { preset, weights (data.js presetWeights), threads, moe (the moe-cpu module) }
'use strict';

const { fromF16, toF16 } = require('./dtypes');
const { moeModel } = require('./onnx');
const { plainMoe } = require('./plain-moe');

function moeCpu(dtype) {
  return async ({ preset: p, weights: w, threads, moe }) => {
    const layer = new moe.MoeLayer({
      numExperts: p.numExperts, hiddenSize: p.hiddenSize, intermediateSize: p.intermediateSize, topK: p.topK,
      activation: p.activation, isW13Interleaved: true, weightDtype: dtype, routing: p.routing, threads,
      w13: w.w13[dtype], w2: w.w2[dtype], w13Bias: w.b13?.[dtype], w2Bias: w.b2?.[dtype],
    });
    return {
      run: (hidden, logits) => layer.forward(hidden, { logits }),
      dispose: () => layer.dispose(),
    };
  };
}

// ONNX Runtime's activation parameters for each moe-cpu activation (see onnx.js).
const ORT_ACTIVATION = {
  swigluoai: { alpha: 1.702, beta: 1, limit: 7 },
  silu: { alpha: 1, beta: 0, limit: Infinity },
};

function onnxRuntime(dtype) {
  return async ({ preset: p, weights: w, threads }) => {
    if (p.routing.mode === 'sigmoid-grouped') throw new Error('the MoE op has no sigmoid-grouped routing');
    // Resolved from bench/node_modules (the root package does not depend on it).
    const ort = require(require.resolve('onnxruntime-node', { paths: [__dirname] }));
    const E = p.numExperts, H = p.hiddenSize, I = p.intermediateSize;
    const model = moeModel({ E, H, I, K: p.topK, dtype, biases: p.biases, ...ORT_ACTIVATION[p.activation] });
    const session = await ort.InferenceSession.create(model, {
      executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1,
      executionMode: 'sequential', graphOptimizationLevel: 'all',
    });
    const type = dtype === 'f16' ? 'float16' : 'float32';
    const tensor = (data, dims) => new ort.Tensor(type, data, dims);
    const weights = {
      fc1_experts_weights: tensor(w.w13[dtype], [E, 2 * I, H]),
      fc2_experts_weights: tensor(w.w2[dtype], [E, H, I]),
      ...(p.biases && {
        fc1_experts_bias: tensor(w.b13[dtype], [E, 2 * I]),
        fc2_experts_bias: tensor(w.b2[dtype], [E, H]),
      }),
    };
    const convert = dtype === 'f16' ? toF16 : (x) => x;
    return {
      run: async (hidden, logits, T) => {
        const { output } = await session.run({
          input: tensor(convert(hidden), [T, H]), router_probs: tensor(convert(logits), [T, E]), ...weights,
        });
        return dtype === 'f16' ? fromF16(output.data) : output.data;
      },
      dispose: () => session.release(),
    };
  };
}

async function plainJs({ preset: p, weights: w }) {
  const shape = { E: p.numExperts, H: p.hiddenSize, I: p.intermediateSize, K: p.topK, activation: p.activation };
  const f32 = { w13: w.w13.f32, w2: w.w2.f32, b13: w.b13?.f32, b2: w.b2?.f32 };
  return {
    run: async (hidden, logits, T) => plainMoe(shape, f32, hidden, logits, T),
    dispose: () => {},
  };
}

/** Name, weight dtype (for the output check's tolerance), whether it uses the thread count, factory. */
const IMPLEMENTATIONS = [
  { name: 'moe-cpu f32', dtype: 'f32', threaded: true, create: moeCpu('f32') },
  { name: 'moe-cpu bf16', dtype: 'bf16', threaded: true, create: moeCpu('bf16') },
  { name: 'ORT f32', dtype: 'f32', threaded: true, create: onnxRuntime('f32') },
  { name: 'ORT f16', dtype: 'f16', threaded: true, create: onnxRuntime('f16') },
  { name: 'plain JS f32', dtype: 'f32', threaded: false, create: plainJs },
];

/**
 * [moe-cpu implementation, peer]: the speed-ups printed. bf16 against ORT f32 too: ORT's CPU
 * MoE has no bf16, and its f16 path is slow on CPUs without f16 arithmetic.
 */
const RATIOS = [
  ['moe-cpu f32', 'ORT f32'],
  ['moe-cpu bf16', 'ORT f32'],
  ['moe-cpu bf16', 'ORT f16'],
  ['moe-cpu f32', 'plain JS f32'],
];

module.exports = { IMPLEMENTATIONS, RATIOS };
