#include "tests/helpers.h"

using namespace ng;

namespace {
// x^3 with a deliberately wrong derivative at one element (flat index 4): 3x^2 + 1 there.
Tensor broken_cube(const Tensor& x) {
  Tensor y = mul(mul(x.detach(), x.detach()), x.detach());
  return record("broken_cube", {x}, y, [x](BackwardContext&, const Tensor& g) -> Grads {
    Tensor d = mul(mul(x, x), 3.0);
    NoGradGuard ng;
    Tensor bump = zeros_like(d);
    bump.data<double>()[4] = 1.0;
    return {mul(g, add(d, bump))};
  });
}
}  // namespace

TEST_CASE("gradcheck: passes on a correct composite function, full and fast mode") {
  Tensor a = test::rnd({3, 1}, 1), b = test::rnd({1, 4}, 2);
  auto f = [](const std::vector<Tensor>& x) { return tanh(mul(x[0], x[1])); };
  CHECK_GRADCHECK(gradcheck(f, {a, b}));
  GradcheckOptions fast;
  fast.fast_mode = true;
  auto r = gradcheck(f, {a, b}, fast);
  CHECK_GRADCHECK(r);
  CHECK(r.inputs[0].fast);
}

TEST_CASE("gradcheck: catches a wrong backward and reports the element") {
  Tensor x = test::rnd({2, 3}, 3);
  auto r = gradcheck([](const std::vector<Tensor>& v) { return broken_cube(v[0]); }, {x});
  CHECK_FALSE(r.passed);
  REQUIRE(r.inputs.size() == 1);
  CHECK_FALSE(r.inputs[0].passed);
  CHECK(r.inputs[0].worst_input_index == std::vector<std::int64_t>{1, 1});   // flat 4 in [2, 3]
  CHECK(r.inputs[0].worst_output_index == std::vector<std::int64_t>{1, 1});
  CHECK(r.inputs[0].analytic - r.inputs[0].numeric == doctest::Approx(1.0).epsilon(1e-4));
  CHECK(r.to_string().find("MISMATCH") != std::string::npos);
  GradcheckOptions o;
  o.raise = true;
  CHECK_THROWS_AS(gradcheck([](const std::vector<Tensor>& v) { return broken_cube(v[0]); }, {x}, o), GradcheckError);
  GradcheckOptions fast;
  fast.fast_mode = true;
  CHECK_FALSE(gradcheck([](const std::vector<Tensor>& v) { return broken_cube(v[0]); }, {x}, fast).passed);
}

TEST_CASE("gradcheck: refuses float32, explains why") {
  Tensor x = randn({3}).requires_grad_();
  auto r = gradcheck([](const std::vector<Tensor>& v) { return exp(v[0]); }, {x});
  CHECK_FALSE(r.passed);
  CHECK(r.error.find("float64") != std::string::npos);
}

TEST_CASE("gradcheck: detects non-determinism and in-place modification of inputs") {
  Tensor x = test::rnd({3}, 4);
  int calls = 0;
  auto r = gradcheck([&](const std::vector<Tensor>& v) { return mul(v[0], static_cast<double>(++calls)); }, {x});
  CHECK_FALSE(r.passed);
  CHECK(r.error.find("deterministic") != std::string::npos);
  auto r2 = gradcheck([](const std::vector<Tensor>& v) {
    { NoGradGuard ng; v[0].data<double>()[0] += 1.0; }
    return exp(v[0]);
  }, {x});
  CHECK_FALSE(r2.passed);
  CHECK(r2.error.find("modified input 0") != std::string::npos);
}

TEST_CASE("gradcheck: random projections catch what an all-ones gradient hides") {
  // sum over a row of (x - mean(x)) has zero gradient for any x; the full Jacobian still checks it.
  Tensor x = test::rnd({2, 5}, 5);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return sub(v[0], mean(v[0], {1}, true)); }, {x}));
}

TEST_CASE("gradcheck: an output that is a view of the input (perturbations must be read before restoring)") {
  Tensor x = test::rnd({3, 5}, 6);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return transpose(v[0], 0, 1); }, {x}));
}

TEST_CASE("gradcheck: input_names name the inputs in reports and errors") {
  Tensor x = test::rnd({2}, 1), w = test::rnd({2}, 2);
  GradcheckOptions o;
  o.input_names = {"x", "w"};
  auto r = gradcheck([](const std::vector<Tensor>& v) { return mul(v[0], v[1]); }, {x, w}, o);
  CHECK(r.passed);
  CHECK(r.inputs[1].name == "w");
  CHECK(r.to_string().find("  w [2]: ok") != std::string::npos);
  CHECK(r.to_string().find(" / d w[") != std::string::npos);
  auto rf = gradcheck([](const std::vector<Tensor>& v) { return mul(v[0], v[1]); },
                      {x, randn({2}).requires_grad_()}, o);
  CHECK(rf.error.find("w is float32") == 0);
  CHECK(rf.error.find("Convert the inputs with .to(DType::f64)") != std::string::npos);
  auto rg = gradgradcheck([](const std::vector<Tensor>& v) { return mul(mul(v[0], v[1]), v[1]); }, {x, w}, o);
  CHECK(rg.passed);
  CHECK(rg.to_string().find("(d<v,fn>/d ") != std::string::npos);
  // Without names: "input 1" as before.
  CHECK(gradcheck([](const std::vector<Tensor>& v) { return mul(v[0], v[1]); }, {x, w}).to_string().find("  input 1 [2]: ok") !=
        std::string::npos);
}
