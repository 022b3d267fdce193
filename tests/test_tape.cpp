// The tape: what gets recorded, backward and grad(), retain/create_graph, memory returning
// to its baseline, and thread-local tapes.
#include <string>
#include <thread>

#include "tests/helpers.h"

using namespace ng;

namespace {

Tensor vec(std::initializer_list<double> v) {
  return tensor(v, {static_cast<std::int64_t>(v.size())}, DType::f64).requires_grad_();
}

// A tiny two-layer model trained by plain SGD on a fixed batch; returns the final weights.
struct TinyMlp {
  Tensor w1, b1, w2, x, target;
  explicit TinyMlp(std::uint64_t seed) {
    Generator g(seed);
    w1 = mul(randn({4, 3}, DType::f64, &g), 0.5).requires_grad_();
    b1 = zeros({4}, DType::f64).requires_grad_();
    w2 = mul(randn({1, 4}, DType::f64, &g), 0.5).requires_grad_();
    x = randn({5, 3}, DType::f64, &g);
    target = randn({5, 1}, DType::f64, &g);
  }
  // loss = mean((tanh(x W1^T + b1) W2^T - target)^2)
  Tensor loss() const {
    Tensor h = tanh(add(matmul(x, w1.t()), b1));
    Tensor d = sub(matmul(h, w2.t()), target);
    return mean(mul(d, d));
  }
  double step(double lr) {
    Tensor l = loss();
    l.backward();
    NoGradGuard ng;
    for (Tensor* p : {&w1, &b1, &w2}) {
      p->add_(p->grad(), -lr);
      p->zero_grad();
    }
    return l.item();
  }
  std::vector<double> weights() const {
    std::vector<double> out;
    for (const Tensor* p : {&w1, &b1, &w2})
      for (double v : p->to_vector()) out.push_back(v);
    return out;
  }
};

}  // namespace

TEST_CASE("tape: NoGradGuard and tensors without requires_grad record nothing") {
  const std::size_t base = tape_size();
  Tensor x = vec({1, 2, 3});
  {
    NoGradGuard ng;
    CHECK_FALSE(grad_enabled());
    Tensor y = exp(mul(x, x));
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
    CHECK(tape_size() == base);
    {
      EnableGradGuard on;  // nested guards restore the mode they found
      CHECK(grad_enabled());
      Tensor z = mul(x, 2.0);
      CHECK(z.requires_grad());
      CHECK(tape_size() == base + 1);
    }
    CHECK_FALSE(grad_enabled());
    CHECK(tape_size() == base);  // z is gone, and so is its node
  }
  CHECK(grad_enabled());
  Tensor c = tensor({1, 2, 3}, {3}, DType::f64);  // no requires_grad
  Tensor y = matmul(exp(c), c);
  CHECK_FALSE(y.requires_grad());
  CHECK(y.grad_fn() == nullptr);
  CHECK(tape_size() == base);
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("does not require grad"), AutogradError);
}

TEST_CASE("tape: gradients accumulate across backward calls, zero_grad clears") {
  Tensor x = vec({1, 2, 3});
  sum(mul(x, x)).backward();  // d/dx sum x^2 = 2x
  test::check_values(x.grad(), {2, 4, 6});
  sum(mul(x, 3.0)).backward();
  test::check_values(x.grad(), {5, 7, 9});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  sum(x).backward();
  test::check_values(x.grad(), {1, 1, 1});
  // a tensor used along several paths gets the sum of their gradients
  Tensor a = vec({2, -1});
  x.zero_grad();
  Tensor h = mul(a, a);
  sum(add(mul(h, a), h)).backward();  // d/da (a^3 + a^2) = 3a^2 + 2a
  test::check_values(a.grad(), {16, 1});
}

