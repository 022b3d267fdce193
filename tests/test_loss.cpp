#include <cmath>

#include "tests/helpers.h"

using namespace ng;

namespace {
Tensor f64(std::initializer_list<double> v, const Shape& s) { return tensor(v, s, DType::f64); }
Tensor i64(const std::vector<std::int64_t>& v, const Shape& s) { return from_vector(v, s); }
const double ln2 = std::log(2.0), ln3 = std::log(3.0), ln6 = std::log(6.0);

// -log softmax(x)[n, t, l] over the class dim 1 of x (N, C, L), computed directly.
double ref_nll(const Tensor& x, std::int64_t n, std::int64_t c, std::int64_t l) {
  double s = 0;
  for (std::int64_t k = 0; k < x.shape()[1]; ++k) s += std::exp(x.at({n, k, l}));
  return std::log(s) - x.at({n, c, l});
}
}  // namespace

// ---- softmax / log_softmax ----------------------------------------------------------------

TEST_CASE("softmax/log_softmax: values, stability, any axis") {
  Tensor x = f64({0, ln2, ln3}, {3});
  test::check_values(softmax(x), {1.0 / 6, 2.0 / 6, 3.0 / 6});
  test::check_values(log_softmax(x), {-ln6, ln2 - ln6, ln3 - ln6});
  Tensor big = f64({1000, 1000, -1000, -1000}, {2, 2});
  test::check_values(softmax(big, 1), {0.5, 0.5, 0.5, 0.5});
  test::check_values(log_softmax(big, 0), {0, 0, -2000, -2000});
  // along axis 0 of a [2, 3] (strided rows in the kernel) against a direct computation
  Tensor a = f64({1, 2, 3, 4, 0, -1}, {2, 3});
  Tensor s0 = softmax(a, 0);
  for (std::int64_t j = 0; j < 3; ++j) {
    const double z = std::exp(a.at({0, j})) + std::exp(a.at({1, j}));
    CHECK(s0.at({0, j}) == doctest::Approx(std::exp(a.at({0, j})) / z));
    CHECK(s0.at({1, j}) == doctest::Approx(std::exp(a.at({1, j})) / z));
  }
  // a transposed input and float32
  Tensor t = transpose(tensor({1, 2, 3, 4, 0, -1}, {3, 2}), 0, 1);  // [[1, 3, 0], [2, 4, -1]]
  Tensor lt = log_softmax(t, 1);
  CHECK(lt.dtype() == DType::f32);
  const double lse = std::log(std::exp(1.0) + std::exp(3.0) + std::exp(0.0));
  CHECK(lt.at({0, 0}) == doctest::Approx(1 - lse).epsilon(1e-5));
}

TEST_CASE("softmax/log_softmax: gradcheck over each axis") {
  Tensor x = test::rnd({3, 4, 5}, 1);
  for (std::int64_t ax : {0, 1, 2, -1}) {
    CAPTURE(ax);
    CHECK_GRADCHECK(gradcheck([ax](const std::vector<Tensor>& v) { return softmax(v[0], ax); }, {x}));
    CHECK_GRADCHECK(gradcheck([ax](const std::vector<Tensor>& v) { return log_softmax(v[0], ax); }, {x}));
  }
  Tensor y = test::rnd({5, 3}, 2);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return softmax(transpose(v[0], 0, 1), 1); }, {y}));
  CHECK_THROWS_WITH_AS(softmax(x, 3), doctest::Contains("softmax: axis 3"), IndexError);
  CHECK_THROWS_WITH_AS(log_softmax(zeros({3}, DType::i64)), doctest::Contains("log_softmax"), DTypeError);
}

// ---- nll_loss -------------------------------------------------------------------------------

