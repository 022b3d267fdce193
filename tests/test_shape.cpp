#include "tests/helpers.h"

using namespace ng;

namespace {
Tensor f64(std::initializer_list<double> v, const Shape& s) { return tensor(v, s, DType::f64); }
Tensor i64(const std::vector<std::int64_t>& v, const Shape& s) { return from_vector(v, s); }
Tensor grid(std::int64_t r, std::int64_t c) { return arange(r * c, DType::f64).reshape({r, c}); }
}  // namespace

// ---- slice / select / slice_backward ----------------------------------------------------------

TEST_CASE("slice: Python bounds and steps, as a view") {
  Tensor a = arange(10, DType::f64);
  test::check_values(slice(a, 0, 1, 8, 2), {1, 3, 5, 7});
  test::check_values(slice(a, 0, -3, 100), {7, 8, 9});
  test::check_values(slice(a, 0, -100, 2), {0, 1});
  test::check_values(slice(a, 0, 2, -5, 3), {2});
  CHECK(slice(a, 0, 5, 2).numel() == 0);
  CHECK(slice(a, 0, 10, 20).numel() == 0);
  Tensor b = grid(3, 4);
  Tensor s = slice(b, 1, 1, 4, 2);  // columns 1, 3
  REQUIRE(s.shape() == Shape{3, 2});
  test::check_values(s, {1, 3, 5, 7, 9, 11});
  CHECK(s.impl().storage == b.impl().storage);
  CHECK(s.strides() == Strides{4, 2});
  test::check_values(slice(b, -1, -2, 4), {2, 3, 6, 7, 10, 11});
  test::check_values(slice(slice(b, 0, 1, 3), 1, 0, 4, 3), {4, 7, 8, 11});  // slice of a slice
}

TEST_CASE("slice: gradcheck with step 2 and negative bounds") {
  Tensor x = test::rnd({5, 7}, 1);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return slice(v[0], 1, -6, -1, 2); }, {x}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return slice(v[0], 0, 1, 100, 2); }, {x}));
  CHECK_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& v) { return mul(slice(v[0], 0, 0, 3), slice(v[0], 0, -3, 5)); }, {x}));
}

TEST_CASE("slice: errors") {
  Tensor a = arange(5, DType::f64);
  CHECK_THROWS_WITH_AS(slice(a, 0, 0, 5, 0), doctest::Contains("slice: step must be positive, got 0"), ValueError);
  CHECK_THROWS_WITH_AS(slice(a, 0, 5, 0, -1), doctest::Contains("slice"), ValueError);
  CHECK_THROWS_WITH_AS(slice(a, 1, 0, 1), doctest::Contains("slice: axis 1"), IndexError);
  CHECK_THROWS_WITH_AS(slice(scalar(1.0), 0, 0, 1), doctest::Contains("slice"), ShapeError);
}

TEST_CASE("slice_backward: zeros with src written into the slice") {
  Tensor src = f64({1, 2, 3, 4}, {2, 2});
  Tensor out = slice_backward(src, {2, 4}, 1, 0, 4, 2);
  test::check_values(out, {1, 0, 2, 0, 3, 0, 4, 0});
  test::check_values(slice_backward(f64({5, 6}, {2}), {5}, 0, -2, 5, 1), {0, 0, 0, 5, 6});
  Tensor x = test::rnd({3, 2}, 2);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return slice_backward(v[0], {3, 7}, 1, -6, 7, 3); }, {x}));
  CHECK_THROWS_WITH_AS(slice_backward(src, {2, 4}, 1, 0, 4, 1),
                       doctest::Contains("slice_backward: src shape does not match the slice of [2, 4]: [2, 4] vs [2, 2]"),
                       ShapeError);
}

