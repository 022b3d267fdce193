// matmul and linear: every rank combination against a plain triple loop, strided operands,
// gradchecks, error messages, float32 vs float64.

#include <cmath>

#include "autograd/blas.h"
#include "tests/helpers.h"

using namespace ng;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Reference product of rank >= 2 operands with broadcast batch dims, by index loops over at().
std::vector<double> ref_matmul_nd(const Tensor& a, const Tensor& b, Shape& out_shape) {
  const std::int64_t n = a.size(-2), k = a.size(-1), m = b.size(-1);
  const Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(ba, bb, "ref");
  out_shape = batch;
  out_shape.push_back(n);
  out_shape.push_back(m);
  std::vector<double> out;
  std::vector<std::int64_t> bi(batch.size(), 0);
  for (std::int64_t flat = 0; flat < batch.numel(); ++flat) {
    std::int64_t r = flat;
    for (std::size_t d = batch.size(); d-- > 0;) {
      bi[d] = r % batch[d];
      r /= batch[d];
    }
    auto index = [&](const Shape& own, std::int64_t i, std::int64_t j) {
      std::vector<std::int64_t> idx;
      const std::size_t lead = batch.size() - own.size();
      for (std::size_t d = 0; d < own.size(); ++d) idx.push_back(own[d] == 1 ? 0 : bi[d + lead]);
      idx.push_back(i);
      idx.push_back(j);
      return idx;
    };
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < m; ++j) {
        double s = 0;
        for (std::int64_t q = 0; q < k; ++q) s += a.at(index(ba, i, q)) * b.at(index(bb, q, j));
        out.push_back(s);
      }
  }
  return out;
}

void check_matmul(const Tensor& a, const Tensor& b, double tol = 1e-12) {
  Shape s;
  const auto expect = ref_matmul_nd(a, b, s);
  Tensor out = matmul(a, b);
  REQUIRE(out.shape() == s);
  test::check_values(out, expect, tol);
}

Fn mm = [](const std::vector<Tensor>& v) { return matmul(v[0], v[1]); };

}  // namespace

TEST_CASE("matmul: 1-d and 2-d operands against a triple loop") {
  // 1-d x 1-d: the dot product, a 0-d tensor
  Tensor u = tensor({1, 2, 3}, {3}, DType::f64), v = tensor({4, -5, 6}, {3}, DType::f64);
  Tensor dot = matmul(u, v);
  CHECK(dot.dim() == 0);
  CHECK(dot.item() == 12);  // 4 - 10 + 18
  // 2-d x 2-d, worked by hand: [[1, 2], [3, 4]] [[5, 6], [7, 8]] = [[19, 22], [43, 50]]
  test::check_values(matmul(tensor({1, 2, 3, 4}, {2, 2}), tensor({5, 6, 7, 8}, {2, 2})), {19, 22, 43, 50});
  Tensor a = test::rnd({5, 3}, 1, false), b = test::rnd({3, 7}, 2, false);
  check_matmul(a, b);
  // 1-d x 2-d: the vector is a row, then the row dim is dropped: [3] x [3, 7] -> [7]
  Tensor x = test::rnd({3}, 3, false);
  Tensor xb = matmul(x, b);
  CHECK(xb.shape() == Shape{7});
  Shape s;
  test::check_values(xb, ref_matmul_nd(x.unsqueeze(0), b, s));
  // 2-d x 1-d: the vector is a column, then dropped: [5, 3] x [3] -> [5]
  Tensor ax = matmul(a, x);
  CHECK(ax.shape() == Shape{5});
  test::check_values(ax, ref_matmul_nd(a, x.unsqueeze(1), s));
  // empty inner dimension: a sum of nothing is 0
  Tensor z = matmul(ones({3, 0}), ones({0, 4}));
  CHECK(z.shape() == Shape{3, 4});
  test::check_values(z, std::vector<double>(12, 0.0));
}

