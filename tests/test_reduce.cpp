#include <cmath>
#include <limits>

#include "tests/helpers.h"

using namespace ng;

namespace {
Tensor f64(std::initializer_list<double> v, const Shape& s) { return tensor(v, s, DType::f64); }
}  // namespace

// ---- sum --------------------------------------------------------------------------------------

TEST_CASE("sum: non-contiguous (transposed) input") {
  // a = [[0, 1, 2], [3, 4, 5]];  a^T = [[0, 3], [1, 4], [2, 5]]
  Tensor at = transpose(arange(6, DType::f64).reshape({2, 3}), 0, 1);
  REQUIRE_FALSE(at.is_contiguous());
  test::check_values(sum(at, {1}), {3, 5, 7});
  test::check_values(sum(at, {0}), {3, 12});
  test::check_values(sum(at), {15});
  Tensor x = test::rnd({3, 5}, 11);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return sum(transpose(v[0], 0, 1), {1}); }, {x}));
}

// ---- max / min -------------------------------------------------------------------------------

TEST_CASE("max/min: values over one axis, all axes, keepdim") {
  Tensor a = f64({1, 5, 3, 5, 2, 0}, {2, 3});  // [[1, 5, 3], [5, 2, 0]]
  test::check_values(max(a, {1}), {5, 5});
  test::check_values(max(a, {0}), {5, 5, 3});
  test::check_values(max(a), {5});
  test::check_values(min(a, {1}), {1, 0});
  test::check_values(min(a, {-2}), {1, 2, 0});
  CHECK(max(a, {1}, true).shape() == Shape{2, 1});
  CHECK(min(a, {}, true).shape() == Shape{1, 1});
  CHECK(max(a).shape() == Shape{});
}

TEST_CASE("max/min: several axes against an independent loop") {
  Tensor x = test::rnd({3, 4, 5}, 2, false);
  Tensor mx = max(x, {0, 2});
  Tensor mn = min(x, {2, 0}, true);
  REQUIRE(mx.shape() == Shape{4});
  REQUIRE(mn.shape() == Shape{1, 4, 1});
  for (std::int64_t j = 0; j < 4; ++j) {
    double hi = -INFINITY, lo = INFINITY;
    for (std::int64_t i = 0; i < 3; ++i)
      for (std::int64_t k = 0; k < 5; ++k) {
        hi = std::max(hi, x.at({i, j, k}));
        lo = std::min(lo, x.at({i, j, k}));
      }
    CHECK(mx.at({j}) == hi);
    CHECK(mn.at({0, j, 0}) == lo);
  }
}

TEST_CASE("max/min: ties send the whole gradient to the first extremum") {
  Tensor a = f64({2, 7, 7, 7, 7, 2}, {2, 3}).requires_grad_();  // [[2, 7, 7], [7, 7, 2]]
  max(a, {1}).sum().backward();
  test::check_values(a.grad(), {0, 1, 0, 1, 0, 0});
  a.zero_grad();
  max(a).backward();  // first 7 in row-major order is flat index 1
  test::check_values(a.grad(), {0, 1, 0, 0, 0, 0});
  a.zero_grad();
  max(a, {0}).sum().backward();  // columns (2,7) (7,7) (7,2): rows 1, 0, 0
  test::check_values(a.grad(), {0, 1, 1, 1, 0, 0});
  a.zero_grad();
  min(a, {1}).sum().backward();  // row 0 min at 0, row 1 min at 2
  test::check_values(a.grad(), {1, 0, 0, 0, 0, 1});
  // ties across several reduced axes: groups of [2, 2, 2] over axes {0, 2}
  Tensor b = full({2, 2, 2}, 1.0, DType::f64).requires_grad_();
  max(b, {0, 2}).sum().backward();
  test::check_values(b.grad(), {1, 0, 1, 0, 0, 0, 0, 0});
}

TEST_CASE("max/min: NaN propagates") {
  Tensor a = f64({1, NAN, 3}, {3});
  CHECK(std::isnan(max(a).item()));
  CHECK(std::isnan(min(a).item()));
}

