// Numerical edge cases of the normalization layers and the losses: zero variance, huge and
// tiny magnitudes, eps choices, very large logits, and log(0) in a loss (what happens, and
// what anomaly mode says). docs/reliability.md summarizes them.
#include <cmath>
#include <limits>
#include <string>

#include "layers/batch_norm.h"
#include "layers/layer_norm.h"
#include "tests/helpers.h"

using namespace ng;

namespace {

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

// (x - mean) / sqrt(var + eps) along the rows of a [rows, D] tensor, in long double.
std::vector<double> layer_norm_ref(const std::vector<double>& x, std::int64_t rows, std::int64_t D, double eps) {
  std::vector<double> y(x.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    long double m = 0, v = 0;
    for (std::int64_t j = 0; j < D; ++j) m += x[static_cast<std::size_t>(r * D + j)];
    m /= D;
    for (std::int64_t j = 0; j < D; ++j) {
      const long double d = x[static_cast<std::size_t>(r * D + j)] - m;
      v += d * d;
    }
    v /= D;
    for (std::int64_t j = 0; j < D; ++j)
      y[static_cast<std::size_t>(r * D + j)] =
          static_cast<double>((x[static_cast<std::size_t>(r * D + j)] - m) / std::sqrt(v + eps));
  }
  return y;
}

}  // namespace

TEST_CASE_TEMPLATE("batch_norm: constant input (zero variance) gives output = bias and finite gradients", T, float,
                   double) {
  const DType dt = dtype_of<T>();
  Tensor weight = tensor({2.0, -1.0, 0.5}, {3}, dt).requires_grad_();
  Tensor bias = tensor({0.25, 7.0, -3.0}, {3}, dt).requires_grad_();
  Tensor running_mean = zeros({3}, dt), running_var = ones({3}, dt);
  Tensor x = full({5, 3}, 4.0, dt).requires_grad_();
  Tensor y = batch_norm(x, running_mean, running_var, weight, bias, /*training=*/true);
  // var = 0: y = (x - mean) * rsqrt(0 + eps) * weight + bias = 0 * 316.2 * weight + bias
  for (std::int64_t n = 0; n < 5; ++n) test::check_values(select(y, 0, n), {0.25, 7.0, -3.0}, 1e-12);
  Tensor w = test::rnd({5, 3}, 7, false).to(dt);
  sum(mul(y, w)).backward();
  CHECK(all_finite(x.grad()));
  // dL/dbias = sum over the batch of w; dL/dweight = sum(w * xhat) = 0
  test::check_values(bias.grad(), sum(w, {0}).to_vector(), 1e-5);
  for (double v : weight.grad().to_vector()) CHECK(v == 0.0);
  // dx = weight * rstd * (w - mean_n(w)) with rstd = 1/sqrt(eps): large but finite
  const auto wv = w.to_vector(), gx = x.grad().to_vector();
  const double rstd = 1.0 / std::sqrt(1e-5), weights[3] = {2.0, -1.0, 0.5};
  for (std::size_t c = 0; c < 3; ++c) {
    double m = 0;
    for (std::size_t n = 0; n < 5; ++n) m += wv[n * 3 + c] / 5;
    for (std::size_t n = 0; n < 5; ++n)
      CHECK(gx[n * 3 + c] == doctest::Approx(weights[c] * rstd * (wv[n * 3 + c] - m)).epsilon(1e-4));
  }
  // The running statistics see the zero variance: running_var = 0.9 * 1 + 0.1 * 0.
  test::check_values(running_mean, {0.4, 0.4, 0.4}, 1e-6);
  test::check_values(running_var, {0.9, 0.9, 0.9}, 1e-6);
  // The BatchNorm1d module (float32) behaves the same.
  if constexpr (std::is_same_v<T, float>) {
    nn::BatchNorm1d bn(nn::BatchNormOptions(3));
    Tensor xm = full({4, 3}, -2.0).requires_grad_();
    Tensor ym = bn.forward(xm);
    for (double v : ym.to_vector()) CHECK(v == 0.0);  // bias defaults to 0
    sum(mul(ym, test::rnd({4, 3}, 5, false).to(dt))).backward();
    CHECK(all_finite(xm.grad()));
  }
}