TEST_CASE("nll_loss: reductions, (N, C) and (N, C, L)") {
  Tensor lp = f64({-1, -2, -3, -0.5, -1.5, -2.5}, {2, 3});
  Tensor t = i64({2, 0}, {2});
  test::check_values(nll_loss(lp, t, Reduction::none), {3, 0.5});
  test::check_values(nll_loss(lp, t), {1.75});
  test::check_values(nll_loss(lp, t, Reduction::sum), {3.5});
  CHECK(nll_loss(lp, t).shape() == Shape{});
  // (N, C, L) = (2, 3, 2) with targets (2, 2)
  Tensor lp3 = test::rnd({2, 3, 2}, 3, false);
  Tensor t3 = i64({0, 2, 1, 1}, {2, 2});
  Tensor l3 = nll_loss(lp3, t3, Reduction::none);
  REQUIRE(l3.shape() == Shape{2, 2});
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t l = 0; l < 2; ++l)
      CHECK(l3.at({n, l}) == -lp3.at({n, static_cast<std::int64_t>(t3.at({n, l})), l}));
  // a single sample: input (C), target ()
  test::check_values(nll_loss(f64({-1, -2}, {2}), from_vector(std::vector<std::int64_t>{1}, Shape{})), {2});
  Tensor x = test::rnd({5, 3}, 4);
  Tensor tt = i64({0, 2, 2, 1, 0}, {5});
  for (Reduction r : {Reduction::none, Reduction::mean, Reduction::sum})
    CHECK_GRADCHECK(gradcheck([tt, r](const std::vector<Tensor>& v) { return nll_loss(v[0], tt, r); }, {x}));
  Tensor x3 = test::rnd({3, 4, 5}, 5);
  Tensor tt3 = randint({3, 5}, 0, 4);
  CHECK_GRADCHECK(gradcheck([tt3](const std::vector<Tensor>& v) { return nll_loss(v[0], tt3); }, {x3}));
}

// ---- cross_entropy -----------------------------------------------------------------------

TEST_CASE("cross_entropy: values with and without label smoothing") {
  Tensor x = f64({0, ln2, ln3}, {1, 3});  // p = [1/6, 1/3, 1/2]
  Tensor t = i64({2}, {1});
  test::check_values(cross_entropy(x, t), {ln2});
  // (1 - eps) * (-log p_t) + eps * mean_c(-log p_c)
  const double eps = 0.1;
  test::check_values(cross_entropy(x, t, Reduction::mean, eps), {(1 - eps) * ln2 + eps * (ln6 + ln3 + ln2) / 3});
  test::check_values(cross_entropy(x, t, Reduction::mean, 1.0), {(ln6 + ln3 + ln2) / 3});
  // huge logits stay finite
  test::check_values(cross_entropy(f64({1000, 0, -1000, 0}, {2, 2}), i64({0, 0}, {2}), Reduction::none), {0, 1000});
}

TEST_CASE("cross_entropy: (N, C, L) against a direct computation") {
  Tensor x = test::rnd({2, 3, 4}, 6, false);
  Tensor t = i64({0, 1, 2, 2, 1, 1, 0, 2}, {2, 4});
  const double eps = 0.2;
  Tensor l = cross_entropy(x, t, Reduction::none, eps);
  REQUIRE(l.shape() == Shape{2, 4});
  double total = 0;
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t i = 0; i < 4; ++i) {
      double smooth = 0;
      for (std::int64_t c = 0; c < 3; ++c) smooth += ref_nll(x, n, c, i) / 3;
      const double want = (1 - eps) * ref_nll(x, n, static_cast<std::int64_t>(t.at({n, i})), i) + eps * smooth;
      CHECK(l.at({n, i}) == doctest::Approx(want));
      total += want;
    }
  CHECK(cross_entropy(x, t, Reduction::sum, eps).item() == doctest::Approx(total));
  CHECK(cross_entropy(x, t, Reduction::mean, eps).item() == doctest::Approx(total / 8));
}

TEST_CASE("cross_entropy: gradcheck, (N, C) and (N, C, L), with and without smoothing") {
  Tensor x = test::rnd({5, 3}, 7);
  Tensor t = i64({0, 2, 1, 1, 2}, {5});
  Tensor x3 = test::rnd({3, 4, 5}, 8);
  Tensor t3 = randint({3, 5}, 0, 4);
  for (double eps : {0.0, 0.1}) {
    CAPTURE(eps);
    CHECK_GRADCHECK(gradcheck([t, eps](const std::vector<Tensor>& v) { return cross_entropy(v[0], t, Reduction::mean, eps); }, {x}));
    CHECK_GRADCHECK(gradcheck([t, eps](const std::vector<Tensor>& v) { return cross_entropy(v[0], t, Reduction::none, eps); }, {x}));
    CHECK_GRADCHECK(gradcheck([t3, eps](const std::vector<Tensor>& v) { return cross_entropy(v[0], t3, Reduction::sum, eps); }, {x3}));
  }
}

