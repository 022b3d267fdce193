// scaled_dot_product_attention (autograd/ops/attention.cpp): values against a loop written
// here in double (masks, causal, broadcast batch dims, dropout), fully masked rows, float32
// against float64, float64 gradcheck and gradgradcheck, the fused gradient against the one of
// a composite of primitive ops, and the error cases.
#include <cmath>
#include <limits>

#include "tests/helpers.h"

using namespace ng;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The definition, as loops in double. q (B, L, E), k (B, S, E), v (B, S, Ev) already broadcast
// to one batch B; allowed(b, i, j) and additive(b, i, j) describe the mask; keep(b, i, j) the
// dropout multiplier. Fully masked rows give 0.
template <class Allowed, class Additive, class Keep>
std::vector<double> definition(const Tensor& qt, const Tensor& kt, const Tensor& vt, double scale, Allowed allowed,
                               Additive additive, Keep keep) {
  const auto q = qt.contiguous().to_vector(), k = kt.contiguous().to_vector(), v = vt.contiguous().to_vector();
  const std::int64_t B = qt.size(0), L = qt.size(1), E = qt.size(2), S = kt.size(1), Ev = vt.size(2);
  std::vector<double> out(static_cast<std::size_t>(B * L * Ev), 0.0);
  auto at = [](const std::vector<double>& x, std::int64_t i) { return x[static_cast<std::size_t>(i)]; };
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < L; ++i) {
      std::vector<double> s(static_cast<std::size_t>(S), -kInf);
      double mx = -kInf;
      for (std::int64_t j = 0; j < S; ++j) {
        if (!allowed(b, i, j)) continue;
        double dot = 0;
        for (std::int64_t e = 0; e < E; ++e) dot += at(q, (b * L + i) * E + e) * at(k, (b * S + j) * E + e);
        s[static_cast<std::size_t>(j)] = scale * dot + additive(b, i, j);
        mx = std::max(mx, s[static_cast<std::size_t>(j)]);
      }
      if (mx == -kInf) continue;  // fully masked: 0
      double z = 0;
      for (auto& x : s) z += x == -kInf ? 0.0 : std::exp(x - mx);
      for (std::int64_t j = 0; j < S; ++j) {
        const double sj = s[static_cast<std::size_t>(j)];
        const double p = sj == -kInf ? 0.0 : std::exp(sj - mx) / z * keep(b, i, j);
        for (std::int64_t e = 0; e < Ev; ++e)
          out[static_cast<std::size_t>((b * L + i) * Ev + e)] += p * at(v, (b * S + j) * Ev + e);
      }
    }
  return out;
}

auto all_allowed = [](std::int64_t, std::int64_t, std::int64_t) { return true; };
auto no_add = [](std::int64_t, std::int64_t, std::int64_t) { return 0.0; };
auto keep_all = [](std::int64_t, std::int64_t, std::int64_t) { return 1.0; };

// The composite of primitive ops (softmax, matmul, where): an independent path for gradients.
Tensor composite(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& additive, double scale) {
  Tensor s = mul(matmul(q, transpose(k, -1, -2)), scale);
  if (additive.defined()) s = add(s, additive);
  return matmul(softmax(s, -1), v);
}

// (L, S) int64 mask from a predicate.
template <class F>
Tensor bool_mask(std::int64_t L, std::int64_t S, F f) {
  std::vector<std::int64_t> m;
  for (std::int64_t i = 0; i < L; ++i)
    for (std::int64_t j = 0; j < S; ++j) m.push_back(f(i, j) ? 1 : 0);
  return from_vector(m, {L, S});
}

Tensor sdpa(const std::vector<Tensor>& in, const Tensor& mask = {}, bool causal = false) {
  return scaled_dot_product_attention(in[0], in[1], in[2], mask, 0.0, causal);
}

}  // namespace