TEST_CASE("select: removes the axis, as a view") {
  Tensor b = grid(3, 4);
  Tensor c = select(b, 1, -1);
  REQUIRE(c.shape() == Shape{3});
  test::check_values(c, {3, 7, 11});
  CHECK(c.impl().storage == b.impl().storage);
  test::check_values(select(b, 0, 1), {4, 5, 6, 7});
  CHECK(select(arange(3, DType::f64), 0, 2).shape() == Shape{});
  Tensor x = test::rnd({3, 5}, 3);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return select(v[0], 1, 2); }, {x}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return select(v[0], 0, -1); }, {x}));
  CHECK_THROWS_WITH_AS(select(b, 1, 4), doctest::Contains("select: index 4 is out of range for dim 1 of size 4"),
                       IndexError);
  CHECK_THROWS_WITH_AS(select(b, 0, -4), doctest::Contains("select: index -4"), IndexError);
}

// ---- cat / stack ------------------------------------------------------------------------------

TEST_CASE("cat: values along axis 0 and 1, non-contiguous inputs") {
  Tensor a = grid(2, 3), b = f64({9, 8, 7}, {1, 3});
  Tensor c0 = cat({a, b}, 0);
  REQUIRE(c0.shape() == Shape{3, 3});
  test::check_values(c0, {0, 1, 2, 3, 4, 5, 9, 8, 7});
  Tensor d = f64({9, 8}, {2, 1});
  test::check_values(cat({a, d, a}, 1), {0, 1, 2, 9, 0, 1, 2, 3, 4, 5, 8, 3, 4, 5});
  Tensor at = transpose(grid(3, 2), 0, 1);  // [[0, 2, 4], [1, 3, 5]]
  test::check_values(cat({a, at}, -1), {0, 1, 2, 0, 2, 4, 3, 4, 5, 1, 3, 5});
  test::check_values(cat({from_vector(std::vector<std::int64_t>{1}, {1}), i64({2, 3}, {2})}), {1, 2, 3});
}

TEST_CASE("cat: gradcheck on axis 0 and 1") {
  Tensor a = test::rnd({2, 3}, 4), b = test::rnd({3, 3}, 5), c = test::rnd({2, 5}, 6);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return cat({v[0], mul(v[1], v[1]), v[0]}, 0); }, {a, b}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return cat({v[0], exp(v[1])}, 1); }, {a, c}));
  // an input that does not require grad in the middle
  Tensor k = ones({2, 1}, DType::f64);
  CHECK_GRADCHECK(gradcheck([k](const std::vector<Tensor>& v) { return cat({v[0], k, transpose(v[1], 0, 1)}, 1); },
                            {a, test::rnd({5, 2}, 7)}));
}

