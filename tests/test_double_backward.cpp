// Second-order gradients: gradgradcheck (autograd/gradcheck.h) over every op of ops.h and the
// normalization ops, Hessian-vector products (autograd/functional.h) against finite
// differences, and gradgradcheck catching a backward whose derivative lives outside the tape.
//
// Linear ops (shape ops, sum, matmul in one operand, ...) have a constant first derivative, so
// a check of op(x) alone only confirms a zero second derivative. Their backward matters when
// the incoming gradient depends on x, so they are checked inside a square: op(x) * op(x), whose
// first derivative op^T(2 v * op(x)) runs op's backward on an x-dependent gradient, and whose
// second derivative differentiates that backward.
#include <cmath>
#include <string>

#include "autograd/functional.h"
#include "layers/recurrent.h"
#include "tests/helpers.h"
#include "tests/op_table.h"

using namespace ng;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

#define CHECK_GRADGRAD(fn, ...) CHECK_GRADCHECK(gradgradcheck((fn), __VA_ARGS__))

Tensor sq(const Tensor& t) { return mul(t, t); }

// One unary op f: checked as f(x) and as f(x) * f(x).
struct Unary {
  const char* name;
  std::function<Tensor(const Tensor&)> f;
  bool positive = false;  // needs x > 0
  bool square = true;     // also check f(x) * f(x)
};

void check_unary(const Unary& u, std::uint64_t seed) {
  INFO(std::string(u.name));
  Tensor x = u.positive ? test::rnd_pos({3, 5}, seed) : test::rnd({3, 5}, seed);
  CHECK_GRADGRAD([&u](const std::vector<Tensor>& in) { return u.f(in[0]); }, {x});
  if (u.square) CHECK_GRADGRAD([&u](const std::vector<Tensor>& in) { return sq(u.f(in[0])); }, {x});
}

using test::max_abs;
using test::max_abs_diff;

}  // namespace

// ---- elementwise -------------------------------------------------------------------------

TEST_CASE("double backward: unary math and activations (tests/op_table.h)") {
  std::uint64_t seed = 10;
  for (const test::UnaryOp& op : test::unary_ops()) {
    if (!op.second_order) continue;
    INFO(std::string(op.name));
    const Tensor x = op.domain == test::Domain::positive ? test::rnd_pos({3, 5}, seed++) : test::rnd({3, 5}, seed++);
    CHECK_GRADGRAD([&op](const std::vector<Tensor>& in) { return op.f(in[0]); }, {x});
    if (op.first_order) CHECK_GRADGRAD([&op](const std::vector<Tensor>& in) { return sq(op.f(in[0])); }, {x});
  }
}

TEST_CASE("double backward: binary elementwise ops, with broadcasting (tests/op_table.h)") {
  std::uint64_t seed = 40;
  for (const test::BinaryOp& op : test::binary_ops()) {
    if (!op.second_order) continue;
    INFO(std::string(op.name));
    // Positive operands for every op keep div and pow (a^b, log a) away from their poles.
    Tensor a = test::rnd_pos({3, 5}, seed++), b = test::rnd_pos({5}, seed++), c = test::rnd_pos({3, 5}, seed++);
    const auto& f = op.f;
    CHECK_GRADGRAD([&f](const std::vector<Tensor>& in) { return f(in[0], in[1]); }, {a, b});
    CHECK_GRADGRAD([&f](const std::vector<Tensor>& in) { return sq(f(in[0], in[1])); }, {a, c});
    CHECK_GRADGRAD([&f](const std::vector<Tensor>& in) { return mul(f(in[1], in[0]), in[0]); }, {a, b});
  }
}

TEST_CASE("double backward: only one operand requires grad") {
  Tensor a = test::rnd({3, 5}, 70), c = test::rnd({3, 5}, 71, false), p = test::rnd_pos({3, 5}, 72);
  CHECK_GRADGRAD([&c](const std::vector<Tensor>& in) { return sq(mul(in[0], c)); }, {a});
  CHECK_GRADGRAD([&c](const std::vector<Tensor>& in) { return div(c, in[0]); }, {p});
  CHECK_GRADGRAD([&c](const std::vector<Tensor>& in) { return pow(in[0], add(c, 2.0)); }, {p});
}

// ---- reductions --------------------------------------------------------------------------

