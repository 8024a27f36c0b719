// What Linux says about this process and machine (/proc); 0 or "" where it says nothing.
#pragma once

#include <cstddef>
#include <string>

namespace bench {

size_t resident_bytes();       // VmRSS
size_t peak_resident_bytes();  // VmHWM: the peak since start or since reset_peak_resident()
void reset_peak_resident();    // writes "5" to /proc/self/clear_refs
size_t available_memory_bytes();  // MemAvailable of /proc/meminfo
size_t total_memory_bytes();      // MemTotal of /proc/meminfo
// Memory a case leaves to the rest of the machine (other processes, its own scratch) when
// deciding whether it fits: a tenth of it, at least 1 GiB. A benchmark must not push a shared
// machine into the OOM killer.
size_t memory_margin_bytes();
std::string load_average();       // the three numbers of /proc/loadavg

}  // namespace bench