TEST_CASE("cat: errors") {
  CHECK_THROWS_WITH_AS(cat({}, 0), doctest::Contains("cat: expected a non-empty list"), ValueError);
  CHECK_THROWS_WITH_AS(cat({ones({2, 3}), ones({2, 4})}, 0),
                       doctest::Contains("cat: tensor 1 must match tensor 0 in every dim except 0: [2, 3] vs [2, 4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(cat({ones({2, 3}), ones({2})}, 0), doctest::Contains("cat"), ShapeError);
  CHECK_THROWS_WITH_AS(cat({ones({2}), ones({2}, DType::f64)}), doctest::Contains("cat: tensor 1 has a different dtype"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(cat({ones({2})}, 1), doctest::Contains("cat: axis 1"), IndexError);
}

TEST_CASE("stack: new axis at 0, 1 and -1") {
  Tensor a = grid(2, 3), b = add(grid(2, 3), 10.0);
  Tensor s0 = stack({a, b}, 0);
  REQUIRE(s0.shape() == Shape{2, 2, 3});
  test::check_values(s0, {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15});
  Tensor s1 = stack({a, b}, 1);
  REQUIRE(s1.shape() == Shape{2, 2, 3});
  test::check_values(s1, {0, 1, 2, 10, 11, 12, 3, 4, 5, 13, 14, 15});
  Tensor s2 = stack({a, b}, -1);
  REQUIRE(s2.shape() == Shape{2, 3, 2});
  test::check_values(s2, {0, 10, 1, 11, 2, 12, 3, 13, 4, 14, 5, 15});
  Tensor x = test::rnd({3, 5}, 8), y = test::rnd({3, 5}, 9);
  for (std::int64_t ax : {0, 1, 2}) {
    CAPTURE(ax);
    CHECK_GRADCHECK(gradcheck([ax](const std::vector<Tensor>& v) { return stack({v[0], v[1], v[0]}, ax); }, {x, y}));
  }
  CHECK_THROWS_WITH_AS(stack({a, ones({3, 2}, DType::f64)}),
                       doctest::Contains("stack: tensor 1 has a different shape than tensor 0: [2, 3] vs [3, 2]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(stack({}), doctest::Contains("stack"), ValueError);
  CHECK_THROWS_WITH_AS(stack({a}, 3), doctest::Contains("stack: axis 3"), IndexError);
}

// ---- split / chunk ----------------------------------------------------------------------------

TEST_CASE("split: by size and by list of sizes") {
  Tensor a = arange(7, DType::f64);
  auto p = split(a, 3);
  REQUIRE(p.size() == 3);
  test::check_values(p[0], {0, 1, 2});
  test::check_values(p[1], {3, 4, 5});
  test::check_values(p[2], {6});
  CHECK(p[1].impl().storage == a.impl().storage);
  auto q = split(grid(3, 5), std::vector<std::int64_t>{2, 0, 3}, 1);
  REQUIRE(q.size() == 3);
  CHECK(q[1].shape() == Shape{3, 0});
  test::check_values(q[0], {0, 1, 5, 6, 10, 11});
  test::check_values(q[2], {2, 3, 4, 7, 8, 9, 12, 13, 14});
  CHECK(split(a, 10).size() == 1);
  Tensor x = test::rnd({3, 7}, 10);
  CHECK_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& v) {
        auto s = split(v[0], 3, 1);
        return cat({mul(s[0], s[0]), exp(s[1]), mul(s[2], 3.0)}, 1);
      },
      {x}));
  CHECK_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& v) {
        auto s = split(v[0], std::vector<std::int64_t>{1, 2}, 0);
        return add(sum(s[0], {0}), mul(s[1], s[1]));  // [7] + [2, 7]
      },
      {x}));
  CHECK_THROWS_WITH_AS(split(a, std::vector<std::int64_t>{3, 3}),
                       doctest::Contains("split: sizes [3, 3] must sum to the size of dim 0: 7 vs 6"), ShapeError);
  CHECK_THROWS_WITH_AS(split(a, 0), doctest::Contains("split: split_size must be positive"), ValueError);
  CHECK_THROWS_WITH_AS(split(a, std::vector<std::int64_t>{8, -1}), doctest::Contains("split"), ValueError);
}

TEST_CASE("chunk: ceil-sized chunks, possibly fewer than asked") {
  auto sizes = [](const std::vector<Tensor>& ts) {
    std::vector<std::int64_t> s;
    for (const auto& t : ts) s.push_back(t.numel());
    return s;
  };
  CHECK(sizes(chunk(arange(5), 4)) == std::vector<std::int64_t>{2, 2, 1});
  CHECK(sizes(chunk(arange(6), 4)) == std::vector<std::int64_t>{2, 2, 2});
  CHECK(sizes(chunk(arange(7), 3)) == std::vector<std::int64_t>{3, 3, 1});
  CHECK(sizes(chunk(arange(2), 5)) == std::vector<std::int64_t>{1, 1});
  CHECK(sizes(chunk(zeros({0}), 3)) == std::vector<std::int64_t>{0, 0, 0});
  auto c = chunk(grid(3, 5), 2, 1);
  test::check_values(c[1], {3, 4, 8, 9, 13, 14});
  Tensor x = test::rnd({5, 3}, 11);
  CHECK_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& v) {
        auto s = chunk(v[0], 2, 0);  // rows 0-2 and 3-4
        return cat({exp(s[1]), mul(s[0], s[0])}, 0);
      },
      {x}));
  CHECK_THROWS_WITH_AS(chunk(arange(5), 0), doctest::Contains("chunk: number of chunks must be positive, got 0"),
                       ValueError);
}

