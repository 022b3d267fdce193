// The sharpest direction of a loss surface: the top Hessian eigenvalue of a small network's loss
// w.r.t. its parameters, by power iteration on Hessian-vector products, with and without
// BatchNorm.
//
//   net:   h = tanh(BN(x W1 + b1; gamma, beta)),  out = h W2 + b2,  loss = mse(out, t)
//          (without BatchNorm: h = tanh(x W1 + b1))
//   H v:   ng::hvp (autograd/functional.h): two backward passes, the first one recorded
//          (create_graph), never the full Hessian. Through BatchNorm this uses the norm op's
//          differentiable (composite) backward; the fused kernel serves only first order.
//   power iteration:  v <- H v / |H v|;  lambda = <v, H v> converges to the eigenvalue of
//          largest magnitude (Golub & Van Loan, sec. 7.3). Its rate is |lambda2 / lambda1|.
//
// What the number means. Near a minimum the loss is about quadratic, L(p + d) ~ L(p) + g.d +
// d.H d / 2, and one step of gradient descent with learning rate lr multiplies the component
// of the error along an eigenvector of H with eigenvalue lambda by (1 - lr * lambda). So plain
// gradient descent is stable along every direction only while lr * lambda_max < 2, i.e.
// lambda_max < 2 / lr; beyond it the loss oscillates and grows along the sharpest direction.
// Training with a fixed lr tends to raise lambda_max until it hovers near 2 / lr ("edge of
// stability", Cohen et al. 2021). A smaller lambda_max at the same loss allows a larger lr; the
// program prints lambda_max against 2 / lr for the same network with and without BatchNorm.
// One small net and one seed: an illustration of the measurement, not evidence of an effect.
//
// The check: H v from double backward against central differences of first derivatives,
// (grad(p + eps v) - grad(p - eps v)) / 2 eps, and the residual |H v - lambda v| / |lambda|.
#include <fmt/core.h>

#include <cmath>

#include "autograd/functional.h"
#include "autograd/ops.h"
#include "autograd/random.h"

using namespace ng;

namespace {

using Params = std::vector<Tensor>;

// <a, b> summed over all parameter tensors.
double dot(const Params& a, const Params& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto va = a[i].to_vector(), vb = b[i].to_vector();
    for (std::size_t k = 0; k < va.size(); ++k) s += va[k] * vb[k];
  }
  return s;
}

Params scaled(const Params& a, double s) {
  NoGradGuard no_grad;
  Params out;
  for (const auto& t : a) out.push_back(mul(t, s));
  return out;
}

// |a - b| / |b| over all parameter tensors.
double rel_diff(const Params& a, const Params& b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto va = a[i].to_vector(), vb = b[i].to_vector();
    for (std::size_t k = 0; k < va.size(); ++k) d += (va[k] - vb[k]) * (va[k] - vb[k]);
  }
  return std::sqrt(d / dot(b, b));
}

