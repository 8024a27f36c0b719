// Packed-layer files (moe/layer_file.cpp): save then open gives the same forward bit for bit in
// every weight format, with the caller's blobs back as written; every truncation and every
// single-byte change of the header region is refused with LayerFileError (never a crash, never
// read past the file), which the sanitizer run of these tests checks as well.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "test_harness.h"

namespace {

using moetest::Rng;

constexpr size_t E = 3, H = 64, I = 32, K = 2, T = 5;

std::string temp_path(const char* label) {
  static int serial = 0;
  return std::string("/tmp/moe-cpu-test-layer-file-") + label + "-" + std::to_string(serial++) + ".moe";
}

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_all(const std::string& path, const std::vector<uint8_t>& bytes, size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(n));
}

struct Layer {
  std::vector<float> w13, w2, b13, b2;
  moe::MoeConfig config;
  std::unique_ptr<moe::MoeLayer> layer;
};

Layer make_layer(moe::WeightFormat format, Rng& rng) {
  Layer l;
  l.w13.resize(E * 2 * I * H);
  l.w2.resize(E * H * I);
  l.b13.resize(E * 2 * I);
  l.b2.resize(E * H);
  for (auto* v : {&l.w13, &l.w2, &l.b13, &l.b2}) {
    for (float& x : *v) x = rng.uniform(-0.5f, 0.5f);
  }
  l.config.num_experts = E;
  l.config.hidden_size = H;
  l.config.intermediate_size = I;
  l.config.top_k = K;
  l.config.activation.kind = moe::Activation::swigluoai;
  l.config.w13_layout = moe::W13Layout::interleaved;
  l.config.weight_format = format;
  l.config.threads = 2;
  // f32 values quantized or rounded while packing (the caller's tensor stays f32).
  moe::MoeWeights w;
  w.w13 = {moe::WeightFormat::f32, l.w13.data(), nullptr};
  w.w2 = {moe::WeightFormat::f32, l.w2.data(), nullptr};
  w.w13_bias = {moe::WeightFormat::f32, l.b13.data(), nullptr};
  w.w2_bias = {moe::WeightFormat::f32, l.b2.data(), nullptr};
  l.layer = std::make_unique<moe::MoeLayer>(l.config, w);
  return l;
}

std::vector<float> forward(const moe::MoeLayer& layer, const std::vector<float>& x, const std::vector<int32_t>& ids,
                           const std::vector<float>& weights) {
  std::vector<float> out(T * H, std::nanf(""));
  layer.forward(moe::DType::f32, x.data(), T, ids.data(), weights.data(), out.data());
  return out;
}

}  // namespace

TEST(layer_file_round_trip_every_format) {
  Rng rng(31);
  std::vector<float> x(T * H), weights(T * K);
  std::vector<int32_t> ids(T * K);
  for (float& v : x) v = rng.uniform(-1, 1);
  for (size_t r = 0; r < T * K; ++r) {
    ids[r] = static_cast<int32_t>((r / K + r % K) % E);
    weights[r] = rng.uniform(0.1f, 1);
  }
  for (moe::WeightFormat f : {moe::WeightFormat::f32, moe::WeightFormat::bf16, moe::WeightFormat::f16,
                              moe::WeightFormat::mxfp4, moe::WeightFormat::int8}) {
    Layer l = make_layer(f, rng);
    const std::string path = temp_path("round");
    const std::string meta = "{\"any\": \"bytes\"}";
    l.layer->save(path, {{"meta", meta.data(), meta.size()}, {"empty", nullptr, 0}});
    moe::OpenedLayer opened = moe::MoeLayer::open(path, {});
    std::remove(path.c_str());  // the mapping outlives the name
    CHECK(opened.mapped);
    CHECK(opened.layer->bytes() == l.layer->bytes());
    CHECK(std::string(opened.layer->kernels().decode) == l.layer->kernels().decode);
    CHECK(opened.blobs.size() == 2);
    CHECK(opened.blobs.size() == 2 && opened.blobs[0].name == "meta" &&
          std::string(opened.blobs[0].bytes.begin(), opened.blobs[0].bytes.end()) == meta);
    CHECK(opened.blobs.size() == 2 && opened.blobs[1].name == "empty" && opened.blobs[1].bytes.empty());
    const std::vector<float> a = forward(*l.layer, x, ids, weights), b = forward(*opened.layer, x, ids, weights);
    CHECK_MSG(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0, moe::weight_format_name(f));
  }
}

TEST(layer_file_refuses_reserved_and_repeated_blob_names) {
  Rng rng(5);
  Layer l = make_layer(moe::WeightFormat::bf16, rng);
  const std::string path = temp_path("names");
  CHECK_THROWS(moe::InvalidArgument, l.layer->save(path, {{"w13", "x", 1}}), "reserved");
  CHECK_THROWS(moe::InvalidArgument, l.layer->save(path, {{"a", "x", 1}, {"a", "y", 1}}), "repeated");
  CHECK_THROWS(moe::InvalidArgument, l.layer->save(path, {{"", "x", 1}}), "empty name");
  CHECK_THROWS(moe::LayerFileError, l.layer->save("/nonexistent-dir/x.moe", {}), "unwritable");
  CHECK(read_all(path).empty());
}

TEST(layer_file_truncations_and_header_bytes_are_refused) {
  Rng rng(9);
  Layer l = make_layer(moe::WeightFormat::mxfp4, rng);
  const std::string path = temp_path("source"), damaged = temp_path("damaged");
  l.layer->save(path, {});
  const std::vector<uint8_t> bytes = read_all(path);
  std::remove(path.c_str());
  CHECK(bytes.size() > 4096);
  for (size_t n = 0; n < bytes.size(); n += (n < 4200 ? 97 : 4099)) {
    write_all(damaged, bytes, n);
    CHECK_THROWS(moe::LayerFileError, moe::MoeLayer::open(damaged, {}), "truncated to " << n);
  }
  // Every byte of the used header (fields and the section table): the checksum or a field check refuses it.
  for (size_t at = 0; at < 128 + 4 * 48; ++at) {
    std::vector<uint8_t> b = bytes;
    b[at] ^= 0x5a;
    write_all(damaged, b, b.size());
    CHECK_THROWS(moe::LayerFileError, moe::MoeLayer::open(damaged, {}), "header byte " << at);
  }
  std::remove(damaged.c_str());
}
