// The fused LSTM cell ops (autograd/ops/rnn.cpp): values against the equations written as a
// loop, float64 gradchecks of both ops and of their composition, second derivatives through
// the create_graph fallback, and the error cases.
#include <algorithm>
#include <cmath>

#include "autograd/ops/rnn.h"
#include "tests/helpers.h"

using namespace ng;

namespace {

double sig(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// cat(h, c) along the features, so that one gradcheck covers both outputs.
Tensor both(const std::pair<Tensor, Tensor>& hc) { return cat({hc.first, hc.second}, 1); }

}  // namespace

TEST_CASE("lstm_cell: h and c equal PyTorch's LSTM equations, in float64 and float32") {
  const std::int64_t N = 3, H = 5;
  const Tensor gates = test::rnd({N, 4 * H}, 11, false), c = test::rnd({N, H}, 12, false);
  const auto g = gates.to_vector(), cv = c.to_vector();
  std::vector<double> h_expect, c_expect;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t j = 0; j < H; ++j) {
      auto at = [&](std::int64_t block) { return g[static_cast<std::size_t>(n * 4 * H + block * H + j)]; };
      const double i = sig(at(0)), f = sig(at(1)), gg = std::tanh(at(2)), o = sig(at(3));
      const double cn = f * cv[static_cast<std::size_t>(n * H + j)] + i * gg;
      c_expect.push_back(cn);
      h_expect.push_back(o * std::tanh(cn));
    }
  const auto [h64, c64] = lstm_cell(gates, c);
  test::check_values(h64, h_expect, 1e-12);
  test::check_values(c64, c_expect, 1e-12);
  const auto [h32, c32] = lstm_cell(gates.to(DType::f32), c.to(DType::f32));
  CHECK(h32.dtype() == DType::f32);
  test::check_values(h32, h_expect, 1e-5);
  test::check_values(c32, c_expect, 1e-5);
  // lstm_cell_output reads only the o block: h = o tanh(u) for any u.
  const Tensor u = test::rnd({N, H}, 13, false);
  const auto uv = u.to_vector(), hv = lstm_cell_output(gates, u).to_vector();
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t j = 0; j < H; ++j) {
      const std::size_t k = static_cast<std::size_t>(n * H + j);
      CHECK(hv[k] == doctest::Approx(sig(g[static_cast<std::size_t>(n * 4 * H + 3 * H + j)]) * std::tanh(uv[k])).epsilon(1e-12));
    }
}

TEST_CASE("lstm_cell: float64 gradcheck of both ops and of the cell, w.r.t. gates and state") {
  const Tensor gates = test::rnd({3, 4 * 5}, 21), c = test::rnd({3, 5}, 22), u = test::rnd({3, 5}, 23);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return lstm_cell_state(in[0], in[1]); }, {gates, c}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return lstm_cell_output(in[0], in[1]); }, {gates, u}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return both(lstm_cell(in[0], in[1])); }, {gates, c}));
  // Only one input requiring grad.
  const Tensor c_const = test::rnd({3, 5}, 24, false);
  CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& in) { return both(lstm_cell(in[0], c_const)); }, {gates}));
}

TEST_CASE("lstm_cell: second derivatives (create_graph falls back to tensor ops)") {
  const Tensor gates = test::rnd({2, 4 * 3}, 31), c = test::rnd({2, 3}, 32);
  CHECK_GRADCHECK(gradgradcheck([](const std::vector<Tensor>& in) { return both(lstm_cell(in[0], in[1])); }, {gates, c}));
}

TEST_CASE("lstm_cell: the fused gradient equals the one of the composite ops") {
  const Tensor gates = test::rnd({3, 4 * 5}, 41), c = test::rnd({3, 5}, 42), w = test::rnd({3, 10}, 43, false);
  const auto fused = grad({mul(both(lstm_cell(gates, c)), w).sum()}, {gates, c});
  const auto q = chunk(gates, 4, -1);
  const Tensor cn = add(mul(sigmoid(q[1]), c), mul(sigmoid(q[0]), tanh(q[2])));
  const Tensor h = mul(sigmoid(q[3]), tanh(cn));
  const auto ref = grad({mul(cat({h, cn}, 1), w).sum()}, {gates, c});
  for (std::size_t k = 0; k < 2; ++k) test::check_values(fused[k], ref[k].to_vector(), 1e-12);
}

