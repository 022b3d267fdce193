#include "tests/helpers.h"

using namespace ng;

namespace {

// Reference: the convolution sum written out as nested loops, straight from its definition.
std::vector<double> conv_reference(const Tensor& x, const Tensor& w, const Tensor& b, Size2 s, Size2 p, Size2 d,
                                   std::int64_t groups, Shape& out_shape) {
  const auto N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const auto O = w.size(0), Cg = w.size(1), kh = w.size(2), kw = w.size(3);
  const auto Og = O / groups;
  const auto Ho = (H + 2 * p.h - d.h * (kh - 1) - 1) / s.h + 1, Wo = (W + 2 * p.w - d.w * (kw - 1) - 1) / s.w + 1;
  out_shape = Shape{N, O, Ho, Wo};
  const auto xv = x.to_vector(), wv = w.to_vector();
  const auto bv = b.defined() ? b.to_vector() : std::vector<double>(static_cast<std::size_t>(O), 0.0);
  std::vector<double> y;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t o = 0; o < O; ++o)
      for (std::int64_t i = 0; i < Ho; ++i)
        for (std::int64_t j = 0; j < Wo; ++j) {
          double acc = bv[static_cast<std::size_t>(o)];
          const auto g = o / Og;
          for (std::int64_t c = 0; c < Cg; ++c)
            for (std::int64_t u = 0; u < kh; ++u)
              for (std::int64_t v = 0; v < kw; ++v) {
                const auto ih = i * s.h - p.h + u * d.h, iw = j * s.w - p.w + v * d.w;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const auto ci = g * Cg + c;
                acc += xv[static_cast<std::size_t>(((n * C + ci) * H + ih) * W + iw)] *
                       wv[static_cast<std::size_t>(((o * Cg + c) * kh + u) * kw + v)];
              }
          y.push_back(acc);
        }
  return y;
}

void check_against_reference(const Tensor& x, const Tensor& w, const Tensor& b, Size2 s, Size2 p, Size2 d,
                             std::int64_t groups, double tol) {
  Shape expect_shape;
  const auto expect = conv_reference(x, w, b, s, p, d, groups, expect_shape);
  const Tensor y = conv2d(x, w, b, s, p, d, groups);
  CHECK(y.shape() == expect_shape);
  test::check_values(y, expect, tol);
}

}  // namespace