// ---- index_select / index_add ----------------------------------------------------------------

TEST_CASE("index_select: rows and columns, repeated indices") {
  Tensor b = grid(3, 4);
  test::check_values(index_select(b, 0, i64({2, 0, 2}, {3})), {8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11});
  Tensor c = index_select(b, 1, i64({3, 3, 1}, {3}));
  REQUIRE(c.shape() == Shape{3, 3});
  test::check_values(c, {3, 3, 1, 7, 7, 5, 11, 11, 9});
  test::check_values(index_select(transpose(b, 0, 1), 1, i64({1}, {1})), {4, 5, 6, 7});
  Tensor x = test::rnd({3, 5, 2}, 12);
  Tensor idx = i64({4, 0, 4, 4, 2}, {5});
  CHECK_GRADCHECK(gradcheck([idx](const std::vector<Tensor>& v) { return index_select(v[0], 1, idx); }, {x}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return index_select(v[0], -1, i64({1, 1, 0}, {3})); }, {x}));
  // repeated indices accumulate their gradients
  Tensor y = f64({1, 2, 3}, {3}).requires_grad_();
  index_select(y, 0, i64({2, 0, 2, 2}, {4})).sum().backward();
  test::check_values(y.grad(), {1, 0, 3});
}

TEST_CASE("index_select: errors") {
  Tensor b = grid(3, 4);
  CHECK_THROWS_WITH_AS(index_select(b, 0, i64({0, 3}, {2})),
                       doctest::Contains("index_select: index 3 is out of range for dim 0 of size 3"), IndexError);
  CHECK_THROWS_WITH_AS(index_select(b, 1, i64({-1}, {1})), doctest::Contains("index_select: index -1"), IndexError);
  CHECK_THROWS_WITH_AS(index_select(b, 0, f64({0}, {1})), doctest::Contains("index_select: index must be int64"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(index_select(b, 0, i64({0, 1}, {1, 2})), doctest::Contains("index_select: index must be 1-d"),
                       ShapeError);
}

TEST_CASE("index_add: adds src rows at the indices (index_select's adjoint)") {
  test::check_values(index_add({4}, 0, i64({0, 2, 0}, {3}), f64({1, 2, 3}, {3})), {4, 0, 2, 0});
  Tensor out = index_add({2, 3}, 1, i64({2, 2}, {2}), f64({1, 2, 3, 4}, {2, 2}));
  test::check_values(out, {0, 0, 3, 0, 0, 7});
  Tensor src = test::rnd({3, 4}, 13);
  CHECK_GRADCHECK(
      gradcheck([](const std::vector<Tensor>& v) { return index_add({5, 4}, 0, i64({4, 1, 4}, {3}), v[0]); }, {src}));
  CHECK_THROWS_WITH_AS(index_add({2, 3}, 1, i64({3}, {1}), zeros({2, 1}, DType::f64)),
                       doctest::Contains("index_add: index 3 is out of range for dim 1 of size 3"), IndexError);
  CHECK_THROWS_WITH_AS(index_add({2, 3}, 1, i64({0}, {1}), zeros({2, 2}, DType::f64)),
                       doctest::Contains("index_add: src must have the shape of [2, 3] with dim 1 of size 1"), ShapeError);
}

// ---- gather / scatter_add -------------------------------------------------------------------

TEST_CASE("gather: torch.gather semantics") {
  Tensor t = f64({1, 2, 3, 4}, {2, 2});
  test::check_values(gather(t, 1, i64({0, 0, 1, 0}, {2, 2})), {1, 1, 4, 3});
  test::check_values(gather(t, 0, i64({1, 0, 1, 1}, {2, 2})), {3, 2, 3, 4});
  // an index smaller than the input in the other dims; a transposed input
  Tensor b = grid(3, 4);
  Tensor g = gather(b, 1, i64({3, 0, 1, 1}, {2, 2}));
  REQUIRE(g.shape() == Shape{2, 2});
  test::check_values(g, {3, 0, 5, 5});
  test::check_values(gather(transpose(b, 0, 1), 0, i64({2, 0}, {1, 2})), {2, 4});  // b^T[2][0], b^T[0][1]
  Tensor x = test::rnd({3, 5}, 14);
  Tensor i1 = i64({4, 4, 0, 1, 2, 2, 2, 3, 0, 0, 0, 4}, {3, 4});  // repeated within rows
  CHECK_GRADCHECK(gradcheck([i1](const std::vector<Tensor>& v) { return gather(v[0], 1, i1); }, {x}));
  Tensor i0 = i64({2, 2, 0, 1, 1, 1, 0, 2}, {2, 4});
  CHECK_GRADCHECK(gradcheck([i0](const std::vector<Tensor>& v) { return gather(v[0], 0, i0); }, {x}));
  Tensor y = f64({1, 2, 3}, {1, 3}).requires_grad_();
  gather(y, 1, i64({2, 2, 0, 2}, {1, 4})).sum().backward();
  test::check_values(y.grad(), {1, 0, 3});
}

TEST_CASE("gather: errors") {
  Tensor t = f64({1, 2, 3, 4}, {2, 2});
  CHECK_THROWS_WITH_AS(gather(t, 1, i64({0, 2}, {2, 1})),
                       doctest::Contains("gather: index 2 is out of range for dim 1 of size 2"), IndexError);
  CHECK_THROWS_WITH_AS(gather(t, 1, i64({0, 1}, {2})), doctest::Contains("gather: index must have as many dims"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(gather(t, 1, i64({0, 0, 0}, {3, 1})),
                       doctest::Contains("gather: index shape [3, 1] exceeds input shape [2, 2] at dim 0"), ShapeError);
  CHECK_THROWS_WITH_AS(gather(t, 0, f64({0}, {1, 1})), doctest::Contains("gather: index must be int64"), DTypeError);
}

TEST_CASE("scatter_add: gather's adjoint") {
  Tensor out = scatter_add({2, 3}, 1, i64({0, 0, 2, 1}, {2, 2}), f64({1, 2, 3, 4}, {2, 2}));
  test::check_values(out, {3, 0, 0, 0, 4, 3});
  test::check_values(scatter_add({3}, 0, i64({1, 1}, {2}), f64({5, 6}, {2})), {0, 11, 0});
  Tensor src = test::rnd({2, 4}, 15);
  Tensor idx = i64({2, 2, 0, 1, 1, 1, 0, 2}, {2, 4});
  CHECK_GRADCHECK(gradcheck([idx](const std::vector<Tensor>& v) { return scatter_add({3, 5}, 0, idx, v[0]); }, {src}));
  CHECK_THROWS_WITH_AS(scatter_add({2, 3}, 1, i64({0, 5}, {1, 2}), zeros({1, 2}, DType::f64)),
                       doctest::Contains("scatter_add: index 5 is out of range for dim 1 of size 3"), IndexError);
  CHECK_THROWS_WITH_AS(scatter_add({2, 3}, 1, i64({0, 1}, {1, 2}), zeros({2, 2}, DType::f64)),
                       doctest::Contains("scatter_add: src must have the index's shape: [1, 2] vs [2, 2]"), ShapeError);
}

// ---- pad --------------------------------------------------------------------------------------

TEST_CASE("pad: pairs from the last dim, constant value, negative widths crop") {
  Tensor a = f64({1, 2, 3, 4}, {2, 2});
  // {left, right, top, bottom}: (0, 2) on the last dim, (1, 0) on the first (F.pad's order)
  Tensor p = pad(a, {0, 2, 1, 0}, PadMode::constant, 9);
  REQUIRE(p.shape() == Shape{3, 4});
  test::check_values(p, {9, 9, 9, 9, 1, 2, 9, 9, 3, 4, 9, 9});
  Tensor q = pad(a, {1, 1});  // only the LAST dim
  REQUIRE(q.shape() == Shape{2, 4});
  test::check_values(q, {0, 1, 2, 0, 0, 3, 4, 0});
  test::check_values(pad(transpose(a, 0, 1), {1, 0}), {0, 1, 3, 0, 2, 4});
  // negative widths crop: [0..5) -> drop 2 on the left, add 1 on the right
  test::check_values(pad(arange(5, DType::f64), {-2, 1}, PadMode::constant, 7), {2, 3, 4, 7});
  test::check_values(pad(arange(5, DType::f64), {-2, -3}), {});
  Tensor same = pad(a, {0, 0});  // nothing to pad: a copy, never an alias
  CHECK(same.impl().storage != a.impl().storage);
  Tensor x = test::rnd({3, 2, 5}, 16);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return pad(v[0], {3, 1, 0, 0, 1, 2}, PadMode::constant, -1); }, {x}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return pad(v[0], {0, 1}); }, {x}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return pad(v[0], {-1, 2, 1, -1}); }, {x}));
  CHECK_THROWS_WITH_AS(pad(a, {0, 0, 0, 0, 1, 1}),
                       doctest::Contains("pad: 3 (before, after) pairs for a 2-d input of shape [2, 2]"), ShapeError);
  // (the old form pad(a, {{1, 1}}) from the first dim is a deleted overload: it does not compile)
  CHECK_THROWS_WITH_AS(pad(a, {1, 1, 1}), doctest::Contains("pad: the padding list must hold (before, after) pairs, got 3"),
                       ValueError);
  CHECK_THROWS_WITH_AS(pad(a, {0, -3}), doctest::Contains("pad: negative padding (0, -3) on dim 1 of shape [2, 2] leaves a negative size -1"),
                       ShapeError);
}

