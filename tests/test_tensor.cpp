// Tensor: factories, metadata, conversions, in-place updates, random numbers, printing.
#include <algorithm>
#include <cmath>
#include <string>

#include "tests/helpers.h"

using namespace ng;

// ---- factories -------------------------------------------------------------------------------

TEST_CASE("tensor: zeros/ones/full/empty give the shape, dtype and value asked for") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.dtype() == DType::f32);  // float32 by default, as PyTorch
  test::check_values(z, {0, 0, 0, 0, 0, 0});
  Tensor o = ones({3}, DType::f64);
  CHECK(o.dtype() == DType::f64);
  test::check_values(o, {1, 1, 1});
  Tensor f = full({2, 2}, -2.5, DType::f64);
  test::check_values(f, {-2.5, -2.5, -2.5, -2.5});
  Tensor fi = full({2}, 7, DType::i64);
  CHECK(fi.dtype() == DType::i64);
  CHECK(fi.to_vector() == std::vector<double>{7, 7});
  CHECK(empty({5, 7}).numel() == 35);
  Tensor s = scalar(3.5, DType::f64);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 3.5);
  Tensor none = zeros({0, 3});
  CHECK(none.numel() == 0);
  CHECK(none.to_vector().empty());
  CHECK_THROWS_WITH_AS(empty({2, -1}), doctest::Contains("negative size in shape [2, -1]"), ShapeError);
}

TEST_CASE("tensor: arange counts like PyTorch (end excluded, fractional and negative steps)") {
  CHECK(arange(5).to_vector() == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(arange(5, DType::i64).dtype() == DType::i64);
  CHECK(arange(0.0, 1.0, 0.25, DType::f64).to_vector() == std::vector<double>{0, 0.25, 0.5, 0.75});
  CHECK(arange(5.0, 0.0, -2.0).to_vector() == std::vector<double>{5, 3, 1});
  CHECK(arange(1.0, 1.0).numel() == 0);
  CHECK(arange(3.0, 1.0).numel() == 0);  // empty, not negative
  CHECK(arange(0.0, 1.0, 0.3).numel() == 4);  // 0, 0.3, 0.6, 0.9
  CHECK_THROWS_WITH_AS(arange(0.0, 1.0, 0.0), doctest::Contains("arange: step must be nonzero"), ValueError);
}

TEST_CASE("tensor: from_vector / tensor / *_like") {
  Tensor a = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64);
  CHECK(a.shape() == Shape{2, 3});
  CHECK(a.at({1, 0}) == 4);
  Tensor f = from_vector(std::vector<float>{1.5f, -2.f}, {2});
  CHECK(f.dtype() == DType::f32);
  CHECK(f.to_vector() == std::vector<double>{1.5, -2});
  Tensor i = from_vector(std::vector<std::int64_t>{3, -4, 5}, {3});
  CHECK(i.dtype() == DType::i64);
  CHECK(i.data<std::int64_t>()[1] == -4);
  Tensor t = tensor({1, 2, 3}, {3, 1});
  CHECK(t.shape() == Shape{3, 1});
  CHECK(t.dtype() == DType::f32);
  CHECK_THROWS_WITH_AS(from_vector(std::vector<double>{1, 2, 3}, {2, 2}),
                       doctest::Contains("from_vector: 3 values cannot fill shape [2, 2] (4 elements)"), ShapeError);
  CHECK_THROWS_AS(tensor({1, 2}, {3}), ShapeError);

  Tensor e = empty_like(a), z = zeros_like(a), o = ones_like(a), fl = full_like(i, 9);
  CHECK(e.shape() == a.shape());
  CHECK(e.dtype() == DType::f64);
  CHECK(z.dtype() == DType::f64);
  test::check_values(z, {0, 0, 0, 0, 0, 0});
  test::check_values(o, {1, 1, 1, 1, 1, 1});
  CHECK(fl.dtype() == DType::i64);
  CHECK(fl.to_vector() == std::vector<double>{9, 9, 9});
  CHECK_FALSE(e.impl().storage == a.impl().storage);
}

// ---- metadata ----------------------------------------------------------------------------------

