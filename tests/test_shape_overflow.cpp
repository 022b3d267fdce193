// Shapes whose element count (or whose strides) would overflow int64, and byte counts above
// the allocation limit: every way of making such a shape is a ShapeError / OutOfMemoryError
// naming the op and the shape, never signed overflow (issue 23). Huge sizes are reached
// through views (expand of a 1-element tensor) so that nothing large is ever allocated.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>

#include "autograd/ops.h"
#include "layers/linear.h"

using namespace ng;
using doctest::Contains;

namespace {
constexpr std::int64_t k40 = std::int64_t{1} << 40, k62 = std::int64_t{1} << 62;
constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();

// A tensor of the given (possibly huge) shape without allocating it: a 1-element tensor expanded.
Tensor huge(const Shape& s, DType d = DType::f64) {
  Shape ones_shape;
  for (std::size_t i = 0; i < s.size(); ++i) ones_shape.push_back(1);
  return zeros(ones_shape, d).expand(s);
}

// Lowers the allocation limit for one test case, restores it after.
struct AllocationLimit {
  std::uint64_t saved = allocation_limit();
  explicit AllocationLimit(std::uint64_t bytes) { set_allocation_limit(bytes); }
  ~AllocationLimit() { set_allocation_limit(saved); }
};
}  // namespace