TEST_CASE("cross_entropy/nll_loss: errors") {
  Tensor x = zeros({2, 3}, DType::f64);
  CHECK_THROWS_WITH_AS(cross_entropy(x, i64({0, 3}, {2})),
                       doctest::Contains("cross_entropy: target 3 is out of range for 3 classes"), IndexError);
  CHECK_THROWS_WITH_AS(nll_loss(x, i64({-1, 0}, {2})), doctest::Contains("nll_loss: target -1 is out of range for 3 classes"),
                       IndexError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, f64({0, 1}, {2})), doctest::Contains("cross_entropy: target must hold int64"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(nll_loss(x, i64({-100, 0}, {2}), LossOptions{.ignore_index = -1}),
                       doctest::Contains("nll_loss: target -100 is out of range for 3 classes (and is not ignore_index -1)"),
                       IndexError);
  CHECK_THROWS_WITH_AS(cross_entropy(zeros({2, 3}, DType::i64), i64({0, 1}, {2})),
                       doctest::Contains("cross_entropy: input must be float32 or float64"), DTypeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, i64({0, 1, 2}, {3})),
                       doctest::Contains("cross_entropy: target shape must be input shape [2, 3] without the class dim: [2] vs [3]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(nll_loss(zeros({2, 3, 4}, DType::f64), i64({0, 1}, {2})), doctest::Contains("nll_loss"), ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, i64({0, 1}, {2}), Reduction::mean, 1.5),
                       doctest::Contains("cross_entropy: label_smoothing must be in [0, 1], got 1.5"), ValueError);
}

// ---- weight, ignore_index, probability targets (PyTorch's semantics) ---------------------------

TEST_CASE("nll_loss: class weights and ignore_index, mean divides by the summed weights") {
  Tensor lp = f64({-1, -2, -3, -0.5, -1.5, -2.5, -0.1, -0.2, -0.3}, {3, 3});
  Tensor w = f64({1, 2, 3}, {3});
  Tensor t = i64({2, 0, -100}, {3});  // the third target is ignored (default ignore_index)
  test::check_values(nll_loss(lp, t, LossOptions{.weight = w, .reduction = Reduction::none}), {9, 0.5, 0});
  test::check_values(nll_loss(lp, t, LossOptions{.weight = w, .reduction = Reduction::sum}), {9.5});
  test::check_values(nll_loss(lp, t, LossOptions{.weight = w}), {9.5 / (3 + 1)});  // not / 2 targets, not / 3
  test::check_values(nll_loss(lp, t, LossOptions{}), {3.5 / 2});                   // no weight: / kept targets
  // another ignore_index: class 1 is ignored, -100 is then out of range
  Tensor t1 = i64({2, 1, 0}, {3});
  test::check_values(nll_loss(lp, t1, LossOptions{.weight = w, .ignore_index = 1}), {(9 + 0.1) / (3 + 1)});
  // every target ignored: mean is 0 / 0 = NaN, as PyTorch; sum is 0
  CHECK(std::isnan(nll_loss(lp, i64({-100, -100, -100}, {3})).item()));
  test::check_values(nll_loss(lp, i64({-100, -100, -100}, {3}), LossOptions{.reduction = Reduction::sum}), {0});
  // (N, C, L) with weights: against a direct sum
  Tensor x3 = test::rnd({2, 3, 4}, 40, false);
  Tensor t3 = i64({0, 2, -100, 1, 1, -100, 2, 0}, {2, 4});
  Tensor w3 = f64({0.5, 2, 1.5}, {3});
  double num = 0, den = 0;
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t l = 0; l < 4; ++l) {
      const auto c = static_cast<std::int64_t>(t3.at({n, l}));
      if (c == -100) continue;
      num += -w3.at({c}) * x3.at({n, c, l});
      den += w3.at({c});
    }
  CHECK(nll_loss(x3, t3, LossOptions{.weight = w3}).item() == doctest::Approx(num / den));
  Tensor xg = test::rnd({5, 3}, 41);
  Tensor tg = i64({0, -100, 2, 1, 2}, {5});
  for (Reduction r : {Reduction::none, Reduction::mean, Reduction::sum})
    CHECK_GRADCHECK(gradcheck([tg, w, r](const std::vector<Tensor>& v) {
      return nll_loss(v[0], tg, LossOptions{.weight = w, .reduction = r});
    }, {xg}));
}

