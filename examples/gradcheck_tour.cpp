// How gradient checking works, on BatchNorm and LayerNorm (see docs/normalization.md).
//
//  1. The analytic Jacobian (the tape: ng::grad with one-hot output gradients, one row at a
//     time) next to the numeric one (central differences, one column at a time) for a tiny
//     BatchNorm and LayerNorm input in float64. Their zero patterns show which outputs
//     depend on which inputs.
//  2. Two deliberately broken backwards, written here with ng::record, caught by
//     ng::gradcheck, whose report points at the worst element.
//  3. float32 vs float64: why gradcheck refuses float32 by default.
//  4. The error of the finite-difference estimate against the step eps (1e-1 .. 1e-12):
//     truncation error ~ eps^2 on the right, round-off ~ u / eps on the left (u = unit
//     round-off of the dtype), a V on log-log axes. Written to gradcheck_eps.csv and drawn
//     in gradcheck_eps.svg.
#include <fmt/core.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "demo/svg.h"

using namespace ng;

namespace {

using Fn = std::function<Tensor(const Tensor&)>;
using Matrix = std::vector<std::vector<double>>;  // J[o][j] = d y[o] / d x[j]

// Analytic Jacobian: row o is the gradient of y[o], i.e. a vector-Jacobian product with the
// one-hot vector e_o (what a backward pass computes), obtained with ng::grad.
Matrix analytic_jacobian(const Fn& f, const Tensor& x) {
  const Tensor y = f(x);
  const std::int64_t m = y.numel();
  Matrix J;
  for (std::int64_t o = 0; o < m; ++o) {
    Tensor e = zeros(y.shape(), y.dtype());
    if (y.dtype() == DType::f64) e.data<double>()[o] = 1.0;
    else e.data<float>()[o] = 1.0f;
    // retain_graph: the same recorded forward serves every row.
    J.push_back(grad({y}, {x}, {e}, BackwardOptions{.retain_graph = true})[0].to_vector());
  }
  return J;
}

// Numeric Jacobian: column j is (f(x + h e_j) - f(x - h e_j)) / 2h. The perturbation is
// made in x's own dtype (so in float32, x + h is rounded to float32 first).
template <class T>
Matrix numeric_jacobian(const Fn& f, const Tensor& x, double h) {
  NoGradGuard no_grad;  // plain evaluations, nothing to record
  T* xd = x.data<T>();
  const std::int64_t n = x.numel();
  Matrix J;
  for (std::int64_t j = 0; j < n; ++j) {
    const T saved = xd[j];
    xd[j] = static_cast<T>(static_cast<double>(saved) + h);
    const auto plus = f(x).to_vector();
    xd[j] = static_cast<T>(static_cast<double>(saved) - h);
    const auto minus = f(x).to_vector();
    xd[j] = saved;
    if (J.empty()) J.assign(plus.size(), std::vector<double>(static_cast<std::size_t>(n)));
    for (std::size_t o = 0; o < plus.size(); ++o) J[o][static_cast<std::size_t>(j)] = (plus[o] - minus[o]) / (2 * h);
  }
  return J;
}

double max_abs_diff(const Matrix& a, const Matrix& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = 0; j < a[i].size(); ++j) m = std::max(m, std::abs(a[i][j] - b[i][j]));
  return m;
}

// "x[1,0]" for flat index k of a [rows, cols] tensor.
std::string name(const char* v, std::size_t k, std::size_t cols) { return fmt::format("{}[{},{}]", v, k / cols, k % cols); }

void print_side_by_side(const Matrix& A, const Matrix& N, std::size_t cols) {
  const std::size_t n = A[0].size();
  std::string head = fmt::format("{:>8} |", "");
  for (std::size_t j = 0; j < n; ++j) head += fmt::format("{:>8}", name("x", j, cols));
  head += "   |";
  for (std::size_t j = 0; j < n; ++j) head += fmt::format("{:>8}", name("x", j, cols));
  fmt::print("{:>8} | {:<{}}   | {}\n{}\n", "", "analytic (ng::grad, row by row)", 8 * n - 1,
             "numeric (central differences, h = 1e-6)", head);
  for (std::size_t o = 0; o < A.size(); ++o) {
    std::string line = fmt::format("{:>8} |", name("y", o, cols));
    for (double v : A[o]) line += fmt::format("{:8.4f}", v);
    line += "   |";
    for (double v : N[o]) line += fmt::format("{:8.4f}", v);
    fmt::print("{}\n", line);
  }
  fmt::print("max |analytic - numeric| = {:.2e}\n", max_abs_diff(A, N));
}

