// Node-API glue: marshals typed arrays to the kernel library and back. No math here.
//
// The TypeScript facade (lib/) validates every argument with precise messages; this layer
// re-checks types, values and sizes (defence in depth), with overflow-checked size
// arithmetic, so that a direct call into the binding can never read or write out of bounds.
// Every error thrown here carries a `code` (docs/errors.md): ERR_MOE_INVALID_ARGUMENT for a
// TypeError / RangeError (kernel errors, moe::InvalidArgument, become RangeError),
// ERR_MOE_OUT_OF_MEMORY, ERR_MOE_DISPOSED, ERR_MOE_INTERNAL.
//
// Threads: everything runs on the calling JS thread except AsyncTask::Run, which runs on the
// dispatcher thread of the addon and drives the native pool (see thread_pool.h); libuv's
// threads are never used.
#include <napi.h>

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "moe_cpu.h"

namespace {

using moe::DType;

// ------------------------------------------------------------------------------------------
// Errors and argument helpers

constexpr const char* kInvalidArgument = "ERR_MOE_INVALID_ARGUMENT";
constexpr const char* kOutOfMemory = "ERR_MOE_OUT_OF_MEMORY";
constexpr const char* kDisposed = "ERR_MOE_DISPOSED";
constexpr const char* kInternal = "ERR_MOE_INTERNAL";
constexpr const char* kAborted = "ERR_MOE_ABORTED";
constexpr const char* kLayerFile = "ERR_MOE_LAYER_FILE";
constexpr const char* kLayerFileIncompatible = "ERR_MOE_LAYER_FILE_INCOMPATIBLE";
constexpr const char* kLayerFileIo = "ERR_MOE_LAYER_FILE_IO";

const char* layer_file_code(const moe::LayerFileError& e) {
  switch (e.kind()) {
    case moe::LayerFileError::Kind::incompatible: return kLayerFileIncompatible;
    case moe::LayerFileError::Kind::io: return kLayerFileIo;
    default: return kLayerFile;
  }
}

// Most native threads one layer may use (lib/validate.ts MAX_THREADS).
constexpr size_t kMaxThreads = 1024;

Napi::Error with_code(Napi::Error error, const char* code) {
  error.Set("code", Napi::String::New(error.Env(), code));
  return error;
}

[[noreturn]] void throw_type(Napi::Env env, const std::string& message) {
  throw with_code(Napi::TypeError::New(env, message), kInvalidArgument);
}
[[noreturn]] void throw_range(Napi::Env env, const std::string& message) {
  throw with_code(Napi::RangeError::New(env, message), kInvalidArgument);
}

// a * b, or a RangeError naming `what` when it does not fit in 64 bits.
size_t checked_mul(Napi::Env env, size_t a, size_t b, const char* what) {
  size_t product;
  if (__builtin_mul_overflow(a, b, &product)) throw_range(env, std::string(what) + ": the sizes multiply past 2^64");
  return product;
}
size_t checked_mul(Napi::Env env, std::initializer_list<size_t> factors, const char* what) {
  size_t product = 1;
  for (size_t f : factors) product = checked_mul(env, product, f, what);
  return product;
}

// A typed array argument as a raw span; rejects other types and detached buffers. Arrays
// from another context (vm) are typed arrays too: Node-API reads their kind, not instanceof.
struct Span {
  void* data = nullptr;
  size_t length = 0;  // elements
  napi_typedarray_type type = napi_float32_array;
  DType dtype() const { return type == napi_uint16_array ? DType::bf16 : DType::f32; }
  size_t element_bytes() const { return type == napi_uint16_array ? 2 : 4; }
};

Span typed_array(const Napi::Value& value, const char* name,
                 std::initializer_list<napi_typedarray_type> allowed) {
  Napi::Env env = value.Env();
  if (!value.IsTypedArray()) throw_type(env, std::string(name) + ": expected a typed array");
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  bool ok = false;
  for (auto t : allowed) ok = ok || array.TypedArrayType() == t;
  if (!ok) throw_type(env, std::string(name) + ": wrong typed array type");
  // The typed array's own data pointer, not its buffer's: on Node 20 the ArrayBuffer calls
  // refuse a SharedArrayBuffer (napi_invalid_arg). A detached buffer has length 0 here.
  Span span;
  void* data = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, value, &span.type, &span.length, &data, nullptr, nullptr), Span());
  span.data = data;
  return span;
}

Span weight_array(const Napi::Value& value, const char* name) {
  return typed_array(value, name, {napi_float32_array, napi_uint16_array});
}

size_t size_arg(const Napi::Value& value, const char* name) {
  Napi::Env env = value.Env();
  if (!value.IsNumber()) throw_type(env, std::string(name) + ": expected a number");
  double v = value.As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v > 9.0e15 || v != std::floor(v)) {
    throw_range(env, std::string(name) + ": expected a non-negative integer");
  }
  return static_cast<size_t>(v);
}

unsigned threads_arg(const Napi::Value& value, const char* name) {
  const size_t n = size_arg(value, name);
  if (n > kMaxThreads) throw_range(value.Env(), std::string(name) + ": expected at most " + std::to_string(kMaxThreads));
  return static_cast<unsigned>(n);
}

// A number the kernels hold as float: finite as a float too.
float float_arg(const Napi::Value& value, const char* name) {
  Napi::Env env = value.Env();
  if (!value.IsNumber()) throw_type(env, std::string(name) + ": expected a number");
  const double v = value.As<Napi::Number>().DoubleValue();
  if (!(std::fabs(v) <= std::numeric_limits<float>::max())) {
    throw_range(env, std::string(name) + ": expected a finite number representable as float32");
  }
  return static_cast<float>(v);
}

// swigluLimit: a positive float, or +Infinity (no clamp).
float limit_arg(const Napi::Value& value, const char* name) {
  if (value.IsNumber() && value.As<Napi::Number>().DoubleValue() == std::numeric_limits<double>::infinity()) {
    return std::numeric_limits<float>::infinity();
  }
  const float v = float_arg(value, name);
  if (!(v > 0)) throw_range(value.Env(), std::string(name) + ": expected a positive number");
  return v;
}

void expect_length(Napi::Env env, const Span& span, size_t expected, const char* name) {
  if (span.length != expected) {
    throw_range(env, std::string(name) + ": expected length " + std::to_string(expected) +
                         ", got " + std::to_string(span.length));
  }
}

// Runs a kernel call, mapping kernel errors to JavaScript ones.
template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const moe::InvalidArgument& e) {
    throw_range(env, e.what());
  } catch (const moe::OutOfMemory& e) {
    throw with_code(Napi::Error::New(env, e.what()), kOutOfMemory);
  } catch (const std::bad_alloc&) {
    throw with_code(Napi::Error::New(env, "moe-cpu: out of memory"), kOutOfMemory);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw with_code(Napi::Error::New(env, std::string("moe-cpu internal error: ") + e.what()), kInternal);
  }
}

// ------------------------------------------------------------------------------------------
// Free functions

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const moe::CpuInfo& cpu = guarded(env, [] { return moe::cpu_info(); });
  Napi::Object out = Napi::Object::New(env);
  out.Set("arch", cpu.arch);
  Napi::Array features = Napi::Array::New(env, cpu.features.size());
  for (size_t i = 0; i < cpu.features.size(); ++i) features.Set(static_cast<uint32_t>(i), cpu.features[i]);
  out.Set("features", features);
  out.Set("kernel", cpu.kernel);
  Napi::Array kernels = Napi::Array::New(env, cpu.kernels.size());
  for (size_t i = 0; i < cpu.kernels.size(); ++i) kernels.Set(static_cast<uint32_t>(i), cpu.kernels[i]);
  out.Set("kernels", kernels);
  out.Set("threads", moe::physical_core_count());
  const std::vector<moe::MicroKernelInfo> list = moe::micro_kernels();
  Napi::Array ukernels = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    Napi::Object k = Napi::Object::New(env);
    k.Set("name", list[i].name);
    k.Set("weights", list[i].weights);
    k.Set("activations", list[i].activations);
    k.Set("regime", list[i].regime);
    k.Set("kernelSet", list[i].kernel_set);
    k.Set("runnable", list[i].runnable);
    ukernels.Set(static_cast<uint32_t>(i), k);
  }
  out.Set("ukernels", ukernels);
  return out;
}