TEST_CASE_TEMPLATE("layer_norm: constant rows give output = bias and finite gradients", T, float, double) {
  const DType dt = dtype_of<T>();
  Tensor weight = ones({5}, dt).requires_grad_();
  Tensor bias = tensor({1, 2, 3, 4, 5}, {5}, dt).requires_grad_();
  Tensor x = full({3, 5}, -123.0, dt).requires_grad_();
  Tensor y = layer_norm(x, {5}, weight, bias);
  for (std::int64_t r = 0; r < 3; ++r) test::check_values(select(y, 0, r), {1, 2, 3, 4, 5}, 1e-12);
  sum(mul(y, test::rnd({3, 5}, 8, false).to(dt))).backward();
  CHECK(all_finite(x.grad()));
  for (double v : weight.grad().to_vector()) CHECK(v == 0.0);
  if constexpr (std::is_same_v<T, float>) {
    nn::LayerNorm ln(nn::LayerNormOptions({5}));
    Tensor xm = full({2, 5}, 1e3).requires_grad_();
    for (double v : ln.forward(xm).to_vector()) CHECK(v == 0.0);
  }
}

TEST_CASE("layer_norm: constant rows with tiny eps (1e-12), eps = 0 and eps < 0") {
  Tensor x = full({2, 4}, 3.0, DType::f64).requires_grad_();
  Tensor y = layer_norm(x, {4}, {}, {}, 1e-12);  // rstd = 1e6, xhat = 0 exactly
  for (double v : y.to_vector()) CHECK(v == 0.0);
  sum(mul(y, test::rnd({2, 4}, 9, false))).backward();
  CHECK(all_finite(x.grad()));
  // eps = 0 on a constant row: variance 0, rstd = inf, xhat = 0 * inf = NaN (PyTorch gives NaN too).
  for (double v : layer_norm(x, {4}, {}, {}, 0.0).to_vector()) CHECK(std::isnan(v));
  CHECK_THROWS_WITH_AS(layer_norm(x, {4}, {}, {}, -1e-5),
                       doctest::Contains("layer_norm: eps must be >= 0 (it is added to the variance): got -1e-05"),
                       ValueError);
  CHECK_THROWS_WITH_AS(layer_norm(x, {4}, {}, {}, std::nan("")),
                       doctest::Contains("layer_norm: eps must be >= 0 (it is added to the variance): got nan"), ValueError);
}

TEST_CASE("layer_norm: eps from 1e-12 to 1 moves the output as (x - mean) / sqrt(var + eps)") {
  const Tensor x = test::rnd({3, 7}, 10, false);
  for (const double eps : {1e-12, 1e-5, 1e-2, 1.0}) {
    CAPTURE(eps);
    test::check_values(layer_norm(x, {7}, {}, {}, eps), layer_norm_ref(x.to_vector(), 3, 7, eps), 1e-10);
  }
}

TEST_CASE_TEMPLATE("layer_norm and batch_norm: huge (1e30) and tiny (1e-30) magnitudes", T, float, double) {
  // Inputs of scale 1e30: var ~ 1e60 overflows float32 if squared in float (it is
  // accumulated in double), and eps is negligible: the output is the normalized pattern.
  // Inputs of scale 1e-30: var ~ 1e-60 is far below eps = 1e-5, so the output is
  // (x - mean) / sqrt(eps) ~ 3e-28 -- eps dominates, as in PyTorch.
  const DType dt = dtype_of<T>();
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-10;
  const Tensor pattern = test::rnd({5, 7}, 11, false);
  for (const double scale : {1e30, 1e-30}) {
    CAPTURE(scale);
    Tensor x = mul(pattern, scale).to(dt).requires_grad_();
    Tensor y = layer_norm(x, {7});
    const auto want = layer_norm_ref(mul(pattern, scale).to(dt).to(DType::f64).to_vector(), 5, 7, 1e-5);
    const auto got = y.to_vector();
    for (std::size_t i = 0; i < got.size(); ++i)
      CHECK(got[i] == doctest::Approx(want[i]).epsilon(tol).scale(scale > 1 ? 1.0 : 1e-28));
    sum(mul(y, pattern.to(dt))).backward();
    CHECK(all_finite(x.grad()));

    // BatchNorm in training mode over the batch of 5, same story per channel.
    Tensor xb = mul(pattern, scale).to(dt).requires_grad_();
    Tensor yb = batch_norm(xb, {}, {}, {}, {}, /*training=*/true);
    CHECK(all_finite(yb));
    if (scale > 1) {
      // normalized per channel: mean 0, biased variance 1
      const Tensor m = mean(yb.to(DType::f64), {0});
      const Tensor v = var(yb.to(DType::f64), {0}, 0);
      for (double mv : m.to_vector()) CHECK(std::abs(mv) < 1e-5);
      for (double vv : v.to_vector()) CHECK(vv == doctest::Approx(1.0).epsilon(1e-4));
    }
    sum(mul(yb, pattern.to(dt))).backward();
    CHECK(all_finite(xb.grad()));
  }
}