TEST_CASE("cross_entropy: weight, ignore_index and label smoothing together, against PyTorch's formula") {
  Tensor x = test::rnd({4, 3}, 42, false);
  Tensor t = i64({2, -100, 0, 1}, {4});
  Tensor w = f64({0.5, 2, 1.5}, {3});
  const double eps = 0.3;
  // per sample: nll_n = -w_y log p_y, smooth_n = -sum_c w_c log p_c, both 0 when ignored;
  // loss = (1 - eps) sum nll / D + eps / C * sum smooth / D,  D = sum of w_y over kept targets
  double nll = 0, smooth = 0, den = 0;
  std::vector<double> per(4, 0.0);
  for (std::int64_t n = 0; n < 4; ++n) {
    const auto y = static_cast<std::int64_t>(t.at({n}));
    if (y == -100) continue;
    double lse = 0;
    for (std::int64_t c = 0; c < 3; ++c) lse += std::exp(x.at({n, c}));
    lse = std::log(lse);
    double sm = 0;
    for (std::int64_t c = 0; c < 3; ++c) sm += -w.at({c}) * (x.at({n, c}) - lse);
    const double nl = -w.at({y}) * (x.at({n, y}) - lse);
    nll += nl;
    smooth += sm;
    den += w.at({y});
    per[static_cast<std::size_t>(n)] = (1 - eps) * nl + eps / 3 * sm;
  }
  const LossOptions o{.weight = w, .label_smoothing = eps};
  CHECK(cross_entropy(x, t, o).item() == doctest::Approx((1 - eps) * nll / den + eps / 3 * smooth / den));
  LossOptions none = o;
  none.reduction = Reduction::none;
  test::check_values(cross_entropy(x, t, none), per);
  // without smoothing it is nll_loss of log_softmax
  CHECK(cross_entropy(x, t, LossOptions{.weight = w}).item() == doctest::Approx(nll / den));
  Tensor xg = test::rnd({4, 3, 2}, 43);
  Tensor tg = i64({0, 2, -100, 1, 2, 2, 0, -100}, {4, 2});
  CHECK_GRADCHECK(gradcheck([tg, o](const std::vector<Tensor>& v) { return cross_entropy(v[0], tg, o); }, {xg}));
  CHECK_GRADCHECK(gradgradcheck([tg, o](const std::vector<Tensor>& v) { return cross_entropy(v[0], tg, o); }, {xg}));
}

TEST_CASE("cross_entropy: probability (soft) targets, mean over the batch") {
  Tensor x = test::rnd({3, 4}, 44, false);
  Tensor p = softmax(test::rnd({3, 4}, 45, false), 1);  // each row sums to 1
  Tensor w = f64({1, 0.5, 2, 3}, {4});
  const double eps = 0.1;
  double total = 0;
  std::vector<double> per;
  for (std::int64_t n = 0; n < 3; ++n) {
    double lse = 0;
    for (std::int64_t c = 0; c < 4; ++c) lse += std::exp(x.at({n, c}));
    lse = std::log(lse);
    double l = 0;
    for (std::int64_t c = 0; c < 4; ++c) l += -w.at({c}) * ((1 - eps) * p.at({n, c}) + eps / 4) * (x.at({n, c}) - lse);
    per.push_back(l);
    total += l;
  }
  test::check_values(cross_entropy(x, p, LossOptions{.weight = w, .reduction = Reduction::none, .label_smoothing = eps}), per);
  // mean divides by N = 3, not by the weights
  CHECK(cross_entropy(x, p, LossOptions{.weight = w, .label_smoothing = eps}).item() == doctest::Approx(total / 3));
  // one-hot probabilities give the class-index loss (no weights: both means divide by N)
  Tensor t = i64({1, 3, 0}, {3});
  Tensor onehot = f64({0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0}, {3, 4});
  CHECK(cross_entropy(x, onehot).item() == doctest::Approx(cross_entropy(x, t).item()));
  // (N, C, L) soft targets: mean over N * L
  Tensor x3 = test::rnd({2, 3, 5}, 46);
  Tensor p3 = softmax(test::rnd({2, 3, 5}, 47, false), 1).requires_grad_();
  CHECK(cross_entropy(x3, p3).item() == doctest::Approx(cross_entropy(x3, p3, Reduction::sum).item() / 10));
  // gradients w.r.t. the logits and the targets, first and second order
  CHECK_GRADCHECK(gradcheck([w](const std::vector<Tensor>& v) {
    return cross_entropy(v[0], v[1], LossOptions{.weight = w, .label_smoothing = 0.2});
  }, {test::rnd({3, 4}, 48), test::rnd({3, 4}, 49)}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return cross_entropy(v[0], v[1], Reduction::none); }, {x3, p3}));
  CHECK_GRADCHECK(gradgradcheck([](const std::vector<Tensor>& v) { return cross_entropy(v[0], v[1]); }, {x3, p3}));
}

