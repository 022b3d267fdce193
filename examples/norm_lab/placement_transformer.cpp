// placement, the Transformer half: pre-LN vs post-LN, with and without learning-rate warmup
// (Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture"), and which norm
// sits inside the (pre-LN) layer: LayerNorm, RMSNorm or BatchNorm over the tokens (Shen et al.
// 2020, "PowerNorm: Rethinking Batch Normalization in Transformers").
//
// Xiong et al. (sec. 3.3, Theorem 1): at initialization, the gradient of the parameters near the
// output of a post-LN Transformer is large (it does not shrink with depth), so a large Adam step
// at the start throws the model off; warmup keeps the first steps small. In pre-LN the gradient
// scales as 1/sqrt(L) and warmup can be dropped. The test: a causal character-level Transformer
// (char_lm.h) trained for the same steps with and without warmup at each of the swept Adam rates;
// validation loss in nats per character.
//
// Verdict (fixed before the runs). Per rate r, "X needs warmup at r" when X's validation loss
// without warmup exceeds that with warmup by more than 2 standard errors and the floor (0.02
// nats/char). P = the rates at which post-LN needs warmup, Q = those at which pre-LN does.
//   supported  some rate is in P and not in Q
//   refuted    P is not empty and P is within Q (pre-LN needs it wherever post-LN does), or
//              P is empty and Q is not (the opposite of the claim)
//   noise      P and Q are both empty
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "char_lm.h"
#include "examples/demo/svg.h"
#include "experiments.h"

