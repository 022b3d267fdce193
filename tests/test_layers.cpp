#include <cmath>
#include <limits>

#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/dropout.h"
#include "layers/embedding.h"
#include "layers/flatten.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/pool.h"
#include "tests/helpers.h"

using namespace ng;
using namespace ng::nn;

namespace {
using test::max_abs;
}  // namespace

TEST_CASE("init: gains, fans and PyTorch's default bounds") {
  CHECK(init::calculate_gain("relu") == doctest::Approx(std::sqrt(2.0)));
  CHECK(init::calculate_gain("tanh") == doctest::Approx(5.0 / 3.0));
  CHECK(init::calculate_gain("leaky_relu", std::sqrt(5.0)) == doctest::Approx(std::sqrt(1.0 / 3.0)));
  CHECK_THROWS_WITH_AS(init::calculate_gain("swish"), doctest::Contains("unsupported nonlinearity 'swish'"), ValueError);
  Tensor w = zeros({8, 3, 5, 7});
  CHECK(init::calculate_fan_in_and_fan_out(w) == std::pair<std::int64_t, std::int64_t>{105, 280});
  CHECK_THROWS_AS(init::calculate_fan_in_and_fan_out(zeros({4})), ShapeError);
  // kaiming_uniform_(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  Generator g(1);
  init::kaiming_uniform_(w, std::sqrt(5.0), init::FanMode::fan_in, "leaky_relu", &g);
  const double bound = 1.0 / std::sqrt(105.0);
  CHECK(max_abs(w) <= bound);
  CHECK(max_abs(w) > 0.95 * bound);  // 840 draws fill the interval
  // kaiming_normal_(relu, fan_out): std = sqrt(2 / 280)
  Tensor big = zeros({200, 100});
  init::kaiming_normal_(big, 0.0, init::FanMode::fan_out, "relu", &g);
  const double sd = std::sqrt(mean(mul(big, big)).item());
  CHECK(sd == doctest::Approx(std::sqrt(2.0 / 200.0)).epsilon(0.03));
  init::xavier_uniform_(big, 1.0, &g);
  CHECK(max_abs(big) <= std::sqrt(6.0 / 300.0));
}

TEST_CASE("Linear: default init, values, shapes, seeding and repr") {
  Generator g1(42), g2(42);
  Linear a(5, 3, true, &g1), b(5, 3, true, &g2);
  CHECK(a.weight.shape() == Shape{3, 5});
  CHECK(a.bias.shape() == Shape{3});
  CHECK(a.weight.to_vector() == b.weight.to_vector());  // same seed, same parameters
  CHECK(a.bias.to_vector() == b.bias.to_vector());
  CHECK(max_abs(a.weight) <= 1 / std::sqrt(5.0));
  CHECK(max_abs(a.bias) <= 1 / std::sqrt(5.0));
  CHECK(a.extra_repr() == "in_features=5, out_features=3, bias=True");
  CHECK(a.repr() == "Linear(in_features=5, out_features=3, bias=True)");

  Linear l(2, 2, true, nullptr, DType::f64);
  {
    NoGradGuard ng;
    l.weight.copy_(tensor({1, 2, 3, 4}, {2, 2}, DType::f64));
    l.bias.copy_(tensor({0.5, -1}, {2}, DType::f64));
  }
  // y = x W^T + b: [1, 1] -> [1+2+0.5, 3+4-1]
  test::check_values(l(tensor({1, 1, 0, 2}, {2, 2}, DType::f64)), {3.5, 6, 4.5, 7});
  CHECK(l(zeros({4, 3, 2}, DType::f64)).shape() == Shape{4, 3, 2});

  Linear nb(4, 2, false);
  CHECK(nb.named_parameters().size() == 1);
  CHECK(nb.repr() == "Linear(in_features=4, out_features=2, bias=False)");
  CHECK_THROWS_WITH_AS(nb(zeros({3, 5})),
                       doctest::Contains("Linear(in_features=4, out_features=2, bias=False): input [3, 5] has 5 features"),
                       ShapeError);
}

