// Results as data: every case adds a flat record to a named section; `--json FILE` writes them
// all, and Table prints the same numbers for people as they come in.
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace bench {

class Record {
 public:
  using Value = std::variant<double, long long, bool, std::string>;
  Record& num(const std::string& key, double v) { return put(key, v); }
  Record& count(const std::string& key, long long v) { return put(key, v); }
  Record& flag(const std::string& key, bool v) { return put(key, v); }
  Record& text(const std::string& key, std::string v) { return put(key, std::move(v)); }
  const std::vector<std::pair<std::string, Value>>& fields() const { return fields_; }

 private:
  Record& put(const std::string& key, Value v) {
    fields_.emplace_back(key, std::move(v));
    return *this;
  }
  std::vector<std::pair<std::string, Value>> fields_;
};

class Report {
 public:
  Record& machine() { return machine_; }
  void add(const std::string& section, Record record);
  // {"machine": {...}, "<section>": [{...}, ...], ...}; false if the file cannot be written.
  bool write_json(const std::string& path) const;

 private:
  Record machine_;
  std::vector<std::pair<std::string, std::vector<Record>>> sections_;
};

// Right-aligned columns, each as wide as its header or `min_width`.
class Table {
 public:
  explicit Table(std::vector<std::string> headers, int min_width = 8);
  void print_header() const;
  void print_row(const std::vector<std::string>& cells) const;

 private:
  std::vector<std::string> headers_;
  std::vector<int> widths_;
};

// Fixed-point text of v with `decimals` digits ("-" for a value that is not finite).
std::string fixed(double v, int decimals);

}  // namespace bench
