// Shared test helpers.
#pragma once
#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/random.h"

// CHECK_GRADCHECK(ng::gradcheck(fn, inputs)): on failure the whole report (worst element,
// analytic vs numeric) is printed in the doctest output.
#define CHECK_GRADCHECK(expr)                        \
  do {                                               \
    const ::ng::GradcheckReport report_ = (expr);    \
    CHECK_MESSAGE(report_.passed, report_.to_string()); \
  } while (0)

namespace test {

// A float64 leaf with N(0,1) entries from a fixed seed, requiring grad.
inline ng::Tensor rnd(const ng::Shape& s, std::uint64_t seed = 1, bool requires_grad = true) {
  ng::Generator g(seed);
  ng::Tensor t = ng::randn(s, ng::DType::f64, &g);
  if (requires_grad) t.requires_grad_();
  return t;
}
// Positive float64 leaf: U[lo, hi).
inline ng::Tensor rnd_pos(const ng::Shape& s, std::uint64_t seed = 1, double lo = 0.5, double hi = 2.0) {
  ng::Generator g(seed);
  return ng::uniform(s, lo, hi, ng::DType::f64, &g).requires_grad_();
}

// Sets the OpenMP thread count for a scope and restores the previous one however it ends.
struct OmpThreads {
  int before = omp_get_max_threads();
  explicit OmpThreads(int n) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(before); }
  OmpThreads(const OmpThreads&) = delete;
  OmpThreads& operator=(const OmpThreads&) = delete;
};

inline void check_values(const ng::Tensor& t, const std::vector<double>& expect, double tol = 1e-6) {
  const auto v = t.to_vector();
  REQUIRE(v.size() == expect.size());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == doctest::Approx(expect[i]).epsilon(tol));
}

// Max |t| over all elements.
inline double max_abs(const ng::Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

// Max |a - b| over all elements (same shape required).
inline double max_abs_diff(const ng::Tensor& a, const ng::Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const auto va = a.to_vector(), vb = b.to_vector();
  double m = 0;
  for (std::size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m;
}

}  // namespace test
