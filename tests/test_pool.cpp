#include <cmath>
#include <limits>

#include "tests/helpers.h"

using namespace ng;

namespace {

// Reference pooling by its definition: every window position, every tap, bounds checked.
// max: padding is -inf; avg: sum of in-image taps / (kh*kw if count_include_pad, else #in-image).
std::vector<double> pool_reference(const Tensor& x, bool is_max, Size2 k, Size2 s, Size2 p, bool count_include_pad) {
  const auto N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const auto Ho = (H + 2 * p.h - k.h) / s.h + 1, Wo = (W + 2 * p.w - k.w) / s.w + 1;
  const auto xv = x.to_vector();
  std::vector<double> y;
  for (std::int64_t nc = 0; nc < N * C; ++nc)
    for (std::int64_t i = 0; i < Ho; ++i)
      for (std::int64_t j = 0; j < Wo; ++j) {
        double best = -std::numeric_limits<double>::infinity(), sum = 0;
        std::int64_t inside = 0;
        for (std::int64_t u = 0; u < k.h; ++u)
          for (std::int64_t v = 0; v < k.w; ++v) {
            const auto ih = i * s.h - p.h + u, iw = j * s.w - p.w + v;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            const double val = xv[static_cast<std::size_t>((nc * H + ih) * W + iw)];
            best = std::max(best, val), sum += val, ++inside;
          }
        y.push_back(is_max ? best : sum / static_cast<double>(count_include_pad ? k.h * k.w : inside));
      }
  return y;
}

}  // namespace

TEST_CASE("max_pool2d: values and argmax gradient worked out by hand") {
  // 4x4 input, 2x2 windows, stride 2
  Tensor x = tensor({1, 5, 2, 0,  //
                     3, 4, 8, 1,  //
                     0, 2, 7, 7,  //
                     9, 1, 3, 6},
                    {1, 1, 4, 4}, DType::f64)
                 .requires_grad_();
  Tensor y = max_pool2d(x, 2);
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  test::check_values(y, {5, 8, 9, 7});
  sum(mul(y, tensor({1, 2, 3, 4}, {1, 1, 2, 2}, DType::f64))).backward();
  // each window's gradient lands on its max; the tie 7, 7 goes to the first in row-major order
  test::check_values(x.grad(), {0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 4, 0, 3, 0, 0, 0});
  // unbatched (C, H, W) input gives (C, Ho, Wo)
  CHECK(max_pool2d(zeros({3, 4, 4}), 2).shape() == Shape{3, 2, 2});
}

