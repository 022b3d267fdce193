// Elementwise ops and activations: forward values, float64 gradchecks (broadcast and strided
// inputs), second derivatives, dtype and shape errors.
#include <cmath>
#include <functional>
#include <numbers>
#include <string>

#include "tests/helpers.h"
#include "tests/op_table.h"

using namespace ng;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
using Unary = std::function<double(double)>;
using Binary = std::function<double(double, double)>;

const std::vector<double> kX = {-2.5, -1.0, -0.3, 0.2, 0.7, 1.9, 3.1};  // 7 values, both signs, no 0
const std::vector<double> kPos = {0.25, 0.5, 0.9, 1.0, 1.7, 2.6, 4.0};

// out[i] == f(in[i]) for every element.
void check_unary(const Tensor& out, const Tensor& in, const Unary& f, double tol = 1e-12) {
  REQUIRE(out.shape() == in.shape());
  const auto o = out.to_vector(), x = in.to_vector();
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(o[i] == doctest::Approx(f(x[i])).epsilon(tol));
}

// out == f(a, b) with a broadcast against b, checked with an independent index loop over
// out's shape (a and b given as to_vector() of their own shapes).
void check_binary(const Tensor& out, const Tensor& a, const Tensor& b, const Binary& f, double tol = 1e-12) {
  const Shape& s = out.shape();
  REQUIRE(s == broadcast_shapes(a.shape(), b.shape(), "test"));
  std::vector<std::int64_t> idx(s.size(), 0);
  auto pick = [&](const Tensor& t) {
    std::vector<std::int64_t> ti(t.shape().size());
    const std::size_t lead = s.size() - t.shape().size();
    for (std::size_t d = 0; d < ti.size(); ++d) ti[d] = t.shape()[d] == 1 ? 0 : idx[d + lead];
    return t.at(ti);
  };
  const auto o = out.to_vector();
  for (std::int64_t flat = 0; flat < s.numel(); ++flat) {
    std::int64_t r = flat;
    for (std::size_t d = s.size(); d-- > 0;) {
      idx[d] = r % s[d];
      r /= s[d];
    }
    CHECK(o[static_cast<std::size_t>(flat)] == doctest::Approx(f(pick(a), pick(b))).epsilon(tol));
  }
}

double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double gelu_ref(double x) { return 0.5 * x * (1.0 + std::erf(x / std::numbers::sqrt2)); }

Tensor vec(const std::vector<double>& v) { return from_vector(v, {static_cast<std::int64_t>(v.size())}, DType::f64); }

}  // namespace

// ---- forward values --------------------------------------------------------------------------

TEST_CASE("elementwise: unary math forward values") {
  Tensor x = vec(kX), p = vec(kPos);
  check_unary(neg(x), x, [](double v) { return -v; });
  check_unary(exp(x), x, [](double v) { return std::exp(v); });
  check_unary(log(p), p, [](double v) { return std::log(v); });
  check_unary(sqrt(p), p, [](double v) { return std::sqrt(v); });
  check_unary(rsqrt(p), p, [](double v) { return 1.0 / std::sqrt(v); });
  check_unary(abs(x), x, [](double v) { return std::fabs(v); });
  check_unary(pow(x, 3.0), x, [](double v) { return v * v * v; });
  check_unary(pow(x, 2.0), x, [](double v) { return v * v; });
  check_unary(pow(p, 0.5), p, [](double v) { return std::sqrt(v); });
  check_unary(pow(p, -1.5), p, [](double v) { return std::pow(v, -1.5); });
  check_unary(pow(x, 0.0), x, [](double) { return 1.0; });
  check_unary(clamp(x, -1.0, 1.0), x, [](double v) { return std::min(1.0, std::max(-1.0, v)); });
  check_unary(clamp(x, 0.5, std::nullopt), x, [](double v) { return std::max(0.5, v); });
  check_unary(clamp(x, std::nullopt, -0.5), x, [](double v) { return std::min(-0.5, v); });
  // hand-worked values
  test::check_values(abs(tensor({-3, 0, 2}, {3})), {3, 0, 2});
  test::check_values(sqrt(tensor({4, 9, 0.25}, {3}, DType::f64)), {2, 3, 0.5}, 1e-15);
  test::check_values(rsqrt(tensor({4, 0.25}, {2}, DType::f64)), {0.5, 2}, 1e-15);
  test::check_values(pow(tensor({2, -3}, {2}, DType::f64), 3.0), {8, -27}, 1e-15);
  CHECK_THROWS_WITH_AS(clamp(x, 2.0, 1.0), doctest::Contains("clamp: min 2 is greater than max 1"), ValueError);
}

