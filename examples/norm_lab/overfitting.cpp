// overfitting: the train/test gap over long training on a small training set (1024 images,
// 100 epochs), with none / BatchNorm / LayerNorm. The gap is training accuracy minus test
// accuracy, both in eval mode.
//   "LayerNorm reduces overfitting" and "BatchNorm regularizes" (Ioffe & Szegedy 2015 sec.
//   4.2.1 for BN: the batch statistics add noise; nothing of the kind is claimed for LN,
//   whose output does not depend on the batch).
#include <fmt/format.h>

#include "examples/demo/svg.h"
#include "experiments.h"

namespace lab {

Result run_overfitting(const Config& cfg) {
  Result r;
  const std::int64_t n_train = cfg.quick ? 256 : 1024, epochs = cfg.quick ? 10 : 100, check_every = cfg.quick ? 5 : 10;
  const std::vector<Norm> norms = {Norm::none, Norm::bn, Norm::ln};
  const Data data = fashion(cfg, n_train, cfg.quick ? 500 : 2000);
  if (cfg.print)
    fmt::print("MLP 784 -> 3 x [Linear(256) -> norm -> ReLU] -> 10 on {} images for {} epochs, SGD lr 0.05 momentum 0.9, batch 64\n",
               n_train, epochs);
  std::vector<std::vector<std::string>> rows_;
  std::map<Norm, std::vector<double>> gap, test_acc, train_acc;
  std::map<Norm, std::vector<double>> gap_curve;
  const std::int64_t per_epoch = n_train / 64;
  for (Norm n : norms)
    for (int s = 0; s < cfg.seeds; ++s) {
      const std::uint64_t seed = cfg.seed0 + static_cast<std::uint64_t>(s);
      ng::Generator gen(seed);
      Mlp m({.width = 256, .hidden = 3, .norm = n}, gen);
      auto& c = gap_curve[n];
      c.resize(static_cast<std::size_t>(epochs / check_every));
      double tr = 0, te = 0;
      train_mlp(m, data.train, {.steps = epochs * per_epoch, .batch = 64, .lr = 0.05, .momentum = 0.9, .seed = seed},
                [&](std::int64_t step) {
                  if (step % (per_epoch * check_every)) return;
                  tr = accuracy(m, data.train), te = accuracy(m, data.test);
                  const std::int64_t epoch = step / per_epoch;
                  c[static_cast<std::size_t>(epoch / check_every - 1)] += (tr - te) / cfg.seeds;
                  rows_.push_back({norm_key(n), std::to_string(seed), std::to_string(epoch), num(tr), num(te), num(tr - te)});
                });
      gap[n].push_back(tr - te), test_acc[n].push_back(te), train_acc[n].push_back(tr);
    }
  write_csv(cfg, r, "overfitting.csv", {"norm", "seed", "epoch", "train_acc", "test_acc", "gap"}, rows_);
  if (!cfg.out.empty()) {
    svg::Plot p;
    p.title = fmt::format("train - test accuracy on {} training images (mean of {} seeds)", n_train, cfg.seeds);
    p.x = {.label = "epoch"};
    p.y = {.label = "generalization gap"};
    for (Norm n : norms) {
      svg::Series s{.label = norm_title(n)};
      for (std::size_t k = 0; k < gap_curve[n].size(); ++k) s.x.push_back(static_cast<double>((k + 1) * static_cast<std::size_t>(check_every))), s.y.push_back(gap_curve[n][k]);
      p.series.push_back(s);
    }
    p.save(join_path(cfg.out, "overfitting.svg"));
    r.files.push_back(join_path(cfg.out, "overfitting.svg"));
  }
  for (Norm n : norms) {
    r.set(fmt::format("{}_gap", norm_key(n)), stat(gap[n]));
    r.set(fmt::format("{}_test_acc", norm_key(n)), stat(test_acc[n]));
    r.set(fmt::format("{}_train_acc", norm_key(n)), stat(train_acc[n]));
  }
  const Diff dl = compare(stat(gap[Norm::none]), stat(gap[Norm::ln]), 0.005);
  r.claim("ln_less_overfitting", "LayerNorm reduces overfitting", "a common statement (no such claim in Ba et al. 2016)", verdict_greater(dl),
          fmt::format("train - test accuracy after {} epochs on {} images: no norm {}, LayerNorm {} (none - LN {}); test accuracy {} vs {}",
                      epochs, n_train, show(stat(gap[Norm::none])), show(stat(gap[Norm::ln])), dl.text(), show(stat(test_acc[Norm::none])),
                      show(stat(test_acc[Norm::ln]))));
  const Diff db = compare(stat(gap[Norm::none]), stat(gap[Norm::bn]), 0.005);
  r.claim("bn_regularizes", "BatchNorm regularizes (a smaller train/test gap)", "Ioffe & Szegedy 2015 sec. 4.2.1", verdict_greater(db),
          fmt::format("gap: no norm {}, BatchNorm {} (none - BN {}); test accuracy {} vs {}", show(stat(gap[Norm::none])),
                      show(stat(gap[Norm::bn])), db.text(), show(stat(test_acc[Norm::none])), show(stat(test_acc[Norm::bn]))));
  return r;
}

}  // namespace lab