TEST_CASE("attention: values equal the definition (no mask, causal with L != S, scale)") {
  const std::int64_t B = 3, L = 5, S = 7, E = 4, Ev = 3;
  const Tensor q = test::rnd({B, L, E}, 1, false), k = test::rnd({B, S, E}, 2, false),
               v = test::rnd({B, S, Ev}, 3, false);
  test::check_values(scaled_dot_product_attention(q, k, v), definition(q, k, v, 0.5, all_allowed, no_add, keep_all),
                     1e-12);
  // causal: key j visible to query i iff j <= i (top-left aligned, as PyTorch's tril(ones(L, S)))
  auto causal = [](std::int64_t, std::int64_t i, std::int64_t j) { return j <= i; };
  test::check_values(scaled_dot_product_attention(q, k, v, {}, 0.0, true),
                     definition(q, k, v, 0.5, causal, no_add, keep_all), 1e-12);
  test::check_values(scaled_dot_product_attention(q, k, v, {}, 0.0, false, 0.3),
                     definition(q, k, v, 0.3, all_allowed, no_add, keep_all), 1e-12);
  CHECK(scaled_dot_product_attention(q, k, v).shape() == Shape{B, L, Ev});
}

TEST_CASE("attention: boolean (true = may attend) and additive masks, broadcast over batch and heads") {
  const std::int64_t N = 2, H = 3, L = 4, S = 5, E = 3;
  const Tensor q = test::rnd({N, H, L, E}, 11, false), k = test::rnd({N, H, S, E}, 12, false),
               v = test::rnd({N, H, S, E}, 13, false);
  const double scale = 1.0 / std::sqrt(3.0);
  auto flat = [&](const Tensor& t) { return reshape(t, {N * H, t.size(2), t.size(3)}); };
  // (L, S) boolean mask, the same for every (n, h)
  auto pred = [](std::int64_t i, std::int64_t j) { return (i + 2 * j) % 3 != 0; };
  const Tensor bm = bool_mask(L, S, pred);
  test::check_values(scaled_dot_product_attention(q, k, v, bm),
                     definition(
                         flat(q), flat(k), flat(v), scale,
                         [&](std::int64_t, std::int64_t i, std::int64_t j) { return pred(i, j); }, no_add, keep_all),
                     1e-12);
  // (N, 1, 1, S) key padding as a boolean mask: sample 0 sees 5 keys, sample 1 the first 3
  const Tensor pad = from_vector(std::vector<std::int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, {N, 1, 1, S});
  test::check_values(
      scaled_dot_product_attention(q, k, v, pad),
      definition(
          flat(q), flat(k), flat(v), scale,
          [&](std::int64_t b, std::int64_t, std::int64_t j) { return b / H == 0 || j < 3; }, no_add, keep_all),
      1e-12);
  // (H, L, S) additive float mask broadcast over N
  const Tensor am = test::rnd({H, L, S}, 14, false);
  const auto amv = am.to_vector();
  test::check_values(scaled_dot_product_attention(q, k, v, am),
                     definition(
                         flat(q), flat(k), flat(v), scale, all_allowed,
                         [&](std::int64_t b, std::int64_t i, std::int64_t j) {
                           return amv[static_cast<std::size_t>(((b % H) * L + i) * S + j)];
                         },
                         keep_all),
                     1e-12);
  // -inf in a float mask masks like false in a boolean one
  const Tensor inf_mask = where(bm, zeros({L, S}, DType::f64), full({L, S}, -kInf, DType::f64));
  CHECK(test::max_abs_diff(scaled_dot_product_attention(q, k, v, inf_mask),
                           scaled_dot_product_attention(q, k, v, bm)) == 0.0);
}

TEST_CASE("attention: key and value broadcast over heads, non-contiguous views, float32 against float64") {
  const std::int64_t N = 2, H = 3, L = 5, S = 4, E = 2;
  const Tensor q = test::rnd({N, H, L, E}, 21, false);
  const Tensor k1 = test::rnd({N, 1, S, E}, 22, false), v1 = test::rnd({1, S, 3}, 23, false);
  const Tensor k = broadcast_to(k1, {N, H, S, E}).contiguous(), v = broadcast_to(v1, {N, H, S, 3}).contiguous();
  const Tensor ref = scaled_dot_product_attention(q, k, v, {}, 0.0, true);
  CHECK(test::max_abs_diff(scaled_dot_product_attention(q, k1, v1, {}, 0.0, true), ref) < 1e-14);
  // q given as a transposed view of (N, L, H, E), the layout multi-head attention produces
  const Tensor q_nlhe = transpose(q, 1, 2).contiguous();
  CHECK(test::max_abs_diff(scaled_dot_product_attention(transpose(q_nlhe, 1, 2), k, v, {}, 0.0, true), ref) < 1e-14);
  const Tensor r32 =
      scaled_dot_product_attention(q.to(DType::f32), k1.to(DType::f32), v1.to(DType::f32), {}, 0.0, true);
  CHECK(r32.dtype() == DType::f32);
  CHECK(test::max_abs_diff(r32.to(DType::f64), ref) < 1e-5);
}

