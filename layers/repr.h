// Small formatting helpers so that extra_repr() prints values the way PyTorch's Python
// repr does (True/False, 1.0 not 1, (3, 3) tuples), making printed trees comparable.
#pragma once
#include <string>

#include <fmt/format.h>

#include "autograd/ops/conv.h"  // Size2

namespace ng::nn::detail {

inline std::string py_bool(bool b) { return b ? "True" : "False"; }

// Python's float repr: shortest round-trip digits, always with a '.' or exponent ("1.0", "0.01").
inline std::string py_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eni") == std::string::npos) s += ".0";
  return s;
}

// "(3, 3)": how PyTorch prints a pair it stores as a tuple (Conv2d's kernel_size, stride, ...).
inline std::string py_tuple(Size2 s) { return fmt::format("({}, {})", s.h, s.w); }

// "2" for a square size, "(2, 3)" otherwise: how pooling modules print what they were given.
inline std::string py_int_or_tuple(Size2 s) { return s.h == s.w ? std::to_string(s.h) : py_tuple(s); }

}  // namespace ng::nn::detail
