// The plain kernel: normalization forward and backward as the math says them, in double, with
// one loop nest over the five axes [A, R, G, K, E] and no tricks. This file is the definition;
// the fast kernels (norm_moments.cpp, norm_rows.cpp, norm_columns.cpp) compute the same numbers
// faster, and tests/test_norm_kernels.cpp holds each of them against this one.
//
// The terms are named as in docs/normalization.md, section 3: for one statistic s with n
// elements x_i,
//   forward    mean = (1/n) sum x_i,  var = (1/n) sum (x_i - mean)^2,  rstd = 1 / sqrt(var + eps),
//              xhat_i = (x_i - mean) * rstd,  y_i = xhat_i * weight_c + bias_c
//   backward   dxhat_i = dy_i * weight_c
//              dx_i = rstd * (dxhat_i - mean(dxhat) - xhat_i * mean(dxhat * xhat))
//                             direct    via the mean   via the variance
//              dweight_c = sum dy * xhat,  dbias_c = sum dy  (over every element of channel c)
// RMSNorm (subtract_mean false): mean = 0 and no "via the mean" term. Given statistics
// (eval-mode BatchNorm): mean and var are constants, so both correction terms are 0.
#include <cassert>
#include <cmath>
#include <vector>

#include "autograd/ops/norm_kernels.h"

namespace ng::norm_kernels {

namespace {

// Calls f(i, s, c) for every element i of x, with its statistic s = r * G + g and its channel
// c = g * K + k. The index of x[a, r, g, k, e] is ((((a * R + r) * G + g) * K + k) * E + e).
template <class F>
void for_each_element(const NormSpec& sp, F&& f) {
  std::int64_t i = 0;
  for (std::int64_t a = 0; a < sp.A; ++a)
    for (std::int64_t r = 0; r < sp.R; ++r)
      for (std::int64_t g = 0; g < sp.G; ++g)
        for (std::int64_t k = 0; k < sp.K; ++k)
          for (std::int64_t e = 0; e < sp.E; ++e, ++i) f(i, r * sp.G + g, g * sp.K + k);
}

double weight_of(const double* weight, std::int64_t c) { return weight ? weight[c] : 1.0; }

}  // namespace

void plain_forward(const double* x, const NormSpec& sp, const double* weight, const double* bias, double eps,
                   bool batch_stats, double* mean, double* var, double* rstd, double* y) {
  assert(eps >= 0.0 && sp.count() > 0);
  const auto S = static_cast<std::size_t>(sp.num_stats());
  const double n = static_cast<double>(sp.count());
  if (batch_stats) {
    // mean = (1/n) sum x  (RMSNorm: 0)
    std::vector<double> sum(S, 0.0);
    for_each_element(sp, [&](std::int64_t i, std::int64_t s, std::int64_t) { sum[s] += x[i]; });
    for (std::size_t s = 0; s < S; ++s) mean[s] = sp.subtract_mean ? sum[s] / n : 0.0;
    // var = (1/n) sum (x - mean)^2, the biased variance (second pass: no cancellation)
    std::vector<double> m2(S, 0.0);
    for_each_element(sp, [&](std::int64_t i, std::int64_t s, std::int64_t) { m2[s] += (x[i] - mean[s]) * (x[i] - mean[s]); });
    for (std::size_t s = 0; s < S; ++s) var[s] = m2[s] / n;
  }
  for (std::size_t s = 0; s < S; ++s) rstd[s] = 1.0 / std::sqrt(var[s] + eps);  // eps inside the root
  // y = xhat * weight + bias
  for_each_element(sp, [&](std::int64_t i, std::int64_t s, std::int64_t c) {
    const double xh = xhat(x[i], mean[s], rstd[s]);
    y[i] = xh * weight_of(weight, c) + (bias ? bias[c] : 0.0);
  });
}

void plain_backward(const double* x, const double* dy, const NormSpec& sp, const double* mean, const double* rstd,
                    const double* weight, bool batch_stats, double* dx, double* dweight, double* dbias) {
  const auto S = static_cast<std::size_t>(sp.num_stats());
  const auto C = static_cast<std::size_t>(sp.num_channels());
  const double n = static_cast<double>(sp.count());
  // Step 0, the affine parameters: dweight = sum dy * xhat, dbias = sum dy per channel.
  if (dweight) std::fill(dweight, dweight + C, 0.0);
  if (dbias) std::fill(dbias, dbias + C, 0.0);
  // Step 1, into the normalized value: dxhat = dy * weight. Steps 2 and 3 need two reductions
  // per statistic: dL/dvar = -(rstd^2 / 2) * sum(dxhat * xhat) and dL/dmu = -rstd * sum(dxhat).
  std::vector<double> sum_dxhat(S, 0.0), sum_dxhat_xhat(S, 0.0);
  for_each_element(sp, [&](std::int64_t i, std::int64_t s, std::int64_t c) {
    const double xh = xhat(x[i], mean[s], rstd[s]);
    const double dxhat = dy[i] * weight_of(weight, c);
    sum_dxhat[s] += dxhat;
    sum_dxhat_xhat[s] += dxhat * xh;
    if (dweight) dweight[c] += dy[i] * xh;
    if (dbias) dbias[c] += dy[i];
  });
  if (!dx) return;
  // Step 4 in its compact form (step 5) needs them as two means: mean(dxhat) ("via the mean",
  // dL/dmu / n = -rstd * mean(dxhat)) and mean(dxhat * xhat) ("via the variance"). Both are 0
  // when the statistics are given (they do not depend on x); RMSNorm has no mean term.
  std::vector<double> mean_dxhat(S, 0.0), mean_dxhat_xhat(S, 0.0);
  for (std::size_t s = 0; s < S; ++s) {
    if (batch_stats && sp.subtract_mean) mean_dxhat[s] = sum_dxhat[s] / n;
    if (batch_stats) mean_dxhat_xhat[s] = sum_dxhat_xhat[s] / n;
  }
  // Step 5: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
  for_each_element(sp, [&](std::int64_t i, std::int64_t s, std::int64_t c) {
    const double xh = xhat(x[i], mean[s], rstd[s]);
    const double dxhat = dy[i] * weight_of(weight, c);
    dx[i] = norm_kernels::dx(rstd[s], dxhat, xh, mean_dxhat[s], mean_dxhat_xhat[s]);
  });
}

}  // namespace ng::norm_kernels
