#include "weights.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace bench {

namespace {

// Random elements before the pattern repeats: an odd count, so repeats do not line up with
// rows of any preset.
constexpr size_t kRandomElements = (size_t{1} << 20) + 7;
// Physical memory behind a RepeatingWeights view (a multiple of the 4 KiB page).
constexpr size_t kPeriodBytes = size_t{32} << 20;

uint64_t next(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

// sign | exponent 119..122 (2^-8 .. 2^-5, times 1.mantissa) | random mantissa.
float random_weight(uint64_t& s) {
  const uint64_t r = next(s);
  const uint32_t bits = static_cast<uint32_t>((r >> 32) & 0x80000000u) |
                        static_cast<uint32_t>((119 + (r & 3)) << 23) |
                        static_cast<uint32_t>((r >> 8) & 0x7fffffu);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

void fill_random(void* data, size_t count, moe::DType dtype, uint64_t seed) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull | 1;
  const size_t bytes_per = dtype == moe::DType::bf16 ? 2 : 4;
  const size_t n = std::min(count, kRandomElements);
  if (dtype == moe::DType::bf16) {
    auto* p = static_cast<uint16_t*>(data);
    for (size_t i = 0; i < n; ++i) p[i] = moe::f32_to_bf16(random_weight(s));
  } else {
    auto* p = static_cast<float*>(data);
    for (size_t i = 0; i < n; ++i) p[i] = random_weight(s);
  }
  auto* bytes = static_cast<char*>(data);
  const size_t total = count * bytes_per;
  for (size_t filled = n * bytes_per; filled < total; filled *= 2) {
    std::memcpy(bytes + filled, bytes, std::min(filled, total - filled));
  }
}

RepeatingWeights::RepeatingWeights(size_t count, moe::DType dtype, uint64_t seed) {
  const size_t bytes_per = dtype == moe::DType::bf16 ? 2 : 4;
  const size_t bytes = count * bytes_per;
#if defined(__linux__)
  const size_t rounded = (bytes + kPeriodBytes - 1) / kPeriodBytes * kPeriodBytes;
  const int fd = memfd_create("moe_bench_weights", 0);
  if (fd >= 0 && ftruncate(fd, kPeriodBytes) == 0) {
    void* period = mmap(nullptr, kPeriodBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    void* base = mmap(nullptr, rounded, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    bool ok = period != MAP_FAILED && base != MAP_FAILED;
    if (period != MAP_FAILED) {
      fill_random(period, kPeriodBytes / bytes_per, dtype, seed);
      munmap(period, kPeriodBytes);
    }
    if (ok) {
      // MAP_POPULATE: set up the page tables now, not in a million faults during packing.
      for (size_t off = 0; ok && off < rounded; off += kPeriodBytes) {
        ok = mmap(static_cast<char*>(base) + off, kPeriodBytes, PROT_READ,
                  MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, 0) != MAP_FAILED;
      }
    }
    close(fd);
    if (ok) {
      data_ = base;
      mapped_bytes_ = rounded;
      return;
    }
    if (base != MAP_FAILED) munmap(base, rounded);
  } else if (fd >= 0) {
    close(fd);
  }
#endif
  data_ = std::malloc(std::max<size_t>(bytes, 1));
  if (!data_) throw std::bad_alloc();
  fill_random(data_, count, dtype, seed);
}

RepeatingWeights::~RepeatingWeights() {
#if defined(__linux__)
  if (mapped_bytes_) {
    munmap(data_, mapped_bytes_);
    return;
  }
#endif
  std::free(data_);
}

}  // namespace bench