TEST_CASE("double backward: reductions") {
  using R = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<const char*, R>> ops = {
      {"sum all", [](const Tensor& x) { return sum(x); }},
      {"sum axis 1", [](const Tensor& x) { return sum(x, {1}); }},
      {"sum axis 0 keepdim", [](const Tensor& x) { return sum(x, {0}, true); }},
      {"mean", [](const Tensor& x) { return mean(x, {1}); }},
      {"var unbiased", [](const Tensor& x) { return var(x, {1}); }},
      {"var biased keepdim", [](const Tensor& x) { return var(x, {0}, 0, true); }},
      {"std", [](const Tensor& x) { return ng::std(x, {1}); }},
      {"max axis 1", [](const Tensor& x) { return max(x, {1}); }},
      {"min all", [](const Tensor& x) { return min(x); }},
      {"logsumexp", [](const Tensor& x) { return logsumexp(x, {1}); }},
      {"logsumexp all keepdim", [](const Tensor& x) { return logsumexp(x, {0, 1}, true); }},
      {"sum_to", [](const Tensor& x) { return sum_to(x, Shape{1, 5}); }},
  };
  std::uint64_t seed = 80;
  for (const auto& [name, f] : ops) check_unary({name, f}, seed++);
}

// ---- linear algebra ----------------------------------------------------------------------

TEST_CASE("double backward: matmul and linear") {
  SUBCASE("2-d x 2-d: the cross second derivative d2/da db is nonzero") {
    Tensor a = test::rnd({3, 4}, 90), b = test::rnd({4, 5}, 91);
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, b});
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return tanh(matmul(in[0], in[1])); }, {a, b});
  }
  SUBCASE("batched with broadcast batch dims, and through a transpose") {
    Tensor a = test::rnd({2, 3, 4}, 92), b = test::rnd({1, 4, 3}, 93), m = test::rnd({4, 3}, 94);
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(matmul(in[0], in[1])); }, {a, b});
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(matmul(in[0], in[1])); }, {a, m});
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(matmul(transpose(in[0], 0, 1), in[0])); }, {m});
  }
  SUBCASE("1-d operands") {
    Tensor u = test::rnd({4}, 95), w = test::rnd({4}, 96), m = test::rnd({4, 3}, 97), n = test::rnd({3, 4}, 98);
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(matmul(in[0], in[1])); }, {u, w});
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(matmul(in[0], in[1])); }, {u, m});
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(matmul(in[0], in[1])); }, {n, u});
  }
  SUBCASE("linear with bias") {
    Tensor x = test::rnd({3, 4}, 99), w = test::rnd({5, 4}, 100), b = test::rnd({5}, 101);
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return tanh(linear(in[0], in[1], in[2])); }, {x, w, b});
  }
}

// ---- shape ops ---------------------------------------------------------------------------

TEST_CASE("double backward: views and reshapes") {
  using S = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<const char*, S>> ops = {
      {"reshape", [](const Tensor& x) { return reshape(x, Shape{5, -1}); }},
      {"reshape of a transposed view (copies)", [](const Tensor& x) { return reshape(transpose(x, 0, 1), Shape{-1}); }},
      {"view", [](const Tensor& x) { return view(x, Shape{15}); }},
      {"flatten", [](const Tensor& x) { return flatten(unsqueeze(x, 1)); }},
      {"squeeze", [](const Tensor& x) { return squeeze(unsqueeze(x, 0), 0); }},
      {"unsqueeze", [](const Tensor& x) { return unsqueeze(x, 2); }},
      {"transpose", [](const Tensor& x) { return transpose(x, 0, 1); }},
      {"permute", [](const Tensor& x) { return permute(unsqueeze(x, 0), {2, 0, 1}); }},
      {"expand", [](const Tensor& x) { return expand(unsqueeze(x, 0), Shape{2, 3, 5}); }},
      {"broadcast_to", [](const Tensor& x) { return broadcast_to(slice(x, 0, 0, 1), Shape{4, 5}); }},
      {"contiguous of a transpose", [](const Tensor& x) { return transpose(x, 0, 1).contiguous(); }},
      {"slice step 2", [](const Tensor& x) { return slice(x, 1, 0, 5, 2); }},
      {"slice negative start", [](const Tensor& x) { return slice(x, 0, -2, 3); }},
      {"select", [](const Tensor& x) { return select(x, 1, -2); }},
      {"pad", [](const Tensor& x) { return pad(x, {2, 1, 1, 0}, PadMode::constant, 0.5); }},
  };
  std::uint64_t seed = 110;
  for (const auto& [name, f] : ops) check_unary({name, f}, seed++);
}

