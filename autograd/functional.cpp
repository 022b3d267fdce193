#include "autograd/functional.h"

#include "autograd/ops.h"
#include "autograd/tape.h"

namespace ng {

namespace {

void check_hvp_args(const std::vector<Tensor>& inputs, const std::vector<Tensor>& v, const char* op) {
  if (inputs.size() != v.size())
    fail<ValueError>("{}: one direction per input: {} inputs vs {} directions", op, inputs.size(), v.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || !inputs[i].requires_grad())
      fail<AutogradError>("{}: input {} does not require grad", op, i);
    if (!v[i].defined() || v[i].shape() != inputs[i].shape())
      fail<ShapeError>("{}: direction {} must have the shape of input {}: {} vs {}", op, i, i, inputs[i].shape(),
                       v[i].defined() ? v[i].shape() : Shape{});
    if (v[i].dtype() != inputs[i].dtype())
      fail<DTypeError>("{}: direction {} has dtype {} but input {} has {}", op, i, v[i].dtype(), i, inputs[i].dtype());
  }
}

Tensor scalar_output(const ScalarFn& fn, const std::vector<Tensor>& inputs, const char* op) {
  Tensor y = fn(inputs);
  if (!y.defined() || y.numel() != 1)
    fail<ShapeError>("{}: fn must return a one-element tensor: expected [] vs actual {}", op,
                     y.defined() ? y.shape() : Shape{});
  return y;
}

std::vector<Tensor> zeros_for(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> z;
  for (const auto& x : inputs) z.push_back(zeros(x.shape(), x.dtype()));
  return z;
}

}  // namespace

std::vector<Tensor> hvp(const ScalarFn& fn, const std::vector<Tensor>& inputs, const std::vector<Tensor>& v) {
  check_hvp_args(inputs, v, "hvp");
  EnableGradGuard on;  // works inside a NoGradGuard too: both passes need the tape
  const Tensor y = scalar_output(fn, inputs, "hvp");
  if (!y.requires_grad()) return zeros_for(inputs);  // f does not depend on the inputs: H = 0
  // g = df/dx, recorded (create_graph) so that it can be differentiated again.
  const std::vector<Tensor> g = grad({y}, inputs, {}, BackwardOptions{.retain_graph = true, .create_graph = true}, true);
  // <g, v> = sum_i sum(g_i * v_i), with v held constant.
  Tensor g_dot_v;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!g[i].defined()) continue;
    Tensor term = sum(mul(g[i], v[i].detach()));
    g_dot_v = g_dot_v.defined() ? add(g_dot_v, term) : term;
  }
  // Hv = d<g, v>/dx. A first derivative that does not depend on x (f linear) means H = 0.
  if (!g_dot_v.defined() || !g_dot_v.requires_grad()) return zeros_for(inputs);
  std::vector<Tensor> hv = grad({g_dot_v}, inputs, {}, BackwardOptions{}, true);
  for (std::size_t i = 0; i < hv.size(); ++i)
    hv[i] = hv[i].defined() ? hv[i].detach() : zeros(inputs[i].shape(), inputs[i].dtype());
  return hv;
}

std::vector<Tensor> hvp_finite_difference(const ScalarFn& fn, const std::vector<Tensor>& inputs,
                                          const std::vector<Tensor>& v, double eps) {
  check_hvp_args(inputs, v, "hvp_finite_difference");
  if (!(eps > 0.0)) fail<ValueError>("hvp_finite_difference: eps must be > 0: got {}", eps);
  for (std::size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i].is_leaf() || !inputs[i].is_contiguous())
      fail<ValueError>("hvp_finite_difference: input {} must be a contiguous leaf (it is perturbed in place)", i);
  std::vector<Tensor> saved;
  {
    NoGradGuard no_grad;
    for (const auto& x : inputs) saved.push_back(x.detach().clone());
  }
  // grad f at x + step * v, then x restored to its exact saved bits.
  auto grad_at = [&](double step) {
    {
      NoGradGuard no_grad;
      for (std::size_t i = 0; i < inputs.size(); ++i) Tensor(inputs[i]).add_(v[i], step);  // a handle: same storage
    }
    std::vector<Tensor> g;
    try {
      EnableGradGuard on;
      const Tensor y = scalar_output(fn, inputs, "hvp_finite_difference");
      g = y.requires_grad() ? grad({y}, inputs, {}, BackwardOptions{}, true) : std::vector<Tensor>(inputs.size());
    } catch (...) {
      NoGradGuard no_grad;
      for (std::size_t i = 0; i < inputs.size(); ++i) Tensor(inputs[i]).copy_(saved[i]);
      throw;
    }
    NoGradGuard no_grad;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      Tensor(inputs[i]).copy_(saved[i]);
      g[i] = g[i].defined() ? g[i].detach() : zeros(inputs[i].shape(), inputs[i].dtype());
    }
    return g;
  };
  const std::vector<Tensor> gp = grad_at(eps), gm = grad_at(-eps);
  std::vector<Tensor> hv;
  NoGradGuard no_grad;
  for (std::size_t i = 0; i < inputs.size(); ++i) hv.push_back(mul(sub(gp[i], gm[i]), 1.0 / (2.0 * eps)));
  return hv;
}

}  // namespace ng
