#include "cache_sweep.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <thread>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace bench {

namespace {

constexpr size_t kLine = 64;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kMinSweepBytes = 64 * kMiB;
constexpr size_t kHugePage = 2 * kMiB;

std::atomic<uint64_t> g_sweep_sink{0};  // the sums go here, so no sweep is optimised away

// "32768K", "2M", "1048576" -> bytes; 0 if unreadable.
size_t parse_size(const std::string& s) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str()) return 0;
  if (*end == 'K' || *end == 'k') return static_cast<size_t>(v) << 10;
  if (*end == 'M' || *end == 'm') return static_cast<size_t>(v) << 20;
  if (*end == 'G' || *end == 'g') return static_cast<size_t>(v) << 30;
  return static_cast<size_t>(v);
}

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string mib(size_t bytes) {
  return bytes % kMiB == 0 ? std::to_string(bytes / kMiB) + " MiB" : std::to_string(bytes >> 10) + " KiB";
}

// Step 1: every line read (its 8 words summed) and written (its first word).
uint64_t read_write(char* p, size_t bytes) {
  uint64_t s = 0;
  for (size_t off = 0; off < bytes; off += kLine) {
    auto* w = reinterpret_cast<uint64_t*>(p + off);
    const uint64_t v = w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
    s += v;
    w[0] = v + 1;
  }
  return s;
}

// Step 2: every line read only.
uint64_t read_only(const char* p, size_t bytes) {
  uint64_t s0 = 0, s1 = 0;
  for (size_t off = 0; off < bytes; off += 2 * kLine) {
    s0 += *reinterpret_cast<const uint64_t*>(p + off);
    s1 += *reinterpret_cast<const uint64_t*>(p + off + kLine);
  }
  return s0 + s1;
}

}  // namespace

std::string L3Info::describe() const {
  if (!sysfs_bytes && !sysconf_bytes) return "unknown";
  std::string out = mib(bytes()) + (sysfs_bytes ? " (sysfs cpu0 index3" : " (sysconf");
  if (sysfs_bytes && sysconf_bytes && sysconf_bytes != sysfs_bytes) out += "; sysconf says " + mib(sysconf_bytes);
  return out + ")";
}

L3Info l3_info() {
  L3Info info;
#if defined(__linux__)
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string level = read_line(dir + "level");
    if (level.empty()) break;
    if (level == "3") {
      info.sysfs_bytes = parse_size(read_line(dir + "size"));
      break;
    }
  }
#if defined(_SC_LEVEL3_CACHE_SIZE)
  const long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (v > 0) info.sysconf_bytes = static_cast<size_t>(v);
#endif
#endif
  return info;
}

size_t default_sweep_bytes(size_t l3_bytes) {
  const size_t b = std::max(kMinSweepBytes, 4 * l3_bytes);
  return (b + kMiB - 1) / kMiB * kMiB;
}

CacheSweep::CacheSweep(size_t bytes_per_thread, unsigned threads)
    : bytes_((std::max(bytes_per_thread, 2 * kLine) + 2 * kLine - 1) / (2 * kLine) * (2 * kLine)) {
  const size_t rounded = (bytes_ + kHugePage - 1) / kHugePage * kHugePage;
  for (unsigned t = 0; t < std::max(threads, 1u); ++t) {
    char* p = static_cast<char*>(std::aligned_alloc(kHugePage, rounded));
    if (!p) {
      for (char* b : buffers_) std::free(b);
      throw std::bad_alloc();
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, rounded, MADV_HUGEPAGE);
#endif
    // Written now: pages never written all map to the zero page and would be read from cache.
    std::memset(p, 1, rounded);
    buffers_.push_back(p);
  }
}

CacheSweep::~CacheSweep() {
  for (char* b : buffers_) std::free(b);
}

void CacheSweep::run() {
  auto sweep = [this](unsigned t) {
    char* p = buffers_[t];
    const uint64_t a = read_write(p, bytes_);
    const uint64_t b = read_only(p, bytes_ / 2 / (2 * kLine) * (2 * kLine));
    g_sweep_sink.fetch_add(a + b, std::memory_order_relaxed);
  };
  std::vector<std::thread> others;
  for (unsigned t = 1; t < buffers_.size(); ++t) others.emplace_back(sweep, t);
  sweep(0);
  for (auto& th : others) th.join();
}

}  // namespace bench