// ---- two deliberately broken ops -------------------------------------------------------------

// softsign(x) = x / (1 + |x|), d/dx = 1 / (1 + |x|)^2. The backward below forgets the abs:
// it uses 1 / (1 + x)^2, which is right for x >= 0 and wrong for every negative x.
Tensor broken_softsign(const Tensor& x) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = x / (1.0 + abs(x));
  }
  return record("broken_softsign", {x}, y, [x](BackwardContext&, const Tensor& dy) -> Grads {
    const Tensor one_plus_x = 1.0 + x;  // BUG: should be 1 + |x|
    return {dy / (one_plus_x * one_plus_x)};
  });
}

// LayerNorm over the last axis of a [rows, D] input whose backward keeps only two of the
// three terms of dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat)): it forgets that the
// variance depends on x too (the most common mistake when deriving it by hand).
Tensor broken_layer_norm(const Tensor& x) {
  const std::int64_t D = x.size(1);
  Tensor y;
  {
    NoGradGuard no_grad;
    y = layer_norm(x, Shape{D});
  }
  return record("broken_layer_norm", {x}, y, [x](BackwardContext&, const Tensor& dy) -> Grads {
    const Tensor xc = x - mean(x, {1}, true);
    const Tensor rstd = rsqrt(mean(xc * xc, {1}, true) + 1e-5);
    return {rstd * (dy - mean(dy, {1}, true))};  // BUG: missing "- xhat * mean(dy * xhat)"
  });
}

}  // namespace

