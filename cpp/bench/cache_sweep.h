// Cold weights for the MoE cases: before every timed call the caches are swept (not timed), so
// a call streams its experts' weights from DRAM as one layer of a many-layer decode does.
//
// The sweep runs on one thread per core, each over a buffer of its own of at least 4x the L3
// (so every core's L2 and the L3 it sits behind are emptied, wherever the layer's threads ran):
//   1. read + write every cache line of the buffer (any line the last call left, dirty or
//      clean, is evicted);
//   2. read back the buffer's first half again, read only: the lines dirtied in step 1 are
//      written back now, not inside the timed call, and the caches end up holding clean lines
//      of the sweep buffer only.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace bench {

// The L3 one core sits behind: /sys/devices/system/cpu/cpu0/cache/index*/ (level 3, one
// instance's size) where Linux has it, else sysconf(_SC_LEVEL3_CACHE_SIZE). Both are reported:
// in VMs sysconf can say the whole socket's L3 (e.g. 384 MiB on a 12-CCD EPYC whose cores each
// see 32 MiB).
struct L3Info {
  size_t sysfs_bytes = 0;    // 0: not there
  size_t sysconf_bytes = 0;  // 0: not there
  size_t bytes() const { return sysfs_bytes ? sysfs_bytes : sysconf_bytes; }
  std::string describe() const;  // "32 MiB (sysfs index3; sysconf says 384 MiB)"
};
L3Info l3_info();

// Sweep bytes per thread for an L3 of `l3_bytes`: max(64 MiB, 4 x L3), a whole MiB.
size_t default_sweep_bytes(size_t l3_bytes);

class CacheSweep {
 public:
  // `threads` buffers of `bytes_per_thread` bytes (a multiple of 64), written once now.
  CacheSweep(size_t bytes_per_thread, unsigned threads);
  ~CacheSweep();
  CacheSweep(const CacheSweep&) = delete;
  CacheSweep& operator=(const CacheSweep&) = delete;

  // One sweep: steps 1 and 2 above on every thread at once (thread 0 is the caller).
  void run();
  size_t bytes_per_thread() const { return bytes_; }
  unsigned threads() const { return static_cast<unsigned>(buffers_.size()); }

 private:
  size_t bytes_;
  std::vector<char*> buffers_;
};

}  // namespace bench
