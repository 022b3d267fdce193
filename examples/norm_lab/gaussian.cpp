// gaussian: does normalization make activations Gaussian? BatchNorm applies one affine map
// per feature, (x - mean) / std; LayerNorm one affine map per sample. An affine map with a
// positive scale keeps the shape of a distribution: skewness E[z^3] and excess kurtosis
// E[z^4] - 3 of the standardized values are unchanged. Tested on
//   skewed     x ~ Exp(1) per feature (skewness 2, excess kurtosis 6)
//   bimodal    x ~ +-2 + N(0, 0.5^2) (skewness 0, excess kurtosis about -1.6)
//   network    the ReLU outputs of a first hidden layer on Fashion-MNIST images (BatchNorm
//              placed after the activation sees these)
// and "LayerNorm reduces the dependence between features": the mean |correlation| between
// features before and after LayerNorm (it subtracts each sample's mean over features, which
// makes the features of a sample sum to zero: it adds a negative dependence, it removes none).
#include <fmt/format.h>

#include <cmath>

#include "examples/demo/svg.h"
#include "autograd/tape.h"
#include "experiments.h"

namespace lab {
namespace {

using ng::Tensor;

struct Moments {
  double skew = 0, kurt = 0;
};
// Skewness and excess kurtosis of column j of an (N, C) matrix (given as rows of doubles).
Moments moments(const std::vector<double>& v, std::int64_t N, std::int64_t C, std::int64_t j) {
  double mu = 0, m2 = 0, m3 = 0, m4 = 0;
  for (std::int64_t i = 0; i < N; ++i) mu += v[static_cast<std::size_t>(i * C + j)];
  mu /= static_cast<double>(N);
  for (std::int64_t i = 0; i < N; ++i) {
    const double d = v[static_cast<std::size_t>(i * C + j)] - mu;
    m2 += d * d, m3 += d * d * d, m4 += d * d * d * d;
  }
  m2 /= static_cast<double>(N), m3 /= static_cast<double>(N), m4 /= static_cast<double>(N);
  return {m3 / std::pow(m2, 1.5), m4 / (m2 * m2) - 3.0};
}
Moments mean_moments(const Tensor& t) {
  const std::int64_t N = t.size(0), C = t.size(1);
  const auto v = t.to_vector();
  Moments s;
  for (std::int64_t j = 0; j < C; ++j) {
    const Moments m = moments(v, N, C, j);
    s.skew += m.skew / static_cast<double>(C), s.kurt += m.kurt / static_cast<double>(C);
  }
  return s;
}
// Mean |Pearson correlation| over pairs of distinct columns.
double mean_abs_corr(const Tensor& t) {
  const std::int64_t N = t.size(0), C = t.size(1);
  const auto v = t.to_vector();
  std::vector<double> mu(static_cast<std::size_t>(C)), sd(static_cast<std::size_t>(C));
  for (std::int64_t j = 0; j < C; ++j) {
    double a = 0, b = 0;
    for (std::int64_t i = 0; i < N; ++i) a += v[static_cast<std::size_t>(i * C + j)];
    a /= static_cast<double>(N);
    for (std::int64_t i = 0; i < N; ++i) b += std::pow(v[static_cast<std::size_t>(i * C + j)] - a, 2);
    mu[static_cast<std::size_t>(j)] = a, sd[static_cast<std::size_t>(j)] = std::sqrt(b / static_cast<double>(N));
  }
  double s = 0;
  std::int64_t pairs = 0;
  for (std::int64_t j = 0; j < C; ++j)
    for (std::int64_t k = j + 1; k < C; ++k) {
      double c = 0;
      for (std::int64_t i = 0; i < N; ++i)
        c += (v[static_cast<std::size_t>(i * C + j)] - mu[static_cast<std::size_t>(j)]) * (v[static_cast<std::size_t>(i * C + k)] - mu[static_cast<std::size_t>(k)]);
      s += std::abs(c / static_cast<double>(N) / (sd[static_cast<std::size_t>(j)] * sd[static_cast<std::size_t>(k)] + 1e-300));
      ++pairs;
    }
  return s / static_cast<double>(pairs);
}
// Histogram of column 0, as a step outline (x, density) for the plot.
svg::Series histogram(const Tensor& t, const std::string& label, double lo, double hi, int bins) {
  const std::int64_t N = t.size(0), C = t.size(1);
  const auto v = t.to_vector();
  std::vector<double> count(static_cast<std::size_t>(bins));
  for (std::int64_t i = 0; i < N; ++i) {
    const double z = v[static_cast<std::size_t>(i * C)];
    const auto k = static_cast<std::int64_t>(std::floor((z - lo) / (hi - lo) * bins));
    if (k >= 0 && k < bins) count[static_cast<std::size_t>(k)] += 1;
  }
  svg::Series s{.label = label, .markers = false};
  const double w = (hi - lo) / bins;
  for (int k = 0; k < bins; ++k) {
    const double dens = count[static_cast<std::size_t>(k)] / (static_cast<double>(N) * w);
    s.x.push_back(lo + k * w), s.y.push_back(dens), s.x.push_back(lo + (k + 1) * w), s.y.push_back(dens);
  }
  return s;
}

}  // namespace

Result run_gaussian(const Config& cfg) {
  Result r;
  const std::int64_t N = cfg.quick ? 2048 : 16384, C = 16;
  const ng::DType f64 = ng::DType::f64;
  struct Case {
    std::string key;
    std::vector<double> skew_in = {}, skew_bn = {}, skew_ln = {}, kurt_in = {}, kurt_bn = {}, kurt_ln = {}, corr_in = {}, corr_ln = {};
  };
  std::vector<Case> cases = {{"skewed"}, {"bimodal"}, {"network"}};
  std::vector<svg::Series> hist;
  double ln_row_mean = 0, ln_row_var = 0;  // LayerNorm's own constraint: every sample mean 0, variance 1
  const Data data = fashion(cfg, cfg.quick ? 2048 : 16384, 100);
  ng::NoGradGuard no_grad;
  for (int s = 0; s < cfg.seeds; ++s) {
    ng::Generator gen(cfg.seed0 + static_cast<std::uint64_t>(s));
    for (auto& c : cases) {
      Tensor x;
      if (c.key == "skewed") {
        x = ng::neg(ng::log(ng::rsub(1.0, ng::rand({N, C}, f64, &gen))));  // Exp(1) by inversion
      } else if (c.key == "bimodal") {
        Tensor sign = ng::add(ng::mul(ng::lt(ng::rand({N, C}, f64, &gen), ng::full({}, 0.5, f64)), 4.0), -2.0);
        x = ng::add(sign, ng::mul(ng::randn({N, C}, f64, &gen), 0.5));
      } else {  // ReLU outputs of a first layer on real images (what BatchNorm sees when placed after the activation)
        Mlp m({.width = C, .hidden = 1, .dtype = f64}, gen);
        x = ng::relu(ng::linear(ng::cast(data.train.inputs, f64), m.W[0], m.b[0]));
      }
      const Tensor bn = ng::batch_norm(x, {}, {}, {}, {}, true);
      const Tensor ln = ng::layer_norm(x, {x.size(1)});
      const Moments mi = mean_moments(x), mb = mean_moments(bn), ml = mean_moments(ln);
      if (c.key != "network") {  // (a row of all-zero ReLU outputs has variance 0, nothing to scale)
        for (double v : ng::mean(ln, {1}).to_vector()) ln_row_mean = std::max(ln_row_mean, std::abs(v));
        for (double v : ng::var(ln, {1}, 0).to_vector()) ln_row_var = std::max(ln_row_var, std::abs(v - 1));
      }
      c.skew_in.push_back(mi.skew), c.skew_bn.push_back(mb.skew), c.skew_ln.push_back(ml.skew);
      c.kurt_in.push_back(mi.kurt), c.kurt_bn.push_back(mb.kurt), c.kurt_ln.push_back(ml.kurt);
      c.corr_in.push_back(mean_abs_corr(x)), c.corr_ln.push_back(mean_abs_corr(ln));
      if (s == 0 && c.key != "network") {
        // standardized input, for the same axis as the outputs
        const Tensor z = ng::div(ng::sub(x, ng::mean(x, {0}, true)), ng::std(x, {0}, 0, true));
        hist.push_back(histogram(z, c.key + ": input (standardized)", -4, 6, 50));
        hist.push_back(histogram(bn, c.key + ": after BatchNorm", -4, 6, 50));
      }
    }
  }
  std::vector<std::vector<std::string>> rows_;
  for (const auto& c : cases) {
    r.set(c.key + "_skew_in", stat(c.skew_in));
    r.set(c.key + "_skew_bn", stat(c.skew_bn));
    r.set(c.key + "_skew_ln", stat(c.skew_ln));
    r.set(c.key + "_kurt_in", stat(c.kurt_in));
    r.set(c.key + "_kurt_bn", stat(c.kurt_bn));
    r.set(c.key + "_corr_in", stat(c.corr_in));
    r.set(c.key + "_corr_ln", stat(c.corr_ln));
    rows_.push_back({c.key, num(stat(c.skew_in).mean), num(stat(c.skew_bn).mean), num(stat(c.skew_ln).mean), num(stat(c.kurt_in).mean),
                     num(stat(c.kurt_bn).mean), num(stat(c.kurt_ln).mean), num(stat(c.corr_in).mean), num(stat(c.corr_ln).mean)});
  }
  write_csv(cfg, r, "gaussian.csv", {"input", "skew_in", "skew_bn", "skew_ln", "kurt_in", "kurt_bn", "kurt_ln", "corr_in", "corr_ln"}, rows_);
  if (!cfg.out.empty()) {
    svg::Plot p;
    p.title = "feature 0 before and after BatchNorm (a Gaussian has skew 0, excess kurtosis 0)";
    p.x = {.label = "standardized value"};
    p.y = {.label = "density"};
    p.series = hist;
    p.width = 820;
    p.save(join_path(cfg.out, "gaussian.svg"));
    r.files.push_back(join_path(cfg.out, "gaussian.svg"));
  }
  // BN keeps the skewness of the skewed input (2 for Exp(1)): "made Gaussian" would bring it to 0.
  const Case& sk = cases[0];
  const Case& bi = cases[1];
  const Diff kept = compare(stat(sk.skew_bn), Stat{0, 0, cfg.seeds}, 0.5);
  const double change = std::abs(stat(sk.skew_bn).mean - stat(sk.skew_in).mean);
  r.claim("bn_gaussian", "BatchNorm forces activations into a normal distribution", "a common statement; Ioffe & Szegedy 2015 "
          "only whiten to zero mean and unit variance",
          kept.real && kept.d > 0 && change < 1e-6 ? Verdict::refuted : Verdict::noise,
          fmt::format("skewness of Exp(1) features: input {}, after BN {}, after LN {} (Gaussian: 0); bimodal excess kurtosis: input "
                      "{}, after BN {} (Gaussian: 0); ReLU outputs of a layer on images: skew {} -> {}",
                      show(stat(sk.skew_in)), show(stat(sk.skew_bn)), show(stat(sk.skew_ln)), show(stat(bi.kurt_in)),
                      show(stat(bi.kurt_bn)), show(stat(cases[2].skew_in)), show(stat(cases[2].skew_bn))));
  r.set("ln_sample_mean_max", ln_row_mean);
  r.set("ln_sample_var_dev", ln_row_var);
  const bool constrained = ln_row_mean < 1e-9 && ln_row_var < 1e-2;  // var / (var + eps) = 1 - eps / var
  r.claim("ln_unconstrained", "Unlike BatchNorm, LayerNorm puts no constraint on the distribution of its outputs",
          "a common statement; Ba et al. 2016, eq. 4", constrained ? Verdict::refuted : Verdict::supported,
          fmt::format("on the skewed and bimodal inputs every LayerNorm output row (one sample's {} features) has mean 0 to {:.1e} and variance 1 to {:.1e}: the same "
                      "standardization as BatchNorm's, over the other axis; and neither makes the values Gaussian (skewness of Exp(1) "
                      "features after LN {})",
                      C, ln_row_mean, ln_row_var, show(stat(cases[0].skew_ln))));
  // Two inputs: correlated features (ReLU features of images) and independent ones (Exp(1)).
  // Supported if LayerNorm lowers the mean |correlation| beyond noise on either; refuted if it
  // lowers it on neither and raises it beyond noise on one; otherwise noise.
  const Case& net = cases[2];
  const Diff dc = compare(stat(net.corr_in), stat(net.corr_ln), 0.01), di = compare(stat(sk.corr_in), stat(sk.corr_ln), 0.01);
  const bool lowers = (dc.real && dc.d > 0) || (di.real && di.d > 0), raises = (dc.real && dc.d < 0) || (di.real && di.d < 0);
  r.claim("ln_decorrelates", "LayerNorm reduces the dependence between features", "a common statement; Ba et al. 2016 make no such claim",
          lowers ? Verdict::supported : raises ? Verdict::refuted : Verdict::noise,
          fmt::format("mean |correlation| between {} first-layer ReLU features of Fashion-MNIST images: before LN {}, after LN {} "
                      "(before - after {}); between {} independent Exp(1) features: {} -> {} (before - after {}): subtracting each "
                      "sample's mean over the features couples them",
                      C, show(stat(net.corr_in)), show(stat(net.corr_ln)), dc.text(), C, show(stat(sk.corr_in)), show(stat(sk.corr_ln)),
                      di.text()));
  return r;
}

}  // namespace lab
