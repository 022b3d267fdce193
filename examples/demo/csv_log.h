// The curves of a training run as CSV, appended to on resume (see CsvLog).
#pragma once
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>

namespace demo {

// ---- CSV ----------------------------------------------------------------------------------
// A CSV file with a header line. With `resume_after_step` >= 0 (a resumed run) the existing
// file is kept up to and including the rows whose "step" column is <= that step, so rows a
// crashed run wrote after its last checkpoint are not duplicated; otherwise the file starts anew.
class CsvLog {
 public:
  CsvLog() = default;
  CsvLog(const std::string& path, const std::vector<std::string>& columns, std::int64_t resume_after_step = -1) {
    if (path.empty()) return;
    std::string header;
    for (std::size_t i = 0; i < columns.size(); ++i) header += (i ? "," : "") + columns[i];
    std::vector<std::string> kept;
    if (resume_after_step >= 0) {
      std::size_t step_col = columns.size();
      for (std::size_t i = 0; i < columns.size(); ++i)
        if (columns[i] == "step") step_col = i;
      std::ifstream in(path);
      std::string line;
      if (in && std::getline(in, line) && line == header && step_col < columns.size()) {
        while (std::getline(in, line)) {
          std::stringstream ss(line);
          std::string cell;
          for (std::size_t i = 0; i <= step_col && std::getline(ss, cell, ','); ++i) {
          }
          try {
            if (std::stoll(cell) <= resume_after_step) kept.push_back(line);
          } catch (const std::exception&) {
          }
        }
      }
    }
    out_.open(path, std::ios::trunc);
    if (!out_) throw std::runtime_error("cannot write " + path);
    out_ << header << '\n';
    for (const auto& l : kept) out_ << l << '\n';
    out_.flush();
  }
  bool enabled() const { return out_.is_open(); }
  void row(const std::vector<std::string>& cells) {
    if (!out_.is_open()) return;
    for (std::size_t i = 0; i < cells.size(); ++i) out_ << (i ? "," : "") << cells[i];
    out_ << '\n';
    out_.flush();
  }

 private:
  std::ofstream out_;
};

}  // namespace demo
