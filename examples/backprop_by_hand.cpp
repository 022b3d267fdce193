// BatchNorm's backward, one step of the chain rule at a time (see docs/normalization.md).
//
// For a small input x [N=4, C=2] in training mode, this program runs the forward pass as
// in Ioffe & Szegedy 2015, Algorithm 1, then the backward equations of their Section 3
// (dxhat, dvar, dmean, dx, dgamma, dbeta) with every intermediate printed, then the compact
// form normgrad's kernels use (autograd/ops/norm_plain.cpp), and compares both with the
// library's backward (ng::batch_norm + ng::grad; on an (N, C) input that is column_backward in
// autograd/ops/norm_columns.cpp).
//
// Then LayerNorm, where gamma differs along the elements of a statistic (one weight per
// feature): dxhat = gamma * dy must go INSIDE the two means. The BatchNorm habit of taking
// gamma out, dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)), is printed too: it is
// wrong for LayerNorm, and the program shows by how much. The library's LayerNorm backward is
// row_backward (autograd/ops/norm_rows.cpp, E = 1 rows).
// Exits with status 1 if the correct forms differ from the library by more than 1e-10.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/ops.h"

using namespace ng;

namespace {

constexpr int N = 4, C = 2;
constexpr double kEps = 1e-5;  // the eps of ng::batch_norm's default
using Grid = std::vector<std::vector<double>>;  // [N][C]

void print_grid(const char* title, const Grid& g) {
  fmt::print("{}\n", title);
  for (int i = 0; i < N; ++i) fmt::print("   i={}  {:>12.6f} {:>12.6f}\n", i, g[i][0], g[i][1]);
}
void print_row(const char* title, const std::vector<double>& v) {
  fmt::print("{:<50} {:>12.6f} {:>12.6f}\n", title, v[0], v[1]);
}
Grid to_grid(const Tensor& t) {
  const auto v = t.to_vector();
  Grid g(N, std::vector<double>(C));
  for (int i = 0; i < N; ++i)
    for (int c = 0; c < C; ++c) g[i][c] = v[static_cast<std::size_t>(i * C + c)];
  return g;
}
double max_abs_diff(const Grid& a, const Grid& b) {
  double m = 0;
  for (int i = 0; i < N; ++i)
    for (int c = 0; c < C; ++c) m = std::max(m, std::abs(a[i][c] - b[i][c]));
  return m;
}
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (std::size_t c = 0; c < a.size(); ++c) m = std::max(m, std::abs(a[c] - b[c]));
  return m;
}

