// BatchNorm as a graph of primitive ops, backpropagated node by node and drawn.
//
// The forward pass is the staged graph of Kratzert's "Understanding the backward pass through
// Batch Normalization Layer" (2016) and of makemore part 4 (Karpathy, "Becoming a Backprop
// Ninja"), built from ng::mean, sub, mul, sqrt, ... as ng::reference::batch_norm does:
//
//   1 mu = mean_n x          4 var = mean_n sq          7 xhat = xmu * ivar
//   2 xmu = x - mu           5 sqrtvar = sqrt(var+eps)  8 gammax = gamma * xhat
//   3 sq = xmu^2             6 ivar = 1 / sqrtvar       9 out = gammax + beta
//   loss = sum(out * dout)   (dout: a fixed random upstream gradient; sum(out) alone would
//                             give dx = 0, see docs/normalization.md)
//
// Then the backward by hand, one node at a time from loss to x, each local derivative in one
// line; every node's gradient is printed with its value and checked against what autograd
// (ng::grad w.r.t. that node) gives. Last, x's, gamma's and beta's gradients are checked
// against the library's fused op, ng::batch_norm, whose backward for an (N, C) input runs the
// column kernels (autograd/ops/norm_columns.cpp: column_backward). The graph, each node with its
// value summary and gradient (as micrograd's draw_dot), goes to batchnorm_graph.dot and, when
// Graphviz is installed, batchnorm_graph.svg. Exits with status 1 on any mismatch above 1e-10.
#include <fmt/core.h>

#include <cmath>
#include <vector>

#include "autograd/graphviz.h"
#include "autograd/ops.h"
#include "autograd/random.h"

using namespace ng;

namespace {

constexpr double kEps = 1e-5;

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto va = a.to_vector(), vb = b.to_vector();
  double m = 0;
  for (std::size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m;
}

}  // namespace