// permuteW13(src, dst, outer, intermediate, inner, toInterleaved); dst may be src (in place).
Napi::Value PermuteW13(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Span src = weight_array(info[0], "w");
  Span dst = weight_array(info[1], "out");
  moe::W13Shape shape{size_arg(info[2], "outer"), size_arg(info[3], "intermediateSize"),
                      size_arg(info[4], "inner")};
  bool to_interleaved = info[5].ToBoolean();
  if (src.type != dst.type) throw_type(env, "out: must have the type of w");
  const size_t elements = checked_mul(env, {shape.outer, 2, shape.intermediate, shape.inner}, "w");
  expect_length(env, src, elements, "w");
  expect_length(env, dst, elements, "out");
  const auto* s0 = static_cast<const uint8_t*>(src.data);
  const auto* d0 = static_cast<const uint8_t*>(dst.data);
  const size_t bytes = src.length * src.element_bytes();
  if (s0 != d0 && s0 < d0 + bytes && d0 < s0 + bytes) throw_range(env, "out: overlaps w without being the same array");
  guarded(env, [&] {
    if (src.data == dst.data) {
      (to_interleaved ? moe::interleave_w13_in_place : moe::deinterleave_w13_in_place)(
          dst.data, dst.element_bytes(), shape);
    } else {
      (to_interleaved ? moe::interleave_w13 : moe::deinterleave_w13)(src.data, dst.data,
                                                                     src.element_bytes(), shape);
    }
  });
  return env.Undefined();
}

moe::Activation activation_arg(const Napi::Value& value) {
  std::string name = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  if (name == "swigluoai") return moe::Activation::swigluoai;
  if (name == "silu") return moe::Activation::silu;
  if (name == "gelu") return moe::Activation::gelu;
  if (name == "gelu_tanh") return moe::Activation::gelu_tanh;
  throw_range(value.Env(), "activation: expected 'swigluoai', 'silu', 'gelu' or 'gelu_tanh', got '" + name + "'");
}

// gatedActivation(x, out, tokens, intermediate, isInterleaved, kind, alpha, limit)
Napi::Value GatedActivation(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Span x = weight_array(info[0], "x");
  Span out = weight_array(info[1], "out");
  size_t tokens = size_arg(info[2], "tokens"), inter = size_arg(info[3], "intermediateSize");
  moe::W13Layout layout = info[4].ToBoolean() ? moe::W13Layout::interleaved : moe::W13Layout::halves;
  moe::ActivationParams params;
  params.kind = activation_arg(info[5]);
  params.swiglu_alpha = float_arg(info[6], "alpha");
  params.swiglu_limit = limit_arg(info[7], "limit");
  if (x.type != out.type) throw_type(env, "out: must have the type of x");
  expect_length(env, x, checked_mul(env, {tokens, 2, inter}, "x"), "x");
  expect_length(env, out, checked_mul(env, tokens, inter, "out"), "out");
  guarded(env, [&] {
    if (x.dtype() == DType::bf16) {
      moe::gated_activation_bf16(params, layout, static_cast<const uint16_t*>(x.data),
                                 static_cast<uint16_t*>(out.data), tokens, inter);
    } else {
      moe::gated_activation_f32(params, layout, static_cast<const float*>(x.data),
                                static_cast<float*>(out.data), tokens, inter);
    }
  });
  return env.Undefined();
}

// Routing options object, as produced by the facade: { mode, renormalize, numGroups,
// topkGroups, correctionBias?, routedScalingFactor }.
moe::RoutingParams routing_arg(const Napi::Value& value, size_t num_experts) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) throw_type(env, "routing: expected an object");
  Napi::Object r = value.As<Napi::Object>();
  moe::RoutingParams params;
  std::string mode = r.Get("mode").IsString() ? r.Get("mode").As<Napi::String>().Utf8Value() : "";
  if (mode == "topk-softmax") {
    params.mode = moe::RoutingMode::topk_softmax;
  } else if (mode == "softmax-topk") {
    params.mode = moe::RoutingMode::softmax_topk;
  } else if (mode == "sigmoid-grouped") {
    params.mode = moe::RoutingMode::sigmoid_grouped;
  } else {
    throw_range(env, "routing.mode: unknown mode '" + mode + "'");
  }
  params.renormalize = r.Get("renormalize").ToBoolean();
  if (params.mode == moe::RoutingMode::sigmoid_grouped) {
    params.num_groups = size_arg(r.Get("numGroups"), "routing.numGroups");
    params.topk_groups = size_arg(r.Get("topkGroups"), "routing.topkGroups");
    params.routed_scaling_factor = float_arg(r.Get("routedScalingFactor"), "routing.routedScalingFactor");
    Napi::Value bias = r.Get("correctionBias");
    if (!bias.IsUndefined() && !bias.IsNull()) {
      Span b = typed_array(bias, "routing.correctionBias", {napi_float32_array});
      expect_length(env, b, num_experts, "routing.correctionBias");
      params.correction_bias = static_cast<const float*>(b.data);
    }
  }
  return params;
}

// selectExperts(logits, tokens, numExperts, topK, routing, idsOut, weightsOut)
Napi::Value SelectExperts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Span logits = typed_array(info[0], "logits", {napi_float32_array});
  size_t tokens = size_arg(info[1], "tokens"), experts = size_arg(info[2], "numExperts"),
         top_k = size_arg(info[3], "topK");
  moe::RoutingParams params = routing_arg(info[4], experts);
  Span ids = typed_array(info[5], "ids", {napi_int32_array});
  Span weights = typed_array(info[6], "weights", {napi_float32_array});
  expect_length(env, logits, checked_mul(env, tokens, experts, "logits"), "logits");
  expect_length(env, ids, checked_mul(env, tokens, top_k, "ids"), "ids");
  expect_length(env, weights, checked_mul(env, tokens, top_k, "weights"), "weights");
  guarded(env, [&] {
    moe::select_experts(params, static_cast<const float*>(logits.data), tokens, experts, top_k,
                        static_cast<int32_t*>(ids.data), static_cast<float*>(weights.data));
  });
  return env.Undefined();
}

// convertBf16(src, dst): Float32Array -> Uint16Array or the reverse, by the argument types.
Napi::Value ConvertBf16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Span src = weight_array(info[0], "src");
  Span dst = weight_array(info[1], "dst");
  if (src.type == dst.type) throw_type(env, "dst: must be the other dtype");
  expect_length(env, dst, src.length, "dst");
  if (src.dtype() == DType::f32) {
    moe::convert_f32_to_bf16(static_cast<const float*>(src.data), static_cast<uint16_t*>(dst.data), src.length);
  } else {
    moe::convert_bf16_to_f32(static_cast<const uint16_t*>(src.data), static_cast<float*>(dst.data), src.length);
  }
  return env.Undefined();
}

// A weight format name: 'f32', 'bf16', 'f16', 'mxfp4' or 'int8'.
moe::WeightFormat format_arg(const Napi::Value& value, const char* name) {
  const std::string f = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  for (auto format : {moe::WeightFormat::f32, moe::WeightFormat::bf16, moe::WeightFormat::f16,
                      moe::WeightFormat::mxfp4, moe::WeightFormat::int8}) {
    if (f == moe::weight_format_name(format)) return format;
  }
  throw_range(value.Env(), std::string(name) + ": expected 'f32', 'bf16', 'f16', 'mxfp4' or 'int8', got '" + f + "'");
}

// The typed array type that holds a format's values or codes, and its scales.
napi_typedarray_type data_type(moe::WeightFormat f) {
  switch (f) {
    case moe::WeightFormat::f32: return napi_float32_array;
    case moe::WeightFormat::bf16:
    case moe::WeightFormat::f16: return napi_uint16_array;
    case moe::WeightFormat::mxfp4: return napi_uint8_array;
    case moe::WeightFormat::int8: return napi_int8_array;
  }
  return napi_float32_array;
}
napi_typedarray_type scale_type(moe::WeightFormat f) {
  return f == moe::WeightFormat::int8 ? napi_uint16_array : napi_uint8_array;
}