TEST_CASE("elementwise: activations forward values") {
  Tensor x = vec(kX);
  check_unary(relu(x), x, [](double v) { return v > 0 ? v : 0.0; });
  check_unary(leaky_relu(x), x, [](double v) { return v > 0 ? v : 0.01 * v; });
  check_unary(leaky_relu(x, 0.2), x, [](double v) { return v > 0 ? v : 0.2 * v; });
  check_unary(sigmoid(x), x, sigmoid_ref);
  check_unary(tanh(x), x, [](double v) { return std::tanh(v); });
  check_unary(gelu(x), x, gelu_ref);
  check_unary(softplus(x), x, [](double v) { return std::log(1.0 + std::exp(v)); });
  check_unary(softplus(x, 2.0), x, [](double v) { return std::log(1.0 + std::exp(2.0 * v)) / 2.0; });
  // hand-worked values: gelu(1) = Phi(1) = 0.841344746..., sigmoid(0) = 1/2, softplus(0) = log 2
  test::check_values(gelu(tensor({1.0, 0.0, -1.0}, {3}, DType::f64)), {0.8413447460685429, 0, -0.15865525393145707},
                     1e-14);
  test::check_values(sigmoid(tensor({0.0}, {1}, DType::f64)), {0.5});
  test::check_values(softplus(tensor({0.0}, {1}, DType::f64)), {std::log(2.0)});
  test::check_values(relu(tensor({-1, 0, 2}, {3})), {0, 0, 2});
  // extremes stay finite: sigmoid never takes exp of a large positive number, softplus is
  // linear above the threshold (beta x > 20), as PyTorch
  test::check_values(sigmoid(tensor({-800, 800}, {2}, DType::f64)), {0, 1});
  test::check_values(softplus(tensor({30, 800}, {2}, DType::f64)), {30, 800});
  test::check_values(softplus(tensor({15}, {1}, DType::f64), 2.0), {15});  // 2*15 > 20: x itself
  test::check_values(tanh(tensor({-50, 50}, {2}, DType::f64)), {-1, 1});
  CHECK_THROWS_WITH_AS(softplus(x, 0.0), doctest::Contains("softplus: beta must be positive"), ValueError);
}

TEST_CASE("elementwise: binary ops forward values with broadcasting") {
  Tensor a = test::rnd({3, 1}, 1, false), b = test::rnd({1, 4}, 2, false), bp = test::rnd_pos({1, 4}, 3);
  check_binary(add(a, b), a, b, std::plus<>());
  check_binary(sub(a, b), a, b, std::minus<>());
  check_binary(mul(a, b), a, b, std::multiplies<>());
  check_binary(div(a, bp), a, bp, std::divides<>());
  check_binary(maximum(a, b), a, b, [](double x, double y) { return std::max(x, y); });
  check_binary(minimum(a, b), a, b, [](double x, double y) { return std::min(x, y); });
  Tensor ap = test::rnd_pos({3, 1}, 4);
  check_binary(pow(ap, b), ap, b, [](double x, double y) { return std::pow(x, y); });
  // [2, 3, 4] with [4], and a 0-d scalar with [3]
  Tensor c = test::rnd({2, 3, 4}, 5, false), d = test::rnd({4}, 6, false);
  check_binary(add(c, d), c, d, std::plus<>());
  check_binary(sub(d, c), d, c, std::minus<>());
  Tensor s = scalar(1.5, DType::f64), v = vec({1, 2, 3});
  check_binary(mul(s, v), s, v, std::multiplies<>());
  check_binary(div(s, v), s, v, std::divides<>());
  CHECK(add(s, s).dim() == 0);
  // hand-worked
  test::check_values(sub(tensor({5, 7}, {2}), tensor({1, 10}, {2})), {4, -3});
  test::check_values(div(tensor({1, 9}, {2}), tensor({4, 3}, {2})), {0.25, 3});
  test::check_values(pow(tensor({2, 9}, {2}, DType::f64), tensor({10, 0.5}, {2}, DType::f64)), {1024, 3});
}

