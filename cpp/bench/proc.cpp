#include "proc.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace bench {

namespace {

// The value of a "Key:   1234 kB" line, in bytes.
size_t kilobyte_field(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) == 0 && line.size() > key.size() && line[key.size()] == ':') {
      std::istringstream fields(line.substr(key.size() + 1));
      size_t kb = 0;
      fields >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

}  // namespace

size_t resident_bytes() { return kilobyte_field("/proc/self/status", "VmRSS"); }
size_t peak_resident_bytes() { return kilobyte_field("/proc/self/status", "VmHWM"); }
size_t available_memory_bytes() { return kilobyte_field("/proc/meminfo", "MemAvailable"); }
size_t total_memory_bytes() { return kilobyte_field("/proc/meminfo", "MemTotal"); }
size_t memory_margin_bytes() { return std::max(size_t{1} << 30, total_memory_bytes() / 10); }

void reset_peak_resident() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return in ? a + " " + b + " " + c : "";
}

}  // namespace bench