// A weight tensor of `experts` x `rows` rows of `depth` values, as the facade passes it:
// { format, data, scales? } (scales for the quantized formats), each a typed array holding all
// experts, or (when `per_expert` is allowed: w13, w2) each an Array of `experts` typed arrays,
// one per expert ([rows, depth] each). Types and lengths are checked here; the napi_value of
// every typed array whose memory the tensor points into is appended to `arrays` (an async
// packing holds a reference to each while it runs).
moe::WeightTensor tensor_arg(const Napi::Value& value, const std::string& name, size_t experts, size_t rows, size_t depth,
                             bool per_expert, std::vector<napi_value>& arrays) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) throw_type(env, name + ": expected { format, data, scales? }");
  Napi::Object o = value.As<Napi::Object>();
  moe::WeightTensor t;
  t.format = format_arg(o.Get("format"), (name + ".format").c_str());
  checked_mul(env, {experts, rows, depth, 4}, name.c_str());  // tensor_geometry's products cannot wrap
  const Napi::Value data = o.Get("data"), scales = o.Get("scales");
  const bool list = data.IsArray();
  if (list && !per_expert) throw_type(env, name + ".data: expected one typed array (a bias is not given per expert)");
  // Per expert: the geometry of one expert's part; whole: of all of it.
  const moe::TensorGeometry g = moe::tensor_geometry(t.format, list ? rows : experts * rows, depth);
  if (!g.valid) throw_range(env, name + ": depth " + std::to_string(depth) + " is not a multiple of the " +
                                     moe::weight_format_name(t.format) + " block of 32 values");
  if (g.scale_elements && scales.IsArray() != list) {
    throw_type(env, name + ".scales: expected " + (list ? "an Array of per-expert typed arrays, as data" : "one typed array, as data"));
  }
  auto take = [&](const Napi::Value& v, const std::string& what, napi_typedarray_type type, size_t length) {
    Span span = typed_array(v, what.c_str(), {type});
    expect_length(env, span, length, what.c_str());
    arrays.push_back(v);
    return span.data;
  };
  if (!list) {
    t.data = take(data, name + ".data", data_type(t.format), g.data_elements);
    if (g.scale_elements) t.scales = take(scales, name + ".scales", scale_type(t.format), g.scale_elements);
    return t;
  }
  const Napi::Array data_list = data.As<Napi::Array>();
  const Napi::Array scale_list = g.scale_elements ? scales.As<Napi::Array>() : Napi::Array();
  if (data_list.Length() != experts) {
    throw_range(env, name + ".data: expected " + std::to_string(experts) + " per-expert arrays (numExperts), got " +
                         std::to_string(data_list.Length()));
  }
  if (g.scale_elements && scale_list.Length() != experts) {
    throw_range(env, name + ".scales: expected " + std::to_string(experts) + " per-expert arrays (numExperts), got " +
                         std::to_string(scale_list.Length()));
  }
  for (uint32_t e = 0; e < experts; ++e) {
    const std::string index = "[" + std::to_string(e) + "]";
    t.expert_data.push_back(take(data_list.Get(e), name + ".data" + index, data_type(t.format), g.data_elements));
    if (g.scale_elements) {
      t.expert_scales.push_back(take(scale_list.Get(e), name + ".scales" + index, scale_type(t.format), g.scale_elements));
    }
  }
  return t;
}

// quantize(format, values: Float32Array, rows, depth, codes, scales): rows of f32 values to
// blocks and scales in the caller layout (as checkpoints store them).
Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const moe::WeightFormat f = format_arg(info[0], "format");
  Span values = typed_array(info[1], "values", {napi_float32_array});
  const size_t rows = size_arg(info[2], "rows"), depth = size_arg(info[3], "depth");
  checked_mul(env, {rows, depth, 4}, "values");
  const moe::TensorGeometry g = moe::tensor_geometry(f, rows, depth);
  if (!g.valid || !g.scale_elements) throw_range(env, "format: expected a quantized format with depth a multiple of 32");
  Span codes = typed_array(info[4], "codes", {data_type(f)});
  Span scales = typed_array(info[5], "scales", {scale_type(f)});
  expect_length(env, values, rows * depth, "values");
  expect_length(env, codes, g.data_elements, "codes");
  expect_length(env, scales, g.scale_elements, "scales");
  guarded(env, [&] { moe::quantize_rows(f, static_cast<const float*>(values.data), rows, depth, codes.data, scales.data); });
  return env.Undefined();
}

// dequantize(format, codes, scales, rows, depth, out: Float32Array): the exact decode.
Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const moe::WeightFormat f = format_arg(info[0], "format");
  const size_t rows = size_arg(info[3], "rows"), depth = size_arg(info[4], "depth");
  checked_mul(env, {rows, depth, 4}, "out");
  const moe::TensorGeometry g = moe::tensor_geometry(f, rows, depth);
  if (!g.valid) throw_range(env, "depth: not a multiple of the format's block");
  Span codes = typed_array(info[1], "codes", {data_type(f)});
  expect_length(env, codes, g.data_elements, "codes");
  const void* scale_data = nullptr;
  if (g.scale_elements) {
    Span scales = typed_array(info[2], "scales", {scale_type(f)});
    expect_length(env, scales, g.scale_elements, "scales");
    scale_data = scales.data;
  }
  Span out = typed_array(info[5], "out", {napi_float32_array});
  expect_length(env, out, rows * depth, "out");
  guarded(env, [&] { moe::dequantize_rows(f, codes.data, scale_data, rows, depth, static_cast<float*>(out.data)); });
  return env.Undefined();
}

// ------------------------------------------------------------------------------------------
// Promise-returning work, off every thread of Node's.
//
// An async call (forward, router logits) is queued on the dispatcher, one native thread of the
// process that runs the calls in the order they were made, each driving the native pool (see
// thread_pool.h), and completes on its JS thread through a thread-safe function. libuv's pool is
// never used: its 4 threads stay free for fs, dns, crypto and zlib however many forwards are
// in flight. Calls from all threads and Workers take turns in one FIFO queue, as they would on
// the native pool anyway.
//
// Life cycle: created and queued on the JS thread; Run() executes on the dispatcher and touches
// only the plain C++ data of the subclass (its "baton"); Result() and the promise settle back on
// the JS thread, then the task is deleted. When a Worker is terminated, its environment's
// cleanup hook drops its calls that have not started and waits for the one running (the
// output array it writes belongs to that environment); completions into a terminating
// environment are dropped, never thrown (an exception there would abort the process).
class AsyncTask;

// Per environment (JS thread): the thread-safe function completions go through, and the count
// of calls in flight. Lives until the thread-safe function is finalized.
struct EnvTasks {
  napi_env env = nullptr;
  napi_threadsafe_function tsfn = nullptr;
  size_t unsettled = 0;  // JS thread only: queued and not yet settled (keeps the loop alive)
  std::mutex mutex;
  std::condition_variable idle;
  size_t running = 0;    // queued and not yet handed back to the JS thread (dispatcher + JS)
  bool closing = false;  // the environment is being torn down
  napi_ref native_layer = nullptr;  // the NativeLayer class, for layers packed asynchronously
  napi_ref native_router = nullptr;  // the NativeRouter class, for routers handed over by another thread
};

class AsyncTask {
 public:
  virtual ~AsyncTask() = default;

  // Queues the task (taking ownership) and returns its promise.
  static Napi::Value Queue(Napi::Env env, AsyncTask* raw);
  // This environment's completion channel, created on first use.
  static EnvTasks* TasksOf(Napi::Env env);

 protected:
  virtual void Run() = 0;                            // dispatcher thread
  virtual Napi::Value Result(Napi::Env env) = 0;     // JS thread
  virtual void ReleaseJs(napi_env) {}                // JS thread: references the task holds