TEST_CASE("tape: backward twice needs retain_graph, and the tape is empty after backward") {
  Tensor x = vec({0.5, -1, 2});
  const std::size_t base = tape_size();
  Tensor y = sum(exp(x));
  CHECK(tape_size() == base + 2);
  y.backward();
  CHECK(tape_size() == base);  // nodes ran and were released, though y is still alive
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("retain_graph"), AutogradError);
  // through an intermediate released node, too
  {
    // y2 shares the exp node with y1: without retain_graph its gradient must not be lost silently
    Tensor e = exp(x);
    Tensor y1 = sum(e), y2 = sum(mul(e, 2.0));
    y1.backward();
    CHECK_THROWS_WITH_AS(y2.backward(), doctest::Contains("retain_graph"), AutogradError);
  }

  x.zero_grad();
  Tensor z = sum(exp(x));
  z.backward({}, /*retain_graph=*/true);
  CHECK(tape_size() == base + 2);
  z.backward();
  const auto v = x.to_vector();
  for (std::size_t i = 0; i < 3; ++i) CHECK(x.grad().to_vector()[i] == doctest::Approx(2 * std::exp(v[i])));
  CHECK(tape_size() == base);
}

TEST_CASE("tape: a forward without backward leaves no nodes once its tensors are gone") {
  const std::size_t base = tape_size();
  const std::int64_t storages = live_storage_count();
  Tensor x = vec({1, 2, 3});
  {
    Tensor y = tanh(mul(exp(x), x));
    Tensor s = sum(y);
    CHECK(tape_size() == base + 4);
  }
  CHECK(tape_size() == base);
  CHECK(live_storage_count() == storages + 1);  // only x's
}

TEST_CASE("tape: a 10,000-step training loop returns to its memory baseline") {
  TinyMlp m(7);
  const double first = m.step(0.05);
  const std::size_t tape0 = tape_size();
  const std::int64_t storage0 = live_storage_count();
  CHECK(tape0 == 0);
  double last = first;
  for (int i = 1; i < 10000; ++i) last = m.step(0.05);
  CHECK(tape_size() == tape0);
  CHECK(live_storage_count() == storage0);
  CHECK(last < first);  // and it learned something
}

TEST_CASE("tape: ng::grad returns gradients without touching .grad()") {
  Tensor x = vec({1, 2, 3}), w = vec({0.5, -1, 2});
  Tensor y = sum(mul(mul(x, x), w));  // dy/dx = 2 x w, dy/dw = x^2
  auto g = grad({y}, {x, w});
  REQUIRE(g.size() == 2);
  test::check_values(g[0], {1, -4, 12});
  test::check_values(g[1], {1, 4, 9});
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(w.grad().defined());
  // explicit grad_outputs for a non-scalar output
  Tensor v = mul(x, w);
  auto gv = grad({v}, {x}, {tensor({1, 10, 100}, {3}, DType::f64)});
  test::check_values(gv[0], {0.5, -10, 200});
  // several outputs: gradients of their sum
  auto g2 = grad({sum(x), sum(mul(x, 2.0))}, {x});
  test::check_values(g2[0], {3, 3, 3});
}

TEST_CASE("tape: grad with unused inputs and with a non-leaf input") {
  Tensor x = vec({1, 2}), unused = vec({5, 5});
  CHECK_THROWS_WITH_AS(grad({sum(mul(x, x))}, {x, unused}), doctest::Contains("was not used"), AutogradError);
  auto g = grad({sum(mul(x, x))}, {x, unused}, {}, {}, /*allow_unused=*/true);
  test::check_values(g[0], {2, 4});
  CHECK_FALSE(g[1].defined());
  CHECK_THROWS_WITH_AS(grad({sum(x)}, {tensor({1}, {1})}), doctest::Contains("does not require grad"), AutogradError);

  // d y / d h for an intermediate h = x^2, y = sum(3 h + h^2): 3 + 2h
  Tensor h = mul(x, x);
  Tensor y = sum(add(mul(h, 3.0), mul(h, h)));
  auto gh = grad({y}, {h});
  test::check_values(gh[0], {5, 11});
  CHECK_FALSE(x.grad().defined());
  // both an intermediate and the leaf under it
  Tensor h2 = exp(x);
  auto both = grad({sum(mul(h2, 2.0))}, {h2, x});
  test::check_values(both[0], {2, 2});
  test::check_values(both[1], {2 * std::exp(1.0), 2 * std::exp(2.0)});
}