TEST_CASE("tensor: shapes, strides and contiguity of views") {
  Tensor a = arange(24, DType::f64).reshape({2, 3, 4});
  CHECK(a.dim() == 3);
  CHECK(a.numel() == 24);
  CHECK(a.strides() == Strides{12, 4, 1});
  CHECK(a.is_contiguous());
  CHECK(a.size(0) == 2);
  CHECK(a.size(-1) == 4);
  CHECK(a.size(-3) == 2);
  CHECK_THROWS_AS(a.size(3), IndexError);
  CHECK_THROWS_AS(a.size(-4), IndexError);
  CHECK_THROWS_WITH_AS(scalar(1).size(0), doctest::Contains("0-d tensor has no dimensions"), IndexError);

  Tensor t = a.transpose(0, 2);
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(t.strides() == Strides{1, 4, 12});
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.impl().storage == a.impl().storage);  // a view: no copy
  CHECK(t.at({3, 2, 1}) == a.at({1, 2, 3}));

  // size-1 dims do not break contiguity whatever their stride
  Tensor u = a.unsqueeze(1);
  CHECK(u.shape() == Shape{2, 1, 3, 4});
  CHECK(u.is_contiguous());
  Tensor e = tensor({1, 2, 3}, {3, 1}).expand({3, 5});
  CHECK(e.strides() == Strides{1, 0});
  CHECK_FALSE(e.is_contiguous());
  CHECK(e.to_vector() == std::vector<double>{1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3});
  CHECK(contiguous_strides({}).empty());
  CHECK(scalar(1).is_contiguous());
}

TEST_CASE("tensor: item, at and to_vector read any view and any dtype") {
  Tensor a = arange(6, DType::f64).reshape({2, 3});
  CHECK(a.at({0, 2}) == 2);
  CHECK(a.at({-1, -1}) == 5);  // negative indices count from the end
  CHECK(a.t().to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(a.t().at({2, 1}) == 5);
  CHECK(arange(4, DType::i64).at({3}) == 3);
  CHECK(tensor({4.25}, {1, 1}).item() == 4.25);
  CHECK(from_vector(std::vector<std::int64_t>{-7}, {}).item<std::int64_t>() == -7);
  CHECK_THROWS_WITH_AS(a.item(), doctest::Contains("only one-element tensors"), ValueError);
  CHECK_THROWS_WITH_AS(a.at({2, 0}), doctest::Contains("index 2 out of range for dim 0 of size 2"), IndexError);
  CHECK_THROWS_WITH_AS(a.at({0}), doctest::Contains("1 indices for a 2-d tensor"), IndexError);
  CHECK_THROWS_WITH_AS(a.data<float>(), doctest::Contains("requested float32 but the tensor is float64"), DTypeError);
  CHECK_THROWS_WITH_AS(Tensor().shape(), doctest::Contains("undefined tensor"), Error);
  // data() honours the view's offset
  Tensor row1 = make_view(a, {3}, {1}, 3);
  CHECK(row1.data<double>()[0] == 3);
}

// ---- conversions ---------------------------------------------------------------------------------

TEST_CASE("tensor: to(dtype) converts both ways and is differentiable between float dtypes") {
  Tensor a = tensor({1.5, -2.75, 3.0}, {3}, DType::f64);
  CHECK(a.to(DType::f64).same(a));  // same dtype: the same handle
  Tensor f = a.to(DType::f32);
  CHECK(f.dtype() == DType::f32);
  CHECK(f.to_vector() == std::vector<double>{1.5, -2.75, 3.0});
  Tensor back = f.to(DType::f64);
  CHECK(back.dtype() == DType::f64);
  CHECK(back.to_vector() == a.to_vector());
  // to int64 truncates toward zero, as C++ and PyTorch do
  Tensor i = a.to(DType::i64);
  CHECK(i.dtype() == DType::i64);
  CHECK(i.to_vector() == std::vector<double>{1, -2, 3});
  CHECK(i.to(DType::f32).to_vector() == std::vector<double>{1, -2, 3});
  // 0.1 is not exact in float32: the round trip shows the rounding
  CHECK(scalar(0.1, DType::f64).to(DType::f32).item() == static_cast<double>(0.1f));
  // transposed input
  Tensor m = arange(6, DType::f64).reshape({2, 3}).t();
  CHECK(m.to(DType::f32).to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});

  Tensor x = test::rnd({3}, 5);
  Tensor y = x.to(DType::f32);
  CHECK(y.requires_grad());
  mul(y, 2.0).sum().backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().dtype() == DType::f64);
  test::check_values(x.grad(), {2, 2, 2});
  CHECK_THROWS_WITH_AS(x.to(DType::i64), doctest::Contains("requires grad"), DTypeError);
}