TEST_CASE("attention: a fully masked query row gives zero output, zero weights and zero gradient") {
  const std::int64_t L = 3, S = 4, E = 2;
  const Tensor q = test::rnd({L, E}, 31), k = test::rnd({S, E}, 32), v = test::rnd({S, E}, 33);
  const Tensor bm = bool_mask(L, S, [](std::int64_t i, std::int64_t j) { return i != 1 && j != 2; });  // row 1 empty
  const Tensor out = scaled_dot_product_attention(q, k, v, bm);
  for (std::int64_t e = 0; e < E; ++e) CHECK(out.at({1, e}) == 0.0);
  CHECK(std::isfinite(test::max_abs(out)));
  const Tensor w = attention_weights(q, k, bm);
  for (std::int64_t j = 0; j < S; ++j) CHECK(w.at({1, j}) == 0.0);
  const auto g = grad({sum(out)}, {q, k, v});
  CHECK(g[0].at({1, 0}) == 0.0);
  CHECK(g[0].at({1, 1}) == 0.0);
  for (const auto& t : g) CHECK(std::isfinite(test::max_abs(t)));
  // an all -inf float mask row and S = 0 are fully masked too
  const Tensor fm = where(bm, zeros({L, S}, DType::f64), full({L, S}, -kInf, DType::f64));
  CHECK(test::max_abs_diff(scaled_dot_product_attention(q, k, v, fm), out) == 0.0);
  const Tensor empty_keys = scaled_dot_product_attention(q, zeros({0, E}, DType::f64), zeros({0, 5}, DType::f64));
  CHECK(empty_keys.shape() == Shape{L, 5});
  CHECK(test::max_abs(empty_keys) == 0.0);
  CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& in) { return sdpa(in, bm); }, {q, k, v}));
  // a NaN score is not a mask: it propagates
  const Tensor qn = test::rnd({L, E}, 34, false);
  const Tensor nan_q = where(bool_mask(L, E, [](std::int64_t i, std::int64_t) { return i == 0; }),
                             full({L, E}, std::nan(""), DType::f64), qn);
  CHECK(std::isnan(scaled_dot_product_attention(nan_q, k, v).at({0, 0})));
}

TEST_CASE("attention: dropout keeps each weight with probability 1 - p, scaled by 1/(1-p)") {
  const std::int64_t B = 2, L = 3, S = 5, E = 4;
  const Tensor q = test::rnd({B, L, E}, 41, false), k = test::rnd({B, S, E}, 42, false),
               v = test::rnd({B, S, E}, 43, false);
  const double p = 0.4;
  Generator gen(7), replay(7);
  std::vector<double> keep(static_cast<std::size_t>(B * L * S));
  for (auto& x : keep) x = replay.uniform() < p ? 0.0 : 1.0 / (1.0 - p);  // drawn in (b, i, j) order
  const Tensor out = scaled_dot_product_attention(q, k, v, {}, p, false, std::nullopt, &gen);
  test::check_values(out,
                     definition(q, k, v, 0.5, all_allowed, no_add,
                                [&](std::int64_t b, std::int64_t i, std::int64_t j) {
                                  return keep[static_cast<std::size_t>((b * L + i) * S + j)];
                                }),
                     1e-12);
  // p = 0 is no dropout; p = 1 drops everything
  CHECK(test::max_abs_diff(scaled_dot_product_attention(q, k, v, {}, 0.0), scaled_dot_product_attention(q, k, v)) ==
        0.0);
  CHECK(test::max_abs(scaled_dot_product_attention(q, k, v, {}, 1.0, false, std::nullopt, &gen)) == 0.0);
  // gradients with dropout (the same mask on every evaluation: the generator is re-seeded)
  const Tensor qg = test::rnd({B, L, E}, 44), kg = test::rnd({B, S, E}, 45), vg = test::rnd({B, S, E}, 46);
  auto fn = [&](const std::vector<Tensor>& in) {
    Generator g(3);
    return scaled_dot_product_attention(in[0], in[1], in[2], {}, 0.3, true, std::nullopt, &g);
  };
  CHECK_GRADCHECK(gradcheck(fn, {qg, kg, vg}));
  CHECK_GRADCHECK(gradgradcheck(fn, {qg, kg, vg}));
}

