#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

namespace bench {

namespace {

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string json_value(const Record::Value& v) {
  if (const double* d = std::get_if<double>(&v)) {
    if (!std::isfinite(*d)) return "null";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.10g", *d);
    return buf;
  }
  if (const long long* n = std::get_if<long long>(&v)) return std::to_string(*n);
  if (const bool* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  return json_string(std::get<std::string>(v));
}

std::string json_record(const Record& r) {
  std::string out = "{";
  for (size_t i = 0; i < r.fields().size(); ++i) {
    if (i) out += ", ";
    out += json_string(r.fields()[i].first) + ": " + json_value(r.fields()[i].second);
  }
  return out + "}";
}

}  // namespace

void Report::add(const std::string& section, Record record) {
  auto it = std::find_if(sections_.begin(), sections_.end(), [&](const auto& s) { return s.first == section; });
  if (it == sections_.end()) {
    sections_.emplace_back(section, std::vector<Record>{});
    it = sections_.end() - 1;
  }
  it->second.push_back(std::move(record));
}

bool Report::write_json(const std::string& path) const {
  std::ofstream out(path);
  out << "{\n  \"machine\": " << json_record(machine_);
  for (const auto& [name, records] : sections_) {
    out << ",\n  " << json_string(name) << ": [";
    for (size_t i = 0; i < records.size(); ++i) out << (i ? ",\n    " : "\n    ") << json_record(records[i]);
    out << "\n  ]";
  }
  out << "\n}\n";
  return static_cast<bool>(out);
}

Table::Table(std::vector<std::string> headers, int min_width) : headers_(std::move(headers)) {
  for (const auto& h : headers_) widths_.push_back(std::max(static_cast<int>(h.size()), min_width));
}

void Table::print_header() const { print_row(headers_); }

void Table::print_row(const std::vector<std::string>& cells) const {
  for (size_t i = 0; i < cells.size() && i < widths_.size(); ++i) {
    std::printf("%s%*s", i ? "  " : "", widths_[i], cells[i].c_str());
  }
  std::printf("\n");
  std::fflush(stdout);
}

std::string fixed(double v, int decimals) {
  if (!std::isfinite(v)) return "-";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace bench