 public:
  // An Int32Array(1) the caller sets to non-zero to drop the call while it is still queued
  // (AbortSignal); read by the dispatcher just before it would start the call.
  void SetCancelFlag(Napi::Env env, const Napi::Value& flag) {
    if (flag.IsUndefined() || flag.IsNull()) return;
    Span span = typed_array(flag, "cancel", {napi_int32_array});
    if (span.length != 1) throw_range(env, "cancel: expected an Int32Array of length 1");
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_reference(env, flag, 1, &cancel_ref_));
    cancel_flag_ = static_cast<const int32_t*>(span.data);
  }

 private:
  bool Cancelled() const { return cancel_flag_ && __atomic_load_n(cancel_flag_, __ATOMIC_ACQUIRE) != 0; }
  napi_ref cancel_ref_ = nullptr;
  const int32_t* cancel_flag_ = nullptr;

 private:
  friend class Dispatcher;
  enum class Failure { none, invalid_argument, out_of_memory, internal, cancelled, layer_file };

  void Execute() {
    try {
      Run();
    } catch (const moe::LayerFileError& e) {
      fail(Failure::layer_file, e.what());
      code_ = layer_file_code(e);
    } catch (const moe::InvalidArgument& e) {
      fail(Failure::invalid_argument, e.what());
    } catch (const moe::OutOfMemory& e) {
      fail(Failure::out_of_memory, e.what());
    } catch (const std::bad_alloc&) {
      fail(Failure::out_of_memory, "moe-cpu: out of memory");
    } catch (const std::exception& e) {
      fail(Failure::internal, std::string("moe-cpu internal error: ") + e.what());
    } catch (...) {
      fail(Failure::internal, "moe-cpu internal error: unknown exception");
    }
  }

  // On the JS thread, through the thread-safe function; env is null when the environment is
  // gone (then nothing of Node-API may be touched: the task's C++ data is freed, that is all).
  static void Complete(napi_env env, napi_value, void* context, void* data) {
    std::unique_ptr<AsyncTask> task(static_cast<AsyncTask*>(data));
    if (env == nullptr) return;
    auto* tasks = static_cast<EnvTasks*>(context);
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
      try {
        task->Settle(Napi::Env(env));
      } catch (...) {
        // The environment is shutting down (a terminated Worker): nobody is left to tell.
      }
      napi_close_handle_scope(env, scope);
    }
    task->ReleaseJs(env);
    if (task->cancel_ref_) napi_delete_reference(env, task->cancel_ref_);
    if (--tasks->unsettled == 0) napi_unref_threadsafe_function(env, tasks->tsfn);
  }

  void Settle(Napi::Env env) {
    if (failure_ == Failure::none) {
      Napi::Value result = Result(env);
      napi_resolve_deferred(env, deferred_, result);
      return;
    }
    Napi::Error error = failure_ == Failure::invalid_argument
                            ? with_code(Napi::RangeError::New(env, message_), kInvalidArgument)
                            : with_code(Napi::Error::New(env, message_),
                                        failure_ == Failure::out_of_memory ? kOutOfMemory
                                        : failure_ == Failure::cancelled   ? kAborted
                                        : failure_ == Failure::layer_file  ? code_
                                                                           : kInternal);
    if (failure_ == Failure::cancelled) error.Set("name", Napi::String::New(env, "AbortError"));
    napi_reject_deferred(env, deferred_, error.Value());
  }

  void fail(Failure failure, std::string message) {
    failure_ = failure;
    message_ = std::move(message);
  }

  napi_deferred deferred_ = nullptr;
  EnvTasks* tasks_ = nullptr;
  Failure failure_ = Failure::none;
  std::string message_;
  const char* code_ = kInternal;  // Failure::layer_file: which
};

// The dispatcher thread and its FIFO queue. Never destroyed (like the native pool): it may be
// waiting on its queue when static destructors run.
class Dispatcher {
 public:
  static Dispatcher& instance() {
    static Dispatcher* dispatcher = new Dispatcher;
    return *dispatcher;
  }

  void Submit(AsyncTask* task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(task);
    }
    wake_.notify_one();
  }

 private:
  Dispatcher() : thread_([this] { Loop(); }) { thread_.detach(); }

  void Loop() {
    for (;;) {
      AsyncTask* task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return !queue_.empty(); });
        task = queue_.front();
        queue_.pop_front();
      }
      EnvTasks* tasks = task->tasks_;
      bool closing;
      {
        std::lock_guard<std::mutex> lock(tasks->mutex);
        closing = tasks->closing;
      }
      if (closing) {
        // dropped: the environment is going away
      } else if (task->Cancelled()) {
        task->fail(AsyncTask::Failure::cancelled, "aborted while queued");
      } else {
        task->Execute();
      }
      // Handed to the JS thread before `running` drops: the environment's cleanup hook
      // releases the thread-safe function only once nothing can call it any more.
      if (napi_call_threadsafe_function(tasks->tsfn, task, napi_tsfn_nonblocking) != napi_ok) delete task;
      {
        std::lock_guard<std::mutex> lock(tasks->mutex);
        --tasks->running;
      }
      tasks->idle.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<AsyncTask*> queue_;
  std::thread thread_;
};

EnvTasks* AsyncTask::TasksOf(Napi::Env env) {
  void* data = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_get_instance_data(env, &data), nullptr);
  if (data) return static_cast<EnvTasks*>(data);
  auto state = std::make_unique<EnvTasks>();
  state->env = env;
  napi_value name;
  NAPI_THROW_IF_FAILED(env, napi_create_string_utf8(env, "moe-cpu:complete", NAPI_AUTO_LENGTH, &name), nullptr);
  NAPI_THROW_IF_FAILED(env,
                       napi_create_threadsafe_function(
                           env, nullptr, nullptr, name, 0, 1, nullptr,
                           [](napi_env, void*, void* hint) { delete static_cast<EnvTasks*>(hint); }, state.get(),
                           Complete, &state->tsfn),
                       nullptr);
  // Freed by the thread-safe function's finalizer from here on.
  EnvTasks* tasks = state.release();
  napi_unref_threadsafe_function(env, tasks->tsfn);
  napi_set_instance_data(env, tasks, nullptr, nullptr);
  // Environment teardown (process exit, a Worker terminated): calls not started are dropped,
  // the one running is waited for (it writes into this environment's memory), then the
  // thread-safe function goes; completions still queued reach Complete with a null env.
  napi_add_env_cleanup_hook(env, [](void* arg) {
    auto* t = static_cast<EnvTasks*>(arg);
    {
      std::unique_lock<std::mutex> lock(t->mutex);
      t->closing = true;
      t->idle.wait(lock, [&] { return t->running == 0; });
    }
    napi_release_threadsafe_function(t->tsfn, napi_tsfn_abort);
  }, tasks);
  return tasks;
}

Napi::Value AsyncTask::Queue(Napi::Env env, AsyncTask* raw) {
  std::unique_ptr<AsyncTask> task(raw);
  EnvTasks* tasks = TasksOf(env);
  napi_value promise;
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &task->deferred_, &promise), Napi::Value());
  task->tasks_ = tasks;
  if (tasks->unsettled++ == 0) napi_ref_threadsafe_function(env, tasks->tsfn);
  {
    std::lock_guard<std::mutex> lock(tasks->mutex);
    ++tasks->running;
  }
  Dispatcher::instance().Submit(task.release());
  return Napi::Value(env, promise);
}

// ------------------------------------------------------------------------------------------
// NativeLayer: owns the packed weights of one layer.

// Type tags of the wrapped classes: a forward unwraps the objects it is given only after
// checking the tag, so a wrong object is a TypeError, never a misread pointer.
constexpr napi_type_tag kNativeLayerTag = {0x6d6f652d6370752dULL, 0x4e61746976654c61ULL};
constexpr napi_type_tag kNativeRouterTag = {0x6d6f652d6370752dULL, 0x4e6174697665526fULL};

void tag_object(Napi::Env env, const Napi::Object& object, const napi_type_tag& tag) {
  NAPI_THROW_IF_FAILED_VOID(env, napi_type_tag_object(env, object, &tag));
}

bool has_tag(const Napi::Value& value, const napi_type_tag& tag) {
  bool ok = false;
  return value.IsObject() && napi_check_object_type_tag(value.Env(), value, &tag, &ok) == napi_ok && ok;
}

// A layer's checked arguments: (config, w13, w2, w13Bias | null, w2Bias | null); the weights
// point into the caller's arrays.
struct LayerArgs {
  moe::MoeConfig config;
  moe::MoeWeights weights;
  std::vector<napi_value> arrays;  // every typed array the weights point into (valid during the call)
};

