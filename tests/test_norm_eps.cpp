// eps >= 0 for every normalization (as PyTorch): what eps = 0 means, and what it does on a
// constant input. With eps = 0, xhat = (x - mean) / std is exactly standardized, and its
// Jacobian is a projection scaled by 1/std:
//   d xhat / d x = (1/std) P,   P = I - 1 1^T / n - xhat xhat^T / n,
// P symmetric and idempotent, P 1 = 0 (shift invariance) and P xhat = 0 (scale invariance,
// which eps > 0 breaks). A constant input has std = 0: 0 * inf = NaN, as in PyTorch.
#include <cmath>

#include "layers/batch_norm.h"
#include "layers/group_norm.h"
#include "layers/layer_norm.h"
#include "layers/rms_norm.h"
#include "tests/helpers.h"

using namespace ng;
using namespace ng::nn;

namespace {
// The n x n Jacobian of layer_norm(x, eps) for one row x, by reverse mode (one row per output).
std::vector<std::vector<double>> ln_jacobian(const Tensor& x, double eps) {
  const std::int64_t n = x.numel();
  std::vector<std::vector<double>> J;
  for (std::int64_t o = 0; o < n; ++o) {
    Tensor y = layer_norm(x, {n}, {}, {}, eps);
    Tensor e = zeros({n}, DType::f64);
    e.data<double>()[o] = 1.0;
    J.push_back(grad({y}, {x}, {e})[0].to_vector());
  }
  return J;
}
}  // namespace

TEST_CASE("norm eps = 0: standardized output, and the Jacobian of xhat is a projection scaled by 1/std") {
  const Tensor x = test::rnd({5}, 31);
  const auto xv = x.to_vector();
  const double n = 5;
  double mean = 0, var = 0;
  for (double v : xv) mean += v / n;
  for (double v : xv) var += (v - mean) * (v - mean) / n;
  const double sd = std::sqrt(var);
  const auto y = layer_norm(x, {5}, {}, {}, 0.0).to_vector();
  double ym = 0, yv = 0;
  for (double v : y) ym += v / n;
  for (double v : y) yv += v * v / n;
  CHECK(std::abs(ym) < 1e-15);
  CHECK(yv == doctest::Approx(1.0).epsilon(1e-14));

  const auto J = ln_jacobian(x, 0.0);
  for (std::size_t i = 0; i < 5; ++i) {
    double j1 = 0, jx = 0;
    for (std::size_t k = 0; k < 5; ++k) {
      j1 += J[i][k];
      jx += J[i][k] * y[k];
      // sd * J = P = I - 1 1^T / n - xhat xhat^T / n, entry by entry.
      CHECK(sd * J[i][k] == doctest::Approx((i == k ? 1.0 : 0.0) - 1 / n - y[i] * y[k] / n).epsilon(1e-12));
      double p2 = 0;  // (P P)[i][k] = P[i][k]
      for (std::size_t m = 0; m < 5; ++m) p2 += sd * J[i][m] * sd * J[m][k];
      CHECK(p2 == doctest::Approx(sd * J[i][k]).scale(1.0).epsilon(1e-12));
    }
    CHECK(std::abs(j1) < 1e-13);  // P 1 = 0
    CHECK(std::abs(jx) < 1e-13);  // P xhat = 0: exactly scale invariant
  }
  // With eps > 0 the scale invariance is gone: J xhat != 0.
  const auto Je = ln_jacobian(x, 0.5);
  double jx = 0;
  for (std::size_t k = 0; k < 5; ++k) jx += Je[0][k] * y[k];
  CHECK(std::abs(jx) > 1e-3);

  // First and second derivatives at eps = 0 agree with finite differences, for every norm.
  const Tensor x3 = test::rnd({3, 4, 5}, 32);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return layer_norm(v[0], {5}, {}, {}, 0.0); }, {x3}));
  CHECK_GRADCHECK(gradgradcheck([](const std::vector<Tensor>& v) { return layer_norm(v[0], {5}, {}, {}, 0.0); }, {x3}));
  CHECK_GRADCHECK(
      gradcheck([](const std::vector<Tensor>& v) { return batch_norm(v[0], {}, {}, {}, {}, true, 0.1, 0.0); }, {x3}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return group_norm(v[0], 2, {}, {}, 0.0); }, {x3}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return rms_norm(v[0], {5}, {}, 0.0); }, {x3}));
}

TEST_CASE("norm eps = 0: a constant row or channel gives NaN (0 * inf), as PyTorch, the others are unaffected") {
  // LayerNorm: row 0 constant (2.0, exact mean, variance exactly 0), row 1 not.
  LayerNorm ln(LayerNormOptions({4}).eps(0.0).dtype(DType::f64));
  const Tensor x = from_vector(std::vector<double>{2, 2, 2, 2, 1, 2, 3, 4}, {2, 4}, DType::f64);
  const auto y = ln(x).to_vector();
  for (std::size_t i = 0; i < 4; ++i) CHECK(std::isnan(y[i]));
  for (std::size_t i = 4; i < 8; ++i) CHECK(std::isfinite(y[i]));
  // BatchNorm2d in training: channel 1 constant -> NaN there only; its running_var update
  // sees the variance 0 and stays finite.
  BatchNorm2d bn(BatchNormOptions(2).eps(0.0));
  Tensor xb = randn({3, 2, 2, 2});
  {
    NoGradGuard ng;
    float* p = xb.data<float>();
    for (int nidx = 0; nidx < 3; ++nidx)
      for (int k = 0; k < 4; ++k) p[nidx * 8 + 4 + k] = -1.5f;
  }
  const auto yb = bn(xb).to_vector();
  for (int nidx = 0; nidx < 3; ++nidx)
    for (int k = 0; k < 4; ++k) {
      CHECK(std::isfinite(yb[static_cast<std::size_t>(nidx * 8 + k)]));
      CHECK(std::isnan(yb[static_cast<std::size_t>(nidx * 8 + 4 + k)]));
    }
  CHECK(bn.running_var.to_vector()[1] == doctest::Approx(0.9));
  // RMSNorm eps = 0 on an all-zero row: 0 / 0 = NaN.
  RMSNorm rms(RMSNormOptions({3}).eps(0.0));
  for (double v : rms(zeros({1, 3})).to_vector()) CHECK(std::isnan(v));
  // GroupNorm and InstanceNorm accept eps = 0 too.
  CHECK_NOTHROW(GroupNorm(GroupNormOptions(1, 2).eps(0.0)));
  CHECK_NOTHROW(InstanceNorm2d(InstanceNormOptions(2).eps(0.0)));
}
