// MoeLayer construction: the kernels are chosen for the weight format, then the weights are
// packed into the layout those kernels read (format/pack.h), once.
#include <cmath>
#include <cstdio>
#include <string>

#include "format/pack.h"
#include "moe/packed.h"

namespace moe {

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw InvalidArgument(message);
}

// A bias tensor (dense values, any dense format) -> f32, entry i of the result from entry
// source(i) of the tensor.
template <typename Source>
std::vector<float> bias_f32(const WeightTensor& t, size_t count, const char* name, Source source) {
  require(!t.per_expert(), std::string(name) + ": biases are whole tensors, not per-expert arrays");
  if (!t.data) return {};
  const FormatInfo& f = format_info(t.format);
  require(!f.quantized(), std::string(name) + ": biases are f32, bf16 or f16 values, not " + f.name);
  std::vector<float> values(count), out(count);
  f.decode_row(static_cast<const uint8_t*>(t.data), nullptr, count, values.data());
  for (size_t i = 0; i < count; ++i) out[i] = values[source(i)];
  return out;
}

size_t times(size_t a, size_t b) {
  size_t product;
  if (__builtin_mul_overflow(a, b, &product)) throw InvalidArgument("MoeLayer: the layer's sizes multiply past 2^64");
  return product;
}

std::string gigabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GB", bytes / 1e9);
  return text;
}

constexpr double kMaxPaddingBlowup = 8;
constexpr size_t kPaddingBlowupFloorBytes = size_t{1} << 28;  // 268 MB

// Refuses, before allocating, a layer larger than the memory the system has available. Tiny
// matrices pad a lot (rows to panels of kPanelRows, depth to kPanelDepth), so the message says
// how much of the size is padding when that is the cause.
void check_memory(const MoeConfig& c, const MoeLayer::Packed& p) {
  const size_t E = c.num_experts, H = c.hidden_size, I = c.intermediate_size;
  const size_t packed = times(E, times(2, p.w13_shape.matrix_bytes)) + times(E, p.w2_shape.matrix_bytes) +
                        times(E, times(2 * I + H, sizeof(float)));
  const double values = 3.0 * static_cast<double>(E) * static_cast<double>(H) * static_cast<double>(I);
  const double unpadded = values * static_cast<double>(p.format->panel_bytes(kPanelDepth)) / (kPanelRows * kPanelDepth);
  const double blowup = static_cast<double>(packed) / unpadded;
  std::string why;
  if (blowup > 2) {
    why = " (hiddenSize " + std::to_string(H) + " and intermediateSize " + std::to_string(I) + " pad to panels of " +
          std::to_string(kPanelRows) + " rows x " + std::to_string(kPanelDepth) + " values: " +
          std::to_string(static_cast<long long>(blowup)) + "x the unpadded size)";
  }
  // Tiny matrices in large numbers are a mistaken shape far more often than a model: refused
  // when padding alone would multiply a large layer.
  if (blowup > kMaxPaddingBlowup && packed > kPaddingBlowupFloorBytes) {
    throw InvalidArgument("hiddenSize, intermediateSize: the packed layer would take " + gigabytes(static_cast<double>(packed)) +
                          why + "; layers that pad more than " + std::to_string(static_cast<int>(kMaxPaddingBlowup)) +
                          "x are refused above " + gigabytes(kPaddingBlowupFloorBytes));
  }
  const size_t available = available_memory_bytes();
  if (packed <= available) return;
  throw OutOfMemory("MoeLayer: the packed layer would take " + gigabytes(static_cast<double>(packed)) + why +
                    ", more than the " + gigabytes(static_cast<double>(available)) + " of memory available");
}

}  // namespace

