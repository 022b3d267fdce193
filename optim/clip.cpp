#include "optim/clip.h"

#include <algorithm>
#include <cmath>

#include "autograd/kernels.h"
#include "autograd/tape.h"

namespace ng::optim {

namespace {
// Gradients present among params, made contiguous (they are, as the tape stores them).
std::vector<Tensor> grads_of(const std::vector<Tensor>& params) {
  std::vector<Tensor> out;
  for (const auto& p : params) {
    if (!p.defined()) continue;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!g.is_contiguous()) {
      g = g.contiguous();
      p.impl().grad = g.impl_ptr();
    }
    out.push_back(g);
  }
  return out;
}
}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  if (!(norm_type > 0)) fail<ValueError>("clip_grad_norm_: norm_type must be > 0 (or inf), got {}", norm_type);
  if (!(max_norm >= 0)) fail<ValueError>("clip_grad_norm_: max_norm must be >= 0, got {}", max_norm);
  NoGradGuard no_grad;
  std::vector<Tensor> grads = grads_of(params);
  if (grads.empty()) return 0.0;
  const bool is_inf = std::isinf(norm_type);
  // acc = max |g| (inf norm) or sum |g|^p, over all gradients.
  double acc = 0.0;
  for (const Tensor& g : grads) {
    dispatch_float(g.dtype(), "clip_grad_norm_", [&](auto tag) {
      using T = decltype(tag);
      const T* x = g.data<T>();
      const std::int64_t n = g.numel();
      if (is_inf) {
        for (std::int64_t i = 0; i < n; ++i) {
          const double a = std::abs(static_cast<double>(x[i]));
          acc = (a > acc || std::isnan(a)) ? a : acc;  // a NaN propagates
        }
      } else if (norm_type == 2.0) {
        for (std::int64_t i = 0; i < n; ++i) acc += static_cast<double>(x[i]) * static_cast<double>(x[i]);
      } else if (norm_type == 1.0) {
        for (std::int64_t i = 0; i < n; ++i) acc += std::abs(static_cast<double>(x[i]));
      } else {
        for (std::int64_t i = 0; i < n; ++i) acc += std::pow(std::abs(static_cast<double>(x[i])), norm_type);
      }
    });
  }
  const double total = is_inf ? acc : norm_type == 1.0 ? acc : norm_type == 2.0 ? std::sqrt(acc) : std::pow(acc, 1.0 / norm_type);
  if (error_if_nonfinite && !std::isfinite(total))
    fail<ValueError>("clip_grad_norm_: the total norm of order {} of the gradients is non-finite: {}", norm_type, total);
  // coef = max_norm / (total + 1e-6), applied only when it shrinks the gradients.
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0 || std::isnan(coef)) {
    for (Tensor& g : grads) g.mul_(coef);
  }
  return total;
}

void clip_grad_value_(const std::vector<Tensor>& params, double clip_value) {
  if (!(clip_value >= 0)) fail<ValueError>("clip_grad_value_: clip_value must be >= 0, got {}", clip_value);
  NoGradGuard no_grad;
  for (const Tensor& g : grads_of(params)) {
    dispatch_float(g.dtype(), "clip_grad_value_", [&](auto tag) {
      using T = decltype(tag);
      T* x = g.data<T>();
      const T c = static_cast<T>(clip_value);
      const std::int64_t n = g.numel();
      detail::parallel_for(n, n > detail::kParallelGrain, [&](std::int64_t i) { x[i] = std::clamp(x[i], -c, c); });
    });
  }
}

}  // namespace ng::optim