// Trains the network (with or without BatchNorm) for 300 plain-SGD steps at lr, then finds the
// top Hessian eigenvalue by power iteration and checks H v against finite differences.
// Returns false if the check fails; lambda_max is set to the eigenvalue found.
bool run(bool with_batch_norm, double lr, double& lambda_max) {
  Generator gen(7);
  const DType f64 = DType::f64;  // second derivatives and finite differences want float64
  const std::int64_t n = 32, d_in = 4, width = 8;
  const Tensor x = randn({n, d_in}, f64, &gen);
  // targets: a smooth function of the inputs, t = sin(x0 + x1) - 0.5 x2 x3
  Tensor t = empty({n, 1}, f64);
  for (std::int64_t i = 0; i < n; ++i) {
    const double* r = x.data<double>() + i * d_in;
    t.data<double>()[i] = std::sin(r[0] + r[1]) - 0.5 * r[2] * r[3];
  }

  auto init = [&](Shape s, double scale) { return mul(randn(s, f64, &gen), scale).requires_grad_(); };
  Params p = {init({d_in, width}, 0.5), init({width}, 0.1), init({width, 1}, 0.3), init({1}, 0.1)};
  std::vector<const char*> names = {"W1", "b1", "W2", "b2"};
  if (with_batch_norm) {
    p.push_back(ones({width}, f64).requires_grad_());
    p.push_back(zeros({width}, f64).requires_grad_());
    names.push_back("gamma");
    names.push_back("beta");
  }
  std::int64_t count = 0;
  for (const auto& q : p) count += q.numel();

  // BatchNorm in training mode (batch statistics), no running statistics: the loss is a pure
  // function of the parameters, as hvp and the finite differences need.
  auto loss_fn = [&](const Params& q) {
    Tensor z = add(matmul(x, q[0]), q[1]);
    if (with_batch_norm) z = batch_norm(z, {}, {}, q[4], q[5], /*training=*/true);
    return mse_loss(add(matmul(tanh(z), q[2]), q[3]), t);
  };

  fmt::print("\n==== {} BatchNorm ====\n", with_batch_norm ? "with" : "without");
  // A short plain-SGD run, so that the curvature is measured near where training goes.
  for (int step = 0; step <= 300; ++step) {
    Tensor loss = loss_fn(p);
    if (step % 100 == 0) fmt::print("train step {:3d}  loss {:.6f}\n", step, loss.item());
    loss.backward();
    NoGradGuard no_grad;
    for (auto& q : p) {
      q.add_(q.grad(), -lr);
      q.zero_grad();
    }
  }

  fmt::print("power iteration on the Hessian of the loss ({} parameters: ", count);
  for (std::size_t i = 0; i < p.size(); ++i) fmt::print("{}{} {}", i ? ", " : "", names[i], p[i].shape());
  fmt::print(")\n");
  Params v;
  for (const auto& q : p) v.push_back(randn(q.shape(), f64, &gen));
  v = scaled(v, 1.0 / std::sqrt(dot(v, v)));
  double lambda = 0, prev = 0;
  Params hv;
  for (int it = 1; it <= 200; ++it) {
    hv = hvp(loss_fn, p, v);
    lambda = dot(v, hv);  // Rayleigh quotient, |v| = 1
    const double residual = rel_diff(hv, scaled(v, lambda));  // |Hv - lambda v| / |lambda v|
    if (it <= 5 || it % 20 == 0) fmt::print("  iter {:3d}  lambda {:+.10f}  residual {:.2e}\n", it, lambda, residual);
    const bool converged = it > 1 && std::abs(lambda - prev) <= 1e-12 * std::abs(lambda) && residual < 1e-5;
    prev = lambda;
    v = scaled(hv, 1.0 / std::sqrt(dot(hv, hv)));
    if (converged) {
      fmt::print("  converged after {} iterations\n", it);
      break;
    }
  }
  lambda_max = lambda;
  fmt::print("top Hessian eigenvalue (largest magnitude): {:+.10f}\n", lambda);
  fmt::print("against gradient descent at lr = {}: lr * lambda = {:.4f} ({} 2, so the sharpest direction is {}); "
             "2 / lr = {:.1f}\n",
             lr, lr * lambda, lr * lambda < 2 ? "<" : ">=", lr * lambda < 2 ? "stable" : "unstable", 2 / lr);

  // Check H v against central differences of first derivatives, at the final eigenvector.
  const Params exact = hvp(loss_fn, p, v);
  const Params fd = hvp_finite_difference(loss_fn, p, v, 1e-5);
  const double err = rel_diff(exact, fd);
  fmt::print("H v by double backward vs finite differences of gradients (eps 1e-5): relative difference {:.2e}\n", err);
  fmt::print("  Rayleigh quotient: double backward {:+.10f}, finite differences {:+.10f}\n", dot(v, exact), dot(v, fd));
  if (!(err < 1e-6)) {
    fmt::print("MISMATCH: the double backward disagrees with finite differences\n");
    return false;
  }
  return true;
}

}  // namespace

int main() {
  const double lr = 0.1;
  double with_bn = 0, without_bn = 0;
  const bool ok = run(true, lr, with_bn) && run(false, lr, without_bn);
  if (!ok) return 1;
  fmt::print("\nlambda_max with BatchNorm {:+.4f}, without {:+.4f}; gradient descent is stable below 2 / lr = {:.1f} "
             "(one network, one seed: an illustration, not a measured effect)\n",
             with_bn, without_bn, 2 / lr);
  fmt::print("agree.\n");
  return 0;
}
