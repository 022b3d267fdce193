// The elementwise ops as one table: name, function, input domain, and which derivative checks
// apply. tests/test_elementwise.cpp runs a float64 gradcheck on every row, and
// tests/test_double_backward.cpp a gradgradcheck (of f(x), and of f(x) * f(x) so that the
// backward runs on an x-dependent incoming gradient). Adding an elementwise op: one row here
// (see the checklist in docs/autograd.md).
#pragma once
#include <functional>
#include <optional>
#include <vector>

#include "autograd/ops.h"

namespace test {

enum class Domain {
  real,     // N(0, 1) inputs
  positive  // U[0.5, 2): log, sqrt, powers with negative or fractional exponents, divisors
};

struct UnaryOp {
  const char* name;
  std::function<ng::Tensor(const ng::Tensor&)> f;
  Domain domain = Domain::real;
  bool first_order = true;   // gradcheck
  bool second_order = true;  // gradgradcheck
};

struct BinaryOp {
  const char* name;
  std::function<ng::Tensor(const ng::Tensor&, const ng::Tensor&)> f;
  Domain domain = Domain::real;
  bool first_order = true;
  bool second_order = true;
};

inline const std::vector<UnaryOp>& unary_ops() {
  using ng::Tensor;
  static const std::vector<UnaryOp> ops = {
      {"neg", [](const Tensor& x) { return ng::neg(x); }},
      {"add_scalar", [](const Tensor& x) { return ng::add(x, 1.5); }},
      {"mul_scalar", [](const Tensor& x) { return ng::mul(x, -2.5); }},
      {"rsub", [](const Tensor& x) { return ng::rsub(2.0, x); }},
      {"rdiv", [](const Tensor& x) { return ng::rdiv(2.0, x); }, Domain::positive},
      {"scalar / tensor operator", [](const Tensor& x) { return 3.0 / x; }, Domain::positive},
      {"operators", [](const Tensor& x) { return (2.0 - x) * 3.0 + (x / 4.0 - 1.0) + (-x); }},
      {"pow 3", [](const Tensor& x) { return ng::pow(x, 3.0); }},
      {"pow 2", [](const Tensor& x) { return ng::pow(x, 2.0); }},
      {"pow 1", [](const Tensor& x) { return ng::pow(x, 1.0); }},
      {"pow 0", [](const Tensor& x) { return ng::pow(x, 0.0); }},
      {"pow 0.5", [](const Tensor& x) { return ng::pow(x, 0.5); }, Domain::positive},
      {"pow -1.5", [](const Tensor& x) { return ng::pow(x, -1.5); }, Domain::positive},
      {"exp", [](const Tensor& x) { return ng::exp(x); }},
      {"log", [](const Tensor& x) { return ng::log(x); }, Domain::positive},
      {"sqrt", [](const Tensor& x) { return ng::sqrt(x); }, Domain::positive},
      {"rsqrt", [](const Tensor& x) { return ng::rsqrt(x); }, Domain::positive},
      {"abs", [](const Tensor& x) { return ng::abs(x); }},
      {"clamp", [](const Tensor& x) { return ng::clamp(x, -0.5, 0.6); }},
      {"clamp lo only", [](const Tensor& x) { return ng::clamp(x, 0.1, std::nullopt); }},
      {"relu", [](const Tensor& x) { return ng::relu(x); }},
      {"leaky_relu", [](const Tensor& x) { return ng::leaky_relu(x, 0.2); }},
      {"sigmoid", [](const Tensor& x) { return ng::sigmoid(x); }},
      {"tanh", [](const Tensor& x) { return ng::tanh(x); }},
      {"gelu", [](const Tensor& x) { return ng::gelu(x); }},
      {"softplus", [](const Tensor& x) { return ng::softplus(x); }},
      {"softplus beta 3 threshold 20 on 10x", [](const Tensor& x) { return ng::softplus(ng::mul(x, 10.0), 3.0, 20.0); }},
      {"softplus beta 2 threshold 1", [](const Tensor& x) { return ng::softplus(x, 2.0, 1.0); }},
      {"clone", [](const Tensor& x) { return x.clone(); }},
      // Through float32 the first derivative carries float32 rounding of x, which finite
      // differences resolve as noise: only the (linear) second-order check applies.
      {"cast through float32", [](const Tensor& x) { return ng::cast(ng::cast(x, ng::DType::f32), ng::DType::f64); },
       Domain::real, false, true},
  };
  return ops;
}

inline const std::vector<BinaryOp>& binary_ops() {
  using ng::Tensor;
  static const std::vector<BinaryOp> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return ng::add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return ng::sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return ng::mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return ng::div(a, b); }, Domain::positive},
      {"pow", [](const Tensor& a, const Tensor& b) { return ng::pow(a, b); }, Domain::positive},
      {"maximum", [](const Tensor& a, const Tensor& b) { return ng::maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return ng::minimum(a, b); }},
      {"where", [](const Tensor& a, const Tensor& b) { return ng::where(ng::gt(a, b), a, ng::mul(b, 2.0)); }},
      {"operators", [](const Tensor& a, const Tensor& b) { return a * b - b / (a * a + 1.0) + a; }},
  };
  return ops;
}

}  // namespace test
