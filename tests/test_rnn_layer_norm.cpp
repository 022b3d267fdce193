// The fused LayerNorm-LSTM sequence (autograd/ops/rnn_layer_norm.cpp): values and every gradient
// against the same cell written step by step with unfused tensor ops, float64 gradcheck and
// gradgradcheck, a transposed (batch-first) input, and the error cases.
#include <algorithm>
#include <cmath>

#include "autograd/ops/rnn.h"
#include "tests/helpers.h"

using namespace ng;

namespace {

// Inputs in ln_lstm_sequence's order: x, h0, c0, w_ih, w_hh, bias, then the LayerNorms' gains
// and biases ih_w, ih_b, hh_w, hh_b, c_w, c_b (float64 leaves; gains around 1).
std::vector<Tensor> ln_inputs(std::uint64_t seed, std::int64_t T = 3, std::int64_t N = 2, std::int64_t F = 3,
                              std::int64_t H = 5) {
  auto gain = [](const Shape& s, std::uint64_t k) { return add(mul(test::rnd(s, k, false), 0.3), 1.0).requires_grad_(); };
  return {test::rnd({T, N, F}, seed),          test::rnd({N, H}, seed + 1),
          test::rnd({N, H}, seed + 2),         mul(test::rnd({4 * H, F}, seed + 3, false), 0.5).requires_grad_(),
          mul(test::rnd({4 * H, H}, seed + 4, false), 0.5).requires_grad_(), test::rnd({4 * H}, seed + 5),
          gain({4 * H}, seed + 6),             test::rnd({4 * H}, seed + 7),
          gain({4 * H}, seed + 8),             test::rnd({4 * H}, seed + 9),
          gain({H}, seed + 10),                test::rnd({H}, seed + 11)};
}

LnLstmNorms norms_of(const std::vector<Tensor>& in, double eps = 1e-5) {
  return {in[6], in[7], in[8], in[9], in[10], in[11], eps};
}

Tensor run_fused(const std::vector<Tensor>& in) {
  return ln_lstm_sequence(in[0], in[1], in[2], in[3], in[4], in[5], norms_of(in));
}

// The cell as layers/recurrent.cpp's LayerNormLSTMCell computes it, step by step with unfused
// ops (linear, layer_norm, lstm_cell_state / lstm_cell_output), packed as (T + 1, N, H).
Tensor run_reference(const std::vector<Tensor>& in) {
  const Tensor &x = in[0], &w_ih = in[3], &w_hh = in[4], &bias = in[5];
  const std::int64_t H = w_hh.size(1);
  Tensor h = in[1], c = in[2];
  std::vector<Tensor> rows;
  for (std::int64_t t = 0; t < x.size(0); ++t) {
    const Tensor ih = layer_norm(linear(select(x, 0, t), w_ih), {4 * H}, in[6], in[7]);
    const Tensor gates = add(add(ih, layer_norm(linear(h, w_hh), {4 * H}, in[8], in[9])), bias);
    c = lstm_cell_state(gates, c);                                         // c_t = f c + i g
    h = lstm_cell_output(gates, layer_norm(c, {H}, in[10], in[11]));       // h_t = o tanh(LN_c(c_t))
    rows.push_back(h);
  }
  rows.push_back(c);
  return stack(rows, 0);
}

// max_k |a_k - b_k| / (1 + |b_k|)
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

std::vector<Tensor> to_f32(const std::vector<Tensor>& in) {
  std::vector<Tensor> out;
  for (const Tensor& t : in) out.push_back(t.detach().to(DType::f32).requires_grad_());
  return out;
}

}  // namespace

TEST_CASE("ln_lstm_sequence: equals the per-step unfused cell, values and all gradients, float64 and float32") {
  check_fused_equals_reference(ln_inputs(11), 1e-12);
  check_fused_equals_reference(to_f32(ln_inputs(21)), 1e-4);
  // T = 1, and a longer sequence
  check_fused_equals_reference(ln_inputs(31, 1), 1e-12);
  check_fused_equals_reference(ln_inputs(41, 7, 3, 4, 6), 1e-12);
  // The demo's shape in float32 (T 28, N 64, F 28, H 128): the kernels' float paths and the
  // threaded pointwise passes (N 4H >= kParallelGrain).
  check_fused_equals_reference(to_f32(ln_inputs(51, 28, 64, 28, 128)), 1e-4);
}