TEST_CASE("double backward: cat, stack, split, chunk") {
  Tensor a = test::rnd({3, 5}, 130), b = test::rnd({2, 5}, 131), c = test::rnd({3, 5}, 132);
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(cat({in[0], in[1]}, 0)); }, {a, b});
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return tanh(stack({in[0], in[1]}, 1)); }, {a, c});
  Tensor x = test::rnd({4, 5}, 133);
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { auto p = chunk(in[0], 2, 0); return mul(p[0], p[1]); }, {x});
  CHECK_GRADGRAD(
      [](const std::vector<Tensor>& in) {
        auto p = split(in[0], std::vector<std::int64_t>{2, 3}, 1);
        return mul(sum(sq(p[0]), {1}), sum(p[1], {1}));
      },
      {x});
}

TEST_CASE("double backward: indexing ops") {
  const Tensor idx = from_vector(std::vector<std::int64_t>{2, 0, 2, 1}, Shape{4});
  const Tensor gidx = from_vector(std::vector<std::int64_t>{1, 0, 4, 4, 2, 3}, Shape{3, 2});
  Tensor x = test::rnd({3, 5}, 140);
  CHECK_GRADGRAD([&](const std::vector<Tensor>& in) { return sq(index_select(in[0], 0, idx)); }, {x});
  CHECK_GRADGRAD([&](const std::vector<Tensor>& in) { return sq(gather(in[0], 1, gidx)); }, {x});
  Tensor src = test::rnd({4, 5}, 141), gsrc = test::rnd({3, 2}, 142), part = test::rnd({3, 2}, 143);
  // repeated indices add up: index_add and scatter_add are sums
  CHECK_GRADGRAD([&](const std::vector<Tensor>& in) { return sq(index_add(Shape{3, 5}, 0, idx, in[0])); }, {src});
  CHECK_GRADGRAD([&](const std::vector<Tensor>& in) { return sq(scatter_add(Shape{3, 5}, 1, gidx, in[0])); }, {gsrc});
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(slice_backward(in[0], Shape{3, 5}, 1, 1, 5, 2)); },
                 {part});
}

// ---- softmax and losses ------------------------------------------------------------------

TEST_CASE("double backward: softmax, log_softmax and the losses") {
  Tensor x = test::rnd({3, 5}, 150);
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return softmax(in[0], 1); }, {x});
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return softmax(in[0], 0); }, {x});
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return log_softmax(in[0], -1); }, {x});
  Tensor x3 = test::rnd({2, 3, 2}, 151);
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return log_softmax(in[0], 1); }, {x3});

  const Tensor target = from_vector(std::vector<std::int64_t>{4, 0, 2}, Shape{3});
  CHECK_GRADGRAD([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], target); }, {x});
  CHECK_GRADGRAD([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], target, Reduction::none, 0.1); },
                 {x});
  const Tensor target3 = from_vector(std::vector<std::int64_t>{0, 2, 1, 1}, Shape{2, 2});
  CHECK_GRADGRAD([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], target3, Reduction::sum); }, {x3});
  // nll_loss is linear in log_probs: checked on a nonlinear input
  CHECK_GRADGRAD([&](const std::vector<Tensor>& in) { return nll_loss(log_softmax(sq(in[0]), 1), target); }, {x});

  Tensor p = test::rnd({3, 5}, 152), t = test::rnd({3, 5}, 153);
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1]); }, {p, t});
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1], Reduction::none); }, {p, t});
  Tensor prob = test::rnd_pos({3, 5}, 154, 0.1, 0.9);
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return binary_cross_entropy_with_logits(in[0], in[1]); },
                 {p, prob});
  CHECK_GRADGRAD(
      [](const std::vector<Tensor>& in) { return binary_cross_entropy_with_logits(in[0], in[1], Reduction::none); },
      {p, prob});
}

// ---- normalization -------------------------------------------------------------------------