TEST_CASE("conv2d: a 3x3 input and 2x2 kernel worked out by hand") {
  Tensor x = tensor({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  Tensor w = tensor({1, 0, 0, -1}, {1, 1, 2, 2});  // x[i, j] - x[i+1, j+1]
  Tensor b = tensor({0.5}, {1});
  test::check_values(conv2d(x, w, b), {-3.5, -3.5, -3.5, -3.5});
  // padding 1, stride 2: out(i, j) = xp[2i, 2j] - xp[2i+1, 2j+1], xp = x with a zero border
  // (0,0): 0 - 1 = -1; (0,2): 0 - 3 = -3; (2,0): 0 - 7 = -7; (2,2): 5 - 9 = -4
  test::check_values(conv2d(x, w, Tensor(), 2, 1), {-1, -3, -7, -4});
}

TEST_CASE("conv2d: matches a nested-loop convolution (stride, padding, dilation, groups, odd sizes)") {
  Generator gen(7);
  struct Case {
    std::int64_t N, C, H, W, O, kh, kw;
    Size2 s, p, d;
    std::int64_t groups;
  };
  const Case cases[] = {
      {2, 3, 7, 5, 5, 3, 3, 1, 0, 1, 1},          {2, 4, 7, 7, 6, 3, 3, 2, 1, 2, 2},
      {1, 3, 5, 7, 3, 1, 1, 1, 0, 1, 1},          {3, 6, 9, 8, 3, 3, 2, {2, 1}, {1, 0}, {1, 2}, 3},
      {2, 2, 5, 5, 4, 5, 5, 1, 2, 1, 2},          {1, 3, 6, 6, 3, 3, 3, 3, 1, 1, 3},
  };
  for (const auto& c : cases) {
    CAPTURE(c.groups);
    Tensor x = randn({c.N, c.C, c.H, c.W}, DType::f64, &gen);
    Tensor w = randn({c.O, c.C / c.groups, c.kh, c.kw}, DType::f64, &gen);
    Tensor b = randn({c.O}, DType::f64, &gen);
    check_against_reference(x, w, b, c.s, c.p, c.d, c.groups, 1e-10);
    check_against_reference(x, w, Tensor(), c.s, c.p, c.d, c.groups, 1e-10);
    check_against_reference(x.to(DType::f32), w.to(DType::f32), b.to(DType::f32), c.s, c.p, c.d, c.groups, 1e-4);
  }
}

TEST_CASE("conv2d: the OpenMP (batch-parallel) path agrees with image-by-image calls") {
  Generator gen(3);
  const std::int64_t N = 4, C = 8, H = 20, W = 20, O = 16;
  Tensor x = randn({N, C, H, W}, DType::f64, &gen).requires_grad_();
  Tensor w = randn({O, C, 3, 3}, DType::f64, &gen).requires_grad_();
  Tensor b = randn({O}, DType::f64, &gen).requires_grad_();
  Tensor r = randn({N, O, H, W}, DType::f64, &gen);
  check_against_reference(x.detach(), w.detach(), b.detach(), 1, 1, 1, 1, 1e-10);
  sum(mul(conv2d(x, w, b, 1, 1), r)).backward();  // N * O * K * P = 4*16*72*400: parallel
  // The same loss image by image (N = 1 never takes the parallel path); gradients add up.
  const auto xv = x.detach().to_vector(), rv = r.to_vector();
  std::vector<double> gx;
  Tensor w1 = w.detach().clone().requires_grad_(), b1 = b.detach().clone().requires_grad_();
  for (std::int64_t n = 0; n < N; ++n) {
    auto part = [n](const std::vector<double>& v, std::int64_t per) {
      return std::vector<double>(v.begin() + n * per, v.begin() + (n + 1) * per);
    };
    Tensor xn = from_vector(part(xv, C * H * W), {1, C, H, W}, DType::f64).requires_grad_();
    Tensor rn = from_vector(part(rv, O * H * W), {1, O, H, W}, DType::f64);
    sum(mul(conv2d(xn, w1, b1, 1, 1), rn)).backward();
    const auto g = xn.grad().to_vector();
    gx.insert(gx.end(), g.begin(), g.end());
  }
  test::check_values(x.grad(), gx, 1e-10);
  test::check_values(w.grad(), w1.grad().to_vector(), 1e-10);
  test::check_values(b.grad(), b1.grad().to_vector(), 1e-10);
}

TEST_CASE("conv2d: weight gradients are bit-identical from run to run at 4 threads") {
  // Each thread sums its (static) share of the images into its own dW; the shares are added
  // in thread order. (Added under a lock in whatever order the threads finished, float sums
  // of 3 or more parts differed in the last bits from run to run.) float32, so that the order
  // of additions shows.
  const test::OmpThreads threads(4);
  Generator gen(5);
  const std::int64_t N = 8, C = 8, H = 16, W = 16, O = 16;  // N * O * K * P = 8*16*72*256: parallel
  const Tensor x = randn({N, C, H, W}, DType::f32, &gen), r = randn({N, O, H, W}, DType::f32, &gen);
  const Tensor w0 = randn({O, C, 3, 3}, DType::f32, &gen);
  std::vector<double> first;
  for (int run = 0; run < 20; ++run) {
    Tensor w = w0.clone().requires_grad_();
    sum(mul(conv2d(x, w, {}, 1, 1), r)).backward();
    const auto g = w.grad().to_vector();
    if (run == 0) first = g;
    CAPTURE(run);
    REQUIRE(g == first);
  }
}

TEST_CASE("conv2d: float64 gradcheck w.r.t. input, weight and bias") {
  auto f = [](Size2 s, Size2 p, Size2 d, std::int64_t groups) {
    return [=](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], v[2], s, p, d, groups); };
  };
  SUBCASE("stride 2, padding 1, dilation 2, groups 2") {
    CHECK_GRADCHECK(gradcheck(f(2, 1, 2, 2), {test::rnd({2, 4, 7, 6}, 1), test::rnd({6, 2, 3, 3}, 2), test::rnd({6}, 3)}));
  }
  SUBCASE("asymmetric stride/padding/dilation, rectangular kernel") {
    CHECK_GRADCHECK(gradcheck(f({1, 2}, {2, 0}, {1, 2}, 1),
                              {test::rnd({1, 3, 5, 7}, 4), test::rnd({2, 3, 3, 2}, 5), test::rnd({2}, 6)}));
  }
  SUBCASE("1x1 kernel (the no-im2col path)") {
    CHECK_GRADCHECK(gradcheck(f(1, 0, 1, 1), {test::rnd({2, 3, 3, 5}, 7), test::rnd({5, 3, 1, 1}, 8), test::rnd({5}, 9)}));
  }
  SUBCASE("depthwise (groups = channels)") {
    CHECK_GRADCHECK(gradcheck(f(1, 1, 1, 3), {test::rnd({2, 3, 5, 5}, 10), test::rnd({3, 1, 3, 3}, 11), test::rnd({3}, 12)}));
  }
}

TEST_CASE("conv2d: errors name the op and the shapes") {
  Tensor x = zeros({2, 4, 5, 5}), w = zeros({6, 2, 3, 3});
  CHECK_THROWS_WITH_AS(conv2d(zeros({4, 5, 5}), w), doctest::Contains("conv2d: expected a 4-d input"), ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({6, 2, 3})), doctest::Contains("4-d weight"), ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, w), doctest::Contains("[6, 2, 3, 3] expects 2 input channels"), ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({6, 1, 3, 3}), Tensor(), 1, 0, 1, 3),
                       doctest::Contains("conv2d: groups=3 does not divide the input channels of [2, 4, 5, 5]"),
                       ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({5, 2, 3, 3}), Tensor(), 1, 0, 1, 2),
                       doctest::Contains("does not divide the output channels"), ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 0, 0, 1, 2), doctest::Contains("conv2d: stride must be positive"),
                       ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 1, -1, 1, 2), doctest::Contains("padding"), ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 1, 0, 0, 2), doctest::Contains("dilation"), ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({6, 2, 7, 3}), Tensor(), 1, 0, 1, 2),
                       doctest::Contains("kernel size (dilated) (7, 3) is larger than the padded input (5, 5)"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 1, 0, 3, 2), doctest::Contains("(7, 7) is larger"), ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, zeros({5}), 1, 0, 1, 2), doctest::Contains("bias must have shape [6]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({6, 2, 3, 3}, DType::f64), Tensor(), 1, 0, 1, 2),
                       doctest::Contains("dtypes differ"), DTypeError);
}

TEST_CASE("conv2d: double backward (create_graph) is differentiable, checked by gradgradcheck") {
  // More cases (groups, stride, dilation, pointwise, third order) in test_double_backward.cpp.
  Tensor x = test::rnd({1, 1, 3, 3}, 1), w = test::rnd({1, 1, 2, 2}, 2);
  CHECK_GRADCHECK(gradgradcheck([](const std::vector<Tensor>& in) { return tanh(conv2d(in[0], in[1])); }, {x, w}));
}
