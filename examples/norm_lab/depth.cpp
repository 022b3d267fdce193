// depth: a deep plain network (16 Linear layers, tanh, PyTorch's default initialization)
// trained with none / BatchNorm / LayerNorm / GroupNorm / RMSNorm at one learning rate.
// The diagnostics of Karpathy's "Building makemore part 3" per hidden layer, at
// initialization and at the end: the activation std, the weight-gradient norm and the
// update:data ratio |dW| / |W| of the SGD steps.
//
// Claims: "normalization makes deep networks trainable / BatchNorm accelerates training"
// (Ioffe & Szegedy 2015) and "BatchNorm avoids vanishing or exploding gradients" (ibid.,
// sec. 3.3). The spread of gradient norms across layers is max/min over the hidden layers.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "examples/demo/svg.h"
#include "autograd/tape.h"
#include "experiments.h"

namespace lab {
namespace {

struct LayerStats {
  std::vector<double> act_std, grad_norm;
};

// Forward and backward on a fixed batch in training mode, running statistics untouched.
LayerStats diagnose(Mlp& m, const ng::io::TensorDataset& d) {
  const auto keep = m.momentum;
  m.momentum = 0.0;  // running = running: the diagnostic batch leaves no trace
  Trace tr;
  for (auto& p : m.parameters()) p.zero_grad();
  ng::Tensor loss = ng::cross_entropy(m.forward(d.inputs, true, &tr), d.targets);
  loss.backward();
  LayerStats s;
  for (std::size_t i = 0; i < tr.post.size(); ++i) {
    const auto v = tr.post[i].to_vector();
    double mu = 0, ss = 0;
    for (double x : v) mu += x;
    mu /= static_cast<double>(v.size());
    for (double x : v) ss += (x - mu) * (x - mu);
    s.act_std.push_back(std::sqrt(ss / static_cast<double>(v.size())));
    s.grad_norm.push_back(norm2(m.W[i].grad()));
  }
  for (auto& p : m.parameters()) p.zero_grad();
  m.momentum = keep;
  return s;
}

double log10_spread(const std::vector<double>& v) {
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return std::log10(*hi / std::max(*lo, 1e-30));
}

}  // namespace

Result run_depth(const Config& cfg) {
  Result r;
  const std::int64_t hidden = cfg.quick ? 6 : 15, width = cfg.quick ? 32 : 64;
  const std::int64_t steps = cfg.quick ? 60 : 800, every = cfg.quick ? 10 : 20;
  const double lr = 0.02;
  const Data data = fashion(cfg, cfg.quick ? 2000 : 20000, cfg.quick ? 500 : 5000);
  const ng::io::TensorDataset probe = rows(data.train, 0, 256);
  const std::vector<Norm> norms = {Norm::none, Norm::bn, Norm::ln, Norm::gn, Norm::rms};
  if (cfg.print)
    fmt::print("MLP 784 -> {} x [Linear({}) -> norm -> tanh] -> 10, SGD lr {} momentum 0.9, batch 64, {} steps, {} seeds\n",
               hidden, width, lr, steps, cfg.seeds);

  std::vector<std::vector<std::string>> curve_rows, layer_rows;
  std::map<Norm, std::vector<double>> final_loss, test_acc, spread_init, spread_end;
  std::map<Norm, std::vector<double>> mean_curve;                       // mean over seeds, every `every` steps
  std::map<Norm, std::vector<std::vector<double>>> act0, act1, g0, g1, up0, up1;  // [seed][layer]
  for (Norm n : norms) {
    for (int s = 0; s < cfg.seeds; ++s) {
      const std::uint64_t seed = cfg.seed0 + static_cast<std::uint64_t>(s);
      ng::Generator gen(seed);
      Mlp m({.width = width, .hidden = hidden, .norm = n, .tanh = true}, gen);
      const LayerStats init = diagnose(m, probe);
      // update:data ratio per layer, averaged over the first 20 and the last 100 steps
      std::vector<ng::Tensor> before;
      std::vector<double> ratio_first(static_cast<std::size_t>(hidden)), ratio_last(static_cast<std::size_t>(hidden));
      const std::int64_t last_from = steps - std::min<std::int64_t>(100, steps / 2), first_to = std::min<std::int64_t>(20, steps / 4);
      auto tracked = [&](std::int64_t step) { return step <= first_to || step > last_from; };
      TrainLog log = train_mlp(
          m, data.train, {.steps = steps, .batch = 64, .lr = lr, .momentum = 0.9, .seed = seed},
          [&](std::int64_t step) {
            if (!tracked(step) || before.empty()) return;
            for (std::int64_t i = 0; i < hidden; ++i) {
              const auto k = static_cast<std::size_t>(i);
              const double q = norm2(ng::sub(m.W[k], before[k])) / norm2(m.W[k]);
              (step <= first_to ? ratio_first : ratio_last)[k] += q / static_cast<double>(step <= first_to ? first_to : steps - last_from);
            }
          },
          [&](std::int64_t step) {
            before.clear();
            if (tracked(step))
              for (std::int64_t i = 0; i < hidden; ++i) before.push_back(m.W[static_cast<std::size_t>(i)].detach().clone());
          });
      const LayerStats end = diagnose(m, probe);
      const double fl = mean_of(log.loss, static_cast<std::size_t>(steps - steps / 10), static_cast<std::size_t>(steps));
      final_loss[n].push_back(fl);
      test_acc[n].push_back(log.diverged ? 0.1 : accuracy(m, data.test));
      spread_init[n].push_back(log10_spread(init.grad_norm));
      spread_end[n].push_back(log10_spread(end.grad_norm));
      act0[n].push_back(init.act_std), act1[n].push_back(end.act_std);
      g0[n].push_back(init.grad_norm), g1[n].push_back(end.grad_norm);
      up0[n].push_back(ratio_first), up1[n].push_back(ratio_last);
      auto& mc = mean_curve[n];
      for (std::int64_t st = every; st <= steps; st += every) {
        const double l = mean_of(log.loss, static_cast<std::size_t>(st - every), static_cast<std::size_t>(st));
        curve_rows.push_back({norm_key(n), std::to_string(seed), std::to_string(st), num(l)});
        const auto k = static_cast<std::size_t>(st / every - 1);
        if (mc.size() <= k) mc.push_back(0);
        mc[k] += l / cfg.seeds;
      }
      if (cfg.print)
        fmt::print("  {:<10} seed {}: final loss {:.4f}, test acc {:.3f}, grad-norm spread across layers at init 10^{:.2f}\n",
                   norm_title(n), seed, fl, test_acc[n].back(), spread_init[n].back());
    }
  }
  // Per-layer table, mean over seeds.
  auto mean_layer = [&](const std::vector<std::vector<double>>& v, std::size_t layer) {
    double s = 0;
    for (const auto& seedv : v) s += seedv[layer];
    return s / static_cast<double>(v.size());
  };
  for (Norm n : norms)
    for (std::size_t l = 0; l < static_cast<std::size_t>(hidden); ++l)
      for (int when = 0; when < 2; ++when)
        layer_rows.push_back({norm_key(n), when ? "end" : "init", std::to_string(l + 1),
                              num(mean_layer(when ? act1[n] : act0[n], l)), num(mean_layer(when ? g1[n] : g0[n], l)),
                              num(mean_layer(when ? up1[n] : up0[n], l))});
  write_csv(cfg, r, "depth.csv", {"norm", "seed", "step", "train_loss"}, curve_rows);
  write_csv(cfg, r, "depth_layers.csv", {"norm", "when", "layer", "act_std", "grad_norm", "update_ratio"}, layer_rows);

  // Plots: the loss curves, and the three diagnostics per layer.
  if (!cfg.out.empty()) {
    svg::Plot p;
    p.title = fmt::format("{}-layer tanh MLP, SGD lr {}: training loss (mean of {} seeds)", hidden + 1, lr, cfg.seeds);
    p.x = {.label = "step"};
    p.y = {.label = "training loss", .log = true};
    for (Norm n : norms) {
      svg::Series s{.label = norm_title(n), .markers = false};
      for (std::size_t k = 0; k < mean_curve[n].size(); ++k) s.x.push_back(static_cast<double>((k + 1) * every)), s.y.push_back(mean_curve[n][k]);
      p.series.push_back(s);
    }
    p.save(join_path(cfg.out, "depth.svg"));
    r.files.push_back(join_path(cfg.out, "depth.svg"));
    auto layer_plot = [&](const std::string& file, const std::string& what, auto pick, bool log) {
      svg::Plot q;
      q.title = what + " per hidden layer, at init and at the end";
      q.x = {.label = "hidden layer"};
      q.y = {.label = what, .log = log};
      static const char* colours[] = {"#7f7f7f", "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"};  // one per norm
      for (std::size_t ni = 0; ni < norms.size(); ++ni)
        for (int when = 0; when < 2; ++when) {
          const Norm n = norms[ni];
          // init: a line with dots; end: a plain line in the same colour
          svg::Series s{.label = fmt::format("{} {}", norm_key(n), when ? "end" : "init (dots)"), .color = colours[ni],
                        .markers = when == 0};
          for (std::size_t l = 0; l < static_cast<std::size_t>(hidden); ++l)
            s.x.push_back(static_cast<double>(l + 1)), s.y.push_back(mean_layer(pick(n, when), l));
          q.series.push_back(s);
        }
      q.height = 560;
      q.save(join_path(cfg.out, file));
      r.files.push_back(join_path(cfg.out, file));
    };
    layer_plot("depth_act_std.svg", "activation std", [&](Norm n, int w) -> auto& { return w ? act1[n] : act0[n]; }, false);
    layer_plot("depth_grad.svg", "|dL/dW|", [&](Norm n, int w) -> auto& { return w ? g1[n] : g0[n]; }, true);
    layer_plot("depth_update.svg", "update:data |dW|/|W| per step", [&](Norm n, int w) -> auto& { return w ? up1[n] : up0[n]; }, true);
  }

  for (Norm n : norms) {
    r.set(fmt::format("{}_final_loss", norm_key(n)), stat(final_loss[n]));
    r.set(fmt::format("{}_test_acc", norm_key(n)), stat(test_acc[n]));
    r.set(fmt::format("{}_grad_spread_init", norm_key(n)), stat(spread_init[n]));
    r.set(fmt::format("{}_act_std_last_init", norm_key(n)), mean_layer(act0[n], static_cast<std::size_t>(hidden - 1)));
  }
  const Stat none_l = stat(final_loss[Norm::none]), bn_l = stat(final_loss[Norm::bn]);
  const Diff d = compare(none_l, bn_l, 0.02);
  r.claim("bn_trains_deep", "BatchNorm makes a deep network train faster (lower training loss at the same learning rate and steps)",
          "Ioffe & Szegedy 2015", verdict_greater(d),
          fmt::format("final training loss, {} layers, lr {}, {} steps: no norm {}, BatchNorm {}; difference none - BN {}. "
                      "LayerNorm {}, GroupNorm {}, RMSNorm {}",
                      hidden + 1, lr, steps, show(none_l), show(bn_l), d.text(), show(stat(final_loss[Norm::ln])),
                      show(stat(final_loss[Norm::gn])), show(stat(final_loss[Norm::rms]))));
  const Stat sp_none = stat(spread_init[Norm::none]), sp_bn = stat(spread_init[Norm::bn]);
  const Diff ds = compare(sp_none, sp_bn, 0.1);
  r.claim("bn_gradients", "BatchNorm avoids vanishing/exploding gradients (gradient norms stay similar across layers)",
          "Ioffe & Szegedy 2015, sec. 3.3; makemore part 3", verdict_greater(ds),
          fmt::format("spread of |dL/dW| across the {} hidden layers at init, log10(max/min): no norm {}, BatchNorm {} "
                      "(difference {}); activation std of the last hidden layer at init: no norm {}, BatchNorm {}",
                      hidden, show(sp_none, 2), show(sp_bn, 2), ds.text(), num(r.get("none_act_std_last_init"), 3),
                      num(r.get("bn_act_std_last_init"), 3)));
  return r;
}

}  // namespace lab