TEST_CASE("Linear and Conv2d: float64 module gradcheck w.r.t. input and parameters") {
  Generator g(3);
  SUBCASE("Linear") {
    Linear l(3, 5, true, &g, DType::f64);
    CHECK_GRADCHECK(nn::gradcheck(l, test::rnd({2, 3}, 1)));
  }
  SUBCASE("Conv2d stride 2, padding 1, dilation 2, groups 2") {
    Conv2d c(4, 6, 3, 2, 1, 2, 2, true, &g, DType::f64);
    CHECK(c.weight.shape() == Shape{6, 2, 3, 3});
    CHECK_GRADCHECK(nn::gradcheck(c, test::rnd({2, 4, 7, 5}, 2)));
  }
  SUBCASE("Conv2d rectangular kernel, no bias, unbatched input") {
    Conv2d c(3, 2, {3, 1}, {1, 2}, {1, 0}, 1, 1, false, &g, DType::f64);
    CHECK_GRADCHECK(nn::gradcheck(c, test::rnd({3, 5, 5}, 3)));
  }
}

TEST_CASE("Conv2d: shapes, default init bound, repr like PyTorch, errors") {
  Generator g(0);
  Conv2d c(3, 8, 3, 1, 1, 1, 1, true, &g);
  CHECK(c(zeros({2, 3, 7, 5})).shape() == Shape{2, 8, 7, 5});
  CHECK(c(zeros({3, 7, 5})).shape() == Shape{8, 7, 5});
  CHECK(max_abs(c.weight) <= 1 / std::sqrt(27.0));
  CHECK(max_abs(c.bias) <= 1 / std::sqrt(27.0));
  CHECK(c.repr() == "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))");
  Conv2d d(4, 6, {3, 2}, 2, 0, 2, 2, false);
  CHECK(d.repr() == "Conv2d(4, 6, kernel_size=(3, 2), stride=(2, 2), dilation=(2, 2), groups=2, bias=False)");
  CHECK(Conv2d(2, 2, 3, 2, 1).repr() == "Conv2d(2, 2, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))");
  CHECK(d.num_parameters() == 6 * 2 * 3 * 2);
  CHECK_THROWS_WITH_AS(c(zeros({2, 4, 7, 5})), doctest::Contains("Conv2d(3, 8, kernel_size=(3, 3)"), ShapeError);
  CHECK_THROWS_WITH_AS(c(zeros({2, 4, 7, 5})), doctest::Contains("input [2, 4, 7, 5] has 4 channels: expected 3 vs actual 4"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(c(zeros({7, 5})), doctest::Contains("expected a 3-d (C, H, W) or 4-d"), ShapeError);
  CHECK_THROWS_WITH_AS(Conv2d(3, 6, 3, 1, 0, 1, 2), doctest::Contains("in_channels must be divisible by groups: 3 vs groups=2"),
                       ValueError);
  CHECK_THROWS_WITH_AS(Conv2d(4, 6, 3, 0), doctest::Contains("Conv2d: stride must be positive"), ValueError);
  CHECK_THROWS_WITH_AS(Conv2d(4, 6, 9)(zeros({1, 4, 5, 5})), doctest::Contains("larger than the padded input"),
                       ShapeError);
}

TEST_CASE("Conv2d: padding 'same' and 'valid' as PyTorch, asymmetric for even kernels") {
  Generator g(5);
  Tensor x = test::rnd({2, 3, 6, 7}, 50, false);
  // odd kernel with dilation: 'same' is the symmetric padding dilation * (k - 1) / 2
  Conv2d s3(3, 4, 3, 1, "same", 2, 1, true, &g, DType::f64);
  CHECK(s3.repr() == "Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=same, dilation=(2, 2))");
  test::check_values(s3(x), conv2d(x, s3.weight, s3.bias, 1, 2, 2).to_vector(), 1e-12);
  // even kernels (2, 4): total padding 1 and 3 split left = total / 2, right = the rest
  Conv2d s24(3, 2, {2, 4}, 1, "same", 1, 1, true, &g, DType::f64);
  const Tensor y = s24(x);
  REQUIRE(y.shape() == Shape{2, 2, 6, 7});
  // y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] x[n, c, i + p - 0, j + q - 1] (zero outside)
  for (std::int64_t n : {0, 1})
    for (std::int64_t o : {0, 1})
      for (std::int64_t i : {0, 3, 5})
        for (std::int64_t j : {0, 1, 5, 6}) {
          double want = s24.bias.at({o});
          for (std::int64_t c = 0; c < 3; ++c)
            for (std::int64_t p = 0; p < 2; ++p)
              for (std::int64_t q = 0; q < 4; ++q) {
                const std::int64_t r = i + p, k = j + q - 1;
                if (r >= 0 && r < 6 && k >= 0 && k < 7) want += s24.weight.at({o, c, p, q}) * x.at({n, c, r, k});
              }
          CHECK(y.at({n, o, i, j}) == doctest::Approx(want));
        }
  CHECK(s24(select(x, 0, 1)).shape() == Shape{2, 6, 7});  // unbatched
  CHECK_GRADCHECK(nn::gradcheck(s24, test::rnd({1, 3, 4, 5}, 51)));
  // 'valid' is no padding
  Conv2d v(3, 2, 3, 2, "valid", 1, 1, false, &g, DType::f64);
  CHECK(v.repr() == "Conv2d(3, 2, kernel_size=(3, 3), stride=(2, 2), padding=valid, bias=False)");
  test::check_values(v(x), conv2d(x, v.weight, Tensor(), 2, 0).to_vector(), 1e-12);
  CHECK_THROWS_WITH_AS(Conv2d(3, 2, 3, 2, "same"),
                       doctest::Contains("Conv2d: padding='same' is not supported for strided convolutions (stride (2, 2))"),
                       ValueError);
  CHECK_THROWS_WITH_AS(Conv2d(3, 2, 3, 1, "full"),
                       doctest::Contains("Conv2d: invalid padding string 'full', should be one of 'valid', 'same'"), ValueError);
}

TEST_CASE("MaxPool2d / AvgPool2d / AdaptiveAvgPool2d: shapes, repr, module gradcheck") {
  MaxPool2d mp(3, 2);
  AvgPool2d ap(3, 2, 1);
  AdaptiveAvgPool2d gap(1);
  CHECK(mp(zeros({2, 3, 7, 5})).shape() == Shape{2, 3, 3, 2});
  CHECK(ap(zeros({2, 3, 7, 5})).shape() == Shape{2, 3, 4, 3});
  CHECK(gap(zeros({2, 3, 7, 5})).shape() == Shape{2, 3, 1, 1});
  CHECK(MaxPool2d(2).repr() == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  CHECK(ap.repr() == "AvgPool2d(kernel_size=3, stride=2, padding=1)");
  CHECK(AdaptiveAvgPool2d({2, 3}).repr() == "AdaptiveAvgPool2d(output_size=(2, 3))");
  CHECK(gap.repr() == "AdaptiveAvgPool2d(output_size=1)");
  Tensor x = test::rnd({2, 3, 7, 5}, 4);
  CHECK_GRADCHECK(nn::gradcheck(mp, x));
  CHECK_GRADCHECK(nn::gradcheck(ap, x));
  CHECK_GRADCHECK(nn::gradcheck(gap, x));
  CHECK_THROWS_WITH_AS(mp(zeros({3, 2, 2})), doctest::Contains("max_pool2d: kernel (3, 3) is larger"), ShapeError);
}

TEST_CASE("activations and Flatten: values, gradcheck, repr") {
  Tensor x = tensor({-2, -0.5, 0.5, 2}, {2, 2}, DType::f64);
  test::check_values(ReLU()(x), {0, 0, 0.5, 2});
  test::check_values(LeakyReLU(0.1)(x), {-0.2, -0.05, 0.5, 2});
  test::check_values(Tanh()(x), {std::tanh(-2), std::tanh(-0.5), std::tanh(0.5), std::tanh(2)});
  test::check_values(Sigmoid()(x), {1 / (1 + std::exp(2)), 1 / (1 + std::exp(0.5)), 1 / (1 + std::exp(-0.5)),
                                    1 / (1 + std::exp(-2))});
  // GELU(x) = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2
  std::vector<double> gelu_ref;
  for (double v : {-2.0, -0.5, 0.5, 2.0}) gelu_ref.push_back(v * 0.5 * (1 + std::erf(v / std::sqrt(2.0))));
  test::check_values(GELU()(x), gelu_ref);
  CHECK(ReLU().repr() == "ReLU()");
  CHECK(LeakyReLU().repr() == "LeakyReLU(negative_slope=0.01)");
  CHECK(LeakyReLU(1).repr() == "LeakyReLU(negative_slope=1.0)");
  CHECK(GELU().repr() == "GELU(approximate='none')");
  Tensor xr = test::rnd({3, 5}, 5);
  for (ModulePtr m : std::vector<ModulePtr>{std::make_shared<ReLU>(), std::make_shared<LeakyReLU>(0.2),
                                            std::make_shared<Tanh>(), std::make_shared<Sigmoid>(),
                                            std::make_shared<GELU>()}) {
    CAPTURE(m->type_name());
    CHECK_GRADCHECK(nn::gradcheck(*m, xr));
  }
  Flatten f;
  CHECK(f(zeros({2, 3, 4, 5})).shape() == Shape{2, 60});
  CHECK(Flatten(0, 1)(zeros({2, 3, 4})).shape() == Shape{6, 4});
  CHECK(f.repr() == "Flatten(start_dim=1, end_dim=-1)");
  CHECK_GRADCHECK(nn::gradcheck(f, test::rnd({2, 3, 1, 2}, 6)));
}

TEST_CASE("Dropout: identity in eval, drops ~p and scales by 1/(1-p) in training, seedable") {
  Generator g(11);
  Dropout d(0.3, &g);
  CHECK(d.repr() == "Dropout(p=0.3, inplace=False)");
  Tensor x = full({100, 100}, 2.0, DType::f64);
  d.eval();
  CHECK(d(x).same(x));
  d.train();
  const auto y = d(x).to_vector();
  std::int64_t zeros_seen = 0;
  bool scaled = true;
  for (double v : y) {
    if (v == 0) ++zeros_seen;
    else scaled = scaled && std::abs(v - 2.0 / 0.7) < 1e-12;
  }
  CHECK(scaled);
  CHECK(static_cast<double>(zeros_seen) / 1e4 == doctest::Approx(0.3).epsilon(0.05));  // 0.3 +- 0.015 (~3.3 sd)
  // same seed, same mask
  Generator ga(5), gb(5);
  CHECK(F::dropout(x, 0.5, true, &ga).to_vector() == F::dropout(x, 0.5, true, &gb).to_vector());
  // the gradient is the mask: dy/dx = m / (1 - p)
  Tensor xg = test::rnd({4, 5}, 2);
  Generator gm(9);
  Tensor yg = F::dropout(xg, 0.5, true, &gm);
  sum(yg).backward();
  const auto gv = xg.grad().to_vector(), yv = yg.to_vector(), xv = xg.to_vector();
  for (std::size_t i = 0; i < gv.size(); ++i) CHECK(yv[i] == doctest::Approx(xv[i] * gv[i]));
  CHECK(F::dropout(x, 1.0).to_vector() == std::vector<double>(10000, 0.0));
  CHECK(F::dropout(x, 0.0).same(x));
  CHECK_THROWS_WITH_AS(Dropout(1.5), doctest::Contains("Dropout: probability has to be between 0 and 1, but got 1.5"),
                       ValueError);
}

TEST_CASE("demo CNN: output shape and parameter count of a known architecture") {
  // Conv2d(1,32,3,p1)-ReLU-MaxPool(2)-Conv2d(32,64,3,p1)-ReLU-MaxPool(2)-Flatten-Linear(3136,128)-ReLU-Linear(128,10)
  Generator g(0);
  Sequential net(std::make_shared<Conv2d>(1, 32, 3, 1, 1, 1, 1, true, &g), std::make_shared<ReLU>(),
                 std::make_shared<MaxPool2d>(2), std::make_shared<Conv2d>(32, 64, 3, 1, 1, 1, 1, true, &g),
                 std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2), std::make_shared<Flatten>(),
                 std::make_shared<Linear>(3136, 128, true, &g), std::make_shared<ReLU>(),
                 std::make_shared<Linear>(128, 10, true, &g));
  // 32*1*9+32 + 64*32*9+64 + 3136*128+128 + 128*10+10
  CHECK(net.num_parameters() == 320 + 18496 + 401536 + 1290);
  CHECK(net.num_parameters() == 421642);
  Tensor y = net(randn({2, 1, 28, 28}, DType::f32, &g));
  CHECK(y.shape() == Shape{2, 10});
  sum(y).backward();
  for (auto& [name, p] : net.named_parameters()) {
    CAPTURE(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().shape() == p.shape());
  }
}

TEST_CASE("Embedding: lookup values and shapes, accumulated gradient, padding_idx, gradcheck, errors") {
  Generator g(3);
  Embedding e(5, 3, std::nullopt, &g, DType::f64);
  CHECK(e.repr() == "Embedding(5, 3)");
  CHECK(e.weight.shape() == Shape{5, 3});
  const Tensor idx = from_vector(std::vector<std::int64_t>{4, 0, 4, 2, 1, 4}, {2, 3});
  const Tensor y = e(idx);
  CHECK(y.shape() == Shape{2, 3, 3});
  const auto w = e.weight.to_vector();
  std::vector<double> expect;
  for (std::int64_t i : {4, 0, 4, 2, 1, 4})
    for (int k = 0; k < 3; ++k) expect.push_back(w[static_cast<std::size_t>(i * 3 + k)]);
  CHECK(y.to_vector() == expect);
  // d sum(y * r) / d weight[row] = sum of r over the positions that looked row up
  Tensor r = test::rnd({2, 3, 3}, 4, false);
  sum(mul(y, r)).backward();
  const auto rv = r.to_vector();
  std::vector<double> gw(15, 0.0);
  const std::int64_t ids[] = {4, 0, 4, 2, 1, 4};
  for (int p = 0; p < 6; ++p)
    for (int k = 0; k < 3; ++k) gw[static_cast<std::size_t>(ids[p] * 3 + k)] += rv[static_cast<std::size_t>(p * 3 + k)];
  test::check_values(e.weight.grad(), gw, 1e-12);
  CHECK_GRADCHECK(nn::gradcheck(e, idx));

  Embedding pe(4, 2, -1, &g, DType::f64);  // padding_idx -1 -> 3
  CHECK(pe.repr() == "Embedding(4, 2, padding_idx=3)");
  CHECK(select(pe.weight, 0, 3).to_vector() == std::vector<double>{0, 0});
  const Tensor pidx = from_vector(std::vector<std::int64_t>{3, 1, 3}, {3});
  sum(pe(pidx)).backward();
  test::check_values(pe.weight.grad(), {0, 0, 1, 1, 0, 0, 0, 0}, 1e-12);  // row 3 gets nothing

  CHECK_THROWS_WITH_AS(e(from_vector(std::vector<std::int64_t>{1, 5}, {2})),
                       doctest::Contains("Embedding(5, 3): index 5 is out of range [0, 5)"), IndexError);
  CHECK_THROWS_WITH_AS(e(zeros({2})), doctest::Contains("indices must be int64, got float32"), DTypeError);
  CHECK_THROWS_AS(Embedding(4, 2, 4), IndexError);
}

TEST_CASE("Embedding: max_norm renormalizes the looked-up rows in place, as PyTorch") {
  // rows: 0 has 2-norm 5, 1 has 2-norm 0.5, 2 has 2-norm 13, 3 has 2-norm 10 (never looked up)
  Embedding e(4, 2, std::nullopt, nullptr, DType::f64, 2.0);
  CHECK(e.repr() == "Embedding(4, 2, max_norm=2.0)");
  {
    NoGradGuard ng;
    e.weight.copy_(tensor({3, 4, 0.3, 0.4, 5, 12, 6, 8}, {4, 2}, DType::f64));
  }
  const Tensor idx = from_vector(std::vector<std::int64_t>{2, 0, 2, 1}, {2, 2});
  const Tensor y = e(idx);
  // w_i * max_norm / (||w_i|| + 1e-7) for rows over the norm; the others untouched
  const double s0 = 2.0 / (5 + 1e-7), s2 = 2.0 / (13 + 1e-7);
  const std::vector<double> w = {3 * s0, 4 * s0, 0.3, 0.4, 5 * s2, 12 * s2, 6, 8};
  test::check_values(e.weight, w, 1e-12);
  test::check_values(y, {w[4], w[5], w[0], w[1], w[4], w[5], w[2], w[3]}, 1e-12);
  CHECK(e.weight.requires_grad());
  CHECK(e.weight.is_leaf());
  // the lookup's gradient is unchanged: each looked-up position's gradient added to its row
  sum(y).backward();
  test::check_values(e.weight.grad(), {1, 1, 1, 1, 2, 2, 0, 0}, 1e-12);
  // rows well within max_norm: a float64 gradcheck of the module (the renorm is a no-op)
  Generator g(7);
  Embedding small(4, 2, std::nullopt, &g, DType::f64, 50.0);
  CHECK_GRADCHECK(nn::gradcheck(small, idx));
  // norm_type 1 and infinity
  Embedding e1(2, 2, std::nullopt, nullptr, DType::f64, 1.0, 1.0);
  CHECK(e1.repr() == "Embedding(2, 2, max_norm=1.0, norm_type=1.0)");
  {
    NoGradGuard ng;
    e1.weight.copy_(tensor({3, -1, 0.2, 0.3}, {2, 2}, DType::f64));
  }
  e1(from_vector(std::vector<std::int64_t>{0, 1}, {2}));
  test::check_values(e1.weight, {3 / (4 + 1e-7), -1 / (4 + 1e-7), 0.2, 0.3}, 1e-12);
  Embedding einf(1, 2, std::nullopt, nullptr, DType::f64, 1.5, std::numeric_limits<double>::infinity());
  {
    NoGradGuard ng;
    einf.weight.copy_(tensor({-3, 2}, {1, 2}, DType::f64));
  }
  einf(from_vector(std::vector<std::int64_t>{0}, {1}));
  test::check_values(einf.weight, {-3 * 1.5 / (3 + 1e-7), 2 * 1.5 / (3 + 1e-7)}, 1e-12);
  CHECK_THROWS_WITH_AS(Embedding(4, 2, std::nullopt, nullptr, DType::f32, 0.0),
                       doctest::Contains("Embedding: max_norm must be positive, got 0"), ValueError);
  CHECK_THROWS_WITH_AS(Embedding(4, 2, std::nullopt, nullptr, DType::f32, 1.0, -2.0),
                       doctest::Contains("Embedding: norm_type must be positive, got -2"), ValueError);
}