namespace {
// The padded index along a dim of size n, written out per mode (the test's own reference).
std::int64_t ref_src(PadMode m, std::int64_t i, std::int64_t n) {
  if (m == PadMode::replicate) return i < 0 ? 0 : (i >= n ? n - 1 : i);
  if (m == PadMode::circular) return i < 0 ? i + n : (i >= n ? i - n : i);
  return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);  // reflect
}
}  // namespace

TEST_CASE("pad: reflect, replicate, circular values as torch.nn.functional.pad") {
  Tensor r = arange(3, DType::f64).reshape({1, 3}) + 1.0;  // [[1, 2, 3]] as (C, W)
  test::check_values(pad(r, {2, 2}, PadMode::reflect), {3, 2, 1, 2, 3, 2, 1});
  test::check_values(pad(r, {2, 2}, PadMode::replicate), {1, 1, 1, 2, 3, 3, 3});
  test::check_values(pad(r, {2, 2}, PadMode::circular), {2, 3, 1, 2, 3, 1, 2});
  test::check_values(pad(r, {3, 3}, PadMode::circular), {1, 2, 3, 1, 2, 3, 1, 2, 3});
  test::check_values(pad(r, {-1, 1}, PadMode::reflect), {2, 3, 2});
  // 2-d padding of (N, C, H, W) = (1, 1, 3, 4), against the index map written out above
  Tensor x = test::rnd({1, 1, 3, 4}, 30, false);
  for (PadMode m : {PadMode::reflect, PadMode::replicate, PadMode::circular}) {
    CAPTURE(to_string(m));
    Tensor y = pad(x, {2, 1, 1, 2}, m);  // W: (2, 1), H: (1, 2)
    REQUIRE(y.shape() == Shape{1, 1, 6, 7});
    for (std::int64_t h = 0; h < 6; ++h)
      for (std::int64_t w = 0; w < 7; ++w)
        CHECK(y.at({0, 0, h, w}) == x.at({0, 0, ref_src(m, h - 1, 3), ref_src(m, w - 2, 4)}));
  }
  // 3-d padding of an unbatched (C, D, H, W)
  Tensor v = test::rnd({2, 3, 2, 3}, 31, false);
  Tensor pv = pad(v, {1, 1, 1, 0, 0, 2}, PadMode::replicate);
  REQUIRE(pv.shape() == Shape{2, 5, 3, 5});
  CHECK(pv.at({1, 4, 0, 4}) == v.at({1, 2, 0, 2}));
}

