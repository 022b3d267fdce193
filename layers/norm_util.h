// Small helpers shared by the normalization layers (batch_norm, layer_norm, group_norm,
// rms_norm): PyTorch-style printing for extra_repr and the common argument checks.
#pragma once
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

inline void check_eps(double eps, const std::string& layer) {
  if (!(eps > 0.0)) fail<ValueError>("{}: eps must be > 0: got {}", layer, eps);
}
inline void check_momentum(std::optional<double> m, const std::string& layer) {
  if (m && !(*m >= 0.0 && *m <= 1.0)) fail<ValueError>("{}: momentum must be in [0, 1]: got {}", layer, *m);
}
inline void check_positive(std::int64_t n, const char* what, const std::string& layer) {
  if (n <= 0) fail<ValueError>("{}: {} must be positive: got {}", layer, what, n);
}

}  // namespace ng::nn::detail
