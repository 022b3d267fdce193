// The list of experiments, running one with its report, and the lab's results.csv.
#include <fmt/format.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "experiments.h"

namespace lab {

const std::vector<Experiment>& experiments() {
  static const std::vector<Experiment> list = {
      {"depth", "a 16-layer plain MLP with none/BN/LN/GN/RMSNorm: loss curves, per-layer activation std, gradient norm, update:data ratio", run_depth},
      {"lr", "learning-rate sweep per normalization: the largest rate that trains, accuracy against rate", run_lr},
      {"batch", "BN vs GN vs LN at batch sizes 2..128: eval accuracy, train/eval gap, recomputed BN statistics", run_batch},
      {"distributed", "4 emulated data-parallel ranks, per-rank batch 2..8: per-rank BatchNorm vs SyncBatchNorm vs GroupNorm vs LayerNorm", run_distributed},
      {"coupling", "one sample in two batches; N = 1 refused; N = 2 gives +-1 (no data, seconds)", run_coupling},
      {"invariance", "weights before BN are scale invariant: <W, dL/dW> = 0, zero bias gradient, |W| with and without weight decay", run_invariance},
      {"gaussian", "skewed and bimodal inputs through BN and LN: standardized, not made Gaussian; feature correlations", run_gaussian},
      {"sharpness", "top Hessian eigenvalue during full-batch GD with and without BN, against 2/lr", run_sharpness},
      {"placement", "BatchNorm before vs after the activation; pre-LN vs post-LN char Transformer with and without warmup; LN vs RMSNorm vs BN inside it", run_placement},
      {"sequence", "LSTM: per-time-step BN vs LN vs none; padding pollutes BN's statistics, not LN's", run_sequence},
      {"cnn", "a small CNN on Fashion-MNIST with BatchNorm2d vs LayerNorm over (C,H,W) vs GroupNorm vs none, rates swept", run_cnn},
      {"overfitting", "train/test gap over long training on 1024 images with none/BN/LN", run_overfitting},
      {"covariate-shift", "Santurkar et al.: noise injected after each BN; does training still work?", run_covariate_shift},
  };
  return list;
}

const Experiment* find_experiment(const std::string& name) {
  for (const auto& e : experiments())
    if (name == e.name) return &e;
  return nullptr;
}

namespace {
// User + system CPU seconds of this process so far (every thread): on a shared machine a
// steadier measure of an experiment's cost than wall time.
double cpu_now() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}
}  // namespace

Result run_experiment(const Experiment& e, const Config& cfg) {
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = cpu_now();
  if (cfg.print) fmt::print("=== {}: {}{}\n", e.name, e.summary, cfg.quick ? " [--quick]" : "");
  std::fflush(stdout);
  Result r = e.run(cfg);
  r.experiment = e.name;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.cpu_seconds = cpu_now() - cpu0;
  if (cfg.print) {
    for (const Claim& c : r.claims)
      fmt::print("\nclaim: \"{}\"\n  source: {}\n  verdict: {}\n  because: {}\n", c.text, c.source, verdict_name(c.verdict),
                 c.because);
    for (const auto& f : r.files) fmt::print("wrote {}\n", f);
    fmt::print("({}: {:.0f} s wall, {:.0f} s CPU)\n\n", e.name, r.seconds, r.cpu_seconds);
  }
  std::fflush(stdout);
  return r;
}

std::vector<std::vector<std::string>> result_rows(const Result& r) {
  std::vector<std::vector<std::string>> out;
  for (const Claim& c : r.claims) out.push_back({r.experiment, "verdict", c.id, verdict_name(c.verdict)});
  for (const auto& [k, v] : r.values) out.push_back({r.experiment, "value", k, num(v)});
  return out;
}

void merge_results(const std::string& path, const std::vector<Result>& results) {
  std::vector<std::string> kept;
  {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      const std::string exp = line.substr(0, line.find(','));
      bool replaced = false;
      for (const auto& r : results) replaced = replaced || r.experiment == exp;
      if (!replaced && !line.empty()) kept.push_back(line);
    }
  }
  // Keep the lab's order: experiments in registry order, rows in their own order.
  std::map<std::string, std::vector<std::string>> by_exp;
  for (const auto& l : kept) by_exp[l.substr(0, l.find(','))].push_back(l);
  for (const auto& r : results)
    for (const auto& row : result_rows(r)) by_exp[r.experiment].push_back(fmt::format("{},{},{},{}", row[0], row[1], row[2], row[3]));
  std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  std::ofstream out(path);
  out << "experiment,kind,key,value\n";
  for (const auto& e : experiments())
    for (const auto& l : by_exp[e.name]) out << l << "\n";
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace lab