TEST_CASE("attention: float64 gradcheck w.r.t. query, key, value and an additive mask") {
  const Tensor q = test::rnd({2, 3, 4}, 51), k = test::rnd({2, 5, 4}, 52), v = test::rnd({2, 5, 3}, 53);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return sdpa(in); }, {q, k, v}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return sdpa(in, {}, true); }, {q, k, v}));
  const Tensor bm = bool_mask(3, 5, [](std::int64_t i, std::int64_t j) { return (i + j) % 2 == 0; });
  CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& in) { return sdpa(in, bm); }, {q, k, v}));
  const Tensor am = test::rnd({3, 5}, 54);
  CHECK_GRADCHECK(
      gradcheck([](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], in[3]); },
                {q, k, v, am}));
  // broadcast key/value: gradients summed over the broadcast batch dim
  const Tensor k1 = test::rnd({1, 5, 4}, 55), v1 = test::rnd({5, 3}, 56);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return sdpa(in, {}, true); }, {q, k1, v1}));
}

TEST_CASE("attention: second derivatives (create_graph goes through differentiable ops)") {
  const Tensor q = test::rnd({2, 3, 2}, 61), k = test::rnd({2, 4, 2}, 62), v = test::rnd({1, 4, 3}, 63);
  CHECK_GRADCHECK(gradgradcheck([](const std::vector<Tensor>& in) { return sdpa(in, {}, true); }, {q, k, v}));
  const Tensor bm = bool_mask(3, 4, [](std::int64_t i, std::int64_t j) { return i != 2 && j != 1; });  // row 2 empty
  CHECK_GRADCHECK(gradgradcheck([&](const std::vector<Tensor>& in) { return sdpa(in, bm); }, {q, k, v}));
  const Tensor am = test::rnd({3, 4}, 64);
  CHECK_GRADCHECK(gradgradcheck(
      [](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], in[3]); },
      {q, k, v, am}));
  CHECK_GRADCHECK(
      gradgradcheck([](const std::vector<Tensor>& in) { return attention_weights(in[0], in[1], {}, true); }, {q, k}));
}

TEST_CASE("attention: the fused gradient equals the composite's (softmax, matmul) in float64 and float32") {
  const std::int64_t N = 2, H = 3, L = 5, S = 6, E = 4;
  const Tensor q = test::rnd({N, H, L, E}, 71), k = test::rnd({N, H, S, E}, 72), v = test::rnd({N, 1, S, E}, 73);
  const Tensor am = test::rnd({L, S}, 74), w = test::rnd({N, H, L, E}, 75, false);
  const auto fused = grad({sum(mul(scaled_dot_product_attention(q, k, v, am), w))}, {q, k, v, am});
  const auto ref = grad({sum(mul(composite(q, k, v, am, 0.5), w))}, {q, k, v, am});
  for (std::size_t i = 0; i < 4; ++i) CHECK(test::max_abs_diff(fused[i], ref[i]) < 1e-12);
  // causal as an additive -inf mask in the composite
  const Tensor causal_add = where(bool_mask(L, S, [](std::int64_t i, std::int64_t j) { return j <= i; }),
                                  zeros({L, S}, DType::f64), full({L, S}, -kInf, DType::f64));
  const auto fc = grad({sum(mul(scaled_dot_product_attention(q, k, v, {}, 0.0, true), w))}, {q, k, v});
  const auto rc = grad({sum(mul(composite(q, k, v, causal_add, 0.5), w))}, {q, k, v});
  for (std::size_t i = 0; i < 3; ++i) CHECK(test::max_abs_diff(fc[i], rc[i]) < 1e-12);
  // float32: the same gradients to float32 accuracy
  std::vector<Tensor> in32;
  for (const Tensor& t : {q, k, v}) in32.push_back(t.detach().to(DType::f32).requires_grad_());
  const auto f32 =
      grad({sum(mul(scaled_dot_product_attention(in32[0], in32[1], in32[2], {}, 0.0, true), w.to(DType::f32)))}, in32);
  for (std::size_t i = 0; i < 3; ++i) CHECK(test::max_abs_diff(f32[i].to(DType::f64), fc[i]) < 1e-5);
}