TEST_CASE("shape overflow: the issue's three factory calls are ShapeErrors naming the shape") {
  CHECK_THROWS_WITH_AS(zeros({k40, k40}),
                       Contains("zeros: shape [1099511627776, 1099511627776] is too large: the product of its sizes "
                                "overflows int64"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(zeros({k62, 4}), Contains("zeros: shape [4611686018427387904, 4] is too large"), ShapeError);
  CHECK_THROWS_WITH_AS(ones({3037000500LL, 3037000500LL}), Contains("ones: shape [3037000500, 3037000500] is too large"),
                       ShapeError);
  // every factory goes through the same check
  CHECK_THROWS_AS(empty({k40, k40}), ShapeError);
  CHECK_THROWS_WITH_AS(full({k40, k40}, 1.0), Contains("full: shape"), ShapeError);
  CHECK_THROWS_WITH_AS(randn({k40, k40}), Contains("random: shape"), ShapeError);
  CHECK_THROWS_WITH_AS(randint({k40, k40}, 0, 2), Contains("randint: shape"), ShapeError);
  CHECK_THROWS_WITH_AS(from_vector(std::vector<double>{}, Shape{k40, k40, 0}),
                       Contains("from_vector: shape [1099511627776, 1099511627776, 0] is too large: the product of its "
                                "non-zero sizes overflows"),
                       ShapeError);
  // Shape::numel itself never overflows silently
  CHECK_THROWS_WITH_AS((void)Shape({k40, k40}).numel(), Contains("numel: shape [1099511627776, 1099511627776]"),
                       ShapeError);
  CHECK(Shape({k40, k40, 0}).numel() == 0);
}

TEST_CASE("shape overflow: an empty shape whose non-zero sizes overflow is refused (its strides would overflow)") {
  CHECK_THROWS_WITH_AS(zeros({0, k62, k62}),
                       Contains("zeros: shape [0, 4611686018427387904, 4611686018427387904] is too large: the product "
                                "of its non-zero sizes overflows int64"),
                       ShapeError);
  // a large empty shape whose sizes fit is fine, and its strides are exact
  const Tensor e = zeros({0, k40, 1024});
  CHECK(e.numel() == 0);
  CHECK(e.strides()[0] == k40 * 1024);
  CHECK(sum(e).item() == 0.0);
  CHECK(checked_numel(Shape{3, 0, 5}, "t") == 0);
  CHECK(checked_numel(Shape{3, 4, 5}, "t") == 60);
  CHECK(shape_fits(Shape{k62, 1}));
  CHECK_FALSE(shape_fits(Shape{k62, 2}));
  CHECK_FALSE(shape_fits(Shape{2, -1}));
}

TEST_CASE("shape overflow: byte counts are capped by the allocation limit before allocating") {
  // 2^61 doubles = 2^64 bytes: numel fits int64, the byte count does not fit 64 bits
  CHECK_THROWS_WITH_AS(zeros({std::int64_t{1} << 61}, DType::f64),
                       Contains("zeros: shape [2305843009213693952] needs 2305843009213693952 x 8 bytes, more than the "
                                "allocation limit of 140737488355328 bytes"),
                       OutOfMemoryError);
  CHECK(allocation_limit() == std::uint64_t{1} << 47);
  {
    const AllocationLimit limit(1 << 20);
    CHECK_THROWS_WITH_AS(zeros({1 << 18, 2}, DType::f64),
                         Contains("zeros: shape [262144, 2] needs 524288 x 8 bytes, more than the allocation limit of "
                                  "1048576 bytes (ng::allocation_limit())"),
                         OutOfMemoryError);
    CHECK(zeros({1 << 18}).numel() == 1 << 18);  // exactly 1 MiB is allowed
    // an op's output counts too: the sum of two expanded views is a full-size tensor
    CHECK_THROWS_AS(add(huge({1 << 20}), huge({1 << 20})), OutOfMemoryError);
    CHECK_THROWS_WITH_AS(arange(0.0, 1e300), Contains("arange: [0, 1e+300) with step 1 has"), OutOfMemoryError);
  }
  CHECK(allocation_limit() == std::uint64_t{1} << 47);
  CHECK_THROWS_WITH_AS(arange(0.0, std::numeric_limits<double>::infinity()),
                       Contains("arange: start, end and step must be finite"), ValueError);
}

TEST_CASE("shape overflow: broadcasting") {
  CHECK_THROWS_WITH_AS(broadcast_shapes(Shape{k40, 1}, Shape{1, k40}, "add"),
                       Contains("add: shapes [1099511627776, 1] and [1, 1099511627776] broadcast to [1099511627776, "
                                "1099511627776], whose product of sizes overflows int64"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(add(huge({k40, 1}), huge({1, k40})), Contains("broadcast to [1099511627776, 1099511627776]"),
                       ShapeError);
  CHECK_THROWS_AS(mul(huge({k40, 1}), huge({1, k40})), ShapeError);
  CHECK_THROWS_AS(where(huge({k40, 1}), huge({1, k40}), huge({1, 1})), ShapeError);
}

TEST_CASE("shape overflow: matmul output shape") {
  // batch 2^40 of (1 x 1) @ (1 x 2^40): the output [2^40, 1, 2^40] overflows
  CHECK_THROWS_WITH_AS(matmul(huge({k40, 1, 1}), huge({1, k40})),
                       Contains("matmul: [1099511627776, 1, 1] times [1, 1099511627776] gives shape [1099511627776, "
                                "1, 1099511627776], whose product of sizes overflows int64"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(huge({k40, 1, 1}), huge({k40, 1, 1}).transpose(0, 1).transpose(0, 2)),
                       Contains("matmul"), ShapeError);
}

TEST_CASE("shape overflow: conv2d and pooling arithmetic") {
  const Tensor x = zeros({1, 1, 1, 1}), w = zeros({1, 1, 3, 3});
  CHECK_THROWS_WITH_AS(conv2d(x, w, {}, 1, Size2(k62, 1)),
                       Contains("conv2d: input [1, 1, 1, 1] with weight [1, 1, 3, 3], padding (4611686018427387904, "
                                "1) and dilation (1, 1): the padded input or the dilated kernel size overflows int64"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, {}, 1, 1, Size2(k62, 1)), Contains("dilated kernel size overflows int64"),
                       ShapeError);
  // a padding that fits but makes the output [1, 1, 2^40 + ..., 2^40 + ...] overflow
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({1, 1, 1, 1}), {}, 1, Size2(k40, k40)), Contains("conv2d: output shape"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({1, 1, 0, 1})), Contains("conv2d: weight [1, 1, 0, 1] has an empty kernel"),
                       ShapeError);
  {  // the im2col buffer of a big-enough output is checked like a tensor
    const AllocationLimit limit(1 << 20);
    CHECK_THROWS_WITH_AS(conv2d(zeros({1, 1, 300, 300}), zeros({1, 1, 2, 2}), {}, 1, 1),
                         Contains("conv2d (im2col buffer): shape [4, 90601]"), OutOfMemoryError);
  }
  CHECK_THROWS_WITH_AS(max_pool2d(x, 3, 1, 1, Size2(k62, 1)),
                       Contains("max_pool2d: input [1, 1, 1, 1] with kernel (3, 3), stride (1, 1), padding (1, 1) "
                                "and dilation (4611686018427387904, 1): the window arithmetic overflows int64"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(avg_pool2d(x, Size2(kMax, 1), 1), Contains("avg_pool2d"), ShapeError);
  // A window far larger than the image visits only the image's elements (it used to loop
  // over all 2^40 x 2^40 taps of a kernel that fits the padded input).
  const Tensor one = full({1, 1, 1, 1}, 3.0);
  CHECK(max_pool2d(one, k40, std::nullopt, k40 / 2).item() == 3.0);
  CHECK(avg_pool2d(one, Size2(k40, 1), std::nullopt, Size2(k40 / 2, 0), false, false).item() == 3.0);
}

TEST_CASE("shape overflow: cat, split, expand, pad, reshape/view, slice") {
  const Tensor a = huge({k62});
  CHECK_THROWS_WITH_AS(cat({a, a}),
                       Contains("cat: tensors of shape like [4611686018427387904] concatenated along dim 0 (sizes "
                                "[4611686018427387904, 4611686018427387904]): the result's size overflows int64"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(cat({huge({2, k62 / 2}), huge({2, k62 / 2})}, 0),
                       Contains("cat: tensors of shape like [2, 2305843009213693952] concatenated along dim 0 (sizes "
                                "[2, 2])"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(stack({a, a}, 1), Contains("cat:"), ShapeError);
  CHECK_THROWS_WITH_AS(split(arange(3), std::vector<std::int64_t>{kMax, 1}),
                       Contains("split: sizes [9223372036854775807, 1] must sum to the size of dim 0 (3), but their sum "
                                "overflows int64"),
                       ShapeError);
  CHECK(chunk(arange(5), kMax).size() == 5);  // pieces of ceil(5 / chunks) = 1 element, as PyTorch
  CHECK_THROWS_WITH_AS(zeros({1, 1}).expand({k40, k40}),
                       Contains("expand: shape [1, 1] cannot be expanded to [1099511627776, 1099511627776]: the "
                                "product of its sizes overflows int64"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(zeros({1, 1}).expand({k40, 0, k40}), Contains("expand: shape [1, 1]"), ShapeError);
  // pad lists (before, after) from the last dim (PyTorch's order, since issue 22)
  CHECK_THROWS_WITH_AS(pad(zeros({1}), {kMax, 1}),
                       Contains("pad: padding dim 0 of shape [1] by (9223372036854775807, 1) overflows int64"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(pad(zeros({1, 1}), {k40, 0, k40, 0}),
                       Contains("pad: shape [1, 1] padded to [1099511627777, 1099511627777]: the product of its sizes "
                                "overflows int64"),
                       ShapeError);
  const Tensor e = zeros({0});
  CHECK_THROWS_WITH_AS(e.reshape({k62, k62, 0}),
                       Contains("view: shape [4611686018427387904, 4611686018427387904, 0] is too large: the product "
                                "of its non-zero sizes overflows int64"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(e.view({-1, k62, k62}),
                       Contains("view: shape [-1, 4611686018427387904, 4611686018427387904] is invalid for input of "
                                "shape [0] (0 elements): the product of its sizes overflows int64"),
                       ShapeError);
  CHECK(e.reshape({k62, 0}).shape() == Shape{k62, 0});
  // a step beyond the size keeps one element (the stride is not multiplied by the step)
  const Tensor s = slice(arange(10.0, 20.0), 0, 3, 10, kMax);
  CHECK(s.shape() == Shape{1});
  CHECK(s.item() == 13.0);
  CHECK(s.unsqueeze(0).item() == 13.0);
}

TEST_CASE("shape overflow: layers and random ranges") {
  CHECK_THROWS_WITH_AS(nn::Linear(k40, k40), Contains("shape [1099511627776, 1099511627776] is too large"), ShapeError);
  // randint over the whole int64 range: hi - lo does not fit int64 (was signed overflow)
  const Tensor r = randint({64}, std::numeric_limits<std::int64_t>::min(), kMax);
  CHECK(r.numel() == 64);
  CHECK_THROWS_WITH_AS(randint({0}, 3, 3), Contains("randint: empty range [3, 3)"), ValueError);
}