LayerArgs layer_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw_type(env, "options: expected an object");
  Napi::Object o = info[0].As<Napi::Object>();
  LayerArgs args;
  moe::MoeConfig& c = args.config;
  c.num_experts = size_arg(o.Get("numExperts"), "numExperts");
  // A subset of the model's experts (Uint32Array of their ids): the layer holds and packs those.
  Napi::Value held = o.Get("experts");
  if (!held.IsUndefined() && !held.IsNull()) {
    Span ids = typed_array(held, "experts", {napi_uint32_array});
    if (ids.length == 0) throw_range(env, "experts: expected at least one expert");
    c.model_experts = c.num_experts;
    c.num_experts = ids.length;
    const uint32_t* data = static_cast<const uint32_t*>(ids.data);
    c.expert_ids.assign(data, data + ids.length);
  }
  c.hidden_size = size_arg(o.Get("hiddenSize"), "hiddenSize");
  c.intermediate_size = size_arg(o.Get("intermediateSize"), "intermediateSize");
  c.top_k = size_arg(o.Get("topK"), "topK");
  c.activation.kind = activation_arg(o.Get("activation"));
  c.activation.swiglu_alpha = float_arg(o.Get("swigluAlpha"), "swigluAlpha");
  c.activation.swiglu_limit = limit_arg(o.Get("swigluLimit"), "swigluLimit");
  Napi::Value interleaved = o.Get("isW13Interleaved");
  if (!interleaved.IsBoolean()) throw_type(env, "isW13Interleaved: expected a boolean");
  c.w13_layout = interleaved.As<Napi::Boolean>() ? moe::W13Layout::interleaved : moe::W13Layout::halves;
  c.transposed = o.Get("transposed").ToBoolean();
  c.threads = threads_arg(o.Get("threads"), "threads");
  c.weight_format = format_arg(o.Get("weightDtype"), "weightDtype");

  const size_t E = c.num_experts, H = c.hidden_size, I = c.intermediate_size;
  moe::MoeWeights& w = args.weights;
  const size_t w13_rows = checked_mul(env, {E, 2, I}, "w13"), w2_rows = checked_mul(env, E, H, "w2");
  w.w13 = tensor_arg(info[1], "w13", E, 2 * I, H, true, args.arrays);
  w.w2 = tensor_arg(info[2], "w2", E, H, I, true, args.arrays);
  if (!info[3].IsUndefined() && !info[3].IsNull()) w.w13_bias = tensor_arg(info[3], "w13Bias", 1, w13_rows, 1, false, args.arrays);
  if (!info[4].IsUndefined() && !info[4].IsNull()) w.w2_bias = tensor_arg(info[4], "w2Bias", 1, w2_rows, 1, false, args.arrays);
  return args;
}

// Packs a layer on the dispatcher thread. The caller's weight arrays are read while it runs:
// the task holds a reference to every typed array the weights point into, per-expert ones
// included (the facade documents that they must not change).
class PackTask : public AsyncTask {
 public:
  PackTask(Napi::Env env, LayerArgs args, napi_ref native_layer) : args_(std::move(args)), native_layer_(native_layer) {
    keep_.reserve(args_.arrays.size());
    for (napi_value array : args_.arrays) {
      napi_ref ref;
      NAPI_THROW_IF_FAILED_VOID(env, napi_create_reference(env, array, 1, &ref));
      keep_.push_back(ref);
    }
    args_.arrays.clear();  // napi_values do not outlive the call
  }

 private:
  void Run() override { layer_ = std::make_shared<const moe::MoeLayer>(args_.config, args_.weights); }
  Napi::Value Result(Napi::Env env) override {
    napi_value ctor;
    NAPI_THROW_IF_FAILED(env, napi_get_reference_value(env, native_layer_, &ctor), Napi::Value());
    auto layer = Napi::External<std::shared_ptr<const moe::MoeLayer>>::New(env, &layer_);
    return Napi::Function(env, ctor).New({layer});
  }
  void ReleaseJs(napi_env env) override {
    for (napi_ref ref : keep_) napi_delete_reference(env, ref);
  }

  LayerArgs args_;
  napi_ref native_layer_;
  std::vector<napi_ref> keep_;
  std::shared_ptr<const moe::MoeLayer> layer_;
};

class NativeLayer : public Napi::ObjectWrap<NativeLayer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeLayer",
                       {InstanceMethod<&NativeLayer::Dispose>("dispose"),
                        InstanceAccessor<&NativeLayer::Bytes>("bytes"),
                        InstanceAccessor<&NativeLayer::Kernels>("kernels")});
  }

  // new NativeLayer(config, w13, w2, w13Bias | null, w2Bias | null) packs here; the internal
  // form new NativeLayer(External<shared_ptr<const MoeLayer>>) adopts a layer packed by
  // createNativeLayer.
  explicit NativeLayer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeLayer>(info) {
    Napi::Env env = info.Env();
    if (info[0].IsExternal()) {
      layer_ = *info[0].As<Napi::External<std::shared_ptr<const moe::MoeLayer>>>().Data();
    } else {
      LayerArgs args = layer_args(info);
      layer_ = guarded(env, [&] { return std::make_shared<const moe::MoeLayer>(args.config, args.weights); });
    }
    if (!layer_) throw_type(env, "NativeLayer: no layer");
    tag_object(env, info.This().As<Napi::Object>(), kNativeLayerTag);
    // Tell V8's GC about the native memory this small JS object holds.
    external_bytes_ = static_cast<int64_t>(layer_->bytes());
    Napi::MemoryManagement::AdjustExternalMemory(env, external_bytes_);
  }

  ~NativeLayer() override { Release(); }

 private:
  // Releases the packed weights once no forward call is using them any more.
  void Release() {
    if (!layer_) return;
    layer_.reset();
    // The C call, not the throwing wrapper: this also runs from the finalizer while a
    // terminated Worker's environment is torn down, where the engine may refuse it.
    int64_t adjusted;
    if (external_bytes_) napi_adjust_external_memory(Env(), -external_bytes_, &adjusted);
    external_bytes_ = 0;
  }

  const moe::MoeLayer& layer(Napi::Env env) {
    if (!layer_) throw with_code(Napi::Error::New(env, "layer: used after dispose()"), kDisposed);
    return *layer_;
  }

 public:
  // The packed layer, shared with the calls that use it (a forward in flight keeps it alive
  // past dispose()); ERR_MOE_DISPOSED once disposed.
  std::shared_ptr<const moe::MoeLayer> Shared(Napi::Env env) {
    layer(env);
    return layer_;
  }

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), layer_ ? static_cast<double>(layer_->bytes()) : 0.0);
  }

  // { decode, prefill, prefillMinTokensPerExpert, tiles, tilesMinTokensPerExpert }: the
  // micro-kernels forward runs (tiles: null where the kernel set has no matrix unit).
  Napi::Value Kernels(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const moe::KernelChoice& k = layer(env).kernels();
    Napi::Object out = Napi::Object::New(env);
    out.Set("decode", k.decode);
    out.Set("prefill", k.prefill);
    out.Set("prefillMinTokensPerExpert", static_cast<double>(k.prefill_min_tokens_per_expert));
    out.Set("tiles", k.tiles.empty() ? env.Null() : Napi::String::New(env, k.tiles));
    out.Set("tilesMinTokensPerExpert", static_cast<double>(k.tiles_min_tokens_per_expert));
    return out;
  }

  std::shared_ptr<const moe::MoeLayer> layer_;
  int64_t external_bytes_ = 0;
};

// ------------------------------------------------------------------------------------------
// NativeRouter: a layer's routing rule, and the router weights when it has them (copied once
// here, never per call); also a shared-expert gate (one output, its routing unused).