TEST_CASE("double backward: batch_norm in training mode (batch statistics)") {
  Tensor x = test::rnd({5, 3}, 160), w = test::rnd({3}, 161), b = test::rnd({3}, 162);
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return batch_norm(in[0], {}, {}, in[1], in[2], true); },
                 {x, w, b});
  Tensor x3 = test::rnd({3, 3, 2}, 163);
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return batch_norm(in[0], {}, {}, in[1], in[2], true); },
                 {x3, w, b});
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return batch_norm(in[0], {}, {}, {}, {}, true); }, {x3});
  // running statistics are updated in place; the output and its derivatives do not depend on them
  Tensor rm = zeros({3}, DType::f64), rv = ones({3}, DType::f64);
  CHECK_GRADGRAD([&](const std::vector<Tensor>& in) { return batch_norm(in[0], rm, rv, in[1], {}, true); }, {x3, w});
}

TEST_CASE("double backward: batch_norm in eval mode (running statistics)") {
  Tensor x = test::rnd({3, 3, 2}, 170), w = test::rnd({3}, 171), b = test::rnd({3}, 172);
  const Tensor rm = test::rnd({3}, 173, false), rv = test::rnd_pos({3}, 174).detach();
  CHECK_GRADGRAD([&](const std::vector<Tensor>& in) { return batch_norm(in[0], rm, rv, in[1], in[2], false); },
                 {x, w, b});
  // eval BN is affine in x: the square makes its backward see an x-dependent gradient
  CHECK_GRADGRAD([&](const std::vector<Tensor>& in) { return sq(batch_norm(in[0], rm, rv, in[1], in[2], false)); },
                 {x, w, b});
}

TEST_CASE("double backward: layer_norm, group_norm, rms_norm, instance_norm") {
  SUBCASE("layer_norm over one and two trailing dims") {
    Tensor x = test::rnd({3, 5}, 180), w = test::rnd({5}, 181), b = test::rnd({5}, 182);
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return layer_norm(in[0], {5}, in[1], in[2]); }, {x, w, b});
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return layer_norm(in[0], {5}); }, {x});
    Tensor x2 = test::rnd({2, 2, 3}, 183), w2 = test::rnd({2, 3}, 184);
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return layer_norm(in[0], {2, 3}, in[1]); }, {x2, w2});
  }
  SUBCASE("group_norm") {
    Tensor x = test::rnd({2, 4, 3}, 185), w = test::rnd({4}, 186), b = test::rnd({4}, 187);
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return group_norm(in[0], 2, in[1], in[2]); }, {x, w, b});
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return group_norm(in[0], 1); }, {x});
  }
  SUBCASE("rms_norm") {
    Tensor x = test::rnd({3, 5}, 188), w = test::rnd({5}, 189);
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return rms_norm(in[0], {5}, in[1], 1e-6); }, {x, w});
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return rms_norm(in[0], {5}); }, {x});
  }
  SUBCASE("instance_norm with input statistics and with running statistics") {
    Tensor x = test::rnd({2, 3, 4}, 190), w = test::rnd({3}, 191), b = test::rnd({3}, 192);
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return instance_norm(in[0], {}, {}, in[1], in[2]); },
                   {x, w, b});
    const Tensor rm = test::rnd({3}, 193, false), rv = test::rnd_pos({3}, 194).detach();
    CHECK_GRADGRAD(
        [&](const std::vector<Tensor>& in) { return sq(instance_norm(in[0], rm, rv, in[1], in[2], false)); },
        {x, w, b});
  }
}

