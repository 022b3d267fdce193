// Gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_. Both work on the
// .grad() of the given parameters, in place; a parameter without a gradient is skipped.
#pragma once
#include <limits>
#include <vector>

#include "autograd/tensor.h"

namespace ng::optim {

inline constexpr double inf_norm = std::numeric_limits<double>::infinity();

// Total p-norm of all gradients together, as if concatenated into one vector:
//   ||g||_p = (sum_i |g_i|^p)^(1/p),   ||g||_inf = max_i |g_i|   (norm_type = inf_norm).
// Returns that norm (before clipping; 0 if no parameter has a gradient). If
// coef = max_norm / (total + 1e-6) is below 1, every gradient is multiplied by coef.
// Sums accumulate in double. error_if_nonfinite: a NaN or infinite total throws ValueError
// (otherwise the gradients are scaled by the resulting NaN/0 coefficient, as PyTorch does).
// Errors: norm_type <= 0 or NaN, max_norm < 0 (ValueError).
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

// Clamps every gradient element to [-clip_value, clip_value]. Errors: clip_value < 0.
void clip_grad_value_(const std::vector<Tensor>& params, double clip_value);

}  // namespace ng::optim