class NativeRouter : public Napi::ObjectWrap<NativeRouter> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeRouter", {InstanceMethod<&NativeRouter::Dispose>("dispose"),
                                             InstanceAccessor<&NativeRouter::Bytes>("bytes")});
  }

  // new NativeRouter(weight | null, numExperts, hiddenSize, bias | null, routing, topK); the
  // internal form new NativeRouter(External<shared_ptr<const Router>>) adopts one (adoptLayer).
  explicit NativeRouter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeRouter>(info) {
    Napi::Env env = info.Env();
    if (info[0].IsExternal()) {
      router_ = *info[0].As<Napi::External<std::shared_ptr<const moe::Router>>>().Data();
      if (!router_) throw_type(env, "NativeRouter: no router");
      tag_object(env, info.This().As<Napi::Object>(), kNativeRouterTag);
      return;  // its memory is counted by the environment that made it
    }
    const size_t E = size_arg(info[1], "numExperts"), H = size_arg(info[2], "hiddenSize");
    const size_t K = size_arg(info[5], "topK");
    if (E == 0 || H == 0) throw_range(env, "numExperts, hiddenSize: expected positive integers");
    if (K == 0 || K > E) throw_range(env, "topK: expected an integer in [1, numExperts = " + std::to_string(E) + "]");
    moe::RoutingParams routing = routing_arg(info[4], E);
    const void* weight = nullptr;
    DType weight_dtype = DType::f32;
    const float* bias = nullptr;
    if (!info[0].IsNull() && !info[0].IsUndefined()) {
      Span w = weight_array(info[0], "routerWeight");
      expect_length(env, w, checked_mul(env, E, H, "routerWeight"), "routerWeight");
      weight = w.data;
      weight_dtype = w.dtype();
      if (!info[3].IsNull() && !info[3].IsUndefined()) {
        Span b = typed_array(info[3], "routerBias", {napi_float32_array});
        expect_length(env, b, E, "routerBias");
        bias = static_cast<const float*>(b.data);
      }
    }
    router_ = guarded(env, [&] {
      return std::make_shared<const moe::Router>(E, H, K, routing, weight_dtype, weight, bias);
    });
    external_bytes_ = static_cast<int64_t>(router_->bytes());
    Napi::MemoryManagement::AdjustExternalMemory(env, external_bytes_);
    tag_object(env, info.This().As<Napi::Object>(), kNativeRouterTag);
  }

  ~NativeRouter() override { Release(); }

  // ERR_MOE_DISPOSED once disposed; a block call in flight keeps its own reference.
  std::shared_ptr<const moe::Router> Shared(Napi::Env env) const {
    if (!router_) throw with_code(Napi::Error::New(env, "router: used after dispose()"), kDisposed);
    return router_;
  }

 private:
  void Release() {
    router_.reset();
    int64_t adjusted;  // the C call: also runs from the finalizer of a terminating Worker
    if (external_bytes_) napi_adjust_external_memory(Env(), -external_bytes_, &adjusted);
    external_bytes_ = 0;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), router_ ? static_cast<double>(router_->bytes()) : 0.0);
  }

  std::shared_ptr<const moe::Router> router_;
  int64_t external_bytes_ = 0;
};

// ------------------------------------------------------------------------------------------
// The block forward: one call routes (router logits, routing) and runs the routed experts
// and the shared expert with its gate (moe_block_forward).

// forwardBlock(experts, router, shared | null, gate | null, hidden, tokens,
//              logits | null, ids | null, weights | null, out[, cancel]), checked.
struct BlockArgs {
  std::shared_ptr<const moe::MoeLayer> experts, shared;
  std::shared_ptr<const moe::Router> router, gate;
  Span hidden, logits, ids, weights, out;
  size_t tokens = 0;

  moe::MoeBlockParts parts() const { return {experts.get(), router.get(), shared.get(), gate.get()}; }
};

BlockArgs block_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BlockArgs a;
  auto layer_at = [&](size_t i, const char* name) -> std::shared_ptr<const moe::MoeLayer> {
    if (!has_tag(info[i], kNativeLayerTag)) throw_type(env, std::string(name) + ": expected a NativeLayer");
    return Napi::ObjectWrap<NativeLayer>::Unwrap(info[i].As<Napi::Object>())->Shared(env);
  };
  auto router_at = [&](size_t i, const char* name) -> std::shared_ptr<const moe::Router> {
    if (!has_tag(info[i], kNativeRouterTag)) throw_type(env, std::string(name) + ": expected a NativeRouter");
    return Napi::ObjectWrap<NativeRouter>::Unwrap(info[i].As<Napi::Object>())->Shared(env);
  };
  auto given = [&](size_t i) { return !info[i].IsNull() && !info[i].IsUndefined(); };
  a.experts = layer_at(0, "experts");
  a.router = router_at(1, "router");
  if (given(2)) a.shared = layer_at(2, "sharedExperts");
  if (given(3)) a.gate = router_at(3, "sharedExpertGate");
  const moe::MoeConfig& c = a.experts->config();
  a.hidden = weight_array(info[4], "hidden");
  a.tokens = size_arg(info[5], "tokens");
  expect_length(env, a.hidden, checked_mul(env, a.tokens, c.hidden_size, "hidden"), "hidden");
  if (given(6)) {
    a.logits = typed_array(info[6], "route.logits", {napi_float32_array});
    expect_length(env, a.logits, checked_mul(env, a.tokens, c.routed_experts(), "route.logits"), "route.logits");
  }
  if (given(7) || given(8)) {
    a.ids = typed_array(info[7], "route.ids", {napi_int32_array});
    a.weights = typed_array(info[8], "route.weights", {napi_float32_array});
    expect_length(env, a.ids, checked_mul(env, a.tokens, c.top_k, "route.ids"), "route.ids");
    expect_length(env, a.weights, checked_mul(env, a.tokens, c.top_k, "route.weights"), "route.weights");
    if (a.logits.data) throw_type(env, "route: logits or ids and weights, not both");
  }
  a.out = weight_array(info[9], "out");
  if (a.out.type != a.hidden.type) throw_type(env, "out: must have the dtype of hidden");
  expect_length(env, a.out, a.hidden.length, "out");
  // The kernel's consistency checks (shapes of the parts) as a RangeError now, not later.
  guarded(env, [&] { moe::moe_block_forward(a.parts(), a.hidden.dtype(), nullptr, 0, {}, nullptr); });
  return a;
}

// Async: the inputs (hidden, logits or ids and weights) are copied, so the caller may reuse
// them while the call runs; the output array, created by the facade and not exposed before
// the promise settles, is kept alive by a reference.
class BlockTask : public AsyncTask {
 public:
  BlockTask(const BlockArgs& a, Napi::Object out)
      : parts_owner_(a), dtype_(a.hidden.dtype()), tokens_(a.tokens), out_(a.out.data) {
    const auto* h = static_cast<const uint8_t*>(a.hidden.data);
    hidden_.assign(h, h + a.hidden.length * a.hidden.element_bytes());
    const auto* l = static_cast<const float*>(a.logits.data);
    if (l) logits_.assign(l, l + a.logits.length);
    const auto* ids = static_cast<const int32_t*>(a.ids.data);
    const auto* w = static_cast<const float*>(a.weights.data);
    if (ids) {
      ids_.assign(ids, ids + a.ids.length);
      weights_.assign(w, w + a.weights.length);
    }
    // Only the owners are kept: the spans point into JS memory this task must not touch.
    parts_owner_.hidden = parts_owner_.logits = parts_owner_.ids = parts_owner_.weights = parts_owner_.out = Span();
    NAPI_THROW_IF_FAILED_VOID(out.Env(), napi_create_reference(out.Env(), out, 1, &out_ref_));
  }

 private:
  void Run() override {
    moe::BlockRoute route;
    if (!logits_.empty()) route.logits = logits_.data();
    if (!ids_.empty()) {
      route.ids = ids_.data();
      route.weights = weights_.data();
    }
    moe::moe_block_forward(parts_owner_.parts(), dtype_, hidden_.data(), tokens_, route, out_);
  }
  Napi::Value Result(Napi::Env env) override {
    napi_value out;
    NAPI_THROW_IF_FAILED(env, napi_get_reference_value(env, out_ref_, &out), Napi::Value());
    return Napi::Value(env, out);
  }
  void ReleaseJs(napi_env env) override { napi_delete_reference(env, out_ref_); }

  BlockArgs parts_owner_;  // the layers and routers, alive while the call runs
  DType dtype_;
  size_t tokens_;
  std::vector<uint8_t> hidden_;
  std::vector<float> logits_;
  std::vector<int32_t> ids_;
  std::vector<float> weights_;
  void* out_;
  napi_ref out_ref_ = nullptr;
};

Napi::Value ForwardBlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BlockArgs a = block_args(info);
  auto task = std::make_unique<BlockTask>(a, info[9].As<Napi::Object>());
  task->SetCancelFlag(env, info[10]);
  return AsyncTask::Queue(env, task.release());
}

// The same on the calling thread, reading the caller's arrays in place; returns out.
Napi::Value ForwardBlockSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BlockArgs a = block_args(info);
  moe::BlockRoute route;
  route.logits = static_cast<const float*>(a.logits.data);
  route.ids = static_cast<const int32_t*>(a.ids.data);
  route.weights = static_cast<const float*>(a.weights.data);
  guarded(env, [&] { moe::moe_block_forward(a.parts(), a.hidden.dtype(), a.hidden.data, a.tokens, route, a.out.data); });
  return info[9];
}

// ------------------------------------------------------------------------------------------
// Checkpoint loading: MXFP4 decode.

