// Higher-order helpers built on ng::grad with create_graph (like torch.autograd.functional).
//
//   // the Hessian of a scalar loss w.r.t. the parameters, applied to a direction v:
//   auto Hv = ng::hvp([&](const std::vector<Tensor>& p) { return loss_of(p); }, params, v);
//
// Hessian-vector product by double backward ("Pearlmutter's trick", Pearlmutter 1994):
//     g(x)  = d f / d x                  (first backward, recorded: create_graph)
//     H v   = d <g(x), v> / d x          (second backward through the recorded one)
// Two backward passes, never the n x n Hessian. Exact up to rounding, for every op whose
// backward is differentiable (all ops of ops.h and norm.h; see tests/test_double_backward.cpp).
#pragma once
#include <functional>
#include <vector>

#include "autograd/tensor.h"

namespace ng {

// A function of several tensors returning a one-element tensor (a loss).
using ScalarFn = std::function<Tensor(const std::vector<Tensor>&)>;

// H v, one tensor per input (shaped like it): H is the Hessian of fn at `inputs` (all of which
// must require grad), v one tensor per input of the same shapes. Runs fn with grad mode on;
// the result is detached (plain values). An input fn does not depend on gets zeros.
std::vector<Tensor> hvp(const ScalarFn& fn, const std::vector<Tensor>& inputs, const std::vector<Tensor>& v);

// The same product by central differences of first derivatives, an independent check:
//     H v ~ (grad f(x + eps v) - grad f(x - eps v)) / (2 eps).
// Perturbs the inputs in place and restores them bit-exactly (so fn may read them directly,
// like module parameters); the inputs must be contiguous float64 or float32 leaves.
std::vector<Tensor> hvp_finite_difference(const ScalarFn& fn, const std::vector<Tensor>& inputs,
                                          const std::vector<Tensor>& v, double eps = 1e-5);

}  // namespace ng
