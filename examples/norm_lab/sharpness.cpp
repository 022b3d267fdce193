// sharpness: the top eigenvalue of the Hessian of the training loss (the "sharpness") during
// full-batch gradient descent, with and without BatchNorm, against 2/lr.
//   Santurkar et al. 2018: BatchNorm makes the landscape smoother (smaller gradients and
//   curvature along the training path).
//   Cohen et al. 2021 (Edge of Stability): under GD the sharpness rises until it reaches
//   2/lr and then hovers there, whatever the architecture: with a fixed step size the
//   curvature is set by the step size, not by the normalization.
// The eigenvalue comes from power iteration on Hessian-vector products (ng::hvp: double
// backward, as examples/hessian_power.cpp), warm-started from the previous measurement.
// Float64, full batch of 512 images, BatchNorm in training mode (batch statistics: the loss is
// a function of the parameters alone).
#include <fmt/format.h>

#include <cmath>

#include "examples/demo/svg.h"
#include "autograd/functional.h"
#include "autograd/tape.h"
#include "experiments.h"

namespace lab {
namespace {

using ng::Tensor;
using Params = std::vector<Tensor>;

double pdot(const Params& a, const Params& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += dot(a[i], b[i]);
  return s;
}
Params pscale(const Params& a, double s) {
  ng::NoGradGuard no_grad;
  Params o;
  for (const auto& t : a) o.push_back(ng::mul(t, s));
  return o;
}

}  // namespace

Result run_sharpness(const Config& cfg) {
  Result r;
  const std::int64_t n = cfg.quick ? 128 : 512, steps = cfg.quick ? 40 : 600, every = cfg.quick ? 20 : 40;
  const int power_iters = cfg.quick ? 8 : 12;
  const std::vector<double> lrs = {0.05, 0.2};
  const Data data = fashion(cfg, n, 10);
  const Tensor x = ng::cast(data.train.inputs, ng::DType::f64);
  const Tensor y = data.train.targets;
  std::vector<std::vector<std::string>> rows_;
  std::map<std::pair<Norm, double>, std::vector<double>> late;  // mean sharpness over the second half, per seed
  std::map<std::pair<Norm, double>, std::vector<double>> curve;  // mean over seeds
  for (Norm nm : {Norm::none, Norm::bn})
    for (double lr : lrs)
      for (int s = 0; s < cfg.seeds; ++s) {
        const std::uint64_t seed = cfg.seed0 + static_cast<std::uint64_t>(s);
        ng::Generator gen(seed);
        Mlp m({.width = 32, .hidden = 3, .norm = nm, .tanh = true, .dtype = ng::DType::f64}, gen);
        m.momentum = 0.0;  // running statistics are never used here; keep them fixed
        Params p = m.parameters();
        // The loss as a function of a parameter list in the order of m.parameters().
        auto loss_of = [&](const Params& q) {
          Mlp mm = m;  // shares the running-statistics tensors; parameters replaced below
          std::size_t k = 0;
          for (std::size_t i = 0; i < mm.W.size(); ++i) mm.W[i] = q[k++], mm.b[i] = q[k++];
          for (std::size_t i = 0; i < mm.gamma.size(); ++i) {
            mm.gamma[i] = q[k++];
            if (mm.beta[i].defined()) mm.beta[i] = q[k++];
          }
          return ng::cross_entropy(mm.forward(x, true), y);
        };
        Params v;
        for (const auto& t : p) v.push_back(ng::randn(t.shape(), ng::DType::f64, &gen));
        v = pscale(v, 1.0 / std::sqrt(pdot(v, v)));
        std::vector<double> lam_seq;
        for (std::int64_t step = 0; step <= steps; ++step) {
          if (step % every == 0) {
            double lam = 0;
            for (int it = 0; it < power_iters; ++it) {
              Params hv = ng::hvp(loss_of, p, v);
              lam = pdot(v, hv);
              v = pscale(hv, 1.0 / std::sqrt(pdot(hv, hv)));
            }
            lam_seq.push_back(lam);
            rows_.push_back({norm_key(nm), num(lr), std::to_string(seed), std::to_string(step), num(lam), num(2 / lr)});
          }
          if (step == steps) break;
          for (auto& t : p) t.zero_grad();
          Tensor loss = loss_of(p);
          if (!std::isfinite(loss.item())) break;
          loss.backward();
          ng::NoGradGuard no_grad;
          for (auto& t : p) t.add_(t.grad(), -lr);
        }
        late[{nm, lr}].push_back(mean_of(lam_seq, lam_seq.size() / 2, lam_seq.size()));
        auto& c = curve[{nm, lr}];
        c.resize(lam_seq.size());
        for (std::size_t i = 0; i < lam_seq.size(); ++i) c[i] += lam_seq[i] / cfg.seeds;
        if (cfg.print)
          fmt::print("  {:<9} lr {:<4} seed {}: sharpness {:.1f} -> {:.1f} (2/lr = {:.0f})\n", norm_title(nm), lr, seed,
                     lam_seq.front(), lam_seq.back(), 2 / lr);
      }
  write_csv(cfg, r, "sharpness.csv", {"norm", "lr", "seed", "step", "sharpness", "two_over_lr"}, rows_);
  if (!cfg.out.empty()) {
    svg::Plot p;
    p.title = fmt::format("top Hessian eigenvalue during full-batch GD ({} images, mean of {} seeds)", n, cfg.seeds);
    p.x = {.label = "step"};
    p.y = {.label = "sharpness (log)", .log = true};
    for (const auto& [key, c] : curve) {
      svg::Series s{.label = fmt::format("{} lr {}", norm_key(key.first), key.second)};
      for (std::size_t i = 0; i < c.size(); ++i) s.x.push_back(static_cast<double>(i) * static_cast<double>(every)), s.y.push_back(c[i]);
      p.series.push_back(s);
    }
    for (double lr : lrs)
      p.series.push_back({.label = fmt::format("2/lr = {:g}", 2 / lr), .x = {0.0, static_cast<double>(steps)}, .y = {2 / lr, 2 / lr},
                          .color = "#999999", .markers = false});
    p.save(join_path(cfg.out, "sharpness.svg"));
    r.files.push_back(join_path(cfg.out, "sharpness.svg"));
  }
  std::string figures;
  int smoother = 0, sharper = 0;
  double min_edge = 1e9;
  for (double lr : lrs) {
    const Stat a = stat(late[{Norm::none, lr}]), b = stat(late[{Norm::bn, lr}]);
    const std::string k = fmt::format("lr{}", lr == 0.05 ? "005" : "02");
    r.set("none_" + k + "_sharpness", a);
    r.set("bn_" + k + "_sharpness", b);
    r.set("none_" + k + "_edge_ratio", a.mean * lr / 2);
    r.set("bn_" + k + "_edge_ratio", b.mean * lr / 2);
    const Diff d = compare(a, b, 0.1 * 2 / lr);
    if (d.real) (d.d > 0 ? smoother : sharper) += 1;
    min_edge = std::min({min_edge, a.mean * lr / 2, b.mean * lr / 2});
    figures += fmt::format("lr {}: no norm {}, BatchNorm {} (2/lr = {:g}; difference {}). ", lr, show(a, 1), show(b, 1), 2 / lr, d.text());
  }
  r.claim("bn_smoother", "BatchNorm makes the loss landscape smoother (lower sharpness along the training path)",
          "Santurkar et al. 2018", smoother == 2 ? Verdict::supported : sharper == 2 ? Verdict::refuted : Verdict::noise,
          "mean top Hessian eigenvalue over the second half of training: " + figures +
              "(a difference below 10% of 2/lr is not counted)");
  r.claim("edge_of_stability", "Under full-batch GD the sharpness rises to about 2/lr and stays there, with or without BatchNorm",
          "Cohen et al. 2021", min_edge >= 0.8 ? Verdict::supported : Verdict::refuted,
          fmt::format("smallest ratio (late sharpness) / (2/lr) over the four settings: {:.2f} (supported at >= 0.8). {}", min_edge,
                      figures));
  return r;
}

}  // namespace lab