TEST_CASE("lstm_cell: errors name the op and the shapes") {
  const Tensor gates = zeros({3, 8}), c = zeros({3, 2});
  CHECK_THROWS_WITH_AS(lstm_cell_state(zeros({3, 7}), c), doctest::Contains("lstm_cell_state: gates must have shape (N, 4H)"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(lstm_cell_state(zeros({8}), c), doctest::Contains("lstm_cell_state"), ShapeError);
  CHECK_THROWS_WITH_AS(lstm_cell_state(gates, zeros({2, 2})), doctest::Contains("c must have shape (N, H) = [3, 2]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(lstm_cell_output(gates, zeros({3, 3})), doctest::Contains("lstm_cell_output: u must have shape"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(lstm_cell(gates, zeros({3, 2}, DType::f64)), doctest::Contains("lstm_cell_state: dtypes differ"),
                       DTypeError);
}

// ---- lstm_sequence: the fused whole-sequence LSTM ------------------------------------------

namespace {

// The same sequence written step by step with plain tensor ops (no fused kernel), packed
// like lstm_sequence: (T + 1, N, H) = [h_1 .. h_T, c_T].
Tensor lstm_sequence_reference(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                               const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh) {
  Tensor h = h0, c = c0;
  std::vector<Tensor> rows;
  for (std::int64_t t = 0; t < x.size(0); ++t) {
    const auto q = chunk(add(linear(select(x, 0, t), w_ih, b_ih), linear(h, w_hh, b_hh)), 4, -1);
    c = add(mul(sigmoid(q[1]), c), mul(sigmoid(q[0]), tanh(q[2])));  // c_t = f c_{t-1} + i g
    h = mul(sigmoid(q[3]), tanh(c));                                 // h_t = o tanh(c_t)
    rows.push_back(h);
  }
  rows.push_back(c);
  return stack(rows, 0);
}

// x, h0, c0, w_ih, w_hh, b_ih, b_hh for T = 3, N = 2, F = 3, H = 5 (float64 leaves).
std::vector<Tensor> sequence_inputs(std::uint64_t seed, bool bias) {
  const std::int64_t T = 3, N = 2, F = 3, H = 5;
  std::vector<Tensor> in = {test::rnd({T, N, F}, seed),      test::rnd({N, H}, seed + 1),
                            test::rnd({N, H}, seed + 2),     test::rnd({4 * H, F}, seed + 3),
                            test::rnd({4 * H, H}, seed + 4)};
  if (bias) {
    in.push_back(test::rnd({4 * H}, seed + 5));
    in.push_back(test::rnd({4 * H}, seed + 6));
  }
  return in;
}

Tensor run_fused(const std::vector<Tensor>& in) {
  return lstm_sequence(in[0], in[1], in[2], in[3], in[4], in.size() > 5 ? in[5] : Tensor(),
                       in.size() > 6 ? in[6] : Tensor());
}
Tensor run_reference(const std::vector<Tensor>& in) {
  return lstm_sequence_reference(in[0], in[1], in[2], in[3], in[4], in.size() > 5 ? in[5] : Tensor(),
                                 in.size() > 6 ? in[6] : Tensor());
}

// max_k |a_k - b_k| / (1 + |b_k|): one number per tensor (the large case has a million elements)
double max_rel_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const auto va = a.to_vector(), vb = b.to_vector();
  double m = 0;
  for (std::size_t k = 0; k < va.size(); ++k) m = std::max(m, std::abs(va[k] - vb[k]) / (1 + std::abs(vb[k])));
  return m;
}

// Values and the gradients of <w, out> w.r.t. every input: fused vs reference.
void check_fused_equals_reference(const std::vector<Tensor>& in, double tol) {
  const Tensor fused = run_fused(in), ref = run_reference(in);
  CHECK(max_rel_diff(fused, ref) <= tol);
  Generator gen(5);
  const Tensor w = randn(fused.shape(), in[0].dtype(), &gen);
  const auto gf = grad({mul(fused, w).sum()}, in), gr = grad({mul(ref, w).sum()}, in);
  for (std::size_t k = 0; k < in.size(); ++k) {
    INFO("input " << k);
    CHECK(max_rel_diff(gf[k], gr[k]) <= tol);
  }
}

}  // namespace

TEST_CASE("lstm_sequence: float64 gradcheck w.r.t. x, h0, c0, w_ih, w_hh, b_ih, b_hh") {
  CHECK_GRADCHECK(gradcheck(run_fused, sequence_inputs(51, true)));
  CHECK_GRADCHECK(gradcheck(run_fused, sequence_inputs(61, false)));  // no biases
  // Only the weights requiring grad (x, h0, c0 constants), and only x.
  auto in = sequence_inputs(71, true);
  const Tensor x = in[0].detach(), h0 = in[1].detach(), c0 = in[2].detach();
  CHECK_GRADCHECK(gradcheck(
      [&](const std::vector<Tensor>& w) { return lstm_sequence(x, h0, c0, w[0], w[1], w[2], w[3]); },
      {in[3], in[4], in[5], in[6]}));
  const Tensor w_ih = in[3].detach(), w_hh = in[4].detach();
  CHECK_GRADCHECK(
      gradcheck([&](const std::vector<Tensor>& v) { return lstm_sequence(v[0], h0, c0, w_ih, w_hh); }, {in[0]}));
}

TEST_CASE("lstm_sequence: equals the per-step composite, values and all gradients, float64 and float32") {
  check_fused_equals_reference(sequence_inputs(81, true), 1e-12);
  check_fused_equals_reference(sequence_inputs(91, false), 1e-12);
  std::vector<Tensor> in32;
  for (const Tensor& t : sequence_inputs(101, true)) in32.push_back(t.detach().to(DType::f32).requires_grad_());
  check_fused_equals_reference(in32, 2e-4);
  // T = 1 (no recurrent GEMM in the backward beyond h0's)
  std::vector<Tensor> in1 = sequence_inputs(111, true);
  in1[0] = test::rnd({1, 2, 3}, 112);
  check_fused_equals_reference(in1, 1e-12);
  // A step large enough (N 4H >= kParallelGrain) for the pointwise passes to split rows across threads.
  const std::int64_t N = 16, H = 512;
  check_fused_equals_reference({test::rnd({2, N, 3}, 131), test::rnd({N, H}, 132), test::rnd({N, H}, 133),
                                mul(test::rnd({4 * H, 3}, 134, false), 0.1).requires_grad_(),
                                mul(test::rnd({4 * H, H}, 135, false), 0.05).requires_grad_(), test::rnd({4 * H}, 136),
                                test::rnd({4 * H}, 137)},
                               1e-10);
}

TEST_CASE("lstm_sequence: a transposed x (batch-first input) is read in place, same values and gradients") {
  // x as the (T, N, F) transpose of an (N, T, F) leaf: rows of F features are contiguous, the
  // op reads them without a copy. Compared with the same numbers passed contiguous.
  auto in = sequence_inputs(141, true);
  const Tensor xb = test::rnd({2, 3, 3}, 142);  // (N, T, F)
  const Tensor xc = xb.detach().transpose(0, 1).contiguous().requires_grad_();
  auto in_view = in, in_copy = in;
  in_view[0] = transpose(xb, 0, 1);
  in_copy[0] = xc;
  REQUIRE(!in_view[0].is_contiguous());
  const Tensor a = run_fused(in_view), b = run_fused(in_copy);
  CHECK(max_rel_diff(a, b) == 0);
  const auto ga = grad({a.sum()}, {xb}), gb = grad({b.sum()}, {xc});
  CHECK(max_rel_diff(transpose(ga[0], 0, 1), gb[0]) == 0);
  CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& v) {
    auto w = in;
    w[0] = transpose(v[0], 0, 1);
    return run_fused(w);
  }, {xb}));
  CHECK_GRADCHECK(gradgradcheck([&](const std::vector<Tensor>& v) {
    auto w = in;
    w[0] = transpose(v[0], 0, 1);
    return run_fused(w);
  }, {xb}));
}