TEST_CASE("cross_entropy/nll_loss: errors of weight, ignore_index and probability targets") {
  Tensor x = zeros({2, 3}, DType::f64);
  Tensor t = i64({0, 1}, {2});
  CHECK_THROWS_WITH_AS(nll_loss(x, t, LossOptions{.weight = zeros({2}, DType::f64)}),
                       doctest::Contains("nll_loss: weight must hold one value per class, shape [3]: got [2]"), ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, t, LossOptions{.weight = zeros({3})}),
                       doctest::Contains("cross_entropy: weight dtype must match the input's: float64 vs float32"), DTypeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, zeros({2, 3}, DType::f64), LossOptions{.ignore_index = 0}),
                       doctest::Contains("cross_entropy: ignore_index (0) applies to class-index targets only"), ValueError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, zeros({2, 3}, DType::i64)),
                       doctest::Contains("cross_entropy: a target of the input's shape [2, 3] holds class probabilities and must be float"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, zeros({2, 3})),
                       doctest::Contains("cross_entropy: probability targets must have the input's dtype: float64 vs float32"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(nll_loss(x, t, LossOptions{.label_smoothing = 0.1}),
                       doctest::Contains("nll_loss: label_smoothing applies to cross_entropy only"), ValueError);
}

// ---- mse_loss ------------------------------------------------------------------------------

TEST_CASE("mse_loss: values, gradcheck, errors") {
  Tensor x = f64({1, 2, 3}, {3}), t = f64({1, 0, 0}, {3});
  test::check_values(mse_loss(x, t, Reduction::none), {0, 4, 9});
  test::check_values(mse_loss(x, t), {13.0 / 3});
  test::check_values(mse_loss(x, t, Reduction::sum), {13});
  Tensor a = test::rnd({3, 5}, 9), b = test::rnd({3, 5}, 10);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return mse_loss(v[0], v[1]); }, {a, b}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return mse_loss(v[0], v[1], Reduction::none); }, {a, b}));
  CHECK_THROWS_WITH_AS(mse_loss(x, f64({1, 2}, {2})), doctest::Contains("mse_loss: target shape must match the input's: [3] vs [2]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(mse_loss(x, tensor({1, 2, 3}, {3})), doctest::Contains("mse_loss: target dtype"), DTypeError);
}

// ---- binary_cross_entropy_with_logits ------------------------------------------------------

TEST_CASE("binary_cross_entropy_with_logits: values, stability, gradient at 0") {
  Tensor x = f64({0, 2, -3}, {3}), t = f64({1, 0, 0.5}, {3});
  // -[t log s + (1 - t) log(1 - s)] with s = sigmoid(x), directly
  std::vector<double> want;
  for (std::int64_t i = 0; i < 3; ++i) {
    const double s = 1 / (1 + std::exp(-x.at({i}))), ti = t.at({i});
    want.push_back(-(ti * std::log(s) + (1 - ti) * std::log(1 - s)));
  }
  test::check_values(binary_cross_entropy_with_logits(x, t, Reduction::none), want);
  test::check_values(binary_cross_entropy_with_logits(x, t), {(want[0] + want[1] + want[2]) / 3});
  test::check_values(binary_cross_entropy_with_logits(x, t, Reduction::sum), {want[0] + want[1] + want[2]});
  // |x| = 100: no overflow, no log(0)
  Tensor l = binary_cross_entropy_with_logits(f64({100, -100, 100}, {3}), f64({1, 1, 0}, {3}), Reduction::none);
  CHECK(l.at({0}) == doctest::Approx(0.0));
  CHECK(l.at({1}) == doctest::Approx(100));
  CHECK(l.at({2}) == doctest::Approx(100));
  // d/dx = sigmoid(x) - t, also exactly at x = 0
  Tensor z = f64({0}, {1}).requires_grad_();
  binary_cross_entropy_with_logits(z, f64({1}, {1})).backward();
  test::check_values(z.grad(), {-0.5});
  Tensor a = test::rnd({3, 5}, 11);
  Generator g(12);
  Tensor b = uniform({3, 5}, 0, 1, DType::f64, &g).requires_grad_();
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return binary_cross_entropy_with_logits(v[0], v[1]); }, {a, b}));
  CHECK_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& v) { return binary_cross_entropy_with_logits(v[0], v[1], Reduction::none); }, {a, b}));
  CHECK_THROWS_WITH_AS(binary_cross_entropy_with_logits(x, f64({1}, {1})),
                       doctest::Contains("binary_cross_entropy_with_logits: target shape"), ShapeError);
  CHECK_THROWS_WITH_AS(binary_cross_entropy_with_logits(x, tensor({1, 0, 1}, {3})),
                       doctest::Contains("binary_cross_entropy_with_logits: target dtype"), DTypeError);
}