TEST_CASE("matmul: batched, folded and broadcast batch dims") {
  // batched 3-d x 3-d
  check_matmul(test::rnd({2, 5, 3}, 4, false), test::rnd({2, 3, 4}, 5, false));
  // 3-d x 2-d: the contiguous batch folds into one GEMM over 2*5 rows
  check_matmul(test::rnd({2, 5, 3}, 6, false), test::rnd({3, 4}, 7, false));
  // 2-d x 3-d
  check_matmul(test::rnd({5, 3}, 8, false), test::rnd({2, 3, 4}, 9, false));
  // broadcast batch: [2, 1, 3, 4] x [5, 4, 2] -> [2, 5, 3, 2]
  Tensor a = test::rnd({2, 1, 3, 4}, 10, false), b = test::rnd({5, 4, 2}, 11, false);
  CHECK(matmul(a, b).shape() == Shape{2, 5, 3, 2});
  check_matmul(a, b);
  check_matmul(test::rnd({1, 3, 4}, 12, false), test::rnd({3, 4, 2}, 13, false));
  // 1-d with batched operands: [3] x [2, 3, 4] -> [2, 4];  [2, 5, 3] x [3] -> [2, 5]
  Tensor x = test::rnd({3}, 14, false);
  Tensor bb = test::rnd({2, 3, 4}, 15, false), aa = test::rnd({2, 5, 3}, 16, false);
  Shape s;
  CHECK(matmul(x, bb).shape() == Shape{2, 4});
  test::check_values(matmul(x, bb), ref_matmul_nd(x.unsqueeze(0), bb, s));
  CHECK(matmul(aa, x).shape() == Shape{2, 5});
  test::check_values(matmul(aa, x), ref_matmul_nd(aa, x.unsqueeze(1), s));
}

TEST_CASE("matmul: transposed, strided and expanded views equal their contiguous copies") {
  Tensor a = test::rnd({3, 5}, 20, false).t();  // [5, 3], strides (1, 5)
  Tensor b = test::rnd({7, 3}, 21, false).t();  // [3, 7], strides (1, 3)
  CHECK_FALSE(a.is_contiguous());
  const auto want = matmul(a.contiguous(), b.contiguous()).to_vector();
  test::check_values(matmul(a, b), want, 1e-13);
  test::check_values(matmul(a, b.contiguous()), want, 1e-13);
  test::check_values(matmul(a.contiguous(), b), want, 1e-13);
  check_matmul(a, b);
  // batched transposes: [2, 5, 3] seen through transpose(1, 2) of [2, 3, 5]
  Tensor ba = test::rnd({2, 3, 5}, 22, false).transpose(1, 2);
  Tensor bb = test::rnd({2, 4, 3}, 23, false).transpose(1, 2);
  test::check_values(matmul(ba, bb), matmul(ba.contiguous(), bb.contiguous()).to_vector(), 1e-13);
  // a non-contiguous 3-d operand times a matrix (must not take the folded fast path)
  Tensor nc = test::rnd({5, 2, 3}, 24, false).transpose(0, 1);  // [2, 5, 3]
  Tensor w = test::rnd({3, 4}, 25, false);
  test::check_values(matmul(nc, w), matmul(nc.contiguous(), w).to_vector(), 1e-13);
  check_matmul(nc, w);
  // ... and times a transposed matrix
  test::check_values(matmul(nc, w.t().contiguous().t()), matmul(nc.contiguous(), w).to_vector(), 1e-13);
  // an expanded (stride-0) operand and a sliced (row-stride > cols) one
  Tensor col = test::rnd({3, 1}, 26, false).expand({3, 4});
  check_matmul(test::rnd({5, 3}, 27, false), col);
  Tensor wide = test::rnd({5, 8}, 28, false);
  Tensor sliced = make_view(wide, {5, 3}, {8, 1}, 2);  // columns 2..4 of wide
  check_matmul(sliced, test::rnd({3, 4}, 29, false));
  check_matmul(test::rnd({4, 5}, 30, false), sliced);
  // a row vector and a column vector as 2-d operands
  check_matmul(test::rnd({1, 3}, 31, false), test::rnd({3, 1}, 32, false));
  check_matmul(test::rnd({5, 1}, 33, false), test::rnd({1, 4}, 34, false));
}