TEST_CASE("attention: errors name the op, the shapes and the fix") {
  const Tensor q = zeros({2, 3, 4}), k = zeros({2, 5, 4}), v = zeros({2, 5, 6});
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(zeros({4}), k, v),
                       doctest::Contains("scaled_dot_product_attention: query, key and value need at least 2 dims"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, zeros({2, 5, 3}), v),
                       doctest::Contains("same embedding size (last dim): expected 4 vs actual 3"), ShapeError);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, zeros({2, 4, 6})),
                       doctest::Contains("same sequence length (dim -2): expected 5 vs actual 4"), ShapeError);
  CHECK_THROWS_AS(scaled_dot_product_attention(q, zeros({3, 5, 4}), v), ShapeError);  // batch 2 vs 3
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k.to(DType::f64), v), doctest::Contains("must have one dtype"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(
      scaled_dot_product_attention(zeros({3, 4}, DType::i64), zeros({5, 4}, DType::i64), zeros({5, 4}, DType::i64)),
      doctest::Contains("query must be float32 or float64"), DTypeError);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, zeros({3, 5}, DType::i64), 0.0, true),
                       doctest::Contains("cannot be combined with is_causal=true"), ValueError);
  CHECK_THROWS_WITH_AS(
      scaled_dot_product_attention(q, k, v, zeros({3, 5}, DType::f64)),
      doctest::Contains("attn_mask must be int64 (boolean: nonzero = may attend) or the query's dtype"), DTypeError);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, zeros({3, 4}, DType::i64)),
                       doctest::Contains("attn_mask [3, 4] must broadcast to (..., L, S) = [2, 3, 5]"), ShapeError);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, zeros({4, 3, 5}, DType::i64)),
                       doctest::Contains("must broadcast to"), ShapeError);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, {}, 1.5),
                       doctest::Contains("dropout_p must be in [0, 1], got 1.5"), ValueError);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, {}, 0.0, false, kInf),
                       doctest::Contains("scale must be finite"), ValueError);
  CHECK_THROWS_WITH_AS(attention_weights(q, zeros({2, 5, 3})), doctest::Contains("attention_weights: query and key"),
                       ShapeError);
}

TEST_CASE("attention: causal past one block of queries (L, S > 32), L != S, with dropout, equals the composite") {
  // The kernel walks causal queries and keys in blocks (Blocks in attention.cpp) and skips the
  // blocks above the diagonal; sizes that are not multiples of the block and L != S both ways.
  for (const auto& [L, S] : std::vector<std::pair<std::int64_t, std::int64_t>>{{70, 45}, {45, 70}, {67, 67}}) {
    CAPTURE(L);
    CAPTURE(S);
    const std::int64_t B = 2, E = 3, Ev = 5;
    const Tensor q = test::rnd({B, L, E}, 81), k = test::rnd({B, S, E}, 82), v = test::rnd({B, S, Ev}, 83);
    const Tensor w = test::rnd({B, L, Ev}, 84, false);
    const Tensor causal_add = where(bool_mask(L, S, [](std::int64_t i, std::int64_t j) { return j <= i; }),
                                    zeros({L, S}, DType::f64), full({L, S}, -kInf, DType::f64));
    for (const double p : {0.0, 0.3}) {
      CAPTURE(p);
      // the dropout multipliers the op draws, in (b, i, j) order
      Generator gen(5), replay(5);
      std::vector<double> keep(static_cast<std::size_t>(B * L * S), 1.0);
      if (p > 0)
        for (auto& x : keep) x = replay.uniform() < p ? 0.0 : 1.0 / (1.0 - p);
      const Tensor keep_t = from_vector(keep, {B, L, S}, DType::f64);
      const Tensor out = scaled_dot_product_attention(q, k, v, {}, p, true, std::nullopt, &gen);
      const Tensor ref = matmul(
          mul(softmax(add(mul(matmul(q, transpose(k, -1, -2)), 1 / std::sqrt(3.0)), causal_add), -1), keep_t), v);
      CHECK(test::max_abs_diff(out, ref) < 1e-12);
      const auto g_op = grad({sum(mul(out, w))}, {q, k, v});
      const auto g_ref = grad({sum(mul(ref, w))}, {q, k, v});
      for (std::size_t i = 0; i < 3; ++i) CHECK(test::max_abs_diff(g_op[i], g_ref[i]) < 1e-12);
    }
  }
}
