// batch: BatchNorm vs GroupNorm vs LayerNorm at batch sizes 2 .. 128, for the same number of
// epochs (the same images seen; SGD with momentum 0.9 and the linear scaling rule
// lr = 0.1 * B / 128, Goyal et al. 2017). Measured on the test set:
//   eval acc      eval mode: BatchNorm normalizes with its running statistics
//   train acc     training mode in batches of B: BatchNorm uses each test batch's statistics
//   precise BN    eval mode after recomputing the running statistics as exact averages over
//                 the training set in batches of 256 (Wu & He 2018, sec. 4 "precise BN")
// Wu & He 2018 (Group Normalization): BatchNorm's error rises sharply below ~8 images per
// batch, GroupNorm's does not. The per-sample norms compute the same in both modes.
#include <fmt/format.h>

#include <cmath>

#include "examples/demo/svg.h"
#include "experiments.h"

namespace lab {

Result run_batch(const Config& cfg) {
  Result r;
  const std::vector<std::int64_t> sizes = cfg.quick ? std::vector<std::int64_t>{2, 32} : std::vector<std::int64_t>{2, 4, 8, 16, 32, 128};
  const std::int64_t n_train = cfg.quick ? 512 : 4096, epochs = 2;
  const std::vector<Norm> norms = {Norm::bn, Norm::gn, Norm::ln};
  const Data data = fashion(cfg, n_train, cfg.quick ? 500 : 2000);
  if (cfg.print)
    fmt::print("MLP 784 -> 4 x [Linear(64) -> norm -> ReLU] -> 10; {} epochs over {} images; SGD momentum 0.9, lr = 0.1 B / 128\n",
               epochs, n_train);
  std::vector<std::vector<std::string>> rows_;
  std::map<std::pair<Norm, std::int64_t>, std::vector<double>> eval_acc, train_acc, precise_acc;
  for (Norm n : norms)
    for (std::int64_t B : sizes)
      for (int s = 0; s < cfg.seeds; ++s) {
        const std::uint64_t seed = cfg.seed0 + static_cast<std::uint64_t>(s);
        ng::Generator gen(seed);
        Mlp m({.width = 64, .hidden = 4, .norm = n}, gen);
        const double lr = 0.1 * static_cast<double>(B) / 128.0;
        TrainLog log = train_mlp(m, data.train, {.steps = epochs * (n_train / B), .batch = B, .lr = lr, .momentum = 0.9, .seed = seed});
        const double ea = log.diverged ? 0.1 : accuracy(m, data.test);
        const double ta = log.diverged ? 0.1 : accuracy(m, data.test, true, B);
        double pa = ea;
        if (n == Norm::bn && !log.diverged) {
          recompute_bn_stats(m, data.train, 256);
          pa = accuracy(m, data.test);
        }
        eval_acc[{n, B}].push_back(ea), train_acc[{n, B}].push_back(ta), precise_acc[{n, B}].push_back(pa);
        rows_.push_back({norm_key(n), std::to_string(B), std::to_string(seed), num(lr), num(ea), num(ta), num(pa)});
      }
  write_csv(cfg, r, "batch.csv", {"norm", "batch", "seed", "lr", "eval_acc", "train_mode_acc", "precise_bn_acc"}, rows_);
  for (Norm n : norms)
    for (std::int64_t B : sizes) {
      r.set(fmt::format("{}_b{}_eval_acc", norm_key(n), B), stat(eval_acc[{n, B}]));
      if (n == Norm::bn) {
        r.set(fmt::format("bn_b{}_train_mode_acc", B), stat(train_acc[{n, B}]));
        r.set(fmt::format("bn_b{}_precise_acc", B), stat(precise_acc[{n, B}]));
      }
      if (cfg.print)
        fmt::print("  {:<10} batch {:>3}: eval acc {}  train-mode acc {}{}\n", norm_title(n), B, show(stat(eval_acc[{n, B}])),
                   show(stat(train_acc[{n, B}])), n == Norm::bn ? "  precise BN " + show(stat(precise_acc[{n, B}])) : "");
    }
  if (!cfg.out.empty()) {
    svg::Plot p;
    p.title = fmt::format("test accuracy after {} epochs against the batch size (mean of {} seeds)", epochs, cfg.seeds);
    p.x = {.label = "batch size", .log = true};
    p.y = {.label = "test accuracy"};
    auto line = [&](const std::string& label, Norm n, auto& table) {
      svg::Series s{.label = label};
      for (std::int64_t B : sizes) s.x.push_back(static_cast<double>(B)), s.y.push_back(stat(table[{n, B}]).mean);
      p.series.push_back(s);
    };
    line("BatchNorm (eval)", Norm::bn, eval_acc);
    line("BN train mode", Norm::bn, train_acc);
    line("BN precise stats", Norm::bn, precise_acc);
    line("GroupNorm", Norm::gn, eval_acc);
    line("LayerNorm", Norm::ln, eval_acc);
    p.save(join_path(cfg.out, "batch.svg"));
    r.files.push_back(join_path(cfg.out, "batch.svg"));
  }
  const std::int64_t lo = sizes.front(), hi = sizes.size() > 2 ? 32 : sizes.back();
  const Stat bn_lo = stat(eval_acc[{Norm::bn, lo}]), gn_lo = stat(eval_acc[{Norm::gn, lo}]), ln_lo = stat(eval_acc[{Norm::ln, lo}]);
  const Stat bn_hi = stat(eval_acc[{Norm::bn, hi}]), gn_hi = stat(eval_acc[{Norm::gn, hi}]);
  const Diff d_gn = compare(gn_lo, bn_lo, 0.005), d_ln = compare(ln_lo, bn_lo, 0.005);
  r.claim("bn_small_batch", "BatchNorm degrades at small batch sizes; GroupNorm does not", "Wu & He 2018 (Group Normalization)",
          verdict_greater(d_gn),
          fmt::format("eval accuracy at batch {}: BatchNorm {}, GroupNorm {} (GN - BN {}); at batch {}: BatchNorm {}, GroupNorm {}", lo,
                      show(bn_lo), show(gn_lo), d_gn.text(), hi, show(bn_hi), show(gn_hi)));
  r.claim("ln_small_batch", "LayerNorm suits small batches better than BatchNorm", "Ba et al. 2016; Wu & He 2018", verdict_greater(d_ln),
          fmt::format("eval accuracy at batch {}: LayerNorm {}, BatchNorm {} (LN - BN {})", lo, show(ln_lo), show(bn_lo), d_ln.text()));
  const Stat pr_lo = stat(precise_acc[{Norm::bn, lo}]), tr_lo = stat(train_acc[{Norm::bn, lo}]);
  const Diff d_pr = compare(pr_lo, bn_lo, 0.005);
  r.claim("precise_bn", "At small batches, recomputing BatchNorm's statistics after training recovers accuracy",
          "Wu & He 2018 sec. 4; Ioffe 2017 (Batch Renormalization)", verdict_greater(d_pr),
          fmt::format("batch {}: running statistics {}, recomputed over the training set {} (difference {}); training-mode accuracy "
                      "in test batches of {}: {}",
                      lo, show(bn_lo), show(pr_lo), d_pr.text(), lo, show(tr_lo)));
  return r;
}

}  // namespace lab
