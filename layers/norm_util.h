// Small helpers shared by the normalization layers (batch_norm, layer_norm, group_norm,
// rms_norm): PyTorch-style printing for extra_repr and the common argument checks.
#pragma once
#include <cmath>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "autograd/error.h"
#include "autograd/shape.h"

namespace ng::nn::detail {

// A double as Python's repr prints it: 1e-05, 0.1, 1.0 (fmt's shortest form, plus ".0").
inline std::string py_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eni") == std::string::npos) s += ".0";
  return s;
}
inline std::string py_float(std::optional<double> v) { return v ? py_float(*v) : "None"; }
inline const char* py_bool(bool b) { return b ? "True" : "False"; }
// A shape as a Python tuple: (5,) or (4, 5).
inline std::string py_tuple(const Shape& s) {
  return s.ndim() == 1 ? fmt::format("({},)", s[0]) : fmt::format("({})", fmt::join(s.vec(), ", "));
}

// eps >= 0 as PyTorch. eps = 0 is allowed: the output is then exactly standardized and the
// Jacobian of xhat a projection (scaled by 1/std); a constant row or channel has variance 0
// and gives 0 * inf = NaN (or +-inf where the computed mean rounds off the constant), as in
// PyTorch (tests/test_norm_eps.cpp). The functional API (autograd/ops/norm.cpp) checks the same.
inline void check_eps(double eps, const std::string& layer) {
  if (std::isnan(eps)) fail<ValueError>("{}: eps is NaN; it must be a number >= 0 (default 1e-5)", layer);
  if (eps < 0.0)
    fail<ValueError>("{}: eps must be >= 0 (it is added to the variance under the square root): got {}", layer, eps);
}
// PyTorch does not check momentum; normgrad does, and says why.
inline void check_momentum(std::optional<double> m, const std::string& layer) {
  if (m && !(*m >= 0.0 && *m <= 1.0))
    fail<ValueError>("{}: momentum must be in [0, 1]: got {} (it weighs the new batch in running = (1 - momentum) * "
                     "running + momentum * batch; outside [0, 1] the running statistics are no longer an average of "
                     "batch statistics and can grow without bound)",
                     layer, *m);
}
inline void check_positive(std::int64_t n, const char* what, const std::string& layer) {
  if (n <= 0) fail<ValueError>("{}: {} must be positive: got {}", layer, what, n);
}

}  // namespace ng::nn::detail