TEST_CASE("max/min: gradcheck over each axis, several axes, keepdim, transposed input") {
  Tensor x = test::rnd({3, 5, 7}, 3);
  for (std::int64_t ax : {0, 1, 2, -1})
    for (bool keep : {false, true}) {
      CAPTURE(ax);
      CAPTURE(keep);
      CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& v) { return max(v[0], {ax}, keep); }, {x}));
      CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& v) { return min(v[0], {ax}, keep); }, {x}));
    }
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return max(v[0], {0, 2}); }, {x}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return min(v[0], {2, 1}, true); }, {x}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return max(v[0]); }, {x}));
  Tensor y = test::rnd({5, 3}, 4);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return max(transpose(v[0], 0, 1), {1}); }, {y}));
}

TEST_CASE("max/min: errors") {
  Tensor a = zeros({2, 0, 3}, DType::f64);
  CHECK_THROWS_WITH_AS(max(a, {1}), doctest::Contains("max: reducing over zero elements"), ValueError);
  CHECK_THROWS_WITH_AS(min(a), doctest::Contains("min"), ValueError);
  CHECK_THROWS_WITH_AS(max(ones({2, 3}), {2}), doctest::Contains("max: axis 2 out of range"), IndexError);
  CHECK_THROWS_WITH_AS(min(ones({2, 3}), {1, -1}), doctest::Contains("min: axis repeated"), ValueError);
}

// ---- argmax -------------------------------------------------------------------------------------

TEST_CASE("argmax: first max, int64, keepdim") {
  Tensor a = f64({1, 5, 3, 5, 2, 0}, {2, 3});
  Tensor i1 = argmax(a, 1);
  CHECK(i1.dtype() == DType::i64);
  test::check_values(i1, {1, 0});
  test::check_values(argmax(a, 0), {1, 0, 0});
  CHECK(argmax(a, -1, true).shape() == Shape{2, 1});
  test::check_values(argmax(f64({2, 7, 7, 7}, {4}), 0), {1});
  test::check_values(argmax(from_vector(std::vector<std::int64_t>{3, 9, 9, 1}, {2, 2}), 1), {1, 0});
  Tensor x = test::rnd({3, 5, 7}, 5);
  Tensor am = argmax(x, 1);
  REQUIRE(am.shape() == Shape{3, 7});
  for (std::int64_t i = 0; i < 3; ++i)
    for (std::int64_t k = 0; k < 7; ++k) {
      std::int64_t best = 0;
      for (std::int64_t j = 1; j < 5; ++j)
        if (x.at({i, j, k}) > x.at({i, best, k})) best = j;
      CHECK(am.at({i, k}) == static_cast<double>(best));
    }
  CHECK_FALSE(argmax(x, 0).requires_grad());
  CHECK_THROWS_WITH_AS(argmax(a, 2), doctest::Contains("argmax"), IndexError);
  CHECK_THROWS_WITH_AS(argmax(zeros({0, 2}), 0), doctest::Contains("argmax"), ValueError);
}

// ---- var / std ------------------------------------------------------------------------------

TEST_CASE("var/std: biased and unbiased values") {
  Tensor x = f64({1, 2, 3, 4}, {4});  // mean 2.5, sum of squared deviations 5
  test::check_values(var(x), {5.0 / 3});
  test::check_values(var(x, {}, 0), {1.25});
  test::check_values(ng::std(x), {std::sqrt(5.0 / 3)});
  test::check_values(ng::std(x, {0}, 0), {std::sqrt(1.25)});
  Tensor a = f64({1, 2, 3, 4, 6, 8}, {2, 3});
  test::check_values(var(a, {1}), {1, 4});
  test::check_values(var(a, {0}), {4.5, 8, 12.5});
  test::check_values(var(a, {0}, 0, true), {2.25, 4, 6.25});
  CHECK(var(a, {0}, 1, true).shape() == Shape{1, 3});
  // one element with correction 1: 0/0, as torch.var
  CHECK(std::isnan(var(f64({3}, {1})).item()));
}

