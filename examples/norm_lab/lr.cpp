// lr: a log-spaced learning-rate sweep per normalization. For each rate and seed: does the
// run train (finite loss, test accuracy above 50%), and its test accuracy. The largest rate
// that still trains, per seed, and the best accuracy over the sweep.
//   "BatchNorm allows much higher learning rates" (Ioffe & Szegedy 2015, sec. 3.3; Bjorck et
//   al. 2018, Understanding Batch Normalization: the benefit of BN is mostly that it allows
//   larger rates, which then regularize). Plain SGD (no momentum), 8 hidden ReLU layers.
#include <fmt/format.h>

#include <cmath>

#include "examples/demo/svg.h"
#include "experiments.h"

namespace lab {

Result run_lr(const Config& cfg) {
  Result r;
  const std::int64_t steps = cfg.quick ? 60 : 600;
  const std::vector<double> lrs = cfg.quick ? std::vector<double>{0.01, 0.1, 1.0} : log_space(0.003, 3.0, 7);
  const std::vector<Norm> norms = {Norm::none, Norm::bn, Norm::ln};
  const Data data = fashion(cfg, cfg.quick ? 2000 : 20000, cfg.quick ? 500 : 5000);
  if (cfg.print)
    fmt::print("MLP 784 -> 8 x [Linear(64) -> norm -> ReLU] -> 10, plain SGD, batch 64, {} steps, rates {:.3g} .. {:.3g}\n", steps,
               lrs.front(), lrs.back());
  std::vector<std::vector<std::string>> rows_;
  std::map<Norm, std::vector<double>> max_lr, best_acc, early_loss;
  std::map<Norm, std::vector<Stat>> acc_by_lr;
  for (Norm n : norms) {
    std::vector<std::vector<double>> acc(lrs.size()), early(lrs.size());
    for (int s = 0; s < cfg.seeds; ++s) {
      const std::uint64_t seed = cfg.seed0 + static_cast<std::uint64_t>(s);
      double top = 0, best = -1, best_early = 0;
      for (std::size_t i = 0; i < lrs.size(); ++i) {
        ng::Generator gen(seed);
        Mlp m({.width = 64, .hidden = 8, .norm = n}, gen);
        TrainLog log = train_mlp(m, data.train, {.steps = steps, .batch = 64, .lr = lrs[i], .momentum = 0.0, .seed = seed});
        const double a = log.diverged ? 0.0 : accuracy(m, data.test);
        const double quarter = mean_of(log.loss, 0, static_cast<std::size_t>(steps / 4));
        const bool trains = !log.diverged && a > 0.5;
        if (trains) top = std::max(top, lrs[i]);
        if (a > best) best = a, best_early = quarter;  // the early loss at the rate of the best accuracy
        acc[i].push_back(a);
        early[i].push_back(quarter);
        rows_.push_back({norm_key(n), num(lrs[i]), std::to_string(seed), log.diverged ? "1" : "0", num(a), num(quarter)});
      }
      max_lr[n].push_back(top);
      best_acc[n].push_back(best);
      early_loss[n].push_back(best_early);
      if (cfg.print)
        fmt::print("  {:<10} seed {}: largest rate that trains {:.3g}, best test acc {:.3f}\n", norm_title(n), seed, top, best);
    }
    for (auto& a : acc) acc_by_lr[n].push_back(stat(a));
  }
  write_csv(cfg, r, "lr.csv", {"norm", "lr", "seed", "diverged", "test_acc", "loss_first_quarter"}, rows_);
  if (!cfg.out.empty()) {
    svg::Plot p;
    p.title = fmt::format("test accuracy after {} SGD steps against the learning rate (mean of {} seeds)", steps, cfg.seeds);
    p.x = {.label = "learning rate", .log = true};
    p.y = {.label = "test accuracy", .lo = 0, .hi = 1};
    for (Norm n : norms) {
      svg::Series s{.label = norm_title(n)};
      for (std::size_t i = 0; i < lrs.size(); ++i) s.x.push_back(lrs[i]), s.y.push_back(acc_by_lr[n][i].mean);
      p.series.push_back(s);
    }
    p.save(join_path(cfg.out, "lr.svg"));
    r.files.push_back(join_path(cfg.out, "lr.svg"));
  }
  for (Norm n : norms) {
    // log10 of the largest rate that trains; a seed where no rate of the grid trains counts as
    // one grid step below the smallest rate (it trains, if at all, below the grid)
    std::vector<double> lg;
    for (double v : max_lr[n]) lg.push_back(v > 0 ? std::log10(v) : std::log10(lrs[0] * lrs[0] / lrs[1]));
    r.set(fmt::format("{}_log10_max_lr", norm_key(n)), stat(lg));
    r.set(fmt::format("{}_best_acc", norm_key(n)), stat(best_acc[n]));
    r.set(fmt::format("{}_early_loss", norm_key(n)), stat(early_loss[n]));
  }
  auto lgstat = [&](Norm n) {
    return Stat{r.get(fmt::format("{}_log10_max_lr_mean", norm_key(n))), r.get(fmt::format("{}_log10_max_lr_std", norm_key(n))), cfg.seeds};
  };
  // One grid step is log10(lrs[1]/lrs[0]); a difference under half a step is not counted.
  const double step10 = std::log10(lrs[1] / lrs[0]);
  const Diff d = compare(lgstat(Norm::bn), lgstat(Norm::none), step10 / 2);
  r.claim("bn_higher_lr", "BatchNorm allows much higher learning rates", "Ioffe & Szegedy 2015 sec. 3.3; Bjorck et al. 2018",
          verdict_greater(d),
          fmt::format("largest rate that trains (of {}; mean of log10 over seeds, a seed where none trains counts one grid step below "
                      "the grid): no norm 10^{}, BatchNorm 10^{}, LayerNorm 10^{} (BN - none: {} decades)",
                      [&] {
                        std::string s;
                        for (double v : lrs) s += fmt::format("{}{:.3g}", s.empty() ? "" : ", ", v);
                        return s;
                      }(),
                      show(lgstat(Norm::none), 2), show(lgstat(Norm::bn), 2), show(lgstat(Norm::ln), 2), d.text()));
  const Diff da = compare(stat(early_loss[Norm::none]), stat(early_loss[Norm::bn]), 0.02);
  r.claim("bn_faster", "BatchNorm accelerates training", "Ioffe & Szegedy 2015 (14x fewer steps on ImageNet)", verdict_greater(da),
          fmt::format("mean training loss over the first quarter of training at the rate with each normalization's best test accuracy: no norm {}, "
                      "BatchNorm {}, LayerNorm {} (none - BN: {}); best test accuracy over the sweep: {}, {}, {}",
                      show(stat(early_loss[Norm::none])), show(stat(early_loss[Norm::bn])), show(stat(early_loss[Norm::ln])), da.text(),
                      show(stat(best_acc[Norm::none])), show(stat(best_acc[Norm::bn])), show(stat(best_acc[Norm::ln]))));
  return r;
}

}  // namespace lab