namespace lab {

namespace {

using ng::nn::TransformerNorm;

// "0.003" -> "lr0003": a key part without '.' or '-' (as sharpness's "lr005")
std::string lr_key(double lr) {
  std::string s = fmt::format("{}", lr);
  s.erase(std::remove(s.begin(), s.end(), '.'), s.end());
  return "lr" + s;
}

struct Cell {
  std::vector<double> val, train;
  std::vector<std::vector<double>> curves;  // per seed: validation loss at `steps`
  std::vector<std::int64_t> steps;
  int diverged = 0;
  Stat val_stat() const { return stat(val); }
  std::vector<double> mean_curve() const {
    std::vector<double> m(steps.size(), 0.0);
    for (const auto& c : curves)
      for (std::size_t i = 0; i < m.size(); ++i) m[i] += i < c.size() ? c[i] / static_cast<double>(curves.size()) : NAN;
    return m;
  }
};

}  // namespace

void run_placement_transformer(const Config& cfg, Result& r) {
  const Corpus& corpus = fortunes(cfg);
  LmSpec base;
  if (cfg.quick) {
    base.layers = 2, base.d = 32, base.heads = 4, base.block = 32, base.batch = 8;
    base.steps = 30, base.warmup = 6, base.eval_every = 10, base.val_windows = 8;
  } else {
    // Sized for the lab's 3-minute budget (42 trainings: 14 cells x 3 seeds). With context 64
    // the experiment was over it at one thread; context 32 at least halves the cost of a step
    // and leaves the steps, the warmup and the rates as they were (measured costs:
    // docs/normalization.md, after "Claims, tested"). What Xiong et al. describe
    // (the size of the early updates near the output, Theorem 1) does not depend on the context.
    base.layers = 2, base.d = 64, base.heads = 4, base.block = 32, base.batch = 16;
    base.steps = 200, base.warmup = 40, base.eval_every = 25, base.val_windows = 64;
  }
  const std::vector<double> lrs = {3e-3, 1e-2, 3e-2};  // --quick too: it reports every figure the docs quote
  const double lr_norms = 3e-3;  // the norm comparison: tiny_gpt's default rate, pre-LN, with warmup
  const double floor = 0.02;     // nats/char: smaller differences are not counted
  const double uniform = std::log(static_cast<double>(corpus.vocab));
  r.set("tf_vocab", static_cast<double>(corpus.vocab));
  r.set("tf_uniform_loss", uniform);
  if (cfg.print)
    fmt::print(
        "\nTransformer: {} characters of {} (vocabulary {}, uniform guess {:.3f} nats/char), the last 10% validates;\n"
        "  {} causal layers, d_model {}, {} heads, GELU feed-forward 4d, context {}, batch {}, {} steps of Adam;\n"
        "  warmup: {} steps linear from 1% of the rate, then cosine to 10%; without: cosine from step 1\n",
        corpus.chars, corpus.path, corpus.vocab, uniform, base.layers, base.d, base.heads, base.block, base.batch,
        base.steps, base.warmup);

  // The causal mask, checked: logits before position t must not see the tokens from t on.
  const double ln_leak = causal_leak(TransformerNorm::layer_norm, true, true, corpus);
  const double bn_train_leak = causal_leak(TransformerNorm::batch_norm, true, true, corpus);
  const double bn_eval_leak = causal_leak(TransformerNorm::batch_norm, true, false, corpus);
  r.set("tf_ln_causal_leak", ln_leak);
  r.set("tf_bn_train_causal_leak", bn_train_leak);
  r.set("tf_bn_eval_causal_leak", bn_eval_leak);
  if (cfg.print)
    fmt::print(
        "  causal check, max |change of past logits| when the future changes: LN {:.3g}, BN training mode {:.3g}, "
        "BN eval mode {:.3g}\n",
        ln_leak, bn_train_leak, bn_eval_leak);

  std::vector<std::vector<std::string>> rows_, curve_rows;
  auto run_cell = [&](bool pre_ln, bool warm, double lr, TransformerNorm norm) {
    Cell cell;
    for (int s = 0; s < cfg.seeds; ++s) {
      LmSpec spec = base;
      spec.pre_ln = pre_ln, spec.lr = lr, spec.norm = norm, spec.warmup = warm ? base.warmup : 0;
      spec.seed = cfg.seed0 + static_cast<std::uint64_t>(s);
      const LmLog log = train_char_lm(spec, corpus);
      cell.val.push_back(log.final_val);
      cell.train.push_back(log.final_train);
      cell.curves.push_back(log.val_loss);
      if (log.eval_step.size() > cell.steps.size()) cell.steps = log.eval_step;
      cell.diverged += log.diverged;
      const std::string layout = pre_ln ? "pre" : "post";
      rows_.push_back({layout, transformer_norm_key(norm), warm ? "yes" : "no", num(lr), std::to_string(spec.seed),
                       num(log.final_val), num(log.final_train), log.diverged ? "1" : "0"});
      for (std::size_t i = 0; i < log.eval_step.size(); ++i)
        curve_rows.push_back({layout, transformer_norm_key(norm), warm ? "yes" : "no", num(lr),
                              std::to_string(spec.seed), std::to_string(log.eval_step[i]), num(log.val_loss[i])});
    }
    if (cfg.print)
      fmt::print("  {:<8} {:<9} warmup {:<3} lr {:<6}: validation {} nats/char{}\n", pre_ln ? "pre-LN" : "post-LN",
                 transformer_norm_title(norm), warm ? "yes" : "no", lr, show(cell.val_stat()),
                 cell.diverged ? fmt::format(" ({} of {} diverged)", cell.diverged, cfg.seeds) : "");
    std::fflush(stdout);
    return cell;
  };

  // [pre_ln][warm][lr index], LayerNorm
  std::map<std::pair<bool, bool>, std::vector<Cell>> grid;
  for (bool pre_ln : {false, true})
    for (bool warm : {true, false})
      for (double lr : lrs) grid[{pre_ln, warm}].push_back(run_cell(pre_ln, warm, lr, TransformerNorm::layer_norm));
  // Norms inside the pre-LN layer at lr_norms with warmup; LayerNorm's cell is the grid's.
  const auto k_norms = static_cast<std::size_t>(std::find(lrs.begin(), lrs.end(), lr_norms) - lrs.begin());
  std::map<TransformerNorm, Cell> by_norm;
  by_norm[TransformerNorm::layer_norm] = grid[{true, true}][k_norms];
  for (TransformerNorm n : {TransformerNorm::rms_norm, TransformerNorm::batch_norm})
    by_norm[n] = run_cell(true, true, lr_norms, n);

  write_csv(cfg, r, "placement_transformer.csv",
            {"layout", "norm", "warmup", "lr", "seed", "val_loss", "train_loss_last10pct", "diverged"}, rows_);
  write_csv(cfg, r, "placement_transformer_curves.csv", {"layout", "norm", "warmup", "lr", "seed", "step", "val_loss"},
            curve_rows);

  // Figures, per layout, warmup and rate; the warmup penalty (no warmup - warmup) per rate.
  std::vector<bool> P, Q;  // per rate: post-LN / pre-LN needs warmup
  std::string because;
  for (std::size_t i = 0; i < lrs.size(); ++i) {
    std::string part = fmt::format("lr {}:", lrs[i]);
    for (bool pre_ln : {false, true}) {
      const std::string layout = pre_ln ? "pre" : "post";
      const Cell &w = grid[{pre_ln, true}][i], &nw = grid[{pre_ln, false}][i];
      r.set(fmt::format("tf_{}_warm_{}_val", layout, lr_key(lrs[i])), w.val_stat());
      r.set(fmt::format("tf_{}_nowarm_{}_val", layout, lr_key(lrs[i])), nw.val_stat());
      r.set(fmt::format("tf_{}_nowarm_{}_diverged", layout, lr_key(lrs[i])), nw.diverged);
      r.set(fmt::format("tf_{}_warm_{}_diverged", layout, lr_key(lrs[i])), w.diverged);
      const Diff d = compare(nw.val_stat(), w.val_stat(), floor);
      r.set(fmt::format("tf_{}_warmup_gain_{}", layout, lr_key(lrs[i])), d.d);
      const bool needs = d.real && d.d > 0;
      (pre_ln ? Q : P).push_back(needs);
      part += fmt::format(" {}-LN {} with warmup, {} without ({}{})", layout, show(w.val_stat()), show(nw.val_stat()),
                          d.text(), needs ? ", needs warmup" : "");
      if (nw.diverged || w.diverged) part += fmt::format(" [diverged: {} with, {} without]", w.diverged, nw.diverged);
      if (!pre_ln) part += ",";
    }
    because += (i ? "; " : "") + part;
  }
  bool p_any = false, q_any = false, p_not_q = false, p_within_q = true;
  for (std::size_t i = 0; i < lrs.size(); ++i) {
    const bool p = P[i], q = Q[i];
    p_any = p_any || p, q_any = q_any || q;
    p_not_q = p_not_q || (p && !q);
    p_within_q = p_within_q && (!p || q);
  }
  const Verdict v = p_not_q                                      ? Verdict::supported
                    : (p_any && p_within_q) || (!p_any && q_any) ? Verdict::refuted
                                                                 : Verdict::noise;
  r.claim("preln_warmup", "Post-LN Transformers need learning-rate warmup; pre-LN ones train without it",
          "Xiong et al. 2020, sec. 3-4", v,
          fmt::format(
              "validation nats/char after {} steps, {} seeds; \"needs warmup\" = worse without it by > 2 se and > {} "
              "nats/char. {}",
              base.steps, cfg.seeds, floor, because));

  // The norm inside the layer.
  for (const auto& [n, cell] : by_norm) {
    r.set(fmt::format("tf_norm_{}_val", transformer_norm_key(n)), cell.val_stat());
    r.set(fmt::format("tf_norm_{}_train", transformer_norm_key(n)), stat(cell.train));
    r.set(fmt::format("tf_norm_{}_diverged", transformer_norm_key(n)), cell.diverged);
  }
  const Stat ln = by_norm[TransformerNorm::layer_norm].val_stat(), rms = by_norm[TransformerNorm::rms_norm].val_stat(),
             bn = by_norm[TransformerNorm::batch_norm].val_stat();
  const Diff d_bn = compare(bn, ln, floor), d_rms = compare(rms, ln, floor);
  r.claim("bn_transformer", "BatchNorm inside a Transformer for language is worse than LayerNorm",
          "Shen et al. 2020 (PowerNorm), sec. 3", verdict_greater(d_bn),
          fmt::format(
              "pre-LN, warmup, lr {}: validation nats/char LayerNorm {}, RMSNorm {} (RMS - LN {}), BatchNorm over the "
              "tokens {} (BN - LN {}); mean training loss over the last 10% of steps (training mode) LN {}, BN {}",
              lr_norms, show(ln), show(rms), d_rms.text(), show(bn), d_bn.text(),
              show(stat(by_norm[TransformerNorm::layer_norm].train)),
              show(stat(by_norm[TransformerNorm::batch_norm].train))));

  if (cfg.out.empty()) return;
  {  // final validation loss against the rate: four lines (layout x warmup)
    svg::Plot p;
    p.title = fmt::format("char Transformer: validation loss after {} steps (mean of {} seeds)", base.steps, cfg.seeds);
    p.x = {.label = "Adam learning rate", .log = true};
    p.y = {.label = "validation loss (nats/char)"};
    for (bool pre_ln : {false, true})
      for (bool warm : {true, false}) {
        svg::Series s{.label = fmt::format("{}-LN, {}", pre_ln ? "pre" : "post", warm ? "warmup" : "no warmup"),
                      .dashed = !warm};
        for (std::size_t i = 0; i < lrs.size(); ++i)
          s.x.push_back(lrs[i]), s.y.push_back(grid[{pre_ln, warm}][i].val_stat().mean);
        p.series.push_back(s);
      }
    p.save(join_path(cfg.out, "placement_transformer.svg"));
    r.files.push_back(join_path(cfg.out, "placement_transformer.svg"));
  }
  auto curves = [&](const std::string& file, const std::string& title,
                    const std::vector<std::pair<std::string, const Cell*>>& cells) {
    svg::Plot p;
    p.title = title;
    p.x = {.label = "step"};
    p.y = {.label = "validation loss (nats/char)"};
    for (const auto& [label, c] : cells) {
      svg::Series s{.label = label, .markers = false, .dashed = label.find("no warmup") != std::string::npos};
      const auto m = c->mean_curve();
      for (std::size_t i = 0; i < c->steps.size(); ++i)
        s.x.push_back(static_cast<double>(c->steps[i])), s.y.push_back(m[i]);
      p.series.push_back(s);
    }
    p.save(join_path(cfg.out, file));
    r.files.push_back(join_path(cfg.out, file));
  };
  std::vector<std::pair<std::string, const Cell*>> layouts, norms;
  for (bool pre_ln : {false, true})
    for (bool warm : {true, false})
      layouts.emplace_back(fmt::format("{}-LN, {}", pre_ln ? "pre" : "post", warm ? "warmup" : "no warmup"),
                           &grid[{pre_ln, warm}].back());
  for (TransformerNorm n : {TransformerNorm::layer_norm, TransformerNorm::rms_norm, TransformerNorm::batch_norm})
    norms.emplace_back(fmt::format("pre-LN layout, {}", transformer_norm_title(n)), &by_norm[n]);
  curves("placement_curves.svg",
         fmt::format("validation loss during training at lr {} (mean of {} seeds)", lrs.back(), cfg.seeds), layouts);
  curves("placement_norms.svg",
         fmt::format("the norm inside the pre-LN layer: validation loss, lr {} with warmup (mean of {} seeds)",
                     lr_norms, cfg.seeds),
         norms);
}

}  // namespace lab