TEST_CASE("elementwise: scalar forms and operators") {
  Tensor a = vec({1, -2, 4});
  test::check_values(add(a, 2.5), {3.5, 0.5, 6.5});
  test::check_values(mul(a, -2.0), {-2, 4, -8});
  test::check_values(rsub(1.0, a), {0, 3, -3});
  test::check_values(rdiv(2.0, a), {2, -1, 0.5});
  Tensor b = vec({2, 2, -1});
  test::check_values(a + b, {3, 0, 3});
  test::check_values(a - b, {-1, -4, 5});
  test::check_values(a * b, {2, -4, -4});
  test::check_values(a / b, {0.5, -1, -4});
  test::check_values(-a, {-1, 2, -4});
  test::check_values(a + 1.0, {2, -1, 5});
  test::check_values(1.0 + a, {2, -1, 5});
  test::check_values(a - 1.0, {0, -3, 3});
  test::check_values(1.0 - a, {0, 3, -3});
  test::check_values(a * 3.0, {3, -6, 12});
  test::check_values(3.0 * a, {3, -6, 12});
  test::check_values(a / 4.0, {0.25, -0.5, 1});
  test::check_values(4.0 / a, {4, -2, 1});
  // scalar forms keep float32
  CHECK((tensor({1, 2}, {2}) * 0.1).dtype() == DType::f32);
}

TEST_CASE("elementwise: where, comparisons") {
  Tensor a = vec({1, 2, 3}), b = vec({10, 20, 30});
  test::check_values(where(tensor({1, 0, 1}, {3}), a, b), {1, 20, 3});
  test::check_values(where(from_vector(std::vector<std::int64_t>{0, 5, 0}, {3}), a, b), {10, 2, 30});  // int64 cond
  // cond [2, 1] broadcast against a [3] and b 0-d
  Tensor w = where(tensor({1, 0}, {2, 1}), a, scalar(-1, DType::f64));
  CHECK(w.shape() == Shape{2, 3});
  test::check_values(w, {1, 2, 3, -1, -1, -1});
  Tensor x = vec({1, 5, 3}), y = vec({2, 5, 1});
  test::check_values(gt(x, y), {0, 0, 1});
  test::check_values(lt(x, y), {1, 0, 0});
  test::check_values(eq(x, y), {0, 1, 0});
  CHECK(gt(x, y).dtype() == DType::f64);
  CHECK_FALSE(gt(test::rnd({3}), y).requires_grad());
  CHECK_THROWS_WITH_AS(where(tensor({1, 0}, {2}), a, b), doctest::Contains("where"), ShapeError);
}

