// The experiments of the normalization lab, one file each (examples/norm_lab/<name>.cpp).
// Each run_* states its claims, measures, writes <out>/<name>.csv and .svg and returns the
// verdicts with the figures behind them (lab.h). The registry lists them in the lab's order.
#pragma once
#include <string>
#include <vector>

#include "lab.h"

namespace lab {

Result run_depth(const Config& cfg);
Result run_lr(const Config& cfg);
Result run_batch(const Config& cfg);
Result run_distributed(const Config& cfg);
Result run_coupling(const Config& cfg);
Result run_invariance(const Config& cfg);
Result run_gaussian(const Config& cfg);
Result run_sharpness(const Config& cfg);
Result run_placement(const Config& cfg);
// placement's second half (placement_transformer.cpp): pre-LN vs post-LN, warmup, norm inside.
void run_placement_transformer(const Config& cfg, Result& r);
Result run_sequence(const Config& cfg);
Result run_cnn(const Config& cfg);
Result run_overfitting(const Config& cfg);
Result run_covariate_shift(const Config& cfg);

struct Experiment {
  const char* name;
  const char* summary;
  Result (*run)(const Config&);
};
const std::vector<Experiment>& experiments();
const Experiment* find_experiment(const std::string& name);

// Runs one experiment: prints its claims and verdicts (cfg.print), times it.
Result run_experiment(const Experiment& e, const Config& cfg);

// Rows of results.csv for one result: experiment,kind,key,value with kind "value" (a figure,
// formatted by num()) or "verdict" (a claim id and its verdict).
std::vector<std::vector<std::string>> result_rows(const Result& r);
// Merges `results` into the CSV at path: rows of the same experiments are replaced, others kept.
void merge_results(const std::string& path, const std::vector<Result>& results);

}  // namespace lab
