// norm_lab: every common claim about BatchNorm vs LayerNorm, settled by an experiment anyone
// can rerun (docs/normalization.md, "Claims, tested").
//
//   norm_lab list                         the experiments
//   norm_lab depth [--quick] [--seeds 3] [--out DIR] [--threads 1]
//   norm_lab all [--results docs/lab/results.csv]
//
// Each experiment prints its claims with a verdict computed from its measurements, writes
// DIR/<name>.csv and DIR/<name>.svg, and merges its figures into DIR/results.csv (or
// --results): the file the documentation quotes.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <exception>

#include "experiments.h"

int main(int argc, char** argv) {
  CLI::App app{"norm_lab: claims about BatchNorm, LayerNorm, GroupNorm and RMSNorm, tested by experiment"};
  app.require_subcommand(1);
  lab::Config cfg;
  // One thread by default: the lab's tensors are small, so an op costs its overhead more than its
  // arithmetic and a second thread buys little; the figures in docs/lab were made with one.
  int threads = 1;
  std::string results;
  auto add_common = [&](CLI::App* sub) {
    sub->add_flag("--quick", cfg.quick, "a seconds-long version (smaller nets, fewer steps: checks, not evidence)");
    sub->add_option("--seeds", cfg.seeds, "independent runs per setting (mean and std over them)")->check(CLI::Range(1, 100));
    sub->add_option("--seed", cfg.seed0, "the first seed (seeds are seed, seed+1, ...)");
    sub->add_option("--out", cfg.out, "folder for the CSV and SVG files ('' writes none)");
    sub->add_option("--threads", threads, "OpenMP threads (default 1; 0: OMP_NUM_THREADS or all cores)")->check(CLI::NonNegativeNumber);
    sub->add_option("--data-dir", cfg.data_dir, "Fashion-MNIST folder (default: $NORMGRAD_DATA_DIR or the system's)");
    sub->add_option("--corpus", cfg.corpus, "text file or folder for the language-model experiments (default: Debian's fortunes)");
    sub->add_option("--results", results, "the summary CSV to merge into (default: OUT/results.csv)");
  };
  app.add_subcommand("list", "list the experiments");
  CLI::App* all = app.add_subcommand("all", "run every experiment, one after the other");
  add_common(all);
  std::vector<CLI::App*> subs;
  for (const auto& e : lab::experiments()) {
    CLI::App* s = app.add_subcommand(e.name, e.summary);
    add_common(s);
    subs.push_back(s);
  }
  CLI11_PARSE(app, argc, argv);
  try {
    if (app.got_subcommand("list")) {
      for (const auto& e : lab::experiments()) fmt::print("{:<16} {}\n", e.name, e.summary);
      return 0;
    }
    if (threads > 0) omp_set_num_threads(threads);
    std::vector<lab::Result> out;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& e : lab::experiments())
      if (app.got_subcommand(e.name) || app.got_subcommand("all")) out.push_back(lab::run_experiment(e, cfg));
    if (results.empty() && !cfg.out.empty()) results = lab::join_path(cfg.out, "results.csv");
    if (!results.empty()) {
      lab::merge_results(results, out);
      fmt::print("figures and verdicts merged into {}\n", results);
    }
    if (out.size() > 1) {
      fmt::print("\nsummary ({} threads, {:.0f} s in all):\n", omp_get_max_threads(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      for (const auto& r : out) {
        fmt::print("  {:<16} {:.0f} s wall, {:.0f} s CPU\n", r.experiment, r.seconds, r.cpu_seconds);
        for (const auto& c : r.claims) fmt::print("  {:<16} {:<28} {}\n", r.experiment, c.id, lab::verdict_name(c.verdict));
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "norm_lab: {}\n", e.what());
    return 1;
  }
  return 0;
}
