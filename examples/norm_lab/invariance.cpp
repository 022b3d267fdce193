// invariance: the weights feeding a BatchNorm do not set the function, only their direction
// does. For y = BN(x W^T + b) (training mode), BN(x (cW)^T) = BN(x W^T) for every c > 0, so
//   L(cW) = L(W)                   ->  <W, dL/dW> = 0           (differentiate at c = 1)
//   dL/dW (cW) = dL/dW (W) / c     ->  the step lr dL/dW moves the direction by lr/|W|^2
//   b adds a constant per feature  ->  dL/db = 0 exactly (the batch mean removes it)
// (van Laarhoven 2017, "L2 Regularization versus Batch and Weight Normalization"). A whole
// Linear layer before LayerNorm is scale invariant too (all features of a sample scale by c),
// but its bias is not removed (LayerNorm subtracts the mean over features, not over samples).
// Consequence checked by training: without weight decay |W| grows (each step is orthogonal to
// W, so |W|^2 grows by lr^2 |g|^2) and the effective learning rate lr/|W|^2 decays; weight
// decay keeps |W| in check.
#include <fmt/format.h>

#include <cmath>

#include "examples/demo/svg.h"
#include "autograd/tape.h"
#include "experiments.h"

namespace lab {

Result run_invariance(const Config& cfg) {
  Result r;
  const Data data = fashion(cfg, cfg.quick ? 2000 : 10000, cfg.quick ? 500 : 5000);
  // ---- exact part, float64 ----
  // eps -> 0 makes the invariance exact (1e-14: eps must be > 0); with PyTorch's eps = 1e-5 it holds up to eps / var.
  double max_rel_dot = 0, max_bias_grad = 0, max_grad_scale_err = 0, ln_rel_dot = 0, ln_bias_grad = 0, eps_rel_dot = 0;
  auto rel_dot = [](const ng::Tensor& w, const ng::Tensor& g) { return std::abs(dot(w, g)) / (norm2(w) * norm2(g)); };
  for (int which = 0; which < 3; ++which) {  // 0: BN eps 1e-14, 1: BN eps 1e-5, 2: LN eps 1e-14
    const Norm n = which == 2 ? Norm::ln : Norm::bn;
    ng::Generator gen(cfg.seed0);
    Mlp m({.width = 32, .hidden = 3, .norm = n, .eps = which == 1 ? 1e-5 : 1e-14, .dtype = ng::DType::f64}, gen);
    const ng::io::TensorDataset d = rows(data.train, 0, 128);
    const ng::Tensor x = ng::cast(d.inputs, ng::DType::f64);
    auto grads = [&] {
      for (auto& p : m.parameters()) p.zero_grad();
      ng::cross_entropy(m.forward(x, true), d.targets).backward();
      std::vector<ng::Tensor> gw, gb;
      for (std::size_t i = 0; i < static_cast<std::size_t>(m.spec.hidden); ++i) gw.push_back(m.W[i].grad().clone()), gb.push_back(m.b[i].grad().clone());
      return std::pair{gw, gb};
    };
    const auto [gw, gb] = grads();
    for (std::size_t i = 0; i < gw.size(); ++i) {
      if (which == 0) {
        max_rel_dot = std::max(max_rel_dot, rel_dot(m.W[i], gw[i]));
        max_bias_grad = std::max(max_bias_grad, norm2(gb[i]) / norm2(gw[i]));
      } else if (which == 1) {
        eps_rel_dot = std::max(eps_rel_dot, rel_dot(m.W[i], gw[i]));
      } else {  // before LayerNorm, W and b scale together: <(W, b), (dW, db)> = 0
        const ng::Tensor wb = ng::cat({ng::flatten(m.W[i]), m.b[i]}), g = ng::cat({ng::flatten(gw[i]), gb[i]});
        ln_rel_dot = std::max(ln_rel_dot, rel_dot(wb, g));
        ln_bias_grad = std::max(ln_bias_grad, norm2(gb[i]) / norm2(gw[i]));
      }
    }
    if (which == 0) {  // scale every hidden W (and b) by 3: gradients / 3
      {
        ng::NoGradGuard no_grad;
        for (std::size_t i = 0; i < gw.size(); ++i) m.W[i].copy_(ng::mul(m.W[i], 3.0)), m.b[i].copy_(ng::mul(m.b[i], 3.0));
      }
      const auto [gw3, gb3] = grads();
      for (std::size_t i = 0; i < gw.size(); ++i)
        max_grad_scale_err = std::max(max_grad_scale_err, norm2(ng::sub(ng::mul(gw3[i], 3.0), gw[i])) / norm2(gw[i]));
    }
  }
  r.set("bn_eps_rel_dot", eps_rel_dot);
  r.set("bn_max_rel_dot", max_rel_dot);
  r.set("bn_bias_grad_rel", max_bias_grad);
  r.set("bn_grad_scale_err", max_grad_scale_err);
  r.set("ln_max_rel_dot", ln_rel_dot);
  r.set("ln_bias_grad_rel", ln_bias_grad);

  // ---- training: |W| and the effective learning rate, with and without weight decay ----
  const std::int64_t steps = cfg.quick ? 100 : 2000, every = cfg.quick ? 10 : 50;
  const double lr = 0.05, wd = 1e-3;
  std::map<int, std::vector<double>> ratio, acc;
  std::map<int, std::vector<double>> curve;  // mean |W_2| / |W_2(0)| over seeds
  std::vector<std::vector<std::string>> rows_;
  for (int with_wd = 0; with_wd < 2; ++with_wd)
    for (int s = 0; s < cfg.seeds; ++s) {
      const std::uint64_t seed = cfg.seed0 + static_cast<std::uint64_t>(s);
      ng::Generator gen(seed);
      Mlp m({.width = 64, .hidden = 4, .norm = Norm::bn}, gen);
      const double w0 = norm2(m.W[1]);
      auto& c = curve[with_wd];
      c.resize(static_cast<std::size_t>(steps / every + 1));
      c[0] += 1.0 / cfg.seeds;
      train_mlp(m, data.train, {.steps = steps, .batch = 64, .lr = lr, .momentum = 0.9, .weight_decay = with_wd ? wd : 0.0, .seed = seed},
                [&](std::int64_t step) {
                  if (step % every) return;
                  const double w = norm2(m.W[1]);
                  c[static_cast<std::size_t>(step / every)] += w / w0 / cfg.seeds;
                  rows_.push_back({with_wd ? num(wd) : "0", std::to_string(seed), std::to_string(step), num(w / w0),
                                   num(lr / (w * w))});
                });
      ratio[with_wd].push_back(norm2(m.W[1]) / w0);
      acc[with_wd].push_back(accuracy(m, data.test));
    }
  write_csv(cfg, r, "invariance.csv", {"weight_decay", "seed", "step", "w_norm_ratio", "effective_lr"}, rows_);
  if (!cfg.out.empty()) {
    svg::Plot p;
    p.title = fmt::format("|W| of the 2nd Linear (before BN) / its initial value, SGD lr {} (mean of {} seeds)", lr, cfg.seeds);
    p.x = {.label = "step"};
    p.y = {.label = "|W(t)| / |W(0)|"};
    for (int w = 0; w < 2; ++w) {
      svg::Series s{.label = w ? fmt::format("weight decay {}", wd) : "no weight decay", .markers = false};
      for (std::size_t k = 0; k < curve[w].size(); ++k) s.x.push_back(static_cast<double>(k) * static_cast<double>(every)), s.y.push_back(curve[w][k]);
      p.series.push_back(s);
    }
    p.save(join_path(cfg.out, "invariance.svg"));
    r.files.push_back(join_path(cfg.out, "invariance.svg"));
  }
  const Stat g0 = stat(ratio[0]), g1 = stat(ratio[1]);
  r.set("w_ratio_no_wd", g0);
  r.set("w_ratio_wd", g1);
  r.set("acc_no_wd", stat(acc[0]));
  r.set("acc_wd", stat(acc[1]));

  const bool exact = max_rel_dot < 1e-6 && max_bias_grad < 1e-6 && max_grad_scale_err < 1e-6;
  r.claim("scale_invariant", "The weights feeding a BatchNorm are scale invariant: <W, dL/dW> = 0, a bias before BN gets zero gradient, "
          "and the gradient scales as 1/|W|", "van Laarhoven 2017; Ioffe & Szegedy 2015 sec. 3.3",
          exact ? Verdict::supported : Verdict::refuted,
          fmt::format("float64, 3 hidden layers, eps = 1e-14: max |<W, dL/dW>| / (|W| |dL/dW|) = {:.1e}; max |dL/db| / |dL/dW| = {:.1e}; "
                      "|3 g(3W) - g(W)| / |g(W)| = {:.1e}. With PyTorch's eps = 1e-5: {:.1e} (eps breaks the symmetry slightly). "
                      "Before LayerNorm: <(W, b), dL/d(W, b)> {:.1e} (invariant too), but bias gradient {:.2f} (not zero)",
                      max_rel_dot, max_bias_grad, max_grad_scale_err, eps_rel_dot, ln_rel_dot, ln_bias_grad));
  const Diff grow = compare(g0, Stat{1.0, 0.0, g0.n}, 0.05), wd_effect = compare(g0, g1, 0.05);
  const Verdict v = grow.real && grow.d > 0 && wd_effect.real && wd_effect.d > 0 ? Verdict::supported
                    : (!grow.real || !wd_effect.real)                          ? Verdict::noise
                                                                               : Verdict::refuted;
  r.claim("effective_lr", "Without weight decay |W| grows and the effective learning rate lr/|W|^2 decays; weight decay keeps it up",
          "van Laarhoven 2017; Zhang et al. 2019", v,
          fmt::format("|W(end)|/|W(0)| after {} steps: no weight decay {}, weight decay {} {} (difference {}); effective lr "
                      "at the end relative to the start: {:.2f} vs {:.2f}; test accuracy {} vs {}",
                      steps, show(g0), wd, show(g1), wd_effect.text(), 1 / (g0.mean * g0.mean), 1 / (g1.mean * g1.mean),
                      show(stat(acc[0])), show(stat(acc[1]))));
  return r;
}

}  // namespace lab