TEST_CASE("tape: grad with the same input listed twice returns the full gradient for each") {
  // y = sum(x^2 w): dy/dx = 2 x w, dy/dw = x^2 (as torch.autograd.grad(y, [x, w, x]))
  Tensor x = vec({1, 2, 3}), w = vec({0.5, -1, 2});
  auto g = grad({sum(mul(mul(x, x), w))}, {x, w, x});
  REQUIRE(g.size() == 3);
  test::check_values(g[0], {1, -4, 12});
  test::check_values(g[1], {1, 4, 9});
  test::check_values(g[2], {1, -4, 12});
  // a non-leaf input twice, the second time through another handle of the same tensor
  Tensor h = exp(x);
  Tensor h_again = h;
  auto gh = grad({sum(mul(h, h))}, {h, x, h_again});  // d/dh = 2h, d/dx = 2 e^{2x}
  for (std::size_t k : {std::size_t{0}, std::size_t{2}})
    for (std::int64_t i = 0; i < 3; ++i) CHECK(gh[k].at({i}) == doctest::Approx(2 * std::exp(x.at({i}))));
  for (std::int64_t i = 0; i < 3; ++i) CHECK(gh[1].at({i}) == doctest::Approx(2 * std::exp(2 * x.at({i}))));
  // under create_graph too: d/dx of the two occurrences' sum is twice the second derivative
  auto gc = grad({sum(mul(mul(x, x), x))}, {x, x}, {}, BackwardOptions{.create_graph = true});
  test::check_values(gc[0], {3, 12, 27});
  auto gg = grad({sum(add(gc[0], gc[1]))}, {x});
  test::check_values(gg[0], {12, 24, 36});  // d/dx 2 * 3x^2 = 12 x
}

TEST_CASE("tape: backward of a non-scalar needs a gradient of its shape") {
  Tensor x = vec({1, 2, 3});
  Tensor y = mul(x, 2.0);
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("only for one-element outputs"), AutogradError);
  CHECK_THROWS_WITH_AS(y.backward(ones({2}, DType::f64)), doctest::Contains("gradient shape [2] does not match output shape [3]"),
                       ShapeError);
  CHECK_THROWS_AS(y.backward(ones({3})), DTypeError);
  y.backward(tensor({1, 0, -1}, {3}, DType::f64));
  test::check_values(x.grad(), {2, 0, -2});
  // a one-element non-0-d output is fine without a gradient
  Tensor x2 = vec({4});
  mul(x2, x2).backward();
  test::check_values(x2.grad(), {8});
}

TEST_CASE("tape: .grad() never aliases a gradient tensor the caller still holds") {
  Tensor x = vec({1, 2, 3});
  Tensor gout = tensor({1, 1, 1}, {3}, DType::f64);
  add(x, 0.0).backward(gout);  // add_scalar passes the output gradient straight through
  REQUIRE(x.grad().defined());
  CHECK_FALSE(x.grad().impl().storage == gout.impl().storage);
  {
    NoGradGuard ng;
    x.grad().mul_(0.0);  // e.g. an optimizer clearing the gradient in place
  }
  test::check_values(gout, {1, 1, 1});
  // the same for a leaf that is itself the root
  Tensor y = vec({1, 2});
  Tensor gy = tensor({3, 4}, {2}, DType::f64);
  y.backward(gy);
  CHECK_FALSE(y.grad().impl().storage == gy.impl().storage);
  // and two leaves receiving one gradient tensor (add passes g to both inputs)
  Tensor a = vec({1, 2}), b = vec({3, 4});
  sum(add(a, b)).backward();
  CHECK_FALSE(a.grad().impl().storage == b.grad().impl().storage);
}

TEST_CASE("tape: create_graph gives second derivatives (d2/dx2 x^3 = 6x)") {
  Tensor x = vec({-1, 0.5, 2});
  BackwardOptions o;
  o.create_graph = true;
  Tensor y = sum(mul(mul(x, x), x));
  Tensor dx = grad({y}, {x}, {}, o)[0];  // 3x^2, itself differentiable
  CHECK(dx.requires_grad());
  test::check_values(dx, {3, 0.75, 12});
  Tensor d2x = grad({sum(dx)}, {x})[0];
  test::check_values(d2x, {-6, 3, 12});
  // with pow and backward() as well
  Tensor z = vec({1.5, -2});
  Tensor dz = grad({sum(pow(z, 3.0))}, {z}, {}, o)[0];
  sum(dz).backward();
  test::check_values(z.grad(), {9, -12});
}

