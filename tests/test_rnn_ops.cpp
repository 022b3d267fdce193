// The fused LSTM cell ops (autograd/ops/rnn.cpp): values against the equations written as a
// loop, float64 gradchecks of both ops and of their composition, second derivatives through
// the create_graph fallback, and the error cases.
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
