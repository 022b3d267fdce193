// Gradient clipping: total norms (2, 1, 3, inf) worked out by hand, scaled gradients,
// the no-op case, skipped parameters, float32, clip_grad_value_ and bad input.
#include <cmath>

#include "optim/clip.h"
#include "tests/helpers.h"

using namespace ng;
using namespace ng::optim;

namespace {
// Two parameters with gradients [3, -4] and [[12], [0]]: ||g||_2 = 13, ||g||_1 = 19, ||g||_inf = 12.
std::vector<Tensor> params_with_grads(DType d = DType::f64) {
  Tensor a = zeros(Shape{2}, d).requires_grad_(), b = zeros(Shape{2, 1}, d).requires_grad_();
  a.set_grad(from_vector({3.0, -4.0}, Shape{2}, d));
  b.set_grad(from_vector({12.0, 0.0}, Shape{2, 1}, d));
  return {a, b};
}
}  // namespace

TEST_CASE("clip_grad_norm_: 2-norm of all gradients together, scaled by max_norm / (total + 1e-6)") {
  auto ps = params_with_grads();
  const double total = clip_grad_norm_(ps, 1.3);
  CHECK(total == doctest::Approx(13.0).epsilon(1e-15));
  const double coef = 1.3 / (13.0 + 1e-6);
  test::check_values(ps[0].grad(), {3 * coef, -4 * coef}, 1e-15);
  test::check_values(ps[1].grad(), {12 * coef, 0.0}, 1e-15);
  // The clipped gradients now have norm max_norm (up to the 1e-6).
  CHECK(clip_grad_norm_(ps, 100.0) == doctest::Approx(1.3).epsilon(1e-6));
}

TEST_CASE("clip_grad_norm_: below max_norm the gradients are left untouched") {
  auto ps = params_with_grads();
  CHECK(clip_grad_norm_(ps, 13.5) == 13.0);
  CHECK(ps[0].grad().to_vector() == std::vector<double>{3.0, -4.0});
  CHECK(ps[1].grad().to_vector() == std::vector<double>{12.0, 0.0});
}

TEST_CASE("clip_grad_norm_: inf, 1 and 3 norms") {
  {
    auto ps = params_with_grads();
    CHECK(clip_grad_norm_(ps, 6.0, inf_norm) == 12.0);
    const double coef = 6.0 / (12.0 + 1e-6);
    test::check_values(ps[0].grad(), {3 * coef, -4 * coef}, 1e-15);
  }
  {
    auto ps = params_with_grads();
    CHECK(clip_grad_norm_(ps, 38.0, 1.0) == 19.0);  // no clipping
    CHECK(ps[0].grad().to_vector() == std::vector<double>{3.0, -4.0});
  }
  {
    auto ps = params_with_grads();
    const double want = std::cbrt(27.0 + 64.0 + 1728.0);
    CHECK(clip_grad_norm_(ps, 1.0, 3.0) == doctest::Approx(want).epsilon(1e-14));
    test::check_values(ps[1].grad(), {12.0 / (want + 1e-6), 0.0}, 1e-14);
  }
}

TEST_CASE("clip_grad_norm_: parameters without gradients are skipped, and none at all gives 0") {
  auto ps = params_with_grads();
  Tensor none = zeros(Shape{3}, DType::f64).requires_grad_();
  ps.push_back(none);
  CHECK(clip_grad_norm_(ps, 1.0) == doctest::Approx(13.0));
  CHECK_FALSE(none.grad().defined());
  CHECK(clip_grad_norm_({none}, 1.0) == 0.0);
}

TEST_CASE("clip_grad_norm_: float32 gradients, through a real backward") {
  Tensor w = from_vector({1.0, 2.0, 2.0}, Shape{3}, DType::f32).requires_grad_();
  sum(mul(mul(w, w), 0.5)).backward();  // grad = w, norm 3
  CHECK(clip_grad_norm_({w}, 1.5) == doctest::Approx(3.0));
  const double coef = 1.5 / (3.0 + 1e-6);
  test::check_values(w.grad(), {coef, 2 * coef, 2 * coef}, 1e-6);
  CHECK(w.grad().dtype() == DType::f32);
}

TEST_CASE("clip_grad_norm_: non-finite totals") {
  auto ps = params_with_grads();
  ps[0].grad().data<double>()[0] = std::nan("");
  CHECK_THROWS_WITH_AS(clip_grad_norm_(ps, 1.0, 2.0, true), doctest::Contains("clip_grad_norm_: the total norm of order 2"), ValueError);
  CHECK(std::isnan(clip_grad_norm_(ps, 1.0)));
  CHECK(std::isnan(ps[1].grad().to_vector()[0]));  // as PyTorch: the NaN spreads
}

TEST_CASE("clip_grad_value_: clamps each element to [-clip, clip]") {
  auto ps = params_with_grads();
  clip_grad_value_(ps, 3.5);
  CHECK(ps[0].grad().to_vector() == std::vector<double>{3.0, -3.5});
  CHECK(ps[1].grad().to_vector() == std::vector<double>{3.5, 0.0});
}

TEST_CASE("clip_grad_norm_ / clip_grad_value_: bad arguments") {
  auto ps = params_with_grads();
  CHECK_THROWS_WITH_AS(clip_grad_norm_(ps, 1.0, 0.0), doctest::Contains("clip_grad_norm_: norm_type must be > 0 (or inf), got 0"),
                       ValueError);
  CHECK_THROWS_WITH_AS(clip_grad_norm_(ps, -1.0), doctest::Contains("clip_grad_norm_: max_norm must be >= 0, got -1"), ValueError);
  CHECK_THROWS_WITH_AS(clip_grad_value_(ps, -0.5), doctest::Contains("clip_grad_value_: clip_value must be >= 0, got -0.5"),
                       ValueError);
  CHECK(ps[0].grad().to_vector() == std::vector<double>{3.0, -4.0});
}