TEST_CASE_TEMPLATE("cross_entropy and softmax: logits of 1e4 stay finite and exact", T, float, double) {
  const DType dt = dtype_of<T>();
  Tensor logits = tensor({1e4, 0.0, -1e4, 0.0, 1e4, 1e4}, {2, 3}, dt).requires_grad_();
  test::check_values(softmax(logits), {1, 0, 0, 0, 0.5, 0.5}, 1e-6);
  test::check_values(log_softmax(logits), {0, -1e4, -2e4, -1e4 - std::log(2.0), -std::log(2.0), -std::log(2.0)}, 1e-6);
  // Sample 0 picks its largest logit: loss 0. Sample 1 picks class 0, 1e4 below the max
  // (two tied): loss 1e4 + log 2.
  Tensor target = tensor({0, 0}, {2}, DType::i64);
  Tensor loss = cross_entropy(logits, target, Reduction::none);
  test::check_values(loss, {0.0, 1e4 + std::log(2.0)}, 1e-6);
  mean(loss).backward();
  // d/dlogits = (softmax - onehot) / N
  test::check_values(logits.grad(), {0, 0, 0, -0.5, 0.25, 0.25}, 1e-6);
  // With label smoothing the mean of -log p over classes (1e4-scale) stays finite too.
  CHECK(all_finite(cross_entropy(logits, target, Reduction::mean, 0.1)));
  // The stable BCE-with-logits form: logits of +-1e4 give 0 or 1e4, never inf.
  Tensor z = tensor({1e4, -1e4, 1e4}, {3}, dt);
  test::check_values(binary_cross_entropy_with_logits(z, tensor({1, 0, 0}, {3}, dt), Reduction::none),
                     {0, 0, 1e4}, 1e-6);
}

TEST_CASE("losses: log of 0 gives inf loss and inf/NaN gradients, anomaly mode names the log") {
  // A hand-written NLL on probabilities with a zero where the target is: -log(0) = inf.
  Tensor probs = tensor({1.0, 0.0, 0.0}, {1, 3}, DType::f64).requires_grad_();
  Tensor target = tensor({1}, {1}, DType::i64);
  {
    Tensor loss = nll_loss(log(probs), target);
    CHECK(loss.item() == std::numeric_limits<double>::infinity());
    loss.backward();
    // d/dp log p = g / p: -1/0 = -inf at the target, 0/0 = NaN at the other zero, 0/1 = 0.
    const auto g = probs.grad().to_vector();
    CHECK(g[0] == 0.0);
    CHECK(g[1] == -std::numeric_limits<double>::infinity());
    CHECK(std::isnan(g[2]));
    probs.zero_grad();
  }
  // A hand-written binary cross-entropy at p = 1, t = 1: (1 - t) * log(1 - p) = 0 * -inf = NaN.
  {
    Tensor p = tensor({1.0}, {1}, DType::f64).requires_grad_();
    Tensor t = tensor({1.0}, {1}, DType::f64);
    Tensor bce = neg(add(mul(t, log(p)), mul(rsub(1.0, t), log(rsub(1.0, p)))));
    CHECK(std::isnan(bce.item()));
  }
  // Anomaly mode stops at the first op that makes the non-finite value: the log.
  AnomalyModeGuard on;
  CHECK_THROWS_WITH_AS(nll_loss(log(probs), target), doctest::Contains("op 'log'"), AnomalyError);
  CHECK_THROWS_WITH_AS(nll_loss(log(probs), target), doctest::Contains("-inf in its output of shape [1, 3]"),
                       AnomalyError);
  // The stable form (log_softmax of logits) never produces the -inf.
  Tensor logits = tensor({50.0, -50.0, 0.0}, {1, 3}, DType::f64).requires_grad_();
  Tensor loss = cross_entropy(logits, target);
  CHECK_NOTHROW(loss.backward());
  CHECK(loss.item() == doctest::Approx(100.0).epsilon(1e-12));
}