int main() {
  const std::int64_t N = 4, C = 3;
  Generator gen(4);
  const DType f64 = DType::f64;
  Tensor x = randn({N, C}, f64, &gen).requires_grad_();
  Tensor gamma = add(mul(randn({C}, f64, &gen), 0.5), 1.0).detach().requires_grad_();
  Tensor beta = mul(randn({C}, f64, &gen), 0.5).detach().requires_grad_();
  const Tensor dout = randn({N, C}, f64, &gen);  // the gradient arriving from above

  // ---- forward, staged (every intermediate is a node of the tape) ------------------------------
  Tensor mu = mean(x, {0}, true);              // 1  [1, C]
  Tensor xmu = sub(x, mu);                     // 2  [N, C]
  Tensor sq = mul(xmu, xmu);                   // 3
  Tensor var = mean(sq, {0}, true);            // 4  [1, C], biased
  Tensor sqrtvar = sqrt(add(var, kEps));       // 5
  Tensor ivar = rdiv(1.0, sqrtvar);           // 6
  Tensor xhat = mul(xmu, ivar);                // 7  [N, C]
  Tensor gammax = mul(gamma, xhat);            // 8
  Tensor out = add(gammax, beta);              // 9
  Tensor loss = sum(mul(out, dout));

  // ---- the gradient of every node from autograd (ng::grad w.r.t. intermediate tensors) ---------
  const std::vector<std::pair<const char*, Tensor>> graph_nodes = {
      {"out", out}, {"beta", beta}, {"gammax", gammax}, {"gamma", gamma}, {"xhat", xhat},   {"ivar", ivar},
      {"sqrtvar", sqrtvar}, {"var", var}, {"sq", sq}, {"xmu", xmu}, {"mu", mu}, {"x", x}};
  std::vector<Tensor> nodes;
  for (const auto& [name, t] : graph_nodes) nodes.push_back(t);
  const std::vector<Tensor> auto_grads = grad({loss}, nodes, {}, {.retain_graph = true});

  // ---- the library's fused BatchNorm on the same input ----------------------------------------
  const Tensor y_fused = batch_norm(x, {}, {}, gamma, beta, /*training=*/true, 0.1, kEps);
  const std::vector<Tensor> fused = grad({y_fused}, {x, gamma, beta}, {dout});

  // ---- backward, node by node (no autograd: NoGradGuard) ---------------------------------------
  // Each line is one local derivative; a node used twice (xmu, x) sums the gradients of its uses.
  NoGradGuard no_grad;
  const double n = static_cast<double>(N);
  const Tensor d_out = dout;                                              // loss = sum(out * dout)
  const Tensor d_beta = sum(d_out, {0});                                  // 9: out = gammax + beta
  const Tensor d_gammax = d_out;
  const Tensor d_gamma = sum(mul(d_gammax, xhat), {0});                   // 8: gammax = gamma * xhat
  const Tensor d_xhat = mul(d_gammax, gamma);
  const Tensor d_ivar = sum(mul(d_xhat, xmu), {0}, true);                 // 7: xhat = xmu * ivar
  const Tensor d_xmu_via_xhat = mul(d_xhat, ivar);
  const Tensor d_sqrtvar = mul(neg(rdiv(1.0, mul(sqrtvar, sqrtvar))), d_ivar);  // 6: d(1/s) = -1/s^2
  const Tensor d_var = mul(mul(rdiv(1.0, sqrtvar), 0.5), d_sqrtvar);     // 5: d sqrt(v+eps) = 1/(2 sqrt(v+eps))
  const Tensor d_sq = mul(expand(d_var, {N, C}), 1.0 / n);                      // 4: var = mean_n sq
  const Tensor d_xmu = add(d_xmu_via_xhat, mul(mul(xmu, 2.0), d_sq));     // 3: sq = xmu^2, plus xmu's use in 7
  const Tensor d_mu = neg(sum(d_xmu, {0}, true));                         // 2: xmu = x - mu
  const Tensor d_x = add(d_xmu, mul(expand(d_mu, {N, C}), 1.0 / n));            // 1: mu = mean_n x, plus x's use in 2

  const std::vector<Tensor> by_hand = {d_out, d_beta, d_gammax, d_gamma, d_xhat, d_ivar,
                                      d_sqrtvar, d_var, d_sq, d_xmu, d_mu, d_x};

  fmt::print("BatchNorm from primitive ops, x [N={}, C={}], backward node by node (loss = sum(out * dout))\n\n", N, C);
  fmt::print("Each node: its value, its gradient d loss / d node by hand, and |by hand - ng::grad|.\n");
  double worst = 0;
  std::vector<DotLabel> labels;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const double err = max_abs_diff(by_hand[i], auto_grads[i]);
    worst = std::max(worst, err);
    fmt::print("{:<8} value {}\n{:<8} grad  {}   (vs ng::grad: {:.1e})\n", graph_nodes[i].first, value_summary(nodes[i]), "",
               value_summary(by_hand[i]), err);
    labels.push_back({graph_nodes[i].first, nodes[i], auto_grads[i]});
  }
  labels.push_back({"loss", loss, ones({}, f64)});

  const double err_y = max_abs_diff(y_fused, out);
  const double err_fused = std::max({max_abs_diff(fused[0], d_x), max_abs_diff(fused[1], d_gamma),
                                     max_abs_diff(fused[2], d_beta)});
  fmt::print("\nng::batch_norm (fused op; on (N, C) its backward is column_backward, norm_columns.cpp):\n");
  fmt::print("  max |y staged - y fused|                  = {:.1e}\n", err_y);
  fmt::print("  max |dx, dgamma, dbeta by hand - fused|   = {:.1e}\n", err_fused);
  worst = std::max({worst, err_y, err_fused});

  const bool svg = write_graph(to_dot_with_values(loss, labels), "batchnorm_graph");
  fmt::print("\nWrote batchnorm_graph.dot{}\n", svg ? " and batchnorm_graph.svg" : " (install graphviz for the SVG)");

  if (!(worst <= 1e-10)) {
    fmt::print("MISMATCH: {:.3e} > 1e-10\n", worst);
    return 1;
  }
  fmt::print("OK: by hand, ng::grad node by node and the fused op agree (max difference {:.1e} <= 1e-10)\n", worst);
  return 0;
}