TEST_CASE("avg_pool2d: padding counts in the divisor by default (count_include_pad)") {
  Tensor x = tensor({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  // 2x2 windows, stride 2, padding 1: the corner window holds x[0,0] and three pad zeros
  test::check_values(avg_pool2d(x, 2, 2, 1), {1.0 / 4, (2 + 3) / 4.0, (4 + 7) / 4.0, (5 + 6 + 8 + 9) / 4.0});
  test::check_values(avg_pool2d(x, 2, 2, 1, false, false), {1.0, 2.5, 5.5, 7.0});
  // default stride = kernel
  test::check_values(avg_pool2d(x, 3), {5.0});
}

TEST_CASE("max_pool2d / avg_pool2d: match the definition with overlapping windows and padding") {
  Generator gen(5);
  Tensor x = randn({2, 3, 7, 6}, DType::f64, &gen);
  struct Case {
    Size2 k, s, p;
  };
  // {2, 2, 0} takes max pooling's 2 x 2 fast path (7 x 6: the last row is dropped); {3, 1, 0}
  // has every window inside the image (branch-free path); the padded ones mix both paths.
  for (const Case c : {Case{2, 2, 0}, Case{3, 1, 0}, Case{3, 2, 0}, Case{3, 2, 1}, Case{{3, 2}, {1, 2}, {1, 0}},
                       Case{2, 1, 1}, Case{5, 3, 2}}) {
    CAPTURE(c.k.h);
    CAPTURE(c.s.h);
    CAPTURE(c.p.h);
    test::check_values(max_pool2d(x, c.k, c.s, c.p), pool_reference(x, true, c.k, c.s, c.p, true), 1e-12);
    test::check_values(avg_pool2d(x, c.k, c.s, c.p), pool_reference(x, false, c.k, c.s, c.p, true), 1e-12);
    test::check_values(avg_pool2d(x, c.k, c.s, c.p, false, false), pool_reference(x, false, c.k, c.s, c.p, false),
                       1e-12);
  }
  // float32 agrees too
  test::check_values(max_pool2d(x.to(DType::f32), 3, 2, 1), pool_reference(x, true, 3, 2, 1, true), 1e-6);
  test::check_values(avg_pool2d(x.to(DType::f32), 3, 2, 1), pool_reference(x, false, 3, 2, 1, true), 1e-6);
}

TEST_CASE("max_pool2d: ceil_mode, dilation and NaN propagation") {
  Tensor x = arange(25, DType::f64).reshape({1, 1, 5, 5});
  // kernel 2 stride 2: floor gives 2x2, ceil gives 3x3 (the last window is partial)
  CHECK(max_pool2d(x, 2).shape() == Shape{1, 1, 2, 2});
  test::check_values(max_pool2d(x, 2, 2, 0, 1, true), {6, 8, 9, 16, 18, 19, 21, 23, 24});
  // dilation 2, kernel 2: taps (i, j), (i, j+2), (i+2, j), (i+2, j+2)
  test::check_values(max_pool2d(x, 2, 1, 0, 2), {12, 13, 14, 17, 18, 19, 22, 23, 24});
  Tensor xn = tensor({1, std::nan(""), 3, 4}, {1, 1, 2, 2});
  CHECK(std::isnan(max_pool2d(xn, 2).item()));
  // a NaN anywhere in a window wins and stays, also when larger values follow it; both the
  // 2 x 2 fast path (kernel 2) and the general path (kernel 3, stride 1) on float32 and float64
  for (const DType dt : {DType::f32, DType::f64})
    for (std::int64_t at = 0; at < 9; ++at) {
      std::vector<double> v{-1, 5, 2, 7, 0, 9, 3, 8, 4};
      v[static_cast<std::size_t>(at)] = std::nan("");
      const Tensor x3 = from_vector(v, {1, 1, 3, 3}, dt);
      CHECK(std::isnan(max_pool2d(x3, 3, 1).item()));
      const bool in_first_window = at == 0 || at == 1 || at == 3 || at == 4;
      CHECK(std::isnan(max_pool2d(x3, 2).item()) == in_first_window);
    }
}

TEST_CASE("max_pool2d: the gradient lands on the first maximum of each window, ties included") {
  // values from {0, 1, 2}: many ties; 2 x 2 stride 2 (fast path) and 3 x 3 stride 1 (general)
  Generator gen(11);
  std::vector<double> xv(2 * 3 * 6 * 8);
  for (double& v : xv) v = static_cast<double>(gen.randint(0, 3));
  for (const std::int64_t k : {2, 3}) {
    const std::int64_t s = k == 2 ? 2 : 1;
    Tensor x = from_vector(xv, {2, 3, 6, 8}, DType::f64).requires_grad_();
    Tensor y = max_pool2d(x, k, s);
    sum(y).backward();
    const std::int64_t Ho = y.size(2), Wo = y.size(3);
    std::vector<double> expect(xv.size(), 0.0);
    for (std::int64_t p = 0; p < 6; ++p)
      for (std::int64_t i = 0; i < Ho; ++i)
        for (std::int64_t j = 0; j < Wo; ++j) {
          std::int64_t best = -1;  // first maximum in row-major window order
          for (std::int64_t u = 0; u < k; ++u)
            for (std::int64_t v = 0; v < k; ++v) {
              const std::int64_t at = p * 48 + (i * s + u) * 8 + j * s + v;
              if (best < 0 || xv[static_cast<std::size_t>(at)] > xv[static_cast<std::size_t>(best)]) best = at;
            }
          expect[static_cast<std::size_t>(best)] += 1;
        }
    CAPTURE(k);
    test::check_values(x.grad(), expect);
  }
}

TEST_CASE("adaptive_avg_pool2d: PyTorch's windows and global average pooling") {
  Tensor x = arange(35, DType::f64).reshape({1, 1, 5, 7});
  // output 1: the mean of everything
  test::check_values(adaptive_avg_pool2d(x, 1), {17.0});
  // output (2, 3) on (5, 7): rows [0,3) and [2,5); cols [0,3), [2,5), [4,7) (overlapping)
  std::vector<double> expect;
  for (auto [h0, h1] : {std::pair{0, 3}, std::pair{2, 5}})
    for (auto [w0, w1] : {std::pair{0, 3}, std::pair{2, 5}, std::pair{4, 7}}) {
      double s = 0;
      for (int i = h0; i < h1; ++i)
        for (int j = w0; j < w1; ++j) s += i * 7 + j;
      expect.push_back(s / ((h1 - h0) * (w1 - w0)));
    }
  Tensor y = adaptive_avg_pool2d(x, {2, 3});
  CHECK(y.shape() == Shape{1, 1, 2, 3});
  test::check_values(y, expect);
  // an output that divides the input is plain average pooling
  Tensor z = test::rnd({2, 3, 6, 4}, 3, false);
  test::check_values(adaptive_avg_pool2d(z, {3, 2}), avg_pool2d(z, 2).to_vector(), 1e-12);
}

TEST_CASE("pooling: float64 gradcheck, overlapping windows (kernel 3, stride 2) and padding") {
  Tensor x = test::rnd({2, 3, 7, 5}, 11);
  auto check = [&](auto fn) { CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& v) { return fn(v[0]); }, {x})); };
  check([](const Tensor& t) { return max_pool2d(t, 3, 2); });
  check([](const Tensor& t) { return max_pool2d(t, 3, 2, 1); });
  check([](const Tensor& t) { return max_pool2d(t, {3, 2}, Size2{1, 2}, {1, 0}, {2, 1}, true); });
  check([](const Tensor& t) { return avg_pool2d(t, 3, 2); });
  check([](const Tensor& t) { return avg_pool2d(t, 3, 2, 1); });
  check([](const Tensor& t) { return avg_pool2d(t, 3, 2, 1, true, false); });
  check([](const Tensor& t) { return adaptive_avg_pool2d(t, {3, 2}); });
  check([](const Tensor& t) { return adaptive_avg_pool2d(t, 1); });
}