TEST_CASE("elementwise: float32 matches float64 on a large (parallel) input") {
  Generator g(9);
  Tensor x64 = randn({40000}, DType::f64, &g);  // above kParallelGrain: the OpenMP path
  Tensor x32 = x64.to(DType::f32);
  for (Tensor (*op)(const Tensor&) : {&ng::exp, &ng::tanh, &ng::sigmoid, &ng::gelu, &ng::relu}) {
    const auto r64 = op(x64).to_vector(), r32 = op(x32).to_vector();
    double worst = 0;
    for (std::size_t i = 0; i < r64.size(); ++i) worst = std::max(worst, std::abs(r64[i] - r32[i]) / (1 + std::abs(r64[i])));
    CHECK(worst < 1e-6);
  }
  Tensor y64 = randn({40000}, DType::f64, &g);
  const auto s64 = mul(x64, y64).to_vector(), s32 = mul(x32, y64.to(DType::f32)).to_vector();
  double worst = 0;
  for (std::size_t i = 0; i < s64.size(); ++i) worst = std::max(worst, std::abs(s64[i] - s32[i]) / (1 + std::abs(s64[i])));
  CHECK(worst < 1e-6);
}

// ---- gradients -------------------------------------------------------------------------------

TEST_CASE("elementwise: gradcheck of every unary op and activation (tests/op_table.h)") {
  std::uint64_t seed = 11;
  for (const test::UnaryOp& op : test::unary_ops()) {
    if (!op.first_order) continue;
    CAPTURE(std::string(op.name));
    const Tensor x = op.domain == test::Domain::positive ? test::rnd_pos({3, 5}, ++seed) : test::rnd({3, 5}, ++seed);
    CHECK_GRADCHECK(gradcheck([&op](const std::vector<Tensor>& v) { return op.f(v[0]); }, {x}));
  }
}

TEST_CASE("elementwise: gradcheck of binary ops with broadcast shapes (tests/op_table.h)") {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3, 1}, {1, 4}}, {{2, 3, 4}, {4}}, {{4}, {2, 3, 4}}, {{}, {3}}, {{3}, {}}, {{3, 5}, {3, 5}}};
  std::uint64_t seed = 20;
  for (const auto& [sa, sb] : shapes) {
    for (const test::BinaryOp& op : test::binary_ops()) {
      if (!op.first_order) continue;
      CAPTURE(std::string(op.name));
      CAPTURE(sa);
      CAPTURE(sb);
      const bool pos = op.domain == test::Domain::positive;
      const Tensor a = pos ? test::rnd_pos(sa, ++seed) : test::rnd(sa, ++seed);
      const Tensor b = pos ? test::rnd_pos(sb, ++seed) : test::rnd(sb, ++seed);
      CHECK_GRADCHECK(gradcheck([&op](const std::vector<Tensor>& v) { return op.f(v[0], v[1]); }, {a, b}));
    }
  }
}

TEST_CASE("elementwise: gradients on transposed (non-contiguous) inputs") {
  Tensor base = test::rnd({5, 3}, 31), other = test::rnd({5, 3}, 32), pbase = test::rnd_pos({5, 3}, 33);
  // each input is used through a transposed view, so the kernels see strides (1, 3)
  auto T = [](const Tensor& t) { return t.t(); };
  const std::vector<std::pair<const char*, Fn>> ops = {
      {"exp", [&](const std::vector<Tensor>& v) { return exp(T(v[0])); }},
      {"tanh", [&](const std::vector<Tensor>& v) { return tanh(T(v[0])); }},
      {"gelu", [&](const std::vector<Tensor>& v) { return gelu(T(v[0])); }},
      {"abs", [&](const std::vector<Tensor>& v) { return abs(T(v[0])); }},
      {"add", [&](const std::vector<Tensor>& v) { return add(T(v[0]), T(v[1])); }},
      {"mul", [&](const std::vector<Tensor>& v) { return mul(T(v[0]), T(v[1])); }},
      {"mul_mixed", [&](const std::vector<Tensor>& v) { return mul(T(v[0]), v[1].reshape({3, 5})); }},
      {"div_row", [&](const std::vector<Tensor>& v) { return div(T(v[0]), add(mul(T(v[1]), T(v[1])), 1.0)); }},
      {"maximum", [&](const std::vector<Tensor>& v) { return maximum(T(v[0]), T(v[1])); }},
  };
  for (const auto& [name, fn] : ops) {
    CAPTURE(std::string(name));
    CHECK_GRADCHECK(gradcheck(fn, {base, other}));
  }
  CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& v) { return log(T(v[0])); }, {pbase}));
  CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& v) { return sqrt(T(v[0])); }, {pbase}));
  // forward on a transposed view equals forward on its copy
  Tensor tv = base.detach().t();
  CHECK(exp(tv).to_vector() == exp(tv.contiguous()).to_vector());
  CHECK(add(tv, other.detach().t()).to_vector() == add(tv.contiguous(), other.detach().t().contiguous()).to_vector());
  // transposed with broadcasting: [3, 5] (strides 1, 3) against [5]
  Tensor row = test::rnd({5}, 34, false);
  check_binary(sub(tv, row), tv.contiguous(), row, std::minus<>());
}

