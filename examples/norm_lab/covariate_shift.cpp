// covariate-shift: Santurkar et al. 2018 (How Does Batch Normalization Help Optimization?,
// sec. 2.1): if BatchNorm helped by keeping each layer's input distribution stable, then
// making that distribution unstable on purpose should take the benefit away. After every
// BatchNorm, each unit's output is distorted by y <- y * s + m with s ~ U(1, 1 + k) and
// m ~ U(-k, k) drawn anew at every training step ("noisy BatchNorm"): a deliberate,
// non-stationary covariate shift. Compared: no norm, BatchNorm, noisy BatchNorm; 8 hidden
// ReLU layers, SGD, three learning rates (the best one per model is compared). The measure is
// the training loss (the claim is about optimization, as in Santurkar et al.): the noise is
// applied in training only, so a noisy net's eval-mode test accuracy also pays for the
// train/eval mismatch the noise creates; it is reported, not judged.
#include <fmt/format.h>

#include <cmath>

#include "examples/demo/svg.h"
#include "experiments.h"

namespace lab {

Result run_covariate_shift(const Config& cfg) {
  Result r;
  const std::int64_t steps = cfg.quick ? 60 : 800, every = cfg.quick ? 10 : 40;
  const double k = 1.0;
  const std::vector<double> lrs = cfg.quick ? std::vector<double>{0.03} : std::vector<double>{0.01, 0.03, 0.1};
  const Data data = fashion(cfg, cfg.quick ? 2000 : 20000, cfg.quick ? 500 : 5000);
  struct Variant {
    std::string key, title;
    Norm norm;
    double shift;
  };
  const std::vector<Variant> variants = {{"none", "no norm", Norm::none, 0.0}, {"bn", "BatchNorm", Norm::bn, 0.0},
                                         {"noisy_bn", "noisy BatchNorm", Norm::bn, k}};
  std::vector<std::vector<std::string>> rows_;
  std::map<std::string, Stat> best_acc, best_loss;
  std::map<std::string, double> best_lr;
  std::map<std::string, std::vector<double>> best_curve;
  for (const auto& v : variants)
    for (double lr : lrs) {
      std::vector<double> acc, loss;
      std::vector<double> curve(static_cast<std::size_t>(steps / every));
      for (int s = 0; s < cfg.seeds; ++s) {
        const std::uint64_t seed = cfg.seed0 + static_cast<std::uint64_t>(s);
        ng::Generator gen(seed);
        Mlp m({.width = 64, .hidden = 8, .norm = v.norm, .shift = v.shift}, gen);
        m.noise_gen.manual_seed(1000 + seed);
        TrainLog log = train_mlp(m, data.train, {.steps = steps, .batch = 64, .lr = lr, .momentum = 0.9, .seed = seed});
        acc.push_back(log.diverged ? 0.1 : accuracy(m, data.test));
        loss.push_back(mean_of(log.loss, static_cast<std::size_t>(steps - steps / 10), static_cast<std::size_t>(steps)));
        for (std::size_t i = 0; i < curve.size(); ++i)
          curve[i] += mean_of(log.loss, i * static_cast<std::size_t>(every), (i + 1) * static_cast<std::size_t>(every)) / cfg.seeds;
        rows_.push_back({v.key, num(lr), std::to_string(seed), num(acc.back()), num(loss.back())});
      }
      const Stat a = stat(acc);
      if (cfg.print) fmt::print("  {:<16} lr {:<5}: test acc {}, final training loss {}\n", v.title, lr, show(a), show(stat(loss)));
      const double lm = stat(loss).mean;  // NaN when a seed diverged: never the best
      if (!best_loss.count(v.key) || std::isnan(best_loss[v.key].mean) || lm < best_loss[v.key].mean)
        best_acc[v.key] = a, best_loss[v.key] = stat(loss), best_lr[v.key] = lr, best_curve[v.key] = curve;
    }
  write_csv(cfg, r, "covariate_shift.csv", {"variant", "lr", "seed", "test_acc", "final_train_loss"}, rows_);
  if (!cfg.out.empty()) {
    svg::Plot p;
    p.title = fmt::format("training loss at each variant's best learning rate (mean of {} seeds)", cfg.seeds);
    p.x = {.label = "step"};
    p.y = {.label = "training loss", .log = true};
    for (const auto& v : variants) {
      svg::Series s{.label = fmt::format("{} (lr {})", v.title, best_lr[v.key]), .markers = false};
      for (std::size_t i = 0; i < best_curve[v.key].size(); ++i) s.x.push_back(static_cast<double>((i + 1) * static_cast<std::size_t>(every))), s.y.push_back(best_curve[v.key][i]);
      p.series.push_back(s);
    }
    p.save(join_path(cfg.out, "covariate_shift.svg"));
    r.files.push_back(join_path(cfg.out, "covariate_shift.svg"));
  }
  for (const auto& v : variants) {
    r.set(v.key + "_test_acc", best_acc[v.key]);
    r.set(v.key + "_final_loss", best_loss[v.key]);
  }
  // The ICS explanation predicts noisy BN no better than no norm. Refuted when noisy BN still
  // reaches a lower training loss than no normalization beyond noise; supported when it does not
  // beat it (falls back to or above it).
  const Diff dn = compare(best_loss["none"], best_loss["noisy_bn"], 0.02);
  const Diff db = compare(best_loss["noisy_bn"], best_loss["bn"], 0.02);
  const Verdict v = dn.real ? (dn.d > 0 ? Verdict::refuted : Verdict::supported) : Verdict::noise;
  r.claim("ics", "BatchNorm works by reducing internal covariate shift", "Ioffe & Szegedy 2015; tested as in Santurkar et al. 2018", v,
          fmt::format("final training loss at each variant's best rate: no norm {} (lr {}), BatchNorm {} (lr {}), BatchNorm with injected "
                      "non-stationary shift (k = {}) {} (lr {}); none - noisy BN {}, noisy BN - BN {}. Eval-mode test accuracy (the "
                      "noisy net meets no noise at test time): {}, {}, {}",
                      show(best_loss["none"]), best_lr["none"], show(best_loss["bn"]), best_lr["bn"], k, show(best_loss["noisy_bn"]),
                      best_lr["noisy_bn"], dn.text(), db.text(), show(best_acc["none"]), show(best_acc["bn"]), show(best_acc["noisy_bn"])));
  return r;
}

}  // namespace lab
