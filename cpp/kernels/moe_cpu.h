// moe-cpu kernel library: the one public header.
//
// Plain C++17, no Node headers: used by the addon, the C++ tests and the native benchmark.
// The math is defined in docs/spec.md; every function here follows it exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace moe {

// Activation (hidden, out) dtype.
enum class DType { f32, bf16 };

// How expert weights are encoded (format/format.h knows each one's blocks and panels):
//   f32, bf16, f16: one value per element;
//   mxfp4: OCP MX e2m1, blocks of 32 values along the input axis: 16 bytes of codes (even
//          element in the low nibble) and one e8m0 scale byte 2^(s - 127) (0xFF: NaN);
//   int8:  blocks of 32 int8 codes in [-127, 127] along the input axis and one f16 scale d
//          (value = q * d), as ggml's q8_0.
enum class WeightFormat { f32, bf16, f16, mxfp4, int8 };
const char* weight_format_name(WeightFormat format);

// How the 2I rows (or columns, or bias entries) of W13 are ordered.
//   halves:      gate 0..I-1, then up 0..I-1
//   interleaved: gate0, up0, gate1, up1, ...
enum class W13Layout { halves, interleaved };

enum class Activation { swigluoai, silu, gelu, gelu_tanh };

enum class RoutingMode { topk_softmax, softmax_topk, sigmoid_grouped };