TEST_CASE("double backward: the norm composite backward matches the composite references") {
  // Under create_graph the fused norms switch to a differentiable formula. Its first
  // derivative, differentiated once more, must equal the one of the reference written with
  // primitive ops (two independent second-order paths).
  Tensor x = test::rnd({4, 3, 2}, 195), w = test::rnd({3}, 196), b = test::rnd({3}, 197);
  const Tensor v = test::rnd({4, 3, 2}, 198, false), u = test::rnd({4, 3, 2}, 199, false);
  auto second = [&](const Fn& f) {
    const Tensor y = f({x, w, b});
    const auto g = ng::grad({y}, {x, w}, {v}, {.retain_graph = true, .create_graph = true});
    const Tensor s = add(sum(mul(g[0], u)), sum(mul(g[1], g[1])));
    return ng::grad({s}, {x, w, b}, {}, {}, true);
  };
  auto fused = second([](const std::vector<Tensor>& in) { return batch_norm(in[0], {}, {}, in[1], in[2], true); });
  auto ref = second([](const std::vector<Tensor>& in) { return reference::batch_norm(in[0], in[1], in[2]); });
  CHECK(max_abs_diff(fused[0], ref[0]) < 1e-10);
  CHECK(max_abs_diff(fused[1], ref[1]) < 1e-10);
  CHECK_FALSE(fused[2].defined());  // the bias enters linearly: no second derivative
  auto gfused = second([](const std::vector<Tensor>& in) { return group_norm(in[0], 3, in[1], in[2]); });
  auto gref = second([](const std::vector<Tensor>& in) { return reference::group_norm(in[0], 3, in[1], in[2]); });
  CHECK(max_abs_diff(gfused[0], gref[0]) < 1e-10);
  CHECK(max_abs_diff(gfused[1], gref[1]) < 1e-10);
}

// ---- gradgradcheck catches a wrong second derivative ----------------------------------------

namespace {
// x^3 whose backward computes 3x^2 with a raw loop, outside the tape: the first derivative is
// right, but under create_graph the tape sees mul(g, <constant>) and misses d(3x^2)/dx = 6x.
Tensor cube_off_tape(const Tensor& x) {
  std::vector<double> y = x.to_vector();
  for (double& e : y) e = e * e * e;
  return record("cube_off_tape", {x}, from_vector(y, x.shape(), x.dtype()), [x](BackwardContext&, const Tensor& g) -> Grads {
    std::vector<double> d = x.to_vector();
    for (double& e : d) e = 3 * e * e;
    return {mul(g, from_vector(d, x.shape(), x.dtype()))};
  });
}
// The same op with its backward written in tensor ops: right to every order.
Tensor cube_on_tape(const Tensor& x) {
  std::vector<double> y = x.to_vector();
  for (double& e : y) e = e * e * e;
  return record("cube_on_tape", {x}, from_vector(y, x.shape(), x.dtype()), [x](BackwardContext&, const Tensor& g) -> Grads {
    return {mul(g, mul(mul(x, x), 3.0))};
  });
}
}  // namespace

TEST_CASE("gradgradcheck: catches a backward computed outside the tape and names the element") {
  Tensor x = test::rnd({2, 3}, 200);
  auto off = [](const std::vector<Tensor>& in) { return cube_off_tape(in[0]); };
  CHECK_GRADCHECK(gradcheck(off, {x}));  // first order is fine
  const GradcheckReport r = gradgradcheck(off, {x});
  CHECK_FALSE(r.passed);
  CHECK(r.order == 2);
  REQUIRE(r.inputs.size() == 1);
  CHECK_FALSE(r.inputs[0].passed);
  // The worst element is on the diagonal, d g_j / d x_j = 6 x_j v_j: analytic 0 (the tape saw
  // a constant) vs numeric nonzero, at the same index of g and of x.
  CHECK(r.inputs[0].analytic == 0.0);
  CHECK(std::abs(r.inputs[0].numeric) > 1e-3);
  const std::string worst_in = fmt::format("{}", fmt::join(r.inputs[0].worst_input_index, ", "));
  CHECK(r.inputs[0].worst_output_name == "(d<v,fn>/d in0)[" + worst_in + "]");
  const std::string s = r.to_string();
  CHECK(s.find("gradgradcheck FAILED") != std::string::npos);
  CHECK(s.find("MISMATCH") != std::string::npos);
  CHECK(s.find("(d<v,fn>/d in0)") != std::string::npos);

  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return cube_on_tape(in[0]); }, {x});

  GradcheckOptions raise;
  raise.raise = true;
  CHECK_THROWS_WITH_AS(gradgradcheck(off, {x}, raise), doctest::Contains("gradgradcheck failed"), GradcheckError);
  GradcheckOptions fast;
  fast.fast_mode = true;
  CHECK_FALSE(gradgradcheck(off, {x}, fast).passed);
  CHECK(gradgradcheck([](const std::vector<Tensor>& in) { return cube_on_tape(in[0]); }, {x}, fast).passed);
}

