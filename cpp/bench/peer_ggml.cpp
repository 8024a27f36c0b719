#include "peer_ggml.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace bench {

namespace {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream in(line);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

GgmlType ggml_type_for(moe::WeightFormat format) {
  switch (format) {
    case moe::WeightFormat::f32: return {"f32", 0};
    case moe::WeightFormat::bf16: return {"bf16", 0};
    case moe::WeightFormat::f16: return {"f16", 0};
    case moe::WeightFormat::mxfp4: return {"mxfp4", 1};
    case moe::WeightFormat::int8: return {"q8_0", 0};
  }
  return {"f32", 0};
}

const GgmlRow* GgmlRun::row(size_t tokens) const {
  for (const auto& r : rows) {
    if (r.tokens == tokens) return &r;
  }
  return nullptr;
}

std::string ggml_binary_problem(const std::string& path) {
#if defined(__unix__) || defined(__APPLE__)
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return path + ": not found";
  if (!S_ISREG(st.st_mode)) return path + ": not a file";
  if (access(path.c_str(), X_OK) != 0) return path + ": not executable";
  return "";
#else
  return "peer runs need a POSIX shell";
#endif
}

GgmlRun run_ggml(const std::string& binary, moe::WeightFormat format, unsigned threads,
                 const std::vector<size_t>& tokens, size_t flush_mib, int min_runs, int max_runs) {
  GgmlRun run;
#if defined(__unix__) || defined(__APPLE__)
  const GgmlType type = ggml_type_for(format);
  std::string tlist;
  for (size_t t : tokens) tlist += (tlist.empty() ? "" : ",") + std::to_string(t);
  char log_path[] = "/tmp/moe_bench_ggml_XXXXXX";
  const int log_fd = mkstemp(log_path);
  if (log_fd < 0) {
    run.error = "cannot create a temporary file for its stderr";
    return run;
  }
  close(log_fd);
  run.command = std::string(flush_mib ? "BENCH_PAR_FLUSH=1 " : "") + shell_quote(binary) + " " + type.type + " " +
                std::to_string(threads) + " " + tlist + " " + std::to_string(type.repack) + " " +
                std::to_string(flush_mib) + " " + std::to_string(min_runs) + " " + std::to_string(max_runs);
  std::fflush(stdout);
  FILE* pipe = popen((run.command + " 2>" + shell_quote(log_path)).c_str(), "r");
  if (!pipe) {
    run.error = "cannot start it";
    std::remove(log_path);
    return run;
  }
  std::vector<std::string> header;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe)) {
    const auto cells = split_csv(trim(buf));
    if (cells.empty()) continue;
    if (header.empty()) {
      if (cells[0] == "type") header = cells;
      continue;
    }
    auto col = [&](const char* name) -> std::string {
      for (size_t i = 0; i < header.size() && i < cells.size(); ++i) {
        if (header[i] == name) return cells[i];
      }
      return "";
    };
    GgmlRow r;
    r.tokens = std::strtoull(col("T").c_str(), nullptr, 10);
    r.median_ms = std::atof(col("median_ms").c_str());
    r.min_ms = std::atof(col("min_ms").c_str());
    r.runs = std::atoi(col("runs").c_str());
    r.experts_touched = std::atof(col("experts_touched").c_str());
    r.repack = std::atoi(col("repack").c_str());
    r.threads = static_cast<unsigned>(std::atoi(col("threads").c_str()));
    if (r.tokens && r.median_ms > 0) run.rows.push_back(r);
  }
  const int status = pclose(pipe);
  std::string last_line;
  {
    std::ifstream log(log_path);
    std::string line;
    const std::string key = "weights in buffer type: ";
    while (std::getline(log, line)) {
      if (line.compare(0, key.size(), key) == 0) run.buffer_type = line.substr(key.size());
      if (!trim(line).empty()) last_line = trim(line);
    }
  }
  std::remove(log_path);
  const bool exited_ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!exited_ok || run.rows.size() != tokens.size()) {
    std::string why = status == -1                ? "could not wait for it"
                      : WIFSIGNALED(status)       ? "killed by signal " + std::to_string(WTERMSIG(status))
                      : WEXITSTATUS(status) != 0  ? "exit status " + std::to_string(WEXITSTATUS(status))
                                                  : std::to_string(run.rows.size()) + " of " +
                                                        std::to_string(tokens.size()) + " token counts in its output";
    run.error = why + (last_line.empty() ? "" : ": " + last_line);
    return run;
  }
  for (const auto& r : run.rows) {
    if (r.threads != threads) {
      run.error = "it ran " + std::to_string(r.threads) + " threads, not " + std::to_string(threads);
      return run;
    }
  }
  run.ok = true;
#else
  run.error = "peer runs need a POSIX shell";
#endif
  return run;
}

}  // namespace bench