// LayerNorm over the D features of each of R rows, gamma and beta per feature: the compact
// backward with gamma inside the means, the "gamma outside" mistake, and the library.
// Returns the largest difference between the correct forms and ng::layer_norm's backward.
double layer_norm_by_hand() {
  constexpr int R = 2, D = 4;
  const double x[R][D] = {{1.0, -2.0, 0.5, 3.0}, {0.2, 0.4, -1.0, 2.5}};
  const double dy[R][D] = {{0.3, -0.1, 0.8, -0.4}, {-0.7, 0.4, 0.2, 0.9}};
  const double gamma[D] = {1.5, -0.5, 2.0, 0.25}, beta[D] = {0.1, 0.2, -0.3, 0.0};
  fmt::print("\n==== LayerNorm over D={} features of R={} rows: gamma differs along each statistic ====\n", D, R);
  double dx[R][D], dx_outside[R][D], y[R][D], dgamma[D] = {}, dbeta[D] = {};
  for (int r = 0; r < R; ++r) {
    double mu = 0, var = 0;
    for (int d = 0; d < D; ++d) mu += x[r][d] / D;
    for (int d = 0; d < D; ++d) var += (x[r][d] - mu) * (x[r][d] - mu) / D;
    const double rstd = 1.0 / std::sqrt(var + kEps);
    double xhat[D], dxhat[D], mean_dxhat = 0, mean_dxhat_xhat = 0, mean_dy = 0, mean_dy_xhat = 0;
    for (int d = 0; d < D; ++d) {
      xhat[d] = (x[r][d] - mu) * rstd;
      y[r][d] = gamma[d] * xhat[d] + beta[d];
      dxhat[d] = dy[r][d] * gamma[d];  // gamma_d: a different weight for every element of the row
      mean_dxhat += dxhat[d] / D;
      mean_dxhat_xhat += dxhat[d] * xhat[d] / D;
      mean_dy += dy[r][d] / D;
      mean_dy_xhat += dy[r][d] * xhat[d] / D;
      dgamma[d] += dy[r][d] * xhat[d];  // the parameter sums run over the rows
      dbeta[d] += dy[r][d];
    }
    for (int d = 0; d < D; ++d) {
      dx[r][d] = rstd * (dxhat[d] - mean_dxhat - xhat[d] * mean_dxhat_xhat);                     // gamma inside
      dx_outside[r][d] = gamma[d] * rstd * (dy[r][d] - mean_dy - xhat[d] * mean_dy_xhat);  // BatchNorm's shortcut
    }
    fmt::print("row {}: mean(dxhat) = {:+.6f} (gamma inside)   gamma_d * mean(dy) = {:+.6f} .. {:+.6f} (gamma outside)\n", r,
               mean_dxhat, gamma[0] * mean_dy, gamma[D - 1] * mean_dy);
  }
  std::vector<double> xv, dyv;
  for (int r = 0; r < R; ++r)
    for (int d = 0; d < D; ++d) xv.push_back(x[r][d]), dyv.push_back(dy[r][d]);
  Tensor xt = from_vector(xv, {R, D}, DType::f64).requires_grad_();
  Tensor gt = from_vector(std::vector<double>(gamma, gamma + D), {D}, DType::f64).requires_grad_();
  Tensor bt = from_vector(std::vector<double>(beta, beta + D), {D}, DType::f64).requires_grad_();
  const Tensor yt = layer_norm(xt, {D}, gt, bt, kEps);
  const auto g = grad({yt}, {xt, gt, bt}, {from_vector(dyv, {R, D}, DType::f64)});
  const auto dx_lib = g[0].to_vector(), y_lib = yt.to_vector(), dg_lib = g[1].to_vector(), db_lib = g[2].to_vector();
  double err = 0, err_outside = 0;
  fmt::print("{:<6} {:>12} {:>14} {:>16}\n", "(r,d)", "dx inside", "dx library", "dx outside");
  for (int r = 0; r < R; ++r)
    for (int d = 0; d < D; ++d) {
      const auto i = static_cast<std::size_t>(r * D + d);
      fmt::print("({},{})  {:>12.6f} {:>14.6f} {:>16.6f}\n", r, d, dx[r][d], dx_lib[i], dx_outside[r][d]);
      err = std::max({err, std::abs(dx[r][d] - dx_lib[i]), std::abs(y[r][d] - y_lib[i])});
      err_outside = std::max(err_outside, std::abs(dx_outside[r][d] - dx_lib[i]));
    }
  for (int d = 0; d < D; ++d)
    err = std::max({err, std::abs(dgamma[d] - dg_lib[static_cast<std::size_t>(d)]),
                    std::abs(dbeta[d] - db_lib[static_cast<std::size_t>(d)])});
  fmt::print("max |gamma inside - library|  = {:.3e}   (ng::layer_norm's backward: row_backward)\n", err);
  fmt::print("max |gamma outside - library| = {:.3e}   (wrong: gamma varies along the row)\n", err_outside);
  return err;
}

}  // namespace