TEST_CASE("gradgradcheck: a detached saved tensor breaks the second derivative too") {
  // y = x^2 whose backward uses the detached input, 2 x.detach() g: right once, wrong twice
  Tensor x = test::rnd({3}, 201);
  auto f = [](const std::vector<Tensor>& in) {
    const Tensor& a = in[0];
    return record("square_detached", {a}, mul(a.detach(), a.detach()), [a](BackwardContext&, const Tensor& g) -> Grads {
      return {mul(g, mul(a.detach(), 2.0))};
    });
  };
  CHECK_GRADCHECK(gradcheck(f, {x}));
  CHECK_FALSE(gradgradcheck(f, {x}).passed);
}

TEST_CASE("gradgradcheck: several inputs, unused inputs, and refusals") {
  Tensor a = test::rnd({2, 3}, 210), b = test::rnd({3}, 211), unused = test::rnd({2}, 212);
  const GradcheckReport r =
      gradgradcheck([](const std::vector<Tensor>& in) { return tanh(mul(in[0], in[1])); }, {a, b, unused});
  CHECK_GRADCHECK(r);
  CHECK(r.inputs.size() == 3);
  // linear in the inputs: the first derivative is constant, the second zero on both sides
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return add(mul(in[0], 2.0), in[1]); }, {a, b});

  Tensor c = test::rnd({2}, 213, false);
  auto no_input = gradgradcheck([](const std::vector<Tensor>& in) { return exp(in[0]); }, {c});
  CHECK_FALSE(no_input.passed);
  CHECK(no_input.error.find("no input requires grad") != std::string::npos);
  auto constant = gradgradcheck([&c](const std::vector<Tensor>&) { return exp(c); }, {a});
  CHECK_FALSE(constant.passed);
  CHECK(constant.error.find("does not require grad") != std::string::npos);
  Tensor f32 = test::rnd({2}, 214).detach().to(DType::f32).requires_grad_();
  auto r32 = gradgradcheck([](const std::vector<Tensor>& in) { return exp(in[0]); }, {f32});
  CHECK_FALSE(r32.passed);
  CHECK(r32.error.find("float32") != std::string::npos);
}

// ---- Hessian-vector products ---------------------------------------------------------------

TEST_CASE("hvp: f = sum(x^3) + sum(x * y) has Hv = (6 x vx + vy, vx)") {
  Tensor x = test::rnd({3, 2}, 220), y = test::rnd({3, 2}, 221);
  const Tensor vx = test::rnd({3, 2}, 222, false), vy = test::rnd({3, 2}, 223, false);
  auto f = [](const std::vector<Tensor>& in) { return add(sum(pow(in[0], 3.0)), sum(mul(in[0], in[1]))); };
  const auto hv = hvp(f, {x, y}, {vx, vy});
  REQUIRE(hv.size() == 2);
  CHECK_FALSE(hv[0].requires_grad());
  const auto xs = x.to_vector(), vxs = vx.to_vector(), vys = vy.to_vector();
  const auto h0 = hv[0].to_vector(), h1 = hv[1].to_vector();
  for (std::size_t i = 0; i < xs.size(); ++i) {
    CHECK(h0[i] == doctest::Approx(6 * xs[i] * vxs[i] + vys[i]).epsilon(1e-12));
    CHECK(h1[i] == doctest::Approx(vxs[i]).epsilon(1e-12));
  }
  CHECK(x.grad().defined() == false);  // .grad() untouched
  CHECK(tape_size() == 0);             // nothing left on the tape
}

TEST_CASE("hvp: matches finite differences on a small BatchNorm network") {
  // loss = mse(tanh(bn(x W1 + b1)) W2 + b2, t), parameters W1, b1, gamma, beta, W2, b2
  const Tensor x = test::rnd({7, 3}, 230, false), t = test::rnd({7, 2}, 231, false);
  std::vector<Tensor> p = {test::rnd({3, 5}, 232), test::rnd({5}, 233), test::rnd_pos({5}, 234), test::rnd({5}, 235),
                           test::rnd({5, 2}, 236), test::rnd({2}, 237)};
  auto loss = [&](const std::vector<Tensor>& q) {
    Tensor h = add(matmul(x, q[0]), q[1]);
    h = tanh(batch_norm(h, {}, {}, q[2], q[3], true));
    return mse_loss(add(matmul(h, q[4]), q[5]), t);
  };
  std::vector<Tensor> v;
  for (std::size_t i = 0; i < p.size(); ++i) v.push_back(test::rnd(p[i].shape(), 240 + i, false));
  const auto hv = hvp(loss, p, v);
  const auto fd = hvp_finite_difference(loss, p, v, 1e-5);
  for (std::size_t i = 0; i < p.size(); ++i) {
    INFO("parameter ", i);
    CHECK(max_abs_diff(hv[i], fd[i]) < 1e-7 * std::max(1.0, max_abs(hv[i])));
  }
  // the inputs are restored bit-exactly after the finite differences
  CHECK(max_abs_diff(p[0], test::rnd({3, 5}, 232)) == 0.0);
}