TEST_CASE("pad: reflect, replicate, circular gradients (every copy adds into its source)") {
  // d/dx of sum(w * pad(x)) by hand for reflect of [x0 x1 x2] by (2, 1): out = x2 x1 x0 x1 x2 x1
  Tensor x = f64({1, 2, 3}, {1, 3}).detach().requires_grad_();
  Tensor w = f64({1, 10, 100, 1000, 10000, 100000}, {1, 6});
  backward(sum(mul(pad(x, {2, 1}, PadMode::reflect), w)));
  test::check_values(x.grad(), {100, 10 + 1000 + 100000, 1 + 10000});
  Tensor a = test::rnd({2, 3, 4}, 32), b = test::rnd({1, 2, 3, 4}, 33), c = test::rnd({1, 2, 3, 3, 4}, 34);
  for (PadMode m : {PadMode::reflect, PadMode::replicate, PadMode::circular}) {
    CAPTURE(to_string(m));
    CHECK_GRADCHECK(gradcheck([m](const std::vector<Tensor>& in) { return pad(in[0], {2, 3}, m); }, {a}));
    CHECK_GRADCHECK(gradcheck([m](const std::vector<Tensor>& in) { return pad(in[0], {1, 2, 2, 0}, m); }, {b}));
    CHECK_GRADCHECK(gradcheck([m](const std::vector<Tensor>& in) { return pad(in[0], {1, 1, 0, 2, 2, 1}, m); }, {c}));
    CHECK_GRADCHECK(gradgradcheck([m](const std::vector<Tensor>& in) { Tensor p = pad(in[0], {1, 2, 2, 0}, m); return mul(p, p); }, {b}));
  }
}