void prepare_packed(MoeLayer::Packed& p, const MoeConfig& config) {
  const size_t E = config.num_experts, H = config.hidden_size, I = config.intermediate_size;
  require(E > 0 && H > 0 && I > 0, "MoeLayer: num_experts, hidden_size and intermediate_size must be > 0");
  const size_t model_E = config.routed_experts();
  require(config.top_k > 0 && config.top_k <= model_E, "MoeLayer: top_k must be in [1, the model's number of experts]");
  p.local_of.clear();
  if (!config.expert_ids.empty() || config.model_experts) {
    require(config.expert_ids.size() == E, "MoeLayer: expert_ids must list the num_experts experts held");
    require(model_E >= E, "MoeLayer: model_experts must be at least num_experts");
    p.local_of.assign(model_E, -1);
    for (size_t i = 0; i < E; ++i) {
      const uint32_t id = config.expert_ids[i];
      require(id < model_E && (i == 0 || id > config.expert_ids[i - 1]),
              "MoeLayer: expert_ids must be strictly increasing ids below model_experts (" + std::to_string(model_E) + ")");
      p.local_of[id] = static_cast<int32_t>(i);
    }
  }
  p.config = config;
  p.format = &format_info(config.weight_format);
  if (p.format->quantized()) {
    require(H % p.format->block_values == 0 && I % p.format->block_values == 0,
            std::string("MoeLayer: ") + p.format->name + " needs hidden_size and intermediate_size that are multiples of " +
                std::to_string(p.format->block_values) + " (blocks run along the input axis); got H=" +
                std::to_string(H) + ", I=" + std::to_string(I));
  }
  p.kernels = ukernel::choose(config.weight_format, cpu_info().kernel);
  require(p.kernels.decode->layout == p.kernels.prefill->layout &&
              (!p.kernels.tiles || p.kernels.tiles->layout == p.kernels.decode->layout),
          "MoeLayer: the decode, prefill and tile kernels read different panel layouts");
  p.kernel_names = {p.kernels.decode->name, p.kernels.prefill->name, ukernel::kPrefillMinTokensPerExpert,
                    p.kernels.tiles ? p.kernels.tiles->name : "",
                    p.kernels.tiles ? ukernel::kTilesMinTokensPerExpert : 0};
  p.w13_shape = PackedMatrices(*p.format, I, H);
  p.w2_shape = PackedMatrices(*p.format, H, I);
}

MoeLayer::MoeLayer(std::unique_ptr<Packed> packed) : packed_(std::move(packed)) {}

MoeLayer::MoeLayer(const MoeConfig& config, const MoeWeights& weights) : packed_(new Packed) {
  const size_t E = config.num_experts, H = config.hidden_size, I = config.intermediate_size;
  require(weights.w13.given() && weights.w2.given(), "MoeLayer: w13 and w2 are required");
  Packed& p = *packed_;
  prepare_packed(p, config);
  // Everything packing will refuse is refused before allocating.
  const ExpertTensor w13{weights.w13, E, 2, I, H, config.w13_layout, config.transposed};
  const ExpertTensor w2{weights.w2, E, 1, H, I, W13Layout::halves, config.transposed};
  check_packable(w13, *p.format);
  check_packable(w2, *p.format);
  require(!weights.w13_bias.per_expert() && !weights.w2_bias.per_expert(),
          "MoeLayer: biases are whole tensors ([E, 2I], [E, H]), not per-expert arrays");
  check_memory(config, p);
  p.w13 = AlignedBuffer(2 * E * p.w13_shape.matrix_bytes);
  p.w2 = AlignedBuffer(E * p.w2_shape.matrix_bytes);
  const unsigned threads = p.threads();
  pack_panels(w13, *p.format, p.w13.as<uint8_t>(), threads);
  pack_panels(w2, *p.format, p.w2.as<uint8_t>(), threads);
  p.w13_bias = bias_f32(weights.w13_bias, E * 2 * I, "w13_bias", [&](size_t i) {
    return (i / (2 * I)) * 2 * I + w13_source_row(config.w13_layout, i % (2 * I), I);
  });
  p.w2_bias = bias_f32(weights.w2_bias, E * H, "w2_bias", [](size_t i) { return i; });
}

MoeLayer::~MoeLayer() = default;

const MoeConfig& MoeLayer::config() const { return packed_->config; }

const KernelChoice& MoeLayer::kernels() const { return packed_->kernel_names; }

size_t MoeLayer::bytes() const {
  const Packed& p = *packed_;
  return p.w13.bytes() + p.w2.bytes() + (p.w13_bias.size() + p.w2_bias.size()) * sizeof(float);
}

void MoeLayer::forward(DType activation_dtype, const void* hidden, size_t tokens, const int32_t* ids,
                       const float* route_weights, void* out) const {
  const Packed& p = *packed_;
  const size_t E = p.config.routed_experts(), K = p.config.top_k;
  // Validate everything before the first write to `out`.
  for (size_t r = 0; r < tokens * K; ++r) {
    if (ids[r] < 0 || static_cast<size_t>(ids[r]) >= E) {
      throw InvalidArgument("ids: element " + std::to_string(r) + " is " + std::to_string(ids[r]) +
                            ", expected an expert id in [0, " + std::to_string(E) + ")");
    }
    if (!std::isfinite(route_weights[r])) {
      throw InvalidArgument("weights: element " + std::to_string(r) + " is not finite");
    }
  }
  if (tokens == 0) return;
  if (p.local_of.empty()) {
    forward_packed(p, activation_dtype, hidden, tokens, ids, route_weights, out);
    return;
  }
  // A subset: the model's ids to this layer's experts (-1: not held).
  std::vector<int32_t> local(tokens * K);
  for (size_t r = 0; r < tokens * K; ++r) local[r] = p.local_of[static_cast<size_t>(ids[r])];
  forward_packed(p, activation_dtype, hidden, tokens, local.data(), route_weights, out);
}

}  // namespace moe
