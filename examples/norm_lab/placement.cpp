// placement: where the normalization goes.
//   BatchNorm before the activation (Linear -> BN -> ReLU, Ioffe & Szegedy 2015 sec. 3.2)
//   vs after it (Linear -> ReLU -> BN, a common alternative): learning rates swept, the best
//   test accuracy of each placement compared.
//   Pre-LN vs post-LN Transformer with and without learning-rate warmup (Xiong et al. 2020), and
//   LayerNorm vs RMSNorm vs BatchNorm inside the layer (Shen et al. 2020): placement_transformer.cpp.
#include <fmt/format.h>

#include "char_lm.h"
#include "examples/demo/svg.h"
#include "experiments.h"

namespace lab {

Result run_placement(const Config& cfg) {
  Result r;
  fortunes(cfg);  // the Transformer half's text, read now: a missing corpus fails before any training
  const std::int64_t steps = cfg.quick ? 60 : 800;
  const std::vector<double> lrs = cfg.quick ? std::vector<double>{0.03, 0.3} : std::vector<double>{0.01, 0.03, 0.1, 0.3};
  const Data data = fashion(cfg, cfg.quick ? 2000 : 20000, cfg.quick ? 500 : 5000);
  if (cfg.print)
    fmt::print("MLP 784 -> 8 x [Linear(64), BN, ReLU in either order] -> 10, SGD momentum 0.9, batch 64, {} steps\n", steps);
  std::vector<std::vector<std::string>> rows_;
  std::map<int, std::vector<Stat>> acc;  // [after][lr]
  for (int after = 0; after < 2; ++after)
    for (double lr : lrs) {
      std::vector<double> a;
      for (int s = 0; s < cfg.seeds; ++s) {
        const std::uint64_t seed = cfg.seed0 + static_cast<std::uint64_t>(s);
        ng::Generator gen(seed);
        Mlp m({.width = 64, .hidden = 8, .norm = Norm::bn, .norm_after_act = after == 1}, gen);
        TrainLog log = train_mlp(m, data.train, {.steps = steps, .batch = 64, .lr = lr, .momentum = 0.9, .seed = seed});
        a.push_back(log.diverged ? 0.1 : accuracy(m, data.test));
        rows_.push_back({after ? "after" : "before", num(lr), std::to_string(seed), num(a.back())});
      }
      acc[after].push_back(stat(a));
      if (cfg.print) fmt::print("  BN {:<6} the activation, lr {:<5}: test acc {}\n", after ? "after" : "before", lr, show(acc[after].back()));
    }
  write_csv(cfg, r, "placement.csv", {"bn_position", "lr", "seed", "test_acc"}, rows_);
  if (!cfg.out.empty()) {
    svg::Plot p;
    p.title = fmt::format("BatchNorm before vs after ReLU: test accuracy (mean of {} seeds)", cfg.seeds);
    p.x = {.label = "learning rate", .log = true};
    p.y = {.label = "test accuracy"};
    for (int after = 0; after < 2; ++after) {
      svg::Series s{.label = after ? "Linear-ReLU-BN" : "Linear-BN-ReLU"};
      for (std::size_t i = 0; i < lrs.size(); ++i) s.x.push_back(lrs[i]), s.y.push_back(acc[after][i].mean);
      p.series.push_back(s);
    }
    p.save(join_path(cfg.out, "placement.svg"));
    r.files.push_back(join_path(cfg.out, "placement.svg"));
  }
  auto best = [&](int after) {
    std::size_t k = 0;
    for (std::size_t i = 1; i < lrs.size(); ++i)
      if (acc[after][i].mean > acc[after][k].mean) k = i;
    return std::pair{acc[after][k], lrs[k]};
  };
  const auto [b0, lr0] = best(0);
  const auto [b1, lr1] = best(1);
  r.set("bn_before_best_acc", b0);
  r.set("bn_after_best_acc", b1);
  r.set("bn_before_best_lr", lr0);
  r.set("bn_after_best_lr", lr1);
  const Diff d = compare(b0, b1, 0.003);
  r.claim("bn_position", "BatchNorm belongs before the activation (placing it after is worse)", "Ioffe & Szegedy 2015 sec. 3.2",
          verdict_greater(d),
          fmt::format("best test accuracy over the learning rates: before ReLU {} (lr {}), after ReLU {} (lr {}); before - after {}",
                      show(b0), lr0, show(b1), lr1, d.text()));
  run_placement_transformer(cfg, r);
  return r;
}

}  // namespace lab
