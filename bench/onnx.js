// A one-node ONNX model around ONNX Runtime's com.microsoft::MoE contrib operator, written as
// protobuf bytes by a tiny encoder (only the onnx.proto fields this model needs).
//
// The expert weights are graph inputs, not initializers: a protobuf message is limited to
// 2 GB and gpt-oss-20b's f32 W13 alone is 2.1 GB. The CPU MoE kernel does not pre-pack its
// weights (it hands them to MLAS GEMM on every call), so inputs and initializers run the same code.
'use strict';

// --- protobuf wire format: varint (0) and length-delimited (2) fields, fixed32 (5) floats ---
function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}
const key = (field, wire) => varint((field << 3) | wire);
const int = (field, n) => Buffer.concat([key(field, 0), varint(n)]);
const bytes = (field, b) => Buffer.concat([key(field, 2), varint(b.length), b]);
const str = (field, s) => bytes(field, Buffer.from(s, 'utf8'));
const msg = (field, parts) => bytes(field, Buffer.concat(parts));
function float32(field, x) {
  const b = Buffer.alloc(4);
  b.writeFloatLE(x);
  return Buffer.concat([key(field, 5), b]);
}

// onnx.proto TensorProto.DataType
const ELEM = { f32: 1, f16: 10 };
// onnx.proto AttributeProto.AttributeType
const ATTR = { float: 1, int: 2, string: 3 };

function attribute(name, type, value) {
  if (type === 'string') return msg(5, [str(1, name), bytes(4, Buffer.from(value)), int(20, ATTR.string)]);
  if (type === 'int') return msg(5, [str(1, name), int(3, value), int(20, ATTR.int)]);
  return msg(5, [str(1, name), float32(2, value), int(20, ATTR.float)]);
}

// ValueInfoProto { name, type: TypeProto { tensor_type { elem_type, shape { dim* } } } };
// a string dimension is symbolic (dim_param), a number fixed (dim_value).
function valueInfo(field, name, elem, dims) {
  const shape = dims.map((d) => msg(1, [typeof d === 'string' ? str(2, d) : int(1, d)]));
  return msg(field, [str(1, name), msg(2, [msg(1, [int(1, elem), msg(2, shape)])])]);
}

/**
 * The MoE node with interleaved SwiGLU (swiglu_fusion=1), router logits in, softmax, top-k and
 * normalised routing weights (= gpt-oss's top-k then softmax, = Mixtral's renormalised softmax
 * then top-k). The activation is g' · sigmoid(alpha · g') · (u' + beta) with g' = min(g, limit),
 * u' = clamp(u, ±limit): gpt-oss's swigluoai with (1.702, 1, 7), SiLU-and-mul with (1, 0, ∞).
 * Inputs (T = tokens, symbolic):
 *   input [T, H], router_probs [T, E], fc1_experts_weights [E, 2I, H], fc1_experts_bias [E, 2I],
 *   fc2_experts_weights [E, H, I], fc2_experts_bias [E, H] (biases only if `biases`); output [T, H].
 */
function moeModel({ E, H, I, K, dtype, biases, alpha, beta, limit }) {
  const elem = ELEM[dtype];
  if (!elem) throw new RangeError(`moeModel: dtype must be f32 or f16, got ${dtype}`);
  const inputs = [
    ['input', ['T', H]], ['router_probs', ['T', E]],
    ['fc1_experts_weights', [E, 2 * I, H]], ['fc1_experts_bias', [E, 2 * I]],
    ['fc2_experts_weights', [E, H, I]], ['fc2_experts_bias', [E, H]],
  ].filter(([name]) => biases || !name.endsWith('_bias'));
  const node = msg(1, [
    // An absent optional input is an empty name in its slot.
    ...['input', 'router_probs', 'fc1_experts_weights', 'fc1_experts_bias', 'fc2_experts_weights', 'fc2_experts_bias']
      .map((name) => str(1, biases || !name.endsWith('_bias') ? name : '')),
    str(2, 'output'), str(3, 'moe'), str(4, 'MoE'), str(7, 'com.microsoft'),
    attribute('k', 'int', K), attribute('activation_type', 'string', 'swiglu'), attribute('swiglu_fusion', 'int', 1),
    attribute('activation_alpha', 'float', alpha), attribute('activation_beta', 'float', beta),
    attribute('swiglu_limit', 'float', limit), attribute('normalize_routing_weights', 'int', 1),
  ]);
  const graph = msg(7, [
    node, str(2, 'moe_graph'),
    ...inputs.map(([name, dims]) => valueInfo(11, name, elem, dims)),
    valueInfo(12, 'output', elem, ['T', H]),
  ]);
  return Buffer.concat([
    int(1, 8), // ir_version
    str(2, 'moe-cpu bench'),
    msg(8, [str(1, ''), int(2, 17)]), // opset_import: ai.onnx 17
    msg(8, [str(1, 'com.microsoft'), int(2, 1)]),
    graph,
  ]);
}

module.exports = { moeModel };
