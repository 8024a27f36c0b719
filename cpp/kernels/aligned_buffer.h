// Owned, cache-line aligned, uninitialised storage (std::vector would zero-fill gigabytes).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#elif defined(_WIN32)
#include <malloc.h>
#endif

namespace moe {

class AlignedBuffer {
 public:
  // One cache line: no packed row straddles a line boundary at its start.
  static constexpr size_t kAlignment = 64;

  AlignedBuffer() = default;
  // Large buffers (packed weights) are aligned to and advised as 2 MiB huge pages: a
  // gigabyte in 4 KiB pages costs ~250k page faults on first touch and TLB misses after.
  static constexpr size_t kHugePage = size_t{2} << 20;

  explicit AlignedBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes == 0) return;
    const size_t alignment = bytes >= kHugePage ? kHugePage : kAlignment;
    const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
#if defined(_WIN32)
    data_ = _aligned_malloc(rounded, alignment);  // the Windows CRTs have no aligned_alloc
#else
    data_ = std::aligned_alloc(alignment, rounded);
#endif
    if (!data_) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (alignment == kHugePage) madvise(data_, rounded, MADV_HUGEPAGE);
#endif
  }
  // A view of memory `owner` keeps alive (a file mapping): not freed here; the owner goes with
  // the last buffer holding it.
  AlignedBuffer(const void* data, size_t bytes, std::shared_ptr<const void> owner)
      : data_(const_cast<void*>(data)), bytes_(bytes), owner_(std::move(owner)) {}
  ~AlignedBuffer() {
    if (owner_) return;
#if defined(_WIN32)
    _aligned_free(data_);
#else
    std::free(data_);
#endif
  }
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(other.data_), bytes_(other.bytes_), owner_(std::move(other.owner_)) {
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    std::swap(owner_, other.owner_);
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }
  // True for a view of memory it does not own (a mapped file).
  bool is_view() const { return owner_ != nullptr; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  std::shared_ptr<const void> owner_;
};

}  // namespace moe