TEST_CASE("lstm_sequence: second derivatives (create_graph switches to tensor ops)") {
  CHECK_GRADCHECK(gradgradcheck(run_fused, sequence_inputs(121, true)));
}

TEST_CASE("lstm_sequence: errors name the op and the shapes") {
  const Tensor x = zeros({3, 2, 3}), h = zeros({2, 5}), w_ih = zeros({20, 3}), w_hh = zeros({20, 5});
  CHECK_THROWS_WITH_AS(lstm_sequence(zeros({2, 3}), h, h, w_ih, w_hh),
                       doctest::Contains("lstm_sequence: x must have shape (T, N, F)"), ShapeError);
  CHECK_THROWS_WITH_AS(lstm_sequence(zeros({0, 2, 3}), h, h, w_ih, w_hh), doctest::Contains("T >= 1"), ShapeError);
  CHECK_THROWS_WITH_AS(lstm_sequence(x, h, h, w_ih, zeros({19, 5})),
                       doctest::Contains("lstm_sequence: w_hh must have shape (4H, H)"), ShapeError);
  CHECK_THROWS_WITH_AS(lstm_sequence(x, h, h, zeros({20, 4}), w_hh),
                       doctest::Contains("lstm_sequence: w_ih must have shape (4H, F): expected [20, 3] vs actual [20, 4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(lstm_sequence(x, zeros({3, 5}), h, w_ih, w_hh),
                       doctest::Contains("lstm_sequence: h0 must have shape (N, H): expected [2, 5] vs actual [3, 5]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(lstm_sequence(x, h, zeros({2, 4}), w_ih, w_hh), doctest::Contains("c0 must have shape"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(lstm_sequence(x, h, h, w_ih, w_hh, zeros({5})),
                       doctest::Contains("lstm_sequence: b_ih must have shape (4H)"), ShapeError);
  CHECK_THROWS_WITH_AS(lstm_sequence(x, h, h, w_ih, w_hh, zeros({20}), zeros({20}, DType::f64)),
                       doctest::Contains("lstm_sequence: dtypes differ"), DTypeError);
}