TEST_CASE("tensor: clone copies, detach shares, contiguous copies only when needed") {
  Tensor a = arange(6, DType::f64).reshape({2, 3});
  Tensor c = a.clone();
  CHECK_FALSE(c.impl().storage == a.impl().storage);
  c.fill_(-1);
  CHECK(a.at({0, 1}) == 1);  // unchanged

  Tensor d = a.detach();
  CHECK(d.impl().storage == a.impl().storage);
  d.fill_(7);
  CHECK(a.at({1, 2}) == 7);  // shared

  Tensor b = arange(6, DType::f64).reshape({2, 3});
  CHECK(b.contiguous().same(b));
  Tensor bt = b.t();
  Tensor bc = bt.contiguous();
  CHECK(bc.is_contiguous());
  CHECK_FALSE(bc.impl().storage == b.impl().storage);
  CHECK(bc.to_vector() == bt.to_vector());
  CHECK(bt.clone().strides() == Strides{2, 1});

  // autograd: clone and contiguous pass gradients through; detach cuts the graph
  Tensor x = test::rnd({2, 3}, 2);
  Tensor xd = x.detach();
  CHECK_FALSE(xd.requires_grad());
  CHECK(xd.is_leaf());
  Tensor y = x.clone();
  CHECK(y.grad_fn() != nullptr);
  CHECK(std::string(y.grad_fn()->op) == "clone");
  add(mul(y, 3.0), x.t().contiguous().t()).sum().backward();
  test::check_values(x.grad(), {4, 4, 4, 4, 4, 4});
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return v[0].t().contiguous(); }, {x}));
}