TEST_CASE("hvp: layer_norm and group_norm against finite differences") {
  Tensor x = test::rnd({2, 4, 3}, 250), w = test::rnd({4}, 251), b = test::rnd({4}, 252);
  const Tensor c = test::rnd({2, 4, 3}, 253, false);
  auto f = [&](const std::vector<Tensor>& in) {
    Tensor y = group_norm(in[0], 2, in[1], in[2]);
    return sum(mul(sigmoid(layer_norm(y, {3})), c));
  };
  std::vector<Tensor> v = {test::rnd({2, 4, 3}, 254, false), test::rnd({4}, 255, false), test::rnd({4}, 256, false)};
  const auto hv = hvp(f, {x, w, b}, v);
  const auto fd = hvp_finite_difference(f, {x, w, b}, v);
  // central differences: truncation error ~ eps^2 / 6 times the third derivative
  for (std::size_t i = 0; i < 3; ++i) CHECK(max_abs_diff(hv[i], fd[i]) < 1e-6 * std::max(1.0, max_abs(hv[i])));
}

TEST_CASE("hvp: linear functions have H = 0, and the errors") {
  Tensor x = test::rnd({3}, 260);
  const Tensor v = test::rnd({3}, 261, false);
  const auto hv = hvp([](const std::vector<Tensor>& in) { return sum(mul(in[0], 2.0)); }, {x}, {v});
  CHECK(max_abs(hv[0]) == 0.0);
  CHECK_THROWS_WITH_AS(hvp([](const std::vector<Tensor>& in) { return mul(in[0], 2.0); }, {x}, {v}),
                       doctest::Contains("hvp: fn must return a one-element tensor"), ShapeError);
  CHECK_THROWS_WITH_AS(hvp([](const std::vector<Tensor>& in) { return sum(in[0]); }, {x}, {test::rnd({2}, 1, false)}),
                       doctest::Contains("hvp: direction 0 must have the shape of input 0"), ShapeError);
  CHECK_THROWS_WITH_AS(hvp([](const std::vector<Tensor>& in) { return sum(in[0]); }, {x}, {}),
                       doctest::Contains("hvp: one direction per input"), ValueError);
  const Tensor data = test::rnd({3}, 262, false);
  CHECK_THROWS_WITH_AS(hvp([](const std::vector<Tensor>& in) { return sum(in[0]); }, {data}, {v}),
                       doctest::Contains("hvp: input 0 does not require grad"), AutogradError);
}

// ---- convolution and pooling ---------------------------------------------------------------

TEST_CASE("double backward: conv2d") {
  SUBCASE("3x3 kernel with padding and bias") {
    Tensor x = test::rnd({2, 2, 3, 4}, 300), w = test::rnd({3, 2, 2, 2}, 301), b = test::rnd({3}, 302);
    // conv2d is bilinear in (x, w): the cross derivatives d2/dx dw are nonzero on their own
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], 1, 1); }, {x, w, b});
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return tanh(conv2d(in[0], in[1], in[2], 1, 1)); }, {x, w, b});
  }
  SUBCASE("groups, stride, dilation") {
    Tensor x = test::rnd({1, 4, 4, 3}, 303), w = test::rnd({2, 2, 2, 2}, 304);
    CHECK_GRADGRAD(
        [](const std::vector<Tensor>& in) { return sq(conv2d(in[0], in[1], {}, Size2(2, 1), 1, Size2(1, 2), 2)); },
        {x, w});
  }
  SUBCASE("1x1 kernel (the pointwise path)") {
    Tensor x = test::rnd({2, 3, 2, 3}, 305), w = test::rnd({2, 3, 1, 1}, 306);
    CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(conv2d(in[0], in[1])); }, {x, w});
  }
  SUBCASE("third order: the backward's backward is differentiable too") {
    // d/dx of <u, d/dx <v, d/dx <w, conv(x, W)^3>>> checked by gradgradcheck of the gradient
    Tensor x = test::rnd({1, 1, 3, 3}, 307), w = test::rnd({1, 1, 2, 2}, 308);
    const Tensor v = test::rnd({1, 1, 2, 2}, 309, false);
    CHECK_GRADGRAD(
        [&v](const std::vector<Tensor>& in) {
          EnableGradGuard on;
          const Tensor y = pow(conv2d(in[0], in[1]), 3.0);
          return ng::grad({y}, {in[0]}, {v}, {.retain_graph = true, .create_graph = true})[0];
        },
        {x, w});
  }
}