TEST_CASE("var: two-pass keeps float32 rows with a large mean exact") {
  Tensor x = tensor({10001, 10002, 10003, 10004}, {1, 4});  // float32
  CHECK(var(x, {1}).item() == doctest::Approx(5.0 / 3).epsilon(1e-6));
}

TEST_CASE("var/std: gradcheck over axes, corrections, keepdim") {
  Tensor x = test::rnd({3, 5, 7}, 6);
  for (std::int64_t ax : {0, 1, 2})
    for (std::int64_t c : {0, 1}) {
      CAPTURE(ax);
      CAPTURE(c);
      CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& v) { return var(v[0], {ax}, c); }, {x}));
      CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& v) { return ng::std(v[0], {ax}, c, true); }, {x}));
    }
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return var(v[0], {0, 2}, 1, true); }, {x}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return ng::std(v[0]); }, {x}));
}

TEST_CASE("var/std: errors") {
  CHECK_THROWS_WITH_AS(var(zeros({0}, DType::f64)), doctest::Contains("var: reducing over zero elements"), ValueError);
  CHECK_THROWS_WITH_AS(var(zeros({3}, DType::i64)), doctest::Contains("var"), DTypeError);
  CHECK_THROWS_WITH_AS(ng::std(zeros({3}, DType::i64)), doctest::Contains("std"), DTypeError);
  CHECK_THROWS_WITH_AS(var(ones({2, 3}), {3}), doctest::Contains("var: axis 3"), IndexError);
}

// ---- logsumexp --------------------------------------------------------------------------------

TEST_CASE("logsumexp: stable values, infinities, keepdim") {
  const double ln2 = std::log(2.0), inf = std::numeric_limits<double>::infinity();
  Tensor a = f64({0, 0, 1000, 1000, -inf, -inf}, {3, 2});
  Tensor l = logsumexp(a, {1});
  REQUIRE(l.shape() == Shape{3});
  CHECK(l.at({0}) == doctest::Approx(ln2));
  CHECK(l.at({1}) == doctest::Approx(1000 + ln2));
  CHECK(l.at({2}) == -inf);
  CHECK(logsumexp(f64({1, inf}, {2})).item() == inf);
  Tensor b = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor l0 = logsumexp(b, {0}, true);
  CHECK(l0.shape() == Shape{1, 3});
  for (std::int64_t j = 0; j < 3; ++j)
    CHECK(l0.at({0, j}) == doctest::Approx(std::log(std::exp(b.at({0, j})) + std::exp(b.at({1, j})))));
  CHECK(logsumexp(b).item() == doctest::Approx(std::log(std::exp(1) + std::exp(2) + std::exp(3) + std::exp(4) +
                                                         std::exp(5) + std::exp(6))));
}

TEST_CASE("logsumexp: gradcheck and errors") {
  Tensor x = test::rnd({3, 5, 7}, 7);
  for (std::int64_t ax : {0, 1, 2})
    for (bool keep : {false, true}) {
      CAPTURE(ax);
      CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& v) { return logsumexp(v[0], {ax}, keep); }, {x}));
    }
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return logsumexp(v[0], {0, 2}); }, {x}));
  // large inputs: the gradient (softmax) stays finite
  Tensor big = f64({1000, 1001, 999}, {3}).requires_grad_();
  logsumexp(big).backward();
  const double z = std::exp(-1.0) + 1 + std::exp(-2.0);
  test::check_values(big.grad(), {std::exp(-1.0) / z, 1 / z, std::exp(-2.0) / z});
  CHECK_THROWS_WITH_AS(logsumexp(zeros({3}, DType::i64)), doctest::Contains("logsumexp"), DTypeError);
  CHECK_THROWS_WITH_AS(logsumexp(ones({3}), {1}), doctest::Contains("logsumexp: axis 1"), IndexError);
}