TEST_CASE("tape: create_graph loops do not leak nodes or storage") {
  Tensor x = vec({0.3, -0.7, 1.1});
  auto step = [&] {
    BackwardOptions o;
    o.create_graph = true;
    Tensor dx = grad({sum(mul(tanh(x), exp(x)))}, {x}, {}, o)[0];
    sum(mul(dx, dx)).backward();
    NoGradGuard ng;
    x.add_(x.grad(), -0.001);
    x.zero_grad();
  };
  step();
  const std::size_t tape0 = tape_size();
  const std::int64_t storage0 = live_storage_count();
  for (int i = 0; i < 200; ++i) step();
  CHECK(tape_size() == tape0);
  CHECK(live_storage_count() == storage0);
}

TEST_CASE("tape: tape_summary lists the ops in order with shapes") {
  const std::size_t base = tape_size();
  Tensor x = test::rnd({2, 3}, 1);
  Tensor y = mul(x, x);
  Tensor s = sum(y);
  const auto entries = tape_entries();
  REQUIRE(entries.size() == base + 2);
  CHECK(entries[base].op == "mul");
  CHECK(entries[base].input_shapes == std::vector<Shape>{{2, 3}, {2, 3}});
  CHECK(entries[base + 1].op == "sum");
  CHECK(entries[base + 1].output_shape == Shape{});
  CHECK(entries[base].seq < entries[base + 1].seq);
  const std::string text = tape_summary();
  const auto pm = text.find("mul"), ps = text.find("sum");
  REQUIRE(pm != std::string::npos);
  REQUIRE(ps != std::string::npos);
  CHECK(pm < ps);
  CHECK(text.find("[2, 3] x [2, 3] -> [2, 3]  float64") != std::string::npos);
  CHECK(text.find("[2, 3] -> []  float64") != std::string::npos);
  s.backward();
  CHECK(tape_summary().find("mul") == std::string::npos);
}

TEST_CASE("tape: two threads training concurrently match sequential runs (thread-local tapes)") {
  // sequential reference
  TinyMlp s1(11), s2(12);
  for (int i = 0; i < 300; ++i) s1.step(0.1), s2.step(0.1);
  const auto want1 = s1.weights(), want2 = s2.weights();

  Tensor keep = mul(vec({1, 2}), 2.0);  // a live node on this thread's tape
  const std::size_t main_tape = tape_size();
  std::vector<double> got1, got2;
  std::size_t other_tape_at_start = 99, other_tape_at_end = 99;
  bool other_grad_mode = false;
  NoGradGuard ng;  // grad mode is per thread: the workers still record
  std::thread t1([&] {
    other_tape_at_start = tape_size();
    other_grad_mode = grad_enabled();
    TinyMlp m(11);
    for (int i = 0; i < 300; ++i) m.step(0.1);
    got1 = m.weights();
    other_tape_at_end = tape_size();
  });
  std::thread t2([&] {
    TinyMlp m(12);
    for (int i = 0; i < 300; ++i) m.step(0.1);
    got2 = m.weights();
  });
  t1.join();
  t2.join();
  CHECK(other_tape_at_start == 0);  // the main thread's node is not on the worker's tape
  CHECK(other_tape_at_end == 0);
  CHECK(other_grad_mode);
  CHECK(tape_size() == main_tape);
  REQUIRE(got1.size() == want1.size());
  REQUIRE(got2.size() == want2.size());
  for (std::size_t i = 0; i < want1.size(); ++i) CHECK(got1[i] == doctest::Approx(want1[i]).epsilon(1e-12));
  for (std::size_t i = 0; i < want2.size(); ++i) CHECK(got2[i] == doctest::Approx(want2[i]).epsilon(1e-12));
  CHECK(want1 != want2);
}