TEST_CASE("ln_lstm_sequence: float64 gradcheck w.r.t. x, h0, c0, the weights, bias and the LayerNorms' parameters") {
  CHECK_GRADCHECK(gradcheck(run_fused, ln_inputs(61)));
  // Only the parameters requiring grad (x, h0, c0 constants), and only x; no bias and no LN biases.
  auto in = ln_inputs(71);
  const Tensor x = in[0].detach(), h0 = in[1].detach(), c0 = in[2].detach();
  CHECK_GRADCHECK(gradcheck(
      [&](const std::vector<Tensor>& p) {
        return ln_lstm_sequence(x, h0, c0, p[0], p[1], Tensor(), {p[2], Tensor(), p[3], Tensor(), p[4], Tensor()});
      },
      {in[3], in[4], in[6], in[8], in[10]}));
  CHECK_GRADCHECK(gradcheck(
      [&](const std::vector<Tensor>& v) {
        auto w = in;
        for (std::size_t k = 1; k < w.size(); ++k) w[k] = w[k].detach();
        w[0] = v[0];
        return run_fused(w);
      },
      {in[0]}));
}

TEST_CASE("ln_lstm_sequence: second derivatives (create_graph switches to tensor ops)") {
  CHECK_GRADCHECK(gradgradcheck(run_fused, ln_inputs(81, 2, 2, 3, 3)));
}

TEST_CASE("ln_lstm_sequence: a transposed x (batch-first input) gives the same values and gradients") {
  auto in = ln_inputs(91);
  const Tensor xb = test::rnd({2, 3, 3}, 92);  // (N, T, F)
  const Tensor xc = xb.detach().transpose(0, 1).contiguous().requires_grad_();
  auto in_view = in, in_copy = in;
  in_view[0] = transpose(xb, 0, 1);
  in_copy[0] = xc;
  REQUIRE(!in_view[0].is_contiguous());
  const Tensor a = run_fused(in_view), b = run_fused(in_copy);
  CHECK(max_rel_diff(a, b) == 0);
  const auto ga = grad({a.sum()}, {xb}), gb = grad({b.sum()}, {xc});
  CHECK(max_rel_diff(transpose(ga[0], 0, 1), gb[0]) == 0);
}

TEST_CASE("ln_lstm_sequence: errors name the op and the shapes") {
  const Tensor x = zeros({3, 2, 3}), h = zeros({2, 5}), w_ih = zeros({20, 3}), w_hh = zeros({20, 5});
  const LnLstmNorms none{};
  CHECK_THROWS_WITH_AS(ln_lstm_sequence(zeros({2, 3}), h, h, w_ih, w_hh, Tensor(), none),
                       doctest::Contains("ln_lstm_sequence: x must have shape (T, N, F)"), ShapeError);
  CHECK_THROWS_WITH_AS(ln_lstm_sequence(x, h, h, zeros({20, 4}), w_hh, Tensor(), none),
                       doctest::Contains("ln_lstm_sequence: w_ih must have shape (4H, F): expected [20, 3] vs actual [20, 4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(ln_lstm_sequence(x, zeros({3, 5}), h, w_ih, w_hh, Tensor(), none),
                       doctest::Contains("ln_lstm_sequence: h0 must have shape (N, H): expected [2, 5] vs actual [3, 5]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(ln_lstm_sequence(x, h, h, w_ih, w_hh, Tensor(), {Tensor(), Tensor(), Tensor(), Tensor(), zeros({20})}),
                       doctest::Contains("ln_lstm_sequence: ln_c weight must have shape [5]: expected [5] vs actual [20]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(ln_lstm_sequence(x, h, h, w_ih, w_hh, zeros({20}, DType::f64), none),
                       doctest::Contains("ln_lstm_sequence: dtypes differ: x float32 vs bias float64"), DTypeError);
  CHECK_THROWS_WITH_AS(ln_lstm_sequence(x, h, h, w_ih, w_hh, Tensor(), {.eps = -1.0}),
                       doctest::Contains("ln_lstm_sequence: eps must be >= 0"), ValueError);
}