// decodeMxfp4(blocks: Uint8Array [n, 16], scales: Uint8Array [n], out: Float32Array | Uint16Array [n, 32])
Napi::Value DecodeMxfp4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Span blocks = typed_array(info[0], "blocks", {napi_uint8_array});
  Span scales = typed_array(info[1], "scales", {napi_uint8_array});
  Span out = weight_array(info[2], "out");
  const size_t n = scales.length;
  expect_length(env, blocks, checked_mul(env, n, moe::kMxfp4BlockBytes, "blocks"), "blocks");
  expect_length(env, out, checked_mul(env, n, moe::kMxfp4BlockValues, "out"), "out");
  const auto* b = static_cast<const uint8_t*>(blocks.data);
  const auto* s = static_cast<const uint8_t*>(scales.data);
  if (out.dtype() == DType::bf16) {
    moe::decode_mxfp4_bf16(b, s, n, static_cast<uint16_t*>(out.data));
  } else {
    moe::decode_mxfp4_f32(b, s, n, static_cast<float*>(out.data));
  }
  return env.Undefined();
}

// Conversions of a checkpoint load, on the dispatcher thread: the loader reads a chunk of at
// most 16 MB and converts it here, so no conversion runs on the JavaScript thread. The task
// holds references to its arrays until it settles (the loader does not touch them meanwhile).
class ConvertTask : public AsyncTask {
 public:
  enum class Kind { f32_to_bf16, bf16_to_f32, f16_to_f32, f16_to_bf16, mxfp4 };

  ConvertTask(Napi::Env env, Kind kind, std::initializer_list<Napi::Value> arrays, const void* a,
              const void* b, void* out, size_t count)
      : kind_(kind), a_(a), b_(b), out_(out), count_(count) {
    for (const Napi::Value& array : arrays) {
      napi_ref ref;
      NAPI_THROW_IF_FAILED_VOID(env, napi_create_reference(env, array, 1, &ref));
      keep_.push_back(ref);
    }
  }

 private:
  void Run() override {
    const auto* u16 = static_cast<const uint16_t*>(a_);
    switch (kind_) {
      case Kind::f32_to_bf16: moe::convert_f32_to_bf16(static_cast<const float*>(a_), static_cast<uint16_t*>(out_), count_); break;
      case Kind::bf16_to_f32: moe::convert_bf16_to_f32(u16, static_cast<float*>(out_), count_); break;
      case Kind::f16_to_f32: moe::convert_f16_to_f32(u16, static_cast<float*>(out_), count_); break;
      case Kind::f16_to_bf16: moe::convert_f16_to_bf16(u16, static_cast<uint16_t*>(out_), count_); break;
      case Kind::mxfp4:
        if (out_dtype_ == DType::bf16) {
          moe::decode_mxfp4_bf16(static_cast<const uint8_t*>(a_), static_cast<const uint8_t*>(b_), count_, static_cast<uint16_t*>(out_));
        } else {
          moe::decode_mxfp4_f32(static_cast<const uint8_t*>(a_), static_cast<const uint8_t*>(b_), count_, static_cast<float*>(out_));
        }
        break;
    }
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
  void ReleaseJs(napi_env env) override {
    for (napi_ref ref : keep_) napi_delete_reference(env, ref);
  }

 public:
  DType out_dtype_ = DType::f32;

 private:
  Kind kind_;
  const void* a_;
  const void* b_;
  void* out_;
  size_t count_;
  std::vector<napi_ref> keep_;
};

// convertAsync(src, srcFormat 'f32' | 'bf16' | 'f16', dst: Float32Array | Uint16Array (bf16))
// -> Promise<undefined>: f32 -> bf16, bf16 -> f32, f16 -> f32, f16 -> bf16 (one rounding).
Napi::Value ConvertAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Span src = weight_array(info[0], "src");
  const std::string from = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  Span dst = weight_array(info[2], "dst");
  expect_length(env, dst, src.length, "dst");
  using Kind = ConvertTask::Kind;
  Kind kind;
  if (from == "f32" && src.type == napi_float32_array && dst.dtype() == DType::bf16) {
    kind = Kind::f32_to_bf16;
  } else if (from == "bf16" && src.type == napi_uint16_array && dst.dtype() == DType::f32) {
    kind = Kind::bf16_to_f32;
  } else if (from == "f16" && src.type == napi_uint16_array) {
    kind = dst.dtype() == DType::f32 ? Kind::f16_to_f32 : Kind::f16_to_bf16;
  } else {
    throw_type(env, "convertAsync: unsupported conversion from '" + from + "' (src " +
                        (src.type == napi_float32_array ? "Float32Array" : "Uint16Array") + ") to " +
                        (dst.dtype() == DType::f32 ? "f32" : "bf16"));
  }
  return AsyncTask::Queue(env, new ConvertTask(env, kind, {info[0], info[2]}, src.data, nullptr, dst.data, src.length));
}

// decodeMxfp4Async(blocks, scales, out) -> Promise<undefined>: decodeMxfp4 on the dispatcher.
Napi::Value DecodeMxfp4Async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Span blocks = typed_array(info[0], "blocks", {napi_uint8_array});
  Span scales = typed_array(info[1], "scales", {napi_uint8_array});
  Span out = weight_array(info[2], "out");
  const size_t n = scales.length;
  expect_length(env, blocks, checked_mul(env, n, moe::kMxfp4BlockBytes, "blocks"), "blocks");
  expect_length(env, out, checked_mul(env, n, moe::kMxfp4BlockValues, "out"), "out");
  auto task = std::make_unique<ConvertTask>(env, ConvertTask::Kind::mxfp4, std::initializer_list<Napi::Value>{info[0], info[1], info[2]},
                                            blocks.data, scales.data, out.data, n);
  task->out_dtype_ = out.dtype();
  return AsyncTask::Queue(env, task.release());
}

// createNativeLayer(same arguments as new NativeLayer) -> Promise<NativeLayer>, packed on the
// dispatcher thread (the event loop and libuv's pool stay free).
Napi::Value CreateNativeLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnvTasks* tasks = AsyncTask::TasksOf(env);
  LayerArgs args = layer_args(info);
  return AsyncTask::Queue(env, new PackTask(env, std::move(args), tasks->native_layer));
}

// ------------------------------------------------------------------------------------------
// Packed-layer files: saveLayer(layer, router, path, meta) and openLayer(path, threads, verify),
// on the dispatcher thread (the file I/O of gigabytes stays off the event loop and libuv's pool).

// The router's parts a file carries, by blob name.
constexpr const char* kBlobMeta = "meta";
constexpr const char* kBlobRouterWeight = "router.weight";
constexpr const char* kBlobRouterBias = "router.bias";
constexpr const char* kBlobCorrectionBias = "router.correction";

class SaveTask : public AsyncTask {
 public:
  SaveTask(std::shared_ptr<const moe::MoeLayer> layer, std::shared_ptr<const moe::Router> router, std::string path,
           std::string meta)
      : layer_(std::move(layer)), router_(std::move(router)), path_(std::move(path)), meta_(std::move(meta)) {}

 private:
  void Run() override {
    std::vector<moe::FileBlobView> blobs{{kBlobMeta, meta_.data(), meta_.size()}};
    if (router_) {
      const auto blob = [&](const char* name, const void* data, size_t bytes) {
        if (bytes) blobs.push_back({name, data, bytes});
      };
      blob(kBlobRouterWeight, router_->weight().data(), router_->weight().size());
      blob(kBlobRouterBias, router_->bias().data(), router_->bias().size() * sizeof(float));
      blob(kBlobCorrectionBias, router_->correction_bias().data(), router_->correction_bias().size() * sizeof(float));
    }
    layer_->save(path_, blobs);
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

  std::shared_ptr<const moe::MoeLayer> layer_;
  std::shared_ptr<const moe::Router> router_;
  std::string path_, meta_;
};

class OpenTask : public AsyncTask {
 public:
  OpenTask(std::string path, const moe::LayerFileOptions& options, napi_ref native_layer)
      : path_(std::move(path)), options_(options), native_layer_(native_layer) {}