TEST_CASE("double backward: max_pool2d, avg_pool2d, adaptive_avg_pool2d") {
  Tensor x = test::rnd({1, 2, 4, 5}, 310);
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(max_pool2d(in[0], 2)); }, {x});
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(max_pool2d(in[0], 3, Size2(2), 1, 1, true)); }, {x});
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(avg_pool2d(in[0], 2)); }, {x});
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(avg_pool2d(in[0], 3, Size2(2), 1, true, false)); },
                 {x});
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return sq(adaptive_avg_pool2d(in[0], Size2(3, 2))); }, {x});
  Tensor x3 = test::rnd({2, 3, 3}, 311);  // unbatched (C, H, W)
  CHECK_GRADGRAD([](const std::vector<Tensor>& in) { return tanh(max_pool2d(in[0], 2, 1)); }, {x3});
}

TEST_CASE("hvp: a small CNN with BatchNorm and pooling against finite differences") {
  // loss = cross_entropy(linear(flatten(max_pool(relu(bn(conv(x)))))), target)
  const Tensor x = test::rnd({3, 1, 5, 5}, 320, false);
  const Tensor target = from_vector(std::vector<std::int64_t>{1, 0, 2}, Shape{3});
  std::vector<Tensor> p = {test::rnd({2, 1, 3, 3}, 321), test::rnd({2}, 322), test::rnd_pos({2}, 323),
                           test::rnd({2}, 324), test::rnd({3, 8}, 325)};
  auto loss = [&](const std::vector<Tensor>& q) {
    Tensor h = conv2d(x, q[0], q[1], 1, 1);                         // (3, 2, 5, 5)
    h = tanh(batch_norm(h, {}, {}, q[2], q[3], true));
    h = avg_pool2d(max_pool2d(h, 2, 1), 2);                          // (3, 2, 2, 2)
    return cross_entropy(matmul(flatten(h, 1), transpose(q[4], 0, 1)), target);
  };
  std::vector<Tensor> v;
  for (std::size_t i = 0; i < p.size(); ++i) v.push_back(test::rnd(p[i].shape(), 330 + i, false));
  const auto hv = hvp(loss, p, v);
  const auto fd = hvp_finite_difference(loss, p, v, 1e-5);
  for (std::size_t i = 0; i < p.size(); ++i) {
    INFO("parameter ", i);
    CHECK(max_abs_diff(hv[i], fd[i]) < 1e-6 * std::max(1.0, max_abs(hv[i])));
  }
}

TEST_CASE("double backward: a two-layer LSTM (fused sequence op) w.r.t. input and initial state") {
  Generator gen(3);
  nn::RNNOptions opt;
  opt.num_layers = 2;
  opt.gen = &gen;
  opt.dtype = DType::f64;
  nn::LSTM lstm(3, 4, opt);
  const Tensor x = test::rnd({3, 2, 3}, 601), h0 = test::rnd({2, 2, 4}, 602), c0 = test::rnd({2, 2, 4}, 603);
  // output, h_n and c_n together, so that every view of the packed output is differentiated twice
  CHECK_GRADGRAD(
      [&lstm](const std::vector<Tensor>& in) {
        const nn::RNNResult r = lstm.forward_seq(in[0], {in[1], in[2]});
        return cat({reshape(r.output, {-1}), reshape(r.h_n, {-1}), reshape(r.c_n, {-1})}, 0);
      },
      {x, h0, c0});
}