TEST_CASE("pooling: errors name the op and the shapes") {
  Tensor x = zeros({2, 3, 4, 4});
  CHECK_THROWS_WITH_AS(max_pool2d(zeros({4, 4}), 2), doctest::Contains("max_pool2d: expected a 3-d (C, H, W) or 4-d"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(avg_pool2d(zeros({1, 1, 1, 4, 4}), 2), doctest::Contains("avg_pool2d: expected"), ShapeError);
  CHECK_THROWS_WITH_AS(max_pool2d(x, 5),
                       doctest::Contains("max_pool2d: kernel (5, 5) is larger than the padded input (4, 4) of [2, 3, 4, 4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(avg_pool2d(x, 2, Size2(0)), doctest::Contains("avg_pool2d: stride must be positive"), ValueError);
  CHECK_THROWS_WITH_AS(max_pool2d(x, 0), doctest::Contains("kernel size must be positive"), ValueError);
  CHECK_THROWS_WITH_AS(max_pool2d(x, 2, 2, 2), doctest::Contains("half the kernel size"), ValueError);
  CHECK_THROWS_WITH_AS(adaptive_avg_pool2d(x, 0), doctest::Contains("adaptive_avg_pool2d: output size"), ValueError);
  CHECK_THROWS_WITH_AS(max_pool2d(zeros({1, 1, 4, 4}, DType::i64), 2), doctest::Contains("floating"), DTypeError);
}

TEST_CASE("max_pool2d: the 2 x 2 path routes the gradient by the scan rule with NaNs, odd sizes, both dtypes") {
  // Scan each window in row-major order, taking an element that is larger than the best so
  // far or NaN: ties go to the first maximum, NaNs to the last NaN. 5 x 7: the last row and
  // column are in no window and get zero gradient.
  Generator gen(3);
  std::vector<double> xv(2 * 2 * 5 * 7);
  for (double& v : xv) {
    const auto r = gen.randint(0, 4);
    v = r == 3 ? std::nan("") : static_cast<double>(r);
  }
  for (const DType dt : {DType::f64, DType::f32}) {
    Tensor x = from_vector(xv, {2, 2, 5, 7}, dt).requires_grad_();
    Tensor y = max_pool2d(x, 2);
    REQUIRE(y.shape() == Shape{2, 2, 2, 3});
    Tensor w = add(arange(24, dt).reshape({2, 2, 2, 3}), full({1}, 1.0, dt));  // a distinct weight per output
    sum(mul(y, w)).backward();
    std::vector<double> expect(xv.size(), 0.0);
    const auto yv = y.to_vector();
    for (std::int64_t p = 0; p < 4; ++p)
      for (std::int64_t i = 0; i < 2; ++i)
        for (std::int64_t j = 0; j < 3; ++j) {
          std::int64_t best = p * 35 + 2 * i * 7 + 2 * j;
          for (std::int64_t u = 0; u < 2; ++u)
            for (std::int64_t v = 0; v < 2; ++v) {
              const std::int64_t at = p * 35 + (2 * i + u) * 7 + 2 * j + v;
              const double val = xv[static_cast<std::size_t>(at)];
              if (val > xv[static_cast<std::size_t>(best)] || std::isnan(val)) best = at;
            }
          const double expect_y = xv[static_cast<std::size_t>(best)];
          const double got_y = yv[static_cast<std::size_t>((p * 2 + i) * 3 + j)];
          CHECK((std::isnan(expect_y) ? std::isnan(got_y) : got_y == expect_y));
          expect[static_cast<std::size_t>(best)] += static_cast<double>(p * 6 + i * 3 + j + 1);
        }
    CAPTURE(dt);
    test::check_values(x.grad(), expect);
  }
}

TEST_CASE("max_pool2d: the 2 x 2 path is twice differentiable (float64 gradcheck and gradgradcheck)") {
  Generator gen(8);
  Tensor x = randn({2, 3, 5, 6}, DType::f64, &gen).requires_grad_();
  auto f = [](const std::vector<Tensor>& in) { return max_pool2d(in[0], 2); };
  CHECK_GRADCHECK(gradcheck(f, {x}));
  CHECK_GRADCHECK(gradgradcheck(f, {x}));
}

TEST_CASE("relu keeps NaN and lets the gradient through it, as PyTorch, and -0 gives +0") {
  for (const DType dt : {DType::f32, DType::f64}) {
    Tensor x = from_vector({-1.0, -0.0, 0.0, 2.0, std::nan("")}, {5}, dt).requires_grad_();
    Tensor y = relu(x);
    const auto v = y.to_vector();
    CHECK(v[0] == 0.0);
    CHECK((v[1] == 0.0 && !std::signbit(v[1])));
    CHECK(v[2] == 0.0);
    CHECK(v[3] == 2.0);
    CHECK(std::isnan(v[4]));
    sum(mul(y, from_vector({1, 2, 3, 4, 5}, {5}, dt))).backward();
    test::check_values(x.grad(), {0, 0, 0, 4, 5});  // threshold_backward: g where the output is not <= 0
  }
}

TEST_CASE("relu_max_pool2d equals max_pool2d(relu(x)) in values and gradients: ties, NaNs, odd sizes, fallbacks") {
  // values in {-1, 0, 1, 2, NaN}: windows entirely <= 0 (gradient 0), ties, NaNs
  Generator gen(21);
  std::vector<double> xv(2 * 3 * 7 * 9);
  for (double& v : xv) {
    const auto r = gen.randint(0, 9);
    v = r == 8 ? std::nan("") : static_cast<double>(r % 4) - 1.0;
  }
  struct Case {
    Size2 k, s, p;
  };
  for (const DType dt : {DType::f64, DType::f32})
    for (const Case c : {Case{2, 2, 0}, Case{3, 1, 0}, Case{3, 2, 1}}) {  // the 2 x 2 path, then composed
      CAPTURE(dt);
      CAPTURE(c.k.h);
      Tensor x1 = from_vector(xv, {2, 3, 7, 9}, dt).requires_grad_();
      Tensor x2 = from_vector(xv, {2, 3, 7, 9}, dt).requires_grad_();
      Tensor y1 = relu_max_pool2d(x1, c.k, c.s, c.p);
      Tensor y2 = max_pool2d(relu(x2), c.k, c.s, c.p);
      REQUIRE(y1.shape() == y2.shape());
      const auto v1 = y1.to_vector(), v2 = y2.to_vector();
      for (std::size_t i = 0; i < v1.size(); ++i) CHECK((v1[i] == v2[i] || (std::isnan(v1[i]) && std::isnan(v2[i]))));
      Tensor w = add(arange(y1.numel(), dt).reshape(y1.shape()), full({1}, 1.0, dt));
      sum(mul(y1, w)).backward();
      sum(mul(y2, w)).backward();
      test::check_values(x1.grad(), x2.grad().to_vector());
    }
  // unbatched (C, H, W)
  Tensor x3 = from_vector(std::vector<double>(xv.begin(), xv.begin() + 3 * 7 * 9), {3, 7, 9}, DType::f64);
  CHECK(relu_max_pool2d(x3, 2).shape() == Shape{3, 3, 4});
}

TEST_CASE("relu_max_pool2d: float64 gradcheck and gradgradcheck") {
  Generator gen(4);
  Tensor x = randn({2, 2, 4, 6}, DType::f64, &gen).requires_grad_();
  auto f = [](const std::vector<Tensor>& in) { return relu_max_pool2d(in[0], 2); };
  CHECK_GRADCHECK(gradcheck(f, {x}));
  CHECK_GRADCHECK(gradgradcheck(f, {x}));
}