TEST_CASE("elementwise: maximum/minimum split the gradient at ties, relu/abs give 0 at 0") {
  Tensor a = vec({1, 2, 3}).requires_grad_(), b = vec({1, 5, 0}).requires_grad_();
  maximum(a, b).sum().backward();
  test::check_values(a.grad(), {0.5, 0, 1});
  test::check_values(b.grad(), {0.5, 1, 0});
  a.zero_grad();
  b.zero_grad();
  minimum(a, b).sum().backward();
  test::check_values(a.grad(), {0.5, 1, 0});
  test::check_values(b.grad(), {0.5, 0, 1});
  Tensor z = vec({-1, 0, 2}).requires_grad_();
  relu(z).sum().backward();
  test::check_values(z.grad(), {0, 0, 1});
  z.zero_grad();
  abs(z).sum().backward();
  test::check_values(z.grad(), {-1, 0, 1});
  z.zero_grad();
  clamp(z, 0.0, 2.0).sum().backward();  // inclusive bounds, as PyTorch
  test::check_values(z.grad(), {0, 1, 1});
  // pow(a, p) w.r.t. p where a == 0: defined as 0 (not NaN)
  Tensor base = vec({0, 2}).requires_grad_(), ex = vec({2, 3}).requires_grad_();
  pow(base, ex).sum().backward();
  test::check_values(base.grad(), {0, 12});
  CHECK(ex.grad().to_vector()[0] == 0);
  CHECK(ex.grad().to_vector()[1] == doctest::Approx(8 * std::log(2.0)));
}

TEST_CASE("elementwise: second derivatives through create_graph") {
  // gradcheck of x -> d(sum f(x))/dx checks the backward of each backward. gradcheck runs its
  // finite-difference forwards under NoGradGuard, so each fn turns recording back on.
  Tensor x = test::rnd({7}, 41), p = test::rnd_pos({7}, 42);
  auto grad_of = [](Tensor (*f)(const Tensor&)) {
    return [f](const std::vector<Tensor>& v) {
      EnableGradGuard on;
      BackwardOptions o;
      o.create_graph = true;
      return grad({sum(f(v[0]))}, {v[0]}, {}, o)[0];
    };
  };
  const std::vector<std::pair<const char*, Tensor (*)(const Tensor&)>> on_x = {
      {"exp", &ng::exp}, {"sigmoid", &ng::sigmoid}, {"tanh", &ng::tanh}, {"gelu", &ng::gelu}};
  for (const auto& [name, f] : on_x) {
    CAPTURE(std::string(name));
    CHECK_GRADCHECK(gradcheck(grad_of(f), {x}));
  }
  const std::vector<std::pair<const char*, Tensor (*)(const Tensor&)>> on_p = {
      {"log", &ng::log}, {"sqrt", &ng::sqrt}, {"rsqrt", &ng::rsqrt}};
  for (const auto& [name, f] : on_p) {
    CAPTURE(std::string(name));
    CHECK_GRADCHECK(gradcheck(grad_of(f), {p}));
  }
  CHECK_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& v) {
        EnableGradGuard on;
        BackwardOptions o;
        o.create_graph = true;
        return grad({sum(softplus(v[0], 2.0))}, {v[0]}, {}, o)[0];
      },
      {x}));
  CHECK_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& v) {
        EnableGradGuard on;
        BackwardOptions o;
        o.create_graph = true;
        auto g = grad({sum(mul(div(v[0], v[1]), pow(v[0], 3.0)))}, {v[0], v[1]}, {}, o);
        return add(g[0], g[1]);
      },
      {x, p}));
}