TEST_CASE("matmul: gradcheck for every rank combination and strided operands") {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3}, {3}},       {{3}, {3, 4}},       {{5, 3}, {3}},       {{5, 3}, {3, 4}},         {{2, 5, 3}, {2, 3, 4}},
      {{2, 5, 3}, {3, 4}}, {{5, 3}, {2, 3, 4}}, {{2, 1, 3, 4}, {5, 4, 2}}, {{3}, {2, 3, 4}}, {{2, 5, 3}, {3}}};
  std::uint64_t seed = 40;
  for (const auto& [sa, sb] : shapes) {
    CAPTURE(sa);
    CAPTURE(sb);
    CHECK_GRADCHECK(gradcheck(mm, {test::rnd(sa, ++seed), test::rnd(sb, ++seed)}));
  }
  // transposed views
  Tensor a = test::rnd({3, 5}, 60), b = test::rnd({4, 3}, 61);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return matmul(v[0].t(), v[1].t()); }, {a, b}));
  Tensor c = test::rnd({5, 2, 3}, 62), w = test::rnd({3, 4}, 63);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return matmul(v[0].transpose(0, 1), v[1]); }, {c, w}));
  // only one operand requires grad
  CHECK_GRADCHECK(gradcheck(mm, {test::rnd({5, 3}, 64), test::rnd({3, 4}, 65, false)}));
  CHECK_GRADCHECK(gradcheck(mm, {test::rnd({2, 5, 3}, 66, false), test::rnd({3, 4}, 67)}));
  // second derivative: the backward is itself made of matmuls
  CHECK_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& v) {
        EnableGradGuard on;
        BackwardOptions o;
        o.create_graph = true;
        auto g = grad({sum(tanh(matmul(v[0], v[1])))}, {v[0]}, {}, o);
        return g[0];
      },
      {test::rnd({3, 5}, 68), test::rnd({5, 2}, 69)}));
}

TEST_CASE("linear: y = x W^T + b, with and without bias") {
  Tensor x = tensor({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64);
  Tensor w = tensor({1, 0, -1, 2, 1, 0}, {2, 3}, DType::f64);  // (out=2, in=3)
  Tensor b = tensor({0.5, -1}, {2}, DType::f64);
  // rows: [1-3, 2+2] = [-2, 4];  [4-6, 8+5] = [-2, 13]
  test::check_values(linear(x, w), {-2, 4, -2, 13});
  test::check_values(linear(x, w, b), {-1.5, 3, -1.5, 12});
  // 1-d and 3-d inputs
  CHECK(linear(tensor({1, 2, 3}, {3}, DType::f64), w, b).shape() == Shape{2});
  test::check_values(linear(tensor({1, 2, 3}, {3}, DType::f64), w, b), {-1.5, 3});
  Tensor x3 = test::rnd({2, 5, 3}, 70, false);
  CHECK(linear(x3, w, b).shape() == Shape{2, 5, 2});
  test::check_values(linear(x3, w, b), add(matmul(x3, w.t().contiguous()), b).to_vector(), 1e-13);

  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return linear(v[0], v[1], v[2]); },
                            {test::rnd({5, 3}, 71), test::rnd({4, 3}, 72), test::rnd({4}, 73)}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return linear(v[0], v[1]); },
                            {test::rnd({2, 5, 3}, 74), test::rnd({4, 3}, 75)}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return linear(v[0], v[1], v[2]); },
                            {test::rnd({3}, 76), test::rnd({4, 3}, 77), test::rnd({4}, 78)}));

  CHECK_THROWS_WITH_AS(linear(ones({5, 3}), ones({4, 2})),
                       doctest::Contains("linear: input [5, 3] has 3 features, weight [4, 2] expects 2"), ShapeError);
  CHECK_THROWS_WITH_AS(linear(ones({5, 3}), ones({4, 3}), ones({3})),
                       doctest::Contains("linear: bias [3] does not match weight [4, 3]"), ShapeError);
  CHECK_THROWS_WITH_AS(linear(ones({5, 3}), ones({3})), doctest::Contains("linear: weight must be 2-d"), ShapeError);
}

