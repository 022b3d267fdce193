// The sharpest direction of a loss surface: the top Hessian eigenvalue of a small BatchNorm
// network's loss w.r.t. its parameters, by power iteration on Hessian-vector products.
//
//   net:   h = tanh(BN(x W1 + b1; gamma, beta)),  out = h W2 + b2,  loss = mse(out, t)
//   H v:   ng::hvp (autograd/functional.h): two backward passes, the first one recorded
//          (create_graph), never the full Hessian. Through BatchNorm this uses the norm op's
//          differentiable (composite) backward; the fused kernel serves only first order.
//   power iteration:  v <- H v / |H v|;  lambda = <v, H v> converges to the eigenvalue of
//          largest magnitude (Golub & Van Loan, sec. 7.3). Its rate is |lambda2 / lambda1|.
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

}  // namespace

int main() {
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
  Params p = {init({d_in, width}, 0.5), init({width}, 0.1), ones({width}, f64).requires_grad_(),
              zeros({width}, f64).requires_grad_(), init({width, 1}, 0.3), init({1}, 0.1)};
  const char* names[] = {"W1", "b1", "gamma", "beta", "W2", "b2"};
  std::int64_t count = 0;
  for (const auto& q : p) count += q.numel();

  // BatchNorm in training mode (batch statistics), no running statistics: the loss is a pure
  // function of the parameters, as hvp and the finite differences need.
  auto loss_fn = [&](const Params& q) {
    Tensor h = tanh(batch_norm(add(matmul(x, q[0]), q[1]), {}, {}, q[2], q[3], /*training=*/true));
    return mse_loss(add(matmul(h, q[4]), q[5]), t);
  };

  // A short plain-SGD run, so that the curvature is measured near where training goes.
  for (int step = 0; step <= 300; ++step) {
    Tensor loss = loss_fn(p);
    if (step % 100 == 0) fmt::print("train step {:3d}  loss {:.6f}\n", step, loss.item());
    loss.backward();
    NoGradGuard no_grad;
    for (auto& q : p) {
      q.add_(q.grad(), -0.1);
      q.zero_grad();
    }
  }

  fmt::print("\npower iteration on the Hessian of the loss ({} parameters: ", count);
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
    if (it <= 10 || it % 10 == 0) fmt::print("  iter {:3d}  lambda {:+.10f}  residual {:.2e}\n", it, lambda, residual);
    const bool converged = it > 1 && std::abs(lambda - prev) <= 1e-12 * std::abs(lambda) && residual < 1e-5;
    prev = lambda;
    v = scaled(hv, 1.0 / std::sqrt(dot(hv, hv)));
    if (converged) {
      fmt::print("  converged after {} iterations\n", it);
      break;
    }
  }
  fmt::print("top Hessian eigenvalue (largest magnitude): {:+.10f}\n", lambda);

  // Check H v against central differences of first derivatives, at the final eigenvector.
  const Params exact = hvp(loss_fn, p, v);
  const Params fd = hvp_finite_difference(loss_fn, p, v, 1e-5);
  const double err = rel_diff(exact, fd);
  fmt::print("\nH v by double backward vs finite differences of gradients (eps 1e-5):\n");
  fmt::print("  relative difference {:.2e}\n", err);
  fmt::print("  Rayleigh quotient: double backward {:+.10f}, finite differences {:+.10f}\n", dot(v, exact), dot(v, fd));
  if (!(err < 1e-6)) {
    fmt::print("MISMATCH: the double backward disagrees with finite differences\n");
    return 1;
  }
  fmt::print("agree.\n");
  return 0;
}