// ---- errors ----------------------------------------------------------------------------------

TEST_CASE("elementwise: dtype mismatch is a DTypeError naming the op and both dtypes") {
  Tensor f = ones({3}), d = ones({3}, DType::f64);
  const std::vector<std::pair<const char*, std::function<Tensor()>>> ops = {
      {"add", [&] { return add(f, d); }},       {"sub", [&] { return sub(f, d); }},
      {"mul", [&] { return mul(f, d); }},       {"div", [&] { return div(f, d); }},
      {"maximum", [&] { return maximum(f, d); }}, {"minimum", [&] { return minimum(f, d); }},
      {"pow", [&] { return pow(f, d); }},       {"where", [&] { return where(f, f, d); }},
  };
  for (const auto& [name, fn] : ops) {
    CAPTURE(std::string(name));
    try {
      fn();
      FAIL("no exception");
    } catch (const DTypeError& e) {
      const std::string msg = e.what();
      CHECK(msg.find(std::string(name) + ":") == 0);
      CHECK(msg.find("float32") != std::string::npos);
      CHECK(msg.find("float64") != std::string::npos);
    }
  }
  CHECK_THROWS_WITH_AS(add(f, d), "add: dtypes differ: float32 vs float64 (convert one with .to())", DTypeError);
  // int64 tensors are refused by the float ops, naming the op
  Tensor i = arange(3, DType::i64);
  CHECK_THROWS_WITH_AS(exp(i), doctest::Contains("exp: expected a floating dtype"), DTypeError);
  CHECK_THROWS_WITH_AS(add(i, i), doctest::Contains("add: expected a floating dtype"), DTypeError);
}

TEST_CASE("elementwise: incompatible shapes are a ShapeError naming both shapes") {
  CHECK_THROWS_WITH_AS(add(ones({2, 3}), ones({4})),
                       "add: shapes [2, 3] and [4] cannot be broadcast: size 3 vs 4 at dim 1", ShapeError);
  CHECK_THROWS_WITH_AS(mul(ones({5, 3}), ones({2, 4, 3})), doctest::Contains("mul: shapes [5, 3] and [2, 4, 3]"), ShapeError);
  CHECK_THROWS_WITH_AS(maximum(ones({3}), ones({2})), doctest::Contains("maximum: shapes [3] and [2]"), ShapeError);
  CHECK_THROWS_WITH_AS(ones({2, 2}) - ones({3}), doctest::Contains("sub"), ShapeError);
}

TEST_CASE("gelu: with a gradient to come, the same values, and the stored derivative Phi + x phi") {
  Generator g(13);
  for (const DType d : {DType::f32, DType::f64}) {
    const Tensor x0 = randn({40000}, d, &g);  // above kParallelGrain: the parallel chunks
    const Tensor x = x0.detach().requires_grad_();
    const Tensor y = gelu(x);
    CHECK(test::max_abs_diff(y, gelu(x0)) == 0.0);
    const Tensor dx = grad({sum(y)}, {x})[0];
    const auto xv = x0.to_vector(), dv = dx.to_vector();
    double worst = 0;
    for (std::size_t i = 0; i < xv.size(); ++i) {
      const double Phi = 0.5 * std::erfc(-xv[i] / std::numbers::sqrt2);
      const double phi = std::exp(-0.5 * xv[i] * xv[i]) / std::sqrt(2 * std::numbers::pi);
      worst = std::max(worst, std::abs(dv[i] - (Phi + xv[i] * phi)));
    }
    CHECK(worst < (d == DType::f32 ? 1e-6 : 1e-14));
  }
}