TEST_CASE("matmul: error messages") {
  CHECK_THROWS_WITH_AS(matmul(ones({2, 3}), ones({4, 5})),
                       "matmul: cannot multiply [2, 3] by [4, 5]: inner dimensions 3 and 4 differ", ShapeError);
  CHECK_THROWS_WITH_AS(matmul(ones({3}), ones({4})),
                       "matmul: cannot multiply [3] by [4]: inner dimensions 3 and 4 differ", ShapeError);
  CHECK_THROWS_WITH_AS(matmul(ones({3}), ones({4, 5})), doctest::Contains("inner dimensions 3 and 4 differ"), ShapeError);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 3}), ones({4})), doctest::Contains("inner dimensions 3 and 4 differ"), ShapeError);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 5, 3}), ones({2, 4, 5})),
                       doctest::Contains("matmul: cannot multiply [2, 5, 3] by [2, 4, 5]"), ShapeError);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 5, 3}), ones({3, 3, 4})), doctest::Contains("matmul: shapes [2] and [3]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(scalar(1), ones({3})), doctest::Contains("matmul: both operands need at least 1 dim"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 3}), ones({3, 4}, DType::f64)),
                       "matmul: dtypes differ: float32 vs float64", DTypeError);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 3}, DType::i64), ones({3, 4}, DType::i64)),
                       doctest::Contains("matmul: expected a floating dtype"), DTypeError);
}

TEST_CASE("matmul: float32 agrees with float64") {
  Generator g(80);
  for (const auto& [sa, sb] : std::vector<std::pair<Shape, Shape>>{
           {{37, 53}, {53, 29}}, {{3, 17, 31}, {31, 9}}, {{2, 1, 7, 64}, {3, 64, 5}}, {{101}, {101}}}) {
    CAPTURE(sa);
    Tensor a = randn(sa, DType::f64, &g), b = randn(sb, DType::f64, &g);
    const auto r64 = matmul(a, b).to_vector();
    const auto r32 = matmul(a.to(DType::f32), b.to(DType::f32)).to_vector();
    REQUIRE(r64.size() == r32.size());
    double worst = 0;
    for (std::size_t i = 0; i < r64.size(); ++i) worst = std::max(worst, std::abs(r64[i] - r32[i]));
    // entries are sums of ~k products of N(0,1)s: |value| ~ sqrt(k); float32 keeps ~7 digits
    CHECK(worst < 1e-4);
    CHECK(matmul(a.to(DType::f32), b.to(DType::f32)).dtype() == DType::f32);
  }
}

TEST_CASE("matmul: products large enough to be split across threads equal a plain loop") {
  // Above detail::kGemmParallelWork multiply-adds, C is split in blocks of rows (M > N) or of
  // columns (N >= M), one per OpenMP thread; every transpose combination, odd sizes (blocks of
  // unequal length), 1 and 2 threads.
  Generator gen(21);
  struct Case {
    std::int64_t M, N, K;
  };
  for (const int threads : {1, 2})
    for (const Case c : {Case{37, 301, 197}, Case{301, 37, 197}})
      for (const bool ta : {false, true})
        for (const bool tb : {false, true}) {
          CAPTURE(threads);
          CAPTURE(c.M);
          CAPTURE(ta);
          CAPTURE(tb);
          REQUIRE(c.M * c.N * c.K >= detail::kGemmParallelWork);
          // stored as (K, M) / (N, K) when transposed, viewed back as (M, K) / (K, N)
          Tensor a = ta ? transpose(randn({c.K, c.M}, DType::f64, &gen), 0, 1) : randn({c.M, c.K}, DType::f64, &gen);
          Tensor b = tb ? transpose(randn({c.N, c.K}, DType::f64, &gen), 0, 1) : randn({c.K, c.N}, DType::f64, &gen);
          const auto [y, y32] = [&] {
            const test::OmpThreads scope(threads);
            return std::pair{matmul(a, b), matmul(a.to(DType::f32), b.to(DType::f32))};
          }();
          std::vector<double> expect(static_cast<std::size_t>(c.M * c.N));
          for (std::int64_t i = 0; i < c.M; ++i)
            for (std::int64_t j = 0; j < c.N; ++j) {
              double s = 0;
              for (std::int64_t k = 0; k < c.K; ++k) s += a.at({i, k}) * b.at({k, j});
              expect[static_cast<std::size_t>(i * c.N + j)] = s;
            }
          test::check_values(y, expect, 1e-11);
          test::check_values(y32, expect, 2e-4);
        }
}