 private:
  void Run() override { opened_ = moe::MoeLayer::open(path_, options_); }
  // { layer: NativeLayer, mapped, blobs: { name: ArrayBuffer } } (the blobs are small: copied).
  Napi::Value Result(Napi::Env env) override {
    napi_value ctor;
    NAPI_THROW_IF_FAILED(env, napi_get_reference_value(env, native_layer_, &ctor), Napi::Value());
    auto layer = Napi::External<std::shared_ptr<const moe::MoeLayer>>::New(env, &opened_.layer);
    Napi::Object out = Napi::Object::New(env);
    out.Set("layer", Napi::Function(env, ctor).New({layer}));
    out.Set("mapped", Napi::Boolean::New(env, opened_.mapped));
    Napi::Object blobs = Napi::Object::New(env);
    for (const moe::FileBlob& b : opened_.blobs) {
      Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, b.bytes.size());
      if (!b.bytes.empty()) std::memcpy(buffer.Data(), b.bytes.data(), b.bytes.size());
      blobs.Set(b.name, buffer);
    }
    out.Set("blobs", blobs);
    return out;
  }

  std::string path_;
  moe::LayerFileOptions options_;
  napi_ref native_layer_;
  moe::OpenedLayer opened_;
};

std::string path_arg(const Napi::Value& value, const char* name) {
  if (!value.IsString()) throw_type(value.Env(), std::string(name) + ": expected a string");
  std::string path = value.As<Napi::String>().Utf8Value();
  if (path.empty() || path.find('\0') != std::string::npos) throw_type(value.Env(), std::string(name) + ": expected a file path");
  return path;
}

// saveLayer(layer, router | null, path, meta: string) -> Promise<void>
Napi::Value SaveLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!has_tag(info[0], kNativeLayerTag)) throw_type(env, "layer: expected a NativeLayer");
  std::shared_ptr<const moe::MoeLayer> layer = Napi::ObjectWrap<NativeLayer>::Unwrap(info[0].As<Napi::Object>())->Shared(env);
  std::shared_ptr<const moe::Router> router;
  if (!info[1].IsNull() && !info[1].IsUndefined()) {
    if (!has_tag(info[1], kNativeRouterTag)) throw_type(env, "router: expected a NativeRouter");
    router = Napi::ObjectWrap<NativeRouter>::Unwrap(info[1].As<Napi::Object>())->Shared(env);
  }
  std::string path = path_arg(info[2], "path");
  if (!info[3].IsString()) throw_type(env, "meta: expected a string");
  return AsyncTask::Queue(env, new SaveTask(std::move(layer), std::move(router), std::move(path), info[3].As<Napi::String>().Utf8Value()));
}

// openLayer(path, threads, verify) -> Promise<{ layer, mapped, blobs }>
Napi::Value OpenLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  moe::LayerFileOptions options;
  std::string path = path_arg(info[0], "path");
  options.threads = threads_arg(info[1], "threads");
  options.verify = info[2].ToBoolean();
  return AsyncTask::Queue(env, new OpenTask(std::move(path), options, AsyncTask::TasksOf(env)->native_layer));
}

// ------------------------------------------------------------------------------------------
// Layers handed to other threads (worker_threads) without a copy: shareLayer(layer, router)
// registers the native layer and router under a number; adoptLayer(number), in any
// environment of the process, takes them out (once) and wraps them. Each thread then holds its
// own reference: disposing in one never frees what another uses.

struct SharedLayer {
  std::shared_ptr<const moe::MoeLayer> layer;
  std::shared_ptr<const moe::Router> router;
};
std::mutex shared_layers_mutex;
std::unordered_map<uint64_t, SharedLayer>& shared_layers() {
  static auto* map = new std::unordered_map<uint64_t, SharedLayer>;  // never destroyed, as the pool
  return *map;
}

// shareLayer(layer, router | null) -> number (an integer below 2^53)
Napi::Value ShareLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!has_tag(info[0], kNativeLayerTag)) throw_type(env, "layer: expected a NativeLayer");
  SharedLayer entry;
  entry.layer = Napi::ObjectWrap<NativeLayer>::Unwrap(info[0].As<Napi::Object>())->Shared(env);
  if (!info[1].IsNull() && !info[1].IsUndefined()) {
    if (!has_tag(info[1], kNativeRouterTag)) throw_type(env, "router: expected a NativeRouter");
    entry.router = Napi::ObjectWrap<NativeRouter>::Unwrap(info[1].As<Napi::Object>())->Shared(env);
  }
  static uint64_t next = 1;
  std::lock_guard<std::mutex> lock(shared_layers_mutex);
  const uint64_t id = next++;
  shared_layers().emplace(id, std::move(entry));
  return Napi::Number::New(env, static_cast<double>(id));
}

// adoptLayer(number) -> { layer: NativeLayer, router: NativeRouter | null }; a number not
// registered (or already adopted) is a RangeError.
Napi::Value AdoptLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw_type(env, "handle: expected a number");
  const double value = info[0].As<Napi::Number>().DoubleValue();
  SharedLayer entry;
  {
    std::lock_guard<std::mutex> lock(shared_layers_mutex);
    auto it = value >= 1 && value < 9007199254740992.0 ? shared_layers().find(static_cast<uint64_t>(value)) : shared_layers().end();
    if (it == shared_layers().end()) throw_range(env, "handle: not a shared layer of this process, or already adopted");
    entry = std::move(it->second);
    shared_layers().erase(it);
  }
  EnvTasks* tasks = AsyncTask::TasksOf(env);
  napi_value layer_ctor, router_ctor;
  NAPI_THROW_IF_FAILED(env, napi_get_reference_value(env, tasks->native_layer, &layer_ctor), Napi::Value());
  NAPI_THROW_IF_FAILED(env, napi_get_reference_value(env, tasks->native_router, &router_ctor), Napi::Value());
  Napi::Object out = Napi::Object::New(env);
  out.Set("layer", Napi::Function(env, layer_ctor).New({Napi::External<std::shared_ptr<const moe::MoeLayer>>::New(env, &entry.layer)}));
  out.Set("router", entry.router
                        ? Napi::Function(env, router_ctor).New({Napi::External<std::shared_ptr<const moe::Router>>::New(env, &entry.router)})
                        : env.Null());
  return out;
}

// ------------------------------------------------------------------------------------------
// Registration: every export in one table.

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  guarded(env, [] { moe::cpu_info(); });  // a bad MOE_CPU_ISA fails the load, loudly
  exports.Set("cpuInfo", Napi::Function::New<CpuInfo>(env, "cpuInfo"));
  exports.Set("permuteW13", Napi::Function::New<PermuteW13>(env, "permuteW13"));
  exports.Set("gatedActivation", Napi::Function::New<GatedActivation>(env, "gatedActivation"));
  exports.Set("selectExperts", Napi::Function::New<SelectExperts>(env, "selectExperts"));
  exports.Set("convertBf16", Napi::Function::New<ConvertBf16>(env, "convertBf16"));
  exports.Set("quantize", Napi::Function::New<Quantize>(env, "quantize"));
  exports.Set("dequantize", Napi::Function::New<Dequantize>(env, "dequantize"));
  Napi::Function native_layer = NativeLayer::Define(env);
  exports.Set("NativeLayer", native_layer);
  EnvTasks* tasks = AsyncTask::TasksOf(env);
  NAPI_THROW_IF_FAILED(env, napi_create_reference(env, native_layer, 1, &tasks->native_layer), exports);
  exports.Set("createNativeLayer", Napi::Function::New<CreateNativeLayer>(env, "createNativeLayer"));
  Napi::Function native_router = NativeRouter::Define(env);
  exports.Set("NativeRouter", native_router);
  NAPI_THROW_IF_FAILED(env, napi_create_reference(env, native_router, 1, &tasks->native_router), exports);
  exports.Set("forwardBlock", Napi::Function::New<ForwardBlock>(env, "forwardBlock"));
  exports.Set("forwardBlockSync", Napi::Function::New<ForwardBlockSync>(env, "forwardBlockSync"));
  exports.Set("decodeMxfp4", Napi::Function::New<DecodeMxfp4>(env, "decodeMxfp4"));
  exports.Set("decodeMxfp4Async", Napi::Function::New<DecodeMxfp4Async>(env, "decodeMxfp4Async"));
  exports.Set("convertAsync", Napi::Function::New<ConvertAsync>(env, "convertAsync"));
  exports.Set("saveLayer", Napi::Function::New<SaveLayer>(env, "saveLayer"));
  exports.Set("openLayer", Napi::Function::New<OpenLayer>(env, "openLayer"));
  exports.Set("shareLayer", Napi::Function::New<ShareLayer>(env, "shareLayer"));
  exports.Set("adoptLayer", Napi::Function::New<AdoptLayer>(env, "adoptLayer"));
  return exports;
}

}  // namespace

NODE_API_MODULE(moe_cpu, Init)