int main() {
  // Values that are exact in float32 too, so the float32 and float64 runs see the same x.
  const std::vector<double> xv = {0.5, -1.25, 2.0, 0.375, -0.75, 1.5};

  // ---- 1. Jacobians side by side -------------------------------------------------------------
  fmt::print("== 1. BatchNorm (training), x: [N=3, C=2], no affine ==\n");
  fmt::print("Each channel is normalized over the 3 samples, so y[n,c] depends on x[m,c] for every m\n"
             "(the batch couples the samples) and never on the other channel: zeros at c != c'.\n\n");
  const Fn bn = [](const Tensor& x) { return batch_norm(x, {}, {}, {}, {}, /*training=*/true); };
  Tensor xb = from_vector(xv, {3, 2}, DType::f64).requires_grad_();
  print_side_by_side(analytic_jacobian(bn, xb), numeric_jacobian<double>(bn, xb, 1e-6), 2);

  fmt::print("\n== LayerNorm, x: [rows=2, D=3], no affine ==\n");
  fmt::print("Each row is normalized over its own 3 features: block diagonal, no coupling between rows.\n"
             "Every row of the Jacobian sums to zero (y does not change when x[r,:] shifts by a constant),\n"
             "which is why sum(layer_norm(x)) has zero gradient.\n\n");
  const Fn ln = [](const Tensor& x) { return layer_norm(x, Shape{3}); };
  Tensor xl = from_vector(xv, {2, 3}, DType::f64).requires_grad_();
  const Matrix Jl = analytic_jacobian(ln, xl);
  print_side_by_side(Jl, numeric_jacobian<double>(ln, xl, 1e-6), 3);

  // ---- 2. a broken backward is caught --------------------------------------------------------
  fmt::print("\n== 2. Broken backwards, caught by ng::gradcheck ==\n");
  fmt::print("broken_softsign: the backward uses 1/(1+x)^2 instead of 1/(1+|x|)^2.\n"
             "Input x = [[0.5, -1.25, 2], [0.375, -0.75, 1.5]]; only the negative entries are wrong, and the\n"
             "report names the worst one (the diagonal entry of x[0,1] = -1.25, where 1+x is smallest):\n");
  Tensor xs = from_vector(xv, {2, 3}, DType::f64).requires_grad_();
  const auto rep_softsign = gradcheck([](const std::vector<Tensor>& in) { return broken_softsign(in[0]); }, {xs});
  fmt::print("{}", rep_softsign);
  fmt::print("\nbroken_layer_norm: the backward forgets the path through the variance:\n");
  const auto rep_ln = gradcheck([](const std::vector<Tensor>& in) { return broken_layer_norm(in[0]); }, {xl});
  fmt::print("{}", rep_ln);
  fmt::print("The library's fused layer_norm on the same input:\n");
  const auto rep_ok = gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], Shape{3}); }, {xl});
  fmt::print("{}", rep_ok);

  // ---- 3. float32 vs float64 -----------------------------------------------------------------
  fmt::print("\n== 3. float32 vs float64 ==\n");
  const auto ln_fn = [](const std::vector<Tensor>& in) { return layer_norm(in[0], Shape{3}); };
  Tensor x32 = from_vector(xv, {2, 3}, DType::f32).requires_grad_();
  fmt::print("gradcheck on a float32 input, default options:\n{}", gradcheck(ln_fn, {x32}));
  fmt::print("\nThe same with allow_float32. eps = 1e-6 is only a few float32 steps (ulps) of x: x + eps is rounded,\n"
             "and the difference of two float32 outputs keeps about one correct digit:\n{}",
             gradcheck(ln_fn, {x32}, {.allow_float32 = true}));
  fmt::print("\nfloat32 with a step and tolerances chosen for float32 (eps = 1e-3, atol = rtol = 1e-2):\n{}",
             gradcheck(ln_fn, {x32}, {.eps = 1e-3, .atol = 1e-2, .rtol = 1e-2, .allow_float32 = true}));
  fmt::print("\nfloat64, default options:\n{}", gradcheck(ln_fn, {xl}));

  // ---- 4. error against the step -------------------------------------------------------------
  fmt::print("\n== 4. Finite-difference error against the step eps (LayerNorm above, max over the Jacobian) ==\n");
  fmt::print("right side: truncation error of central differences, ~ eps^2 |f'''| / 6\n"
             "left side:  round-off, ~ u |f| / eps with u = 1.1e-16 (float64) or 6e-8 (float32)\n"
             "the best step balances the two: near u^(1/3), ~5e-6 in float64 and ~4e-3 in float32\n"
             "(below ~1e-8, x + eps rounds back to x in float32: the numeric derivative is 0 and the error is |J|)\n\n");
  std::vector<double> steps, err64, err32;
  for (int k = 2; k <= 24; ++k) steps.push_back(std::pow(10.0, -k / 2.0));  // 1e-1, 10^-1.5, ..., 1e-12
  std::FILE* csv = std::fopen("gradcheck_eps.csv", "w");
  if (csv) fmt::print(csv, "eps,error_float64,error_float32\n");
  fmt::print("{:>10}  {:>12}  {:>12}\n", "eps", "float64", "float32");
  for (double h : steps) {
    err64.push_back(max_abs_diff(numeric_jacobian<double>(ln, xl, h), Jl));
    err32.push_back(max_abs_diff(numeric_jacobian<float>(ln, x32, h), Jl));  // same x, exact truth in float64
    fmt::print("{:>10.1e}  {:>12.3e}  {:>12.3e}\n", h, err64.back(), err32.back());
    if (csv) fmt::print(csv, "{:.3e},{:.6e},{:.6e}\n", h, err64.back(), err32.back());
  }
  if (csv) std::fclose(csv);

  svg::Plot plot;
  plot.title = "Central differences on LayerNorm: error vs step";
  plot.x = {.label = "step eps", .log = true};
  plot.y = {.label = "max |numeric - analytic| over the Jacobian", .log = true};
  plot.series.push_back({.label = "float64", .x = steps, .y = err64});
  plot.series.push_back({.label = "float32", .x = steps, .y = err32});
  const bool saved = plot.save("gradcheck_eps.svg");
  fmt::print("\nWrote gradcheck_eps.csv{}\n", saved ? " and gradcheck_eps.svg" : " (could not write gradcheck_eps.svg)");

  // The tour itself must hold: the correct op passes, the broken ones fail.
  return rep_ok.passed && !rep_softsign.passed && !rep_ln.passed ? 0 : 1;
}