int main() {
  // Input (rows = samples i, columns = channels c), affine parameters, and the gradient dy
  // arriving from the layers above (any values; here as if from some loss).
  const Grid x = {{1.0, -2.0}, {3.0, 0.5}, {-1.0, 1.5}, {2.0, 4.0}};
  const std::vector<double> gamma = {1.5, -0.5}, beta = {0.1, 0.2};
  const Grid dy = {{0.3, -0.1}, {-0.7, 0.4}, {0.2, 0.9}, {0.5, -0.6}};
  const double m = N;  // values behind each statistic (N * spatial size; no spatial axes here)

  fmt::print("BatchNorm in training mode, x: [N={}, C={}], eps = {:g}; every column is one channel.\n\n", N, C, kEps);
  print_grid("x", x);
  print_row("gamma", gamma);
  print_row("beta", beta);

  // ---- forward: Ioffe & Szegedy, Algorithm 1 -------------------------------------------------
  fmt::print("\n-- forward --\n");
  std::vector<double> mu(C, 0.0), var(C, 0.0), rstd(C);
  Grid xhat(N, std::vector<double>(C)), y = xhat;
  for (int c = 0; c < C; ++c) {
    for (int i = 0; i < N; ++i) mu[c] += x[i][c] / m;                                       // mu = 1/m sum x_i
    for (int i = 0; i < N; ++i) var[c] += (x[i][c] - mu[c]) * (x[i][c] - mu[c]) / m;     // biased variance
    rstd[c] = 1.0 / std::sqrt(var[c] + kEps);
    for (int i = 0; i < N; ++i) {
      xhat[i][c] = (x[i][c] - mu[c]) * rstd[c];  // xhat_i = (x_i - mu) / sqrt(var + eps)
      y[i][c] = gamma[c] * xhat[i][c] + beta[c];  // y_i = gamma xhat_i + beta
    }
  }
  print_row("mu = mean_i x_i", mu);
  print_row("var = mean_i (x_i - mu)^2   (biased)", var);
  print_row("rstd = 1 / sqrt(var + eps)", rstd);
  print_grid("xhat = (x - mu) * rstd", xhat);
  print_grid("y = gamma * xhat + beta", y);
  print_grid("\ndy (given)", dy);

  // ---- backward: the chain rule through xhat, var and mu (Ioffe & Szegedy, Section 3) ----------
  fmt::print("\n-- backward, step by step --\n");
  Grid dxhat(N, std::vector<double>(C)), dx = dxhat;
  std::vector<double> dvar(C, 0.0), dmu(C, 0.0), dgamma(C, 0.0), dbeta(C, 0.0);
  for (int c = 0; c < C; ++c) {
    // dL/dxhat_i = dL/dy_i * gamma
    for (int i = 0; i < N; ++i) dxhat[i][c] = dy[i][c] * gamma[c];
    // dL/dvar = sum_i dxhat_i * (x_i - mu) * (-1/2) (var + eps)^(-3/2)
    for (int i = 0; i < N; ++i) dvar[c] += dxhat[i][c] * (x[i][c] - mu[c]) * -0.5 * std::pow(var[c] + kEps, -1.5);
    // dL/dmu = sum_i dxhat_i * (-1 / sqrt(var + eps)) + dvar * sum_i (-2 (x_i - mu)) / m
    //          (the second sum is zero in exact arithmetic: deviations from the mean sum to 0)
    double sum_dev = 0.0;
    for (int i = 0; i < N; ++i) {
      dmu[c] += -dxhat[i][c] * rstd[c];
      sum_dev += -2.0 * (x[i][c] - mu[c]);
    }
    dmu[c] += dvar[c] * sum_dev / m;
    // dL/dx_i = dxhat_i / sqrt(var + eps) + dvar * 2 (x_i - mu) / m + dmu / m
    //           (direct path)             (through var)              (through mu)
    for (int i = 0; i < N; ++i) dx[i][c] = dxhat[i][c] * rstd[c] + dvar[c] * 2.0 * (x[i][c] - mu[c]) / m + dmu[c] / m;
    // dL/dgamma = sum_i dy_i xhat_i,   dL/dbeta = sum_i dy_i
    for (int i = 0; i < N; ++i) {
      dgamma[c] += dy[i][c] * xhat[i][c];
      dbeta[c] += dy[i][c];
    }
  }
  print_grid("dxhat = dy * gamma", dxhat);
  print_row("dvar = sum dxhat (x - mu) (-1/2) (var+eps)^-3/2", dvar);
  print_row("dmu = -rstd sum dxhat + dvar sum(-2(x - mu))/m", dmu);
  print_grid("dx = dxhat * rstd + dvar * 2 (x - mu) / m + dmu / m", dx);
  print_row("dgamma = sum dy * xhat", dgamma);
  print_row("dbeta = sum dy", dbeta);

  // ---- the compact form (what the kernels compute, autograd/ops/norm_plain.cpp) ------------
  // Substituting dvar and dmu into dx and using (x_i - mu) = xhat_i / rstd:
  //   dx_i = rstd * (dxhat_i - mean_j dxhat_j - xhat_i * mean_j (dxhat_j xhat_j))
  fmt::print("\n-- backward, compact form: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) --\n");
  Grid dx_compact(N, std::vector<double>(C));
  std::vector<double> mean_dxhat(C, 0.0), mean_dxhat_xhat(C, 0.0);
  for (int c = 0; c < C; ++c) {
    for (int i = 0; i < N; ++i) {
      mean_dxhat[c] += dxhat[i][c] / m;
      mean_dxhat_xhat[c] += dxhat[i][c] * xhat[i][c] / m;
    }
    for (int i = 0; i < N; ++i)
      dx_compact[i][c] = rstd[c] * (dxhat[i][c] - mean_dxhat[c] - xhat[i][c] * mean_dxhat_xhat[c]);
  }
  print_row("mean(dxhat)        (the path through mu)", mean_dxhat);
  print_row("mean(dxhat * xhat) (the path through var)", mean_dxhat_xhat);
  print_grid("dx (compact)", dx_compact);

  // ---- the library ------------------------------------------------------------------------------
  fmt::print("\n-- the library: ng::batch_norm(training) + ng::grad --\n");
  std::vector<double> xv, dyv;
  for (int i = 0; i < N; ++i)
    for (int c = 0; c < C; ++c) xv.push_back(x[i][c]), dyv.push_back(dy[i][c]);
  Tensor xt = from_vector(xv, {N, C}, DType::f64).requires_grad_();
  Tensor gt = from_vector(gamma, {C}, DType::f64).requires_grad_();
  Tensor bt = from_vector(beta, {C}, DType::f64).requires_grad_();
  const Tensor yt = batch_norm(xt, {}, {}, gt, bt, /*training=*/true, 0.1, kEps);
  const auto g = grad({yt}, {xt, gt, bt}, {from_vector(dyv, {N, C}, DType::f64)});
  const Grid dx_lib = to_grid(g[0]);
  print_grid("dx (library: ng::batch_norm's backward, column_backward for (N, C))", dx_lib);
  print_row("dgamma (library)", g[1].to_vector());
  print_row("dbeta (library)", g[2].to_vector());

  const double err_y = max_abs_diff(to_grid(yt), y);
  const double err_step = max_abs_diff(dx, dx_lib), err_compact = max_abs_diff(dx_compact, dx_lib);
  const double err_params = std::max(max_abs_diff(dgamma, g[1].to_vector()), max_abs_diff(dbeta, g[2].to_vector()));
  fmt::print("\nmax |y by hand - y library|                 = {:.3e}\n", err_y);
  fmt::print("max |dx step by step - dx library|          = {:.3e}\n", err_step);
  fmt::print("max |dx compact - dx library|               = {:.3e}\n", err_compact);
  fmt::print("max |dgamma, dbeta by hand - library|       = {:.3e}\n", err_params);

  // Two facts visible in the numbers: per channel, dx sums to zero and is orthogonal to xhat
  // up to eps (the Jacobian projects out the directions of 1 and xhat; exactly when eps = 0).
  for (int c = 0; c < C; ++c) {
    double s = 0, sx = 0;
    for (int i = 0; i < N; ++i) s += dx[i][c], sx += dx[i][c] * xhat[i][c];
    fmt::print("channel {}: sum_i dx_i = {:+.1e}, sum_i dx_i * xhat_i = {:+.1e}\n", c, s, sx);
  }

  const double err_layer_norm = layer_norm_by_hand();
  const double worst = std::max({err_y, err_step, err_compact, err_params, err_layer_norm});
  if (!(worst <= 1e-10)) {
    fmt::print("MISMATCH: {:.3e} > 1e-10\n", worst);
    return 1;
  }
  fmt::print("OK: BatchNorm's step-by-step, compact and library backwards agree, and LayerNorm's with gamma inside "
             "the means (max difference {:.1e} <= 1e-10)\n", worst);
  return 0;
}