// Thrown by the kernel library for inputs it cannot process (shape mismatch, NaN logits,
// ids out of range). The addon turns it into a JavaScript RangeError.
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Thrown before an allocation that cannot succeed (more than the memory the system has
// available), so that a mistaken shape is an error rather than an out-of-memory kill.
class OutOfMemory : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bytes the system could give this process now (Linux: MemAvailable + free swap), or
// SIZE_MAX where that is unknown.
size_t available_memory_bytes();

// ---------------------------------------------------------------------------------------------
// bf16 (stored as uint16_t bit patterns)

// Round to nearest, ties to even; NaN stays NaN (quiet).
uint16_t f32_to_bf16(float value);
float bf16_to_f32(uint16_t bits);
void convert_f32_to_bf16(const float* src, uint16_t* dst, size_t count);
void convert_bf16_to_f32(const uint16_t* src, float* dst, size_t count);

// ---------------------------------------------------------------------------------------------
// W13 layout (layout.cpp)
//
// Any W13 tensor or bias is viewed as [outer, 2I, inner]: the permutation moves blocks of
// `inner` contiguous elements.
//   W13 [E, 2I, H]        -> outer = E,     inner = H
//   W13 transposed [E,H,2I] -> outer = E * H, inner = 1
//   bias [E, 2I]          -> outer = E,     inner = 1
// Element size is 2 (bf16) or 4 (f32) bytes; the permutation copies bits and is dtype-agnostic.
struct W13Shape {
  size_t outer;
  size_t intermediate;  // I
  size_t inner;
  size_t elements() const { return outer * 2 * intermediate * inner; }
};

// Out of place; src and dst must not overlap.
void deinterleave_w13(const void* src, void* dst, size_t element_bytes, const W13Shape& shape);
void interleave_w13(const void* src, void* dst, size_t element_bytes, const W13Shape& shape);
// In place: extra memory is half a row (I * inner elements) when a block of `inner` elements
// is 2, 4 or 8 bytes, else one block plus 2I bits of bookkeeping.
void deinterleave_w13_in_place(void* data, size_t element_bytes, const W13Shape& shape);
void interleave_w13_in_place(void* data, size_t element_bytes, const W13Shape& shape);

// ---------------------------------------------------------------------------------------------
// Gated activations (activation.cpp)

struct ActivationParams {
  Activation kind = Activation::silu;
  float swiglu_alpha = 1.702f;  // swigluoai only
  float swiglu_limit = 7.0f;    // swigluoai only
};

// One channel: out = act(gate, up), math in fp32.
float gated_activation(const ActivationParams& params, float gate, float up);

// in: [tokens, 2I] in `layout`; out: [tokens, I].
void gated_activation_f32(const ActivationParams& params, W13Layout layout, const float* in,
                          float* out, size_t tokens, size_t intermediate);
void gated_activation_bf16(const ActivationParams& params, W13Layout layout, const uint16_t* in,
                           uint16_t* out, size_t tokens, size_t intermediate);

// ---------------------------------------------------------------------------------------------
// Routing (routing.cpp)

struct RoutingParams {
  RoutingMode mode = RoutingMode::topk_softmax;
  bool renormalize = false;              // softmax_topk, sigmoid_grouped
  size_t num_groups = 1;                 // sigmoid_grouped
  size_t topk_groups = 1;                // sigmoid_grouped
  const float* correction_bias = nullptr;  // sigmoid_grouped, [E] or null
  float routed_scaling_factor = 1.0f;    // sigmoid_grouped
};

// logits [T, E] -> ids [T, K], weights [T, K]; slots by descending score, ties to the lower
// expert index. Throws InvalidArgument (writing nothing) if a logit is not finite or the
// parameters do not fit E and K.
void select_experts(const RoutingParams& params, const float* logits, size_t tokens,
                    size_t num_experts, size_t top_k, int32_t* ids, float* weights);

// ---------------------------------------------------------------------------------------------
// Thread pool (thread_pool.cpp)

// Physical cores available to this process (affinity mask respected); at least 1.
unsigned physical_core_count();

// ---------------------------------------------------------------------------------------------
// The fused MoE layer (moe.cpp)

struct MoeConfig {
  size_t num_experts = 0;        // E: the experts this layer holds (and packs)
  size_t hidden_size = 0;        // H
  size_t intermediate_size = 0;  // I
  size_t top_k = 0;              // K
  ActivationParams activation;
  W13Layout w13_layout = W13Layout::halves;
  bool transposed = false;  // W13 [E, H, 2I] and W2 [E, I, H] instead of [E, 2I, H], [E, H, I]
  WeightFormat weight_format = WeightFormat::f32;  // what the layer holds
  unsigned threads = 0;  // 0: physical_core_count()
  // A subset of a model's experts (a model split by experts over processes or hosts): the
  // model's id of each expert held, strictly increasing, num_experts of them, each below
  // model_experts. forward() then takes the model's ids and returns the partial output of the
  // routes to the experts held (the others add nothing). Empty: the layer holds all experts.
  std::vector<uint32_t> expert_ids;
  size_t model_experts = 0;  // the model's E with expert_ids; 0: num_experts

  size_t routed_experts() const { return model_experts ? model_experts : num_experts; }
};

// One caller tensor. `data` holds values (f32, bf16, f16) or codes (mxfp4: 16 bytes per block
// of 32 values; int8: one byte per value), `scales` one scale per block (mxfp4: e8m0 bytes;
// int8: f16 bits), blocks along the input axis of each output row ([E][rows][depth / 32]).
//
// Or per expert: `expert_data[e]` (and `expert_scales[e]` for mxfp4 and int8) point at expert
// e's part alone ([rows][depth], or [depth][rows] when transposed), E entries each, with `data`
// and `scales` null. The experts need not be contiguous, so a tensor may hold more elements
// than any one caller array can (a Node 20 typed array holds at most 2^32). Every size is
// size_t. Biases are always whole tensors.
struct WeightTensor {
  WeightFormat format = WeightFormat::f32;
  const void* data = nullptr;
  const void* scales = nullptr;
  std::vector<const void*> expert_data;
  std::vector<const void*> expert_scales;

  WeightTensor() = default;
  WeightTensor(WeightFormat f, const void* d, const void* s = nullptr) : format(f), data(d), scales(s) {}
  WeightTensor(WeightFormat f, std::vector<const void*> d, std::vector<const void*> s = {})
      : format(f), expert_data(std::move(d)), expert_scales(std::move(s)) {}

  bool per_expert() const { return !expert_data.empty(); }
  bool given() const { return data != nullptr || per_expert(); }
};

// Caller's weights. A tensor in another format than MoeConfig::weight_format is converted
// while packing: f32/bf16/f16 values are rounded (bf16, f16) or quantized (mxfp4, int8; the
// rules are in format/) to it; quantized tensors must not be transposed. w13 and w2 may each be
// whole or per expert (WeightTensor). Biases are optional (data null), whole tensors of f32,
// bf16 or f16 values; they are held in f32.
struct MoeWeights {
  WeightTensor w13;
  WeightTensor w2;
  WeightTensor w13_bias;  // [E, 2I] in w13_layout
  WeightTensor w2_bias;   // [E, H]
};

// The micro-kernels a layer chose (ukernel/ukernel.h): one for decode, one for prefill, and
// the average tokens per selected expert from which prefill's is used.
struct KernelChoice {
  std::string decode;
  std::string prefill;
  size_t prefill_min_tokens_per_expert = 0;
  // The matrix-unit kernel (AMX) used from tiles_min_tokens_per_expert tokens per selected
  // expert in place of `prefill`; empty where the kernel set has none.
  std::string tiles;
  size_t tiles_min_tokens_per_expert = 0;
};

// ---------------------------------------------------------------------------------------------
// Packed-layer files (moe/layer_file.cpp): a packed layer's buffers written as they are, and
// mapped read-only and shared when opened, so every process and worker on a host shares one
// copy in the page cache. The format is docs/design.md "Packed-layer files".

// A named blob a packed-layer file carries besides the packed weights (the caller's metadata,
// router weights): stored and checksummed, opaque to the kernel library.
struct FileBlobView {
  std::string name;
  const void* data = nullptr;
  size_t bytes = 0;
};
struct FileBlob {
  std::string name;
  std::vector<uint8_t> bytes;
};

// A file that is not a packed-layer file, is truncated or corrupt (kind format), was written
// for another file version, architecture or panel layout (kind incompatible), or cannot be
// read or written (kind io; the message has the OS error).
class LayerFileError : public std::runtime_error {
 public:
  enum class Kind { io, format, incompatible };
  LayerFileError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

struct LayerFileOptions {
  unsigned threads = 0;  // the opened layer's forward threads (0: physical_core_count())
  // Checks every section's checksum (the weights included: a pass over the file at memory
  // speed); without it only the header and section table are checked.
  bool verify = true;
};

class MoeLayer;
struct OpenedLayer {
  std::shared_ptr<const MoeLayer> layer;
  std::vector<FileBlob> blobs;
  bool mapped = false;  // the weights are a shared read-only mapping of the file
};

class MoeLayer {
 public:
  // Packs the weights once (layout and orientation handled here); keeps no reference to the
  // caller's arrays. Throws InvalidArgument on a bad configuration.
  MoeLayer(const MoeConfig& config, const MoeWeights& weights);

  // Writes the packed layer and `blobs` to `path`: into a temporary file next to it, renamed
  // over `path` once complete, so a reader never sees a partial file (and concurrent writers
  // of the same path leave one whole file). Throws LayerFileError (io), InvalidArgument for a
  // blob name that is reserved or repeated.
  void save(const std::string& path, const std::vector<FileBlobView>& blobs) const;
  // Opens a file written by save(): checked (header, section bounds, sizes against the shapes;
  // checksums with options.verify) before any of it is used; throws LayerFileError.
  static OpenedLayer open(const std::string& path, const LayerFileOptions& options);
  ~MoeLayer();
  MoeLayer(const MoeLayer&) = delete;
  MoeLayer& operator=(const MoeLayer&) = delete;

  // hidden [T, H] and out [T, H] in `activation_dtype`; ids/weights [T, K] (slot order).
  // Validates ids and weights before writing anything (throws InvalidArgument).
  // Safe to call concurrently from several threads.
  void forward(DType activation_dtype, const void* hidden, size_t tokens, const int32_t* ids,
               const float* route_weights, void* out) const;

  const MoeConfig& config() const;
  // Bytes held by the packed layer (weights and biases).
  size_t bytes() const;
  // What forward() runs: the registry's choice for this layer's format on this CPU.
  const KernelChoice& kernels() const;

  struct Packed;
  explicit MoeLayer(std::unique_ptr<Packed> packed);

 private:
  std::unique_ptr<Packed> packed_;
};

// ---------------------------------------------------------------------------------------------
// The MoE block in one call (moe/block.cpp): router, routed experts and shared expert

// A router: the routing rule with its top-K, and optionally the weights that compute the
// logits, logits[t, e] = hidden[t] · weight[e] + bias[e] (router_logits). Copies what it is
// given (weights, bias, correction bias), so a forward never copies or re-reads caller memory.
class Router {
 public:
  // weight may be null: the caller then brings logits, or ids and weights, to every forward.
  // Throws InvalidArgument if the routing rule does not fit num_experts and top_k.
  Router(size_t num_experts, size_t hidden_size, size_t top_k, const RoutingParams& routing,
         DType weight_dtype, const void* weight, const float* bias);

  size_t num_experts() const { return num_experts_; }
  size_t hidden_size() const { return hidden_size_; }
  size_t top_k() const { return top_k_; }
  bool has_weight() const { return !weight_.empty(); }
  // Bytes held: weights and bias (the routing rule's correction bias is E floats more).
  size_t bytes() const;

  // logits [T, E] from hidden [T, H]; requires has_weight().
  void logits(DType hidden_dtype, const void* hidden, size_t tokens, float* logits,
              unsigned threads) const;
  // select_experts with this router's rule.
  void select(const float* logits, size_t tokens, int32_t* ids, float* weights) const;

  // What it holds, as given (for a packed-layer file): weights [E, H] in weight_dtype() (empty
  // without), bias [E] (empty without), the routing rule's correction bias [E] (empty without).
  DType weight_dtype() const { return weight_dtype_; }
  const std::vector<uint8_t>& weight() const { return weight_; }
  const std::vector<float>& bias() const { return bias_; }
  const std::vector<float>& correction_bias() const { return correction_bias_; }

 private:
  size_t num_experts_, hidden_size_, top_k_;
  RoutingParams routing_;
  std::vector<float> correction_bias_;
  DType weight_dtype_ = DType::f32;
  std::vector<uint8_t> weight_;
  std::vector<float> bias_;
};

// The route of one block forward: logits [T, E] to route with the block's router, or ids and
// weights [T, K] already chosen, or neither (the router's weights compute the logits).
struct BlockRoute {
  const float* logits = nullptr;
  const int32_t* ids = nullptr;
  const float* weights = nullptr;
};

// A block's parts. experts and router are required; shared is a layer of one expert with
// top-K 1 that every token goes through, scaled by sigmoid(shared_gate · x) per token (a
// router of one output without routing use) or by 1 without a gate.
struct MoeBlockParts {
  const MoeLayer* experts = nullptr;
  const Router* router = nullptr;
  const MoeLayer* shared = nullptr;
  const Router* shared_gate = nullptr;
};

// hidden [T, H] -> out [T, H] in `dtype`: route, routed experts, and, with a shared expert,
// out = routed(x) + s(x) · shared(x) computed from f32 activations (bf16 hidden widened,
// exactly), summed in f32 and rounded to `dtype` once. Everything is checked before out is
// written: InvalidArgument for a bad route or non-finite router/gate logits (named as the
// facade names them: route.logits, route.ids, hidden). The router and gate use the routed
// experts' thread count.
void moe_block_forward(const MoeBlockParts& parts, DType dtype, const void* hidden,
                       size_t tokens, const BlockRoute& route, void* out);

// ---------------------------------------------------------------------------------------------
// CPU detection and kernel choice (dispatch.cpp)

struct CpuInfo {
  std::string arch;                   // "x64", "arm64", ...
  std::vector<std::string> features;  // e.g. "avx2", "fma", "avx512f", "avx512bf16", "neon", "sve"
  std::string kernel;                 // the kernel set in use: "scalar", "avx2", "avx512", ...
  std::vector<std::string> kernels;   // every kernel set this build can run on this CPU
};

// Reads MOE_CPU_ISA once; throws InvalidArgument if it names a kernel set this build or this
// CPU cannot run.
const CpuInfo& cpu_info();

}  // namespace moe

// ---------------------------------------------------------------------------------------------
// Checkpoint loading helpers: router logits (router.cpp), MXFP4 decode (mxfp4.cpp)

namespace moe {

// logits [T, E] (f32) = hidden [T, H] · weight[E, H]ᵀ + bias [E] (bias may be null), fp32
// accumulation. hidden and weight are f32 or bf16 each. Uses up to `threads` threads of the
// shared pool (0: physical_core_count()); the result does not depend on the thread count.
void router_logits(DType hidden_dtype, const void* hidden, size_t tokens, size_t hidden_size,
                   DType weight_dtype, const void* weight, size_t num_experts, const float* bias,
                   float* logits, unsigned threads);

// MXFP4 as gpt-oss ships it: per block of kMxfp4BlockValues values, kMxfp4BlockBytes bytes of
// e2m1 codes (even element in the low nibble) and one e8m0 scale byte (2^(s - 127); 0xFF is
// NaN). Decodes num_blocks blocks to num_blocks * 32 values; exact in both output dtypes.
constexpr size_t kMxfp4BlockValues = 32;
constexpr size_t kMxfp4BlockBytes = 16;
void decode_mxfp4_f32(const uint8_t* blocks, const uint8_t* scales, size_t num_blocks, float* out);
void decode_mxfp4_bf16(const uint8_t* blocks, const uint8_t* scales, size_t num_blocks,
                       uint16_t* out);

// Quantization of `rows` rows of `depth` f32 values (depth a multiple of 32) to blocks and
// scales laid out as a checkpoint stores them ([rows][depth / 32][block]), and the exact
// decode back to f32. Rules (docs/spec.md, "Weight formats"):
//   mxfp4: s = floor(log2(max|v|)) - 2 + 127, clamped to [0, 254] (all-zero block: 0),
//          codes = v / 2^(s - 127) rounded to the nearest e2m1 value, ties to even, saturating
//          at +-6; a block holding NaN or infinity gets the NaN scale 0xFF.
//   int8:  d = f16(max|v| / 127), q = round(v / d) on the exact quotient, ties away from zero,
//          clamped to [-127, 127]; NaN, infinity or a block whose scale would exceed the f16
//          range (max|v| > 127 x 65504) throws InvalidArgument (int8 cannot hold it).
void quantize_rows(WeightFormat format, const float* values, size_t rows, size_t depth,
                   void* codes, void* scales);
void dequantize_rows(WeightFormat format, const void* codes, const void* scales, size_t rows,
                     size_t depth, float* values);
uint16_t f32_to_f16(float value);  // round to nearest even; NaN stays NaN
float f16_to_f32(uint16_t bits);
// Bulk f16 conversions (loaders): to f32 exactly; to bf16 with one rounding to nearest even.
void convert_f16_to_f32(const uint16_t* src, float* dst, size_t count);
void convert_f16_to_bf16(const uint16_t* src, uint16_t* dst, size_t count);

// Elements of the typed arrays holding `rows` rows of `depth` values in `format`: values or
// codes (bytes for mxfp4 and int8), and scales (bytes for mxfp4, f16 for int8; 0 for dense
// formats). `valid` is false when depth is not a multiple of the format's block.
struct TensorGeometry {
  bool valid;
  size_t data_elements;
  size_t scale_elements;
};
TensorGeometry tensor_geometry(WeightFormat format, size_t rows, size_t depth);

// The micro-kernel registry as plain data (ukernel/registry.cpp), best first, scalar last.
struct MicroKernelInfo {
  std::string name, weights, activations, regime, kernel_set;
  bool runnable;  // on this CPU
};
std::vector<MicroKernelInfo> micro_kernels();

}  // namespace moe