TEST_CASE("tensor: requires_grad_ and set_grad validate") {
  CHECK_THROWS_WITH_AS(arange(3, DType::i64).requires_grad_(), doctest::Contains("only floating tensors"), DTypeError);
  Tensor x = test::rnd({3}, 1);
  Tensor y = mul(x, 2.0);
  CHECK_FALSE(y.is_leaf());
  CHECK_THROWS_WITH_AS(y.requires_grad_(false), doctest::Contains("non-leaf"), AutogradError);
  CHECK_THROWS_AS(x.set_grad(zeros({4}, DType::f64)), ShapeError);
  x.set_grad(ones({3}, DType::f64));
  test::check_values(x.grad(), {1, 1, 1});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

// ---- in-place ------------------------------------------------------------------------------------

TEST_CASE("tensor: in-place fill_/copy_/add_/mul_") {
  Tensor a = zeros({2, 3}, DType::f64);
  a.fill_(2);
  test::check_values(a, {2, 2, 2, 2, 2, 2});
  a.mul_(1.5);
  test::check_values(a, {3, 3, 3, 3, 3, 3});
  a.add_(arange(6, DType::f64).reshape({2, 3}), -2.0);
  test::check_values(a, {3, 1, -1, -3, -5, -7});
  // add_ from a transposed source
  Tensor b = zeros({3, 2}, DType::f64);
  b.add_(arange(6, DType::f64).reshape({2, 3}).t());
  test::check_values(b, {0, 3, 1, 4, 2, 5});
  // copy_ from a transposed view and from another dtype
  Tensor c = zeros({3, 2}, DType::f64);
  c.copy_(arange(6, DType::f32).reshape({2, 3}).t());
  test::check_values(c, {0, 3, 1, 4, 2, 5});
  // fill_ of a strided view writes through to the base
  Tensor base = zeros({2, 3}, DType::f64);
  base.t().fill_(0);
  make_view(base, {2}, {3}, 1).fill_(9);  // column 1
  test::check_values(base, {0, 9, 0, 0, 9, 0});
  CHECK_THROWS_WITH_AS(c.copy_(zeros({2, 3})),
                       doctest::Contains("copy_: source shape [2, 3] does not broadcast to the destination's shape [3, 2]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(c.add_(zeros({3, 2}, DType::f32)),
                       doctest::Contains("add_: float32 cannot be added in place to float64"), DTypeError);
  CHECK_THROWS_AS(arange(3, DType::i64).mul_(2), DTypeError);
}

TEST_CASE("tensor: copy_, add_, mul_ write through slices and transposed views, as PyTorch") {
  NoGradGuard no_grad;
  Tensor base = zeros({3, 4}, DType::f64);
  // column 1 and 3 (a strided slice): copy_ with a broadcast source row
  slice(base, 1, 1, 4, 2).copy_(tensor({7, 8}, {2}, DType::f64));
  test::check_values(base, {0, 7, 0, 8, 0, 7, 0, 8, 0, 7, 0, 8});
  // a transposed view: element (j, i) of base.t() is base[i, j]
  base.t().add_(arange(12, DType::f64).reshape({4, 3}), 2.0);  // base[i, j] += 2 * (3 j + i)
  for (std::int64_t i = 0; i < 3; ++i)
    for (std::int64_t j = 0; j < 4; ++j)
      CHECK(base.at({i, j}) == (j % 2 ? (j == 1 ? 7.0 : 8.0) : 0.0) + 2.0 * (3 * j + i));
  Tensor row = select(base, 0, 2);  // a row view of a contiguous base: contiguous
  Tensor col = select(base, 1, 0);  // a column: stride 4
  col.mul_(-1);
  test::check_values(col, {0, -2, -4});
  CHECK(base.at({2, 0}) == -4);
  CHECK(row.at({0}) == -4);
  // add_ broadcasting a scalar-shaped source into a strided view
  slice(base, 0, 0, 3, 2).add_(ones({1}, DType::f64));
  CHECK(base.at({0, 0}) == 1);
  CHECK(base.at({1, 0}) == -2);
  // a source that is the very same view reads and writes the same elements: fine
  Tensor t = base.t();
  t.add_(t);
  CHECK(base.at({0, 0}) == 2);
  // a source sharing part of a strided destination's memory is read from a snapshot first:
  // the elementwise meaning, as if the source had been cloned
  Tensor v = arange(6, DType::f64);
  slice(v, 0, 1, 6, 2).copy_(slice(v, 0, 0, 5, 2));  // odd positions take the even ones
  test::check_values(v, {0, 0, 2, 2, 4, 4});
  Tensor w = arange(6, DType::f64).reshape({2, 3});
  w.t().copy_(w.t().contiguous());  // a copy, not overlapping: fine
  test::check_values(w, {0, 1, 2, 3, 4, 5});
  Tensor m = arange(4, DType::f64).reshape({2, 2});
  m.t().add_(m);  // m^T += m, elementwise on the old values: [[0, 1], [2, 3]] -> [[0, 3], [3, 6]]
  test::check_values(m, {0, 3, 3, 6});
  // a shifted contiguous view of its own storage: PyTorch refuses (partial overlap)
  Tensor u = arange(6, DType::f64);
  CHECK_THROWS_WITH_AS(slice(u, 0, 1, 6).copy_(slice(u, 0, 0, 5)),
                       doctest::Contains("copy_: the source and the written-to tensor partly share memory"), ValueError);
  CHECK_THROWS_WITH_AS(slice(u, 0, 0, 5).add_(slice(u, 0, 1, 6)), doctest::Contains("clone() the source first"), ValueError);
  test::check_values(u, {0, 1, 2, 3, 4, 5});  // nothing written
  // internal overlap: an expanded view has several elements at one address
  Tensor e = zeros({3}, DType::f64);
  Tensor ex = expand(unsqueeze(e, 0), Shape{2, 3});
  CHECK_THROWS_WITH_AS(ex.copy_(ones({2, 3}, DType::f64)),
                       doctest::Contains("copy_: more than one element of the written-to tensor refers to a single memory "
                                         "location (shape [2, 3], strides [0, 1]"),
                       ValueError);
  CHECK_THROWS_WITH_AS(ex.add_(ones({2, 3}, DType::f64)), doctest::Contains("add_: more than one element"), ValueError);
  CHECK_THROWS_WITH_AS(ex.mul_(2), doctest::Contains("mul_: more than one element"), ValueError);
  CHECK_THROWS_WITH_AS(make_view(e, {2, 2}, {1, 1}, 0).fill_(1).mul_(2), doctest::Contains("mul_: more than one element"),
                       ValueError);
  test::check_values(e, {1, 1, 1});  // only fill_ wrote (one value everywhere: no ambiguity)
  // mul_ by a tensor: broadcast into a transposed view
  Tensor mm = arange(6, DType::f64).reshape({2, 3});
  mm.t().mul_(tensor({10, 100}, {2}, DType::f64));  // mm^T[j, i] *= {10, 100}[i]: row i of mm
  test::check_values(mm, {0, 10, 20, 300, 400, 500});
  CHECK_THROWS_WITH_AS(mm.mul_(ones({2, 3})), doctest::Contains("mul_: float32 cannot multiply float64 in place"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(mm.mul_(ones({3, 2}, DType::f64)),
                       doctest::Contains("mul_: source shape [3, 2] does not broadcast to the destination's shape [2, 3]"),
                       ShapeError);
  // a size-1 dim with stride 0 is not an overlap
  expand(zeros({1}, DType::f64), Shape{1}).add_(ones({1}, DType::f64));
}

TEST_CASE("tensor: in-place updates refuse tensors requiring grad while recording, work under NoGradGuard") {
  Tensor w = test::rnd({3}, 3);
  const auto before = w.to_vector();
  CHECK_THROWS_WITH_AS(w.add_(ones({3}, DType::f64)), doctest::Contains("add_: in-place update of a tensor that requires grad"),
                       AutogradError);
  CHECK_THROWS_WITH_AS(w.mul_(2), doctest::Contains("NoGradGuard"), AutogradError);
  CHECK_THROWS_AS(w.fill_(0), AutogradError);
  CHECK_THROWS_AS(w.copy_(zeros({3}, DType::f64)), AutogradError);
  CHECK(w.to_vector() == before);  // nothing written
  {
    NoGradGuard ng;
    w.add_(ones({3}, DType::f64), 0.5);
    w.mul_(2);
  }
  for (std::size_t i = 0; i < 3; ++i) CHECK(w.to_vector()[i] == doctest::Approx(2 * (before[i] + 0.5)));
  CHECK(w.requires_grad());
}

// ---- random --------------------------------------------------------------------------------------

TEST_CASE("random: Generator(42) gives the same numbers on every machine") {
  // std::mt19937_64's output is fixed by the C++ standard ([rand.predef]); uniform() keeps its
  // top 53 bits. These literals were computed once; a change in the transform breaks them.
  Generator g(42);
  CHECK(g.next_u64() == 13930160852258120406ULL);
  Generator u(42);
  CHECK(u.uniform() == 0.75515553295453897);
  CHECK(u.uniform() == 0.63903139385469743);
  CHECK(u.uniform() == 0.7521452007480266);
  // Box-Muller goes through log/sin/cos, which may differ in the last bit between libms.
  Generator n(42);
  CHECK(n.normal() == doctest::Approx(-0.48121769980184498).epsilon(1e-14));
  CHECK(n.normal() == doctest::Approx(-0.57453687389830577).epsilon(1e-14));
  CHECK(n.normal() == doctest::Approx(0.49458385623521361).epsilon(1e-14));
}

TEST_CASE("random: same seed gives the same tensors, different seeds differ") {
  Generator g1(7), g2(7), g3(8);
  Tensor a = randn({5, 7}, DType::f64, &g1), b = randn({5, 7}, DType::f64, &g2), c = randn({5, 7}, DType::f64, &g3);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(a.to_vector() != c.to_vector());
  // the thread's default generator
  manual_seed(123);
  const auto r1 = rand({9}).to_vector();
  manual_seed(123);
  CHECK(rand({9}).to_vector() == r1);
  // re-seeding resets a pending Box-Muller spare too
  Generator s(3);
  const double first = s.normal();
  s.manual_seed(3);
  CHECK(s.normal() == first);
  // state() / set_state() round trip, mid-pair
  Generator h(11);
  h.normal();
  const std::string st = h.state();
  const double next1 = h.normal(), next2 = h.normal();
  Generator k(0);
  k.set_state(st);
  CHECK(k.normal() == next1);
  CHECK(k.normal() == next2);
  // float32 draws are the float64 draws rounded
  Generator f1(5), f2(5);
  const auto d64 = rand({4}, DType::f64, &f1).to_vector(), d32 = rand({4}, DType::f32, &f2).to_vector();
  for (std::size_t i = 0; i < 4; ++i) CHECK(d32[i] == static_cast<double>(static_cast<float>(d64[i])));
}

TEST_CASE("random: randint stays in the half-open range lo..hi and hits every value") {
  Generator g(1);
  Tensor r = randint({2000}, -3, 4, &g);
  CHECK(r.dtype() == DType::i64);
  std::vector<int> count(7, 0);
  int outside = 0;
  for (double v : r.to_vector()) {
    if (v < -3 || v >= 4) ++outside;
    else ++count[static_cast<std::size_t>(v + 3)];
  }
  CHECK(outside == 0);
  for (int c : count) CHECK(c > 200);  // expected 2000/7 ~ 286 each
  CHECK(randint({5}, 9, 10, &g).to_vector() == std::vector<double>{9, 9, 9, 9, 9});
  CHECK_THROWS_WITH_AS(randint({3}, 4, 4, &g), doctest::Contains("randint: empty range [4, 4)"), ValueError);
}

TEST_CASE("random: randn/rand/uniform/normal statistics over 100k samples") {
  Generator g(2024);
  const std::int64_t n = 100000;
  auto stats = [](const std::vector<double>& v, double& mean, double& sd) {
    double s = 0, s2 = 0;
    for (double x : v) s += x;
    mean = s / static_cast<double>(v.size());
    for (double x : v) s2 += (x - mean) * (x - mean);
    sd = std::sqrt(s2 / static_cast<double>(v.size() - 1));
  };
  double m = 0, sd = 0;
  // standard error of the mean is 1/sqrt(1e5) ~ 0.0032: 0.015 is ~5 sigma
  stats(randn({n}, DType::f64, &g).to_vector(), m, sd);
  CHECK(std::abs(m) < 0.015);
  CHECK(std::abs(sd - 1.0) < 0.01);
  const auto z = randn({n}, DType::f64, &g).to_vector();
  std::int64_t within1 = 0;
  for (double x : z) within1 += std::abs(x) < 1.0;
  CHECK(static_cast<double>(within1) / static_cast<double>(n) == doctest::Approx(0.6827).epsilon(0.01));

  const auto u = rand({n}, DType::f64, &g).to_vector();
  CHECK(std::count_if(u.begin(), u.end(), [](double x) { return x < 0 || x >= 1; }) == 0);
  stats(u, m, sd);
  CHECK(m == doctest::Approx(0.5).epsilon(0.01));
  CHECK(sd == doctest::Approx(std::sqrt(1.0 / 12)).epsilon(0.01));

  stats(normal({n}, 3.0, 0.5, DType::f64, &g).to_vector(), m, sd);
  CHECK(m == doctest::Approx(3.0).epsilon(0.002));
  CHECK(sd == doctest::Approx(0.5).epsilon(0.01));
  const auto v = uniform({n}, -2.0, 6.0, DType::f32, &g).to_vector();
  CHECK(std::count_if(v.begin(), v.end(), [](double x) { return x < -2 || x > 6; }) == 0);
  stats(v, m, sd);
  CHECK(m == doctest::Approx(2.0).epsilon(0.01));

  CHECK_THROWS_AS(randn({3}, DType::i64), DTypeError);
  CHECK_THROWS_WITH_AS(uniform({3}, 1.0, 0.0), doctest::Contains("uniform: expected lo <= hi"), ValueError);
  CHECK_THROWS_WITH_AS(normal({3}, 0.0, -1.0), doctest::Contains("normal: expected stddev >= 0"), ValueError);
}

// ---- printing ------------------------------------------------------------------------------------

TEST_CASE("tensor: fmt prints small tensors like PyTorch") {
  CHECK(fmt::format("{}", arange(6).reshape({2, 3})) ==
        "tensor([[0.0000, 1.0000, 2.0000],\n"
        "        [3.0000, 4.0000, 5.0000]],\n"
        "       shape=[2, 3], dtype=float32)");
  // columns are right-aligned to the widest element
  CHECK(fmt::format("{}", tensor({-1.5, 2.25, 10}, {3}, DType::f64)) ==
        "tensor([-1.5000,  2.2500, 10.0000],\n"
        "       shape=[3], dtype=float64)");
  // 3-d: a blank line between matrices, rows indented under their bracket
  CHECK(fmt::format("{}", arange(8, DType::i64).reshape({2, 2, 2})) ==
        "tensor([[[0, 1],\n"
        "         [2, 3]],\n"
        "\n"
        "        [[4, 5],\n"
        "         [6, 7]]],\n"
        "       shape=[2, 2, 2], dtype=int64)");
  CHECK(fmt::format("{}", scalar(2.5)) == "tensor(2.5000,\n       shape=[], dtype=float32)");
  CHECK(fmt::format("{}", zeros({0})) == "tensor([],\n       shape=[0], dtype=float32)");
  CHECK(fmt::format("{}", Tensor()) == "tensor(undefined)");
  // a transposed view prints its logical layout
  CHECK(fmt::format("{}", arange(4, DType::i64).reshape({2, 2}).t()) ==
        "tensor([[0, 2],\n"
        "        [1, 3]],\n"
        "       shape=[2, 2], dtype=int64)");
}

TEST_CASE("tensor: fmt summarizes large tensors with ...") {
  CHECK(fmt::format("{}", arange(2000, DType::i64)) ==
        "tensor([   0,    1,    2,  ..., 1997, 1998, 1999],\n"
        "       shape=[2000], dtype=int64)");
  const std::string row = "[0, 0, 0,  ..., 0, 0, 0]";
  const std::string sep = ",\n        ";
  CHECK(fmt::format("{}", zeros({100, 20}, DType::i64)) ==
        "tensor([" + row + sep + row + sep + row + sep + "..." + sep + row + sep + row + sep + row + "],\n" +
            "       shape=[100, 20], dtype=int64)");
  // exactly 1000 elements: printed in full
  CHECK(fmt::format("{}", zeros({1000}, DType::i64)).find("...") == std::string::npos);
  // the summary format
  CHECK(fmt::format("{:s}", zeros({100, 20})) == "tensor(shape=[100, 20], dtype=float32)");
}

TEST_CASE("tensor: fmt shows requires_grad and grad_fn") {
  Tensor x = test::rnd({2}, 1);
  CHECK(fmt::format("{:s}", x) == "tensor(shape=[2], dtype=float64, requires_grad=true)");
  CHECK(fmt::format("{:s}", mul(x, 2.0)) == "tensor(shape=[2], dtype=float64, grad_fn=mul_scalar)");
  CHECK(fmt::format("{}", exp(x)).find(", grad_fn=exp)") != std::string::npos);
  CHECK(fmt::format("{:s}", x.detach()) == "tensor(shape=[2], dtype=float64)");
}

TEST_CASE("tensor: large buffers are recycled, and zeros() of a recycled buffer is zero") {
  // Freed buffers above 4 KB are kept for the next request of the same size (tensor.cpp);
  // a recycled buffer holds the old values, so every factory that promises values must write
  // them. 293 x 1009 floats: well above the small-block pool, a size no other test uses.
  const Shape big{293, 1009};
  [[maybe_unused]] const void* first = nullptr;  // compared below except under ASan (no recycling)
  {
    Tensor t = full(big, 7.0);
    first = t.data<float>();
  }
  Tensor z = zeros(big);
  const auto zv = z.to_vector();
  CHECK(std::all_of(zv.begin(), zv.end(), [](double v) { return v == 0.0; }));
  Tensor o = ones(big);
  const auto ov = o.to_vector();
  CHECK(std::all_of(ov.begin(), ov.end(), [](double v) { return v == 1.0; }));
#if !defined(__SANITIZE_ADDRESS__)
  CHECK(static_cast<const void*>(z.data<float>()) == first);  // the freed block came back
#endif
}