TEST_CASE("pad: PyTorch's error cases for the non-constant modes") {
  Tensor x = zeros({1, 2, 3}, DType::f64);
  CHECK_THROWS_WITH_AS(pad(x, {3, 0}, PadMode::reflect),
                       doctest::Contains("pad: reflect padding must be smaller than the size of the dim it pads: (3, 0) for dim 2 of size 3"),
                       ValueError);
  CHECK_THROWS_WITH_AS(pad(x, {0, 4}, PadMode::circular),
                       doctest::Contains("pad: circular padding wraps around more than once: (0, 4) for dim 2 of size 3"), ValueError);
  CHECK_THROWS_WITH_AS(pad(zeros({3}, DType::f64), {1, 1}, PadMode::reflect),
                       doctest::Contains("pad: mode 'reflect' with 1 pair(s) expects a 2-d (unbatched) or 3-d (batched) input, got shape [3]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(pad(zeros({1, 1, 1, 1, 1}, DType::f64), {1, 1, 1, 1, 1, 1, 1, 1}, PadMode::replicate),
                       doctest::Contains("pad: mode 'replicate' pads the last 1, 2 or 3 dims: 4 pairs given"), ShapeError);
  CHECK_THROWS_WITH_AS(pad(x, {1, 1}, PadMode::replicate, 2.0),
                       doctest::Contains("pad: mode 'replicate' takes no fill value (got 2)"), ValueError);
  CHECK_THROWS_WITH_AS(pad(x, {-2, -1}, PadMode::replicate),
                       doctest::Contains("pad: mode 'replicate' leaves dim 2 of shape [1, 2, 3] with size 0"), ShapeError);
  CHECK_THROWS_WITH_AS(pad(zeros({1, 0}, DType::f64), {1, 1}, PadMode::replicate),
                       doctest::Contains("pad: mode 'replicate' has nothing to copy from the empty dim 1 of shape [1, 0]"),
                       ShapeError);
  CHECK(pad(zeros({0, 2, 3}, DType::f64), {1, 1}, PadMode::reflect).shape() == Shape{0, 2, 5});  // empty batch
}
