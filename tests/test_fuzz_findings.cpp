// What the API fuzzer (tests/fuzz/api_fuzz.cpp, scripts/fuzz.sh api) found, one regression test
// per fix, each named after the op or layer it is about. The inputs that found them are in
// tests/fuzz/corpus/api/regression_* (replayed by test_api_fuzz_corpus.cpp); docs/reliability.md
// lists them.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "autograd/ops.h"
#include "io/text.h"
#include "layers/attention.h"
#include "layers/recurrent.h"

using namespace ng;
using doctest::Contains;

namespace {
// The allocation limit of 16 MiB the fuzz harness runs with, for the test's scope.
struct FuzzLimit {
  std::uint64_t saved = allocation_limit();
  FuzzLimit() { set_allocation_limit(std::uint64_t{16} << 20); }
  ~FuzzLimit() { set_allocation_limit(saved); }
};
constexpr std::int64_t kI64Max = std::numeric_limits<std::int64_t>::max();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

TEST_CASE("text_windows / sample_windows / word_examples: huge block sizes are errors, not overflow or length_error") {
  const FuzzLimit limit;
  const std::vector<std::int64_t> ids{1, 2, 3, 4, 5};
  // block + 1 overflowed for INT64_MAX (undefined behaviour), then "no window" by luck
  CHECK_THROWS_WITH_AS(io::text_windows(ids, kI64Max, 1),
                       Contains("a text of 5 characters has no window of block_size + 1 = 9223372036854775808"),
                       ValueError);
  CHECK_THROWS_WITH_AS(io::sample_windows(ids, kI64Max, 1, default_generator()),
                       Contains("no window of block_size + 1 = 9223372036854775808"), ValueError);
  // batch x block overflowed int64 before the vectors were sized
  CHECK_THROWS_WITH_AS(io::sample_windows(ids, 2, std::int64_t{1} << 62, default_generator()),
                       Contains("sample_windows: shape [4611686018427387904, 2] is too large"), ShapeError);
  CHECK_THROWS_WITH_AS(io::sample_windows(ids, 2, std::int64_t{1} << 40, default_generator()),
                       Contains("sample_windows: shape [1099511627776, 2] needs"), OutOfMemoryError);  // 16 TB
  // word_examples sized a std::vector of block_size (std::length_error, or 2^34 bytes)
  const io::CharVocab vocab = io::CharVocab::from_text(U"ab", U'.');
  CHECK_THROWS_WITH_AS(io::word_examples({U"ab"}, vocab, std::int64_t{1} << 62),
                       Contains("word_examples: shape [3, 4611686018427387904] is too large"), ShapeError);
  CHECK_THROWS_WITH_AS(io::word_examples({U"ab"}, vocab, std::int64_t{1} << 40),
                       Contains("word_examples: shape [3, 1099511627776] needs"), OutOfMemoryError);
  // still exact for sizes that fit
  const io::TensorDataset w = io::text_windows(ids, 2, 2);
  CHECK(w.inputs.to_vector() == std::vector<double>{1, 2, 3, 4});
  CHECK(w.targets.to_vector() == std::vector<double>{2, 3, 4, 5});
  CHECK(io::word_examples({U"ab"}, vocab, 2).inputs.shape() == Shape{3, 2});
}

TEST_CASE("LSTM / GRU / cells: a hidden_size whose gate rows overflow int64 is a ShapeError") {
  // 4 * hidden_size overflowed computing the weight shapes (undefined behaviour)
  CHECK_THROWS_WITH_AS(nn::LSTM(3, kI64Max), Contains("LSTM: hidden_size 9223372036854775807 is too large: 4 gates"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(nn::GRU(3, std::int64_t{1} << 62), Contains("GRU: hidden_size 4611686018427387904 is too large"),
                       ShapeError);
  CHECK_THROWS_AS(nn::LSTMCell(3, kI64Max), ShapeError);
  CHECK_THROWS_AS(nn::GRUCell(3, std::int64_t{1} << 62), ShapeError);
  nn::RNNOptions bi;
  bi.bidirectional = true;
  CHECK_THROWS_WITH_AS(nn::RNN(3, std::int64_t{1} << 62, bi), Contains("1 gates x 2 direction(s)"), ShapeError);
  CHECK(nn::LSTM(3, 5).parameters().size() == 4);
}

TEST_CASE(
    "full / fill_ / from_vector: NaN, inf and out-of-range values have no int64 value (was undefined behaviour)") {
  for (double v : {kNaN, kInf, -kInf, 1e30, 0x1p63})
    CHECK_THROWS_WITH_AS(full({2}, v, DType::i64), Contains("full: the value"), ValueError);
  CHECK_THROWS_WITH_AS(full({2}, kNaN, DType::i64), Contains("has no int64 value"), ValueError);
  Tensor t = zeros({3}, DType::i64);
  CHECK_THROWS_WITH_AS(t.fill_(-kInf), Contains("fill_: the value -inf has no int64 value"), ValueError);
  CHECK_THROWS_WITH_AS(from_vector({1.0, kNaN}, {2}, DType::i64), Contains("from_vector: the value nan"), ValueError);
  // in range: truncated towards 0, as C++ and PyTorch
  CHECK(full({2}, -2.7, DType::i64).to_vector() == std::vector<double>{-2, -2});
  CHECK(full({1}, -0x1p63, DType::i64).to_vector() == std::vector<double>{-0x1p63});
  CHECK(full({2}, kNaN).to_vector().size() == 2);  // float dtypes hold NaN
}

TEST_CASE("fill_: an expanded view is filled once per memory location (was a loop over every repeated element)") {
  // 2^40 x 2^40 copies of one element: the loop ran over 2^80 elements (2^40 already times out)
  Tensor one = zeros({1, 1});
  Tensor wide = one.expand({std::int64_t{1} << 40, std::int64_t{1} << 20});
  wide.fill_(3.0);
  CHECK(one.to_vector() == std::vector<double>{3});
  Tensor base = zeros({2, 3});
  slice(base, 1, 0, 3, 2).fill_(5.0);  // a strided view
  CHECK(base.to_vector() == std::vector<double>{5, 0, 5, 5, 0, 5});
  Tensor row = zeros({1, 3});
  slice(row.expand({4, 3}), 1, 1, 3).fill_(2.0);  // stride 0 and a slice
  CHECK(row.to_vector() == std::vector<double>{0, 2, 2});
}

TEST_CASE("MultiheadAttention: an embed_dim whose packed projection (3 E rows) overflows int64 is a ShapeError") {
  const FuzzLimit limit;
  // 3 * embed_dim overflowed computing in_proj_weight's shape (undefined behaviour)
  CHECK_THROWS_WITH_AS(nn::MultiheadAttention(nn::MultiheadAttentionOptions(std::int64_t{1} << 62, 1)),
                       Contains("MultiheadAttention: embed_dim 4611686018427387904 is too large"), ShapeError);
  CHECK_THROWS_AS(nn::MultiheadAttention(nn::MultiheadAttentionOptions(std::int64_t{1} << 40, 1)), ShapeError);
  CHECK_THROWS_AS(nn::MultiheadAttention(nn::MultiheadAttentionOptions(std::int64_t{1} << 24, 1)), OutOfMemoryError);
  CHECK(nn::MultiheadAttention(nn::MultiheadAttentionOptions(6, 2)).in_proj_weight.shape() == Shape{18, 6});
}

TEST_CASE("var / std: a correction near INT64_MIN or INT64_MAX (n - correction overflowed int64)") {
  const Tensor x = tensor({1.0, 2.0, 4.0}, {3}, DType::f64);
  // correction INT64_MIN: n - correction = 2^63 + 3, so var = sum(d^2) / 2^63 (tiny, positive)
  const double sum_d2 = 14.0 / 3.0;  // mean 7/3: (4/3)^2 + (1/3)^2 + (5/3)^2
  CHECK(var(x, {}, std::numeric_limits<std::int64_t>::min()).item() == doctest::Approx(sum_d2 / 0x1p63));
  CHECK(std::isinf(var(x, {}, kI64Max).item()));  // n - correction <= 0: inf, as torch.var
  CHECK(var(x, {}, -1).item() == doctest::Approx(sum_d2 / 4));
  CHECK(ng::std(x, {}, 1).item() == doctest::Approx(std::sqrt(sum_d2 / 2)));
}

TEST_CASE("batch_norm: an input with zero channels gives an empty output (was a division by zero)") {
  // (N, 0, L) in training: the column-moments kernel divided its block size by W = 0
  for (DType d : {DType::f32, DType::f64}) {
    const Tensor x = zeros({4, 0, 3}, d).requires_grad_();
    const Tensor y = batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5);
    CHECK(y.shape() == Shape{4, 0, 3});
    // with running statistics of zero channels: their update divided by C = 0
    const Tensor rm = zeros({0}, d), rv = ones({0}, d);
    CHECK(batch_norm(x, rm, rv, Tensor(), Tensor(), true, 0.1, 1e-5).shape() == Shape{4, 0, 3});
    sum(y).backward();
    CHECK(x.grad().shape() == Shape{4, 0, 3});
  }
}

TEST_CASE("max_pool2d / avg_pool2d: a huge padding is the padding ValueError (2 * padding overflowed int64)") {
  const Tensor x = zeros({1, 1, 4, 4});
  CHECK_THROWS_WITH_AS(avg_pool2d(x, {3, 3}, std::nullopt, {kI64Max, 0}),
                       Contains("padding must be between 0 and half the kernel size: kernel (3, 3) vs padding "
                                "(9223372036854775807, 0)"),
                       ValueError);
  CHECK_THROWS_AS(max_pool2d(x, {3, 3}, std::nullopt, {0, kI64Max}), ValueError);
  CHECK_THROWS_AS(avg_pool2d(x, {3, 3}, std::nullopt, {2, 0}), ValueError);         // 2 * 2 > 3
  CHECK(avg_pool2d(x, {3, 3}, std::nullopt, {1, 1}).shape() == Shape{1, 1, 2, 2});  // 2 * 1 <= 3
}

TEST_CASE("pad: replicate by a huge width on an empty batch is refused before sizing the index list") {
  // the output [0, 3 + 2^62] has no elements, but the index list had 2^62 (std::length_error)
  CHECK_THROWS_WITH_AS(pad(zeros({0, 3}), {std::int64_t{1} << 62, 0}, PadMode::replicate),
                       Contains("pad: shape [4611686018427387907] needs"), OutOfMemoryError);
  const Tensor y = pad(tensor({1, 2, 3}, {1, 3}), {2, 1}, PadMode::replicate);
  CHECK(y.to_vector() == std::vector<double>{1, 1, 1, 2, 3, 3});
  CHECK(pad(zeros({0, 3}), {1, 1}, PadMode::replicate).shape() == Shape{0, 5});
}

TEST_CASE("to(int64): NaN, inf and values beyond 2^63 are a ValueError naming the element (was undefined behaviour)") {
  const Tensor x = tensor({1.5, -2.5, kInf}, {3});
  CHECK_THROWS_WITH_AS(x.to(DType::i64), Contains("to: element 2 of shape [3] is inf, which has no int64 value"),
                       ValueError);
  CHECK_THROWS_AS(tensor({kNaN}, {1}, DType::f64).to(DType::i64), ValueError);
  CHECK_THROWS_AS(tensor({1e30}, {1}).to(DType::i64), ValueError);
  CHECK(slice(x, 0, 0, 2).to(DType::i64).to_vector() == std::vector<double>{1, -2});  // truncation towards 0
}

TEST_CASE("softmax / log_softmax: an empty tensor with a huge dim returns at once (was 2^40 empty rows)") {
  const Tensor x = zeros({1, 1}).expand({std::int64_t{1} << 40, 1});  // a view: no memory
  const Tensor e = slice(x, 1, 0, 0);                                 // [2^40, 0]: no elements
  CHECK(softmax(e, 1).shape() == Shape{std::int64_t{1} << 40, 0});
  CHECK(log_softmax(e, 1).numel() == 0);
  CHECK(softmax(tensor({0.0, 0.0}, {2}), 0).to_vector() == std::vector<double>{0.5, 0.5});
}

TEST_CASE("pad (constant): a crop on one side and growth on the other give size n + before + after, as PyTorch") {
  // was: the crop stopped at the input's edge, so [0, 0, 0] by (7, -1) on dim 1 had 7 rows, not 6
  CHECK(pad(zeros({0, 0, 0}), {7, 4, 7, -1, 6, 4}).shape() == Shape{10, 6, 11});
  // n = 2 by (3, -3): out[o] = in[o - 3] for o = 0, 1: both outside: two fill values
  CHECK(pad(tensor({1, 2}, {2}), {3, -3}, PadMode::constant, 9.0).to_vector() == std::vector<double>{9, 9});
  CHECK(pad(tensor({1, 2, 3}, {3}), {-4, 3}, PadMode::constant, 9.0).to_vector() == std::vector<double>{9, 9});
  CHECK(pad(tensor({1, 2, 3}, {3}), {-1, 2}, PadMode::constant, 9.0).to_vector() == std::vector<double>{2, 3, 9, 9});
  CHECK(pad(tensor({1, 2, 3}, {3}), {2, -2}, PadMode::constant, 9.0).to_vector() == std::vector<double>{9, 9, 1});
  // widths near INT64_MIN / INT64_MAX whose sum fits: the crop is clamped before negating
  const std::int64_t lo = std::numeric_limits<std::int64_t>::min();
  // 2 + (-2^63) + (2^63 - 1) = 1 row: out[0] = in[0 + 2^63], outside: the fill value
  CHECK(pad(tensor({1, 2}, {2}), {lo, kI64Max}).to_vector() == std::vector<double>{0});
  CHECK_THROWS_WITH_AS(pad(tensor({1, 2}, {1, 2}), {lo, kI64Max}, PadMode::replicate),
                       Contains("pad: mode 'replicate' crops at most the whole dim"), ValueError);
}

TEST_CASE(
    "split / chunk: a number of pieces beyond the allocation limit is an OutOfMemoryError (was 16 GB of headers)") {
  const FuzzLimit limit;
  const Tensor empty_dim = zeros({0, 2});
  CHECK_THROWS_WITH_AS(chunk(empty_dim, std::int64_t{1} << 31, 0), Contains("chunk: 2147483648 pieces"),
                       OutOfMemoryError);
  const Tensor rows = zeros({1, 1}).expand({std::int64_t{1} << 40, 1});  // 2^40 rows, one element of memory
  CHECK_THROWS_WITH_AS(split(rows, 1, 0), Contains("split: 1099511627776 pieces"), OutOfMemoryError);
  CHECK(chunk(empty_dim, 3, 0).size() == 3);
  CHECK(split(rows, std::int64_t{1} << 39, 0).size() == 2);
}

TEST_CASE("batch_norm (eval, float32): backward without parameter gradients (was an offset on a null buffer)") {
  // float32 rows kernel, no weight/bias: the per-group gradient buffers are empty, and their
  // data() (null) was offset by g * K (undefined behaviour under UBSan)
  const Tensor x = tensor({1, 2, 3, 4, 5, 6}, {2, 3}).requires_grad_();
  const Tensor m = zeros({3}), v = ones({3});
  const Tensor y = batch_norm(x, m, v, Tensor(), Tensor(), false, 0.1, 0.0 + 1e-5);
  sum(mul(y, y)).backward();
  // y = x / sqrt(1 + eps): dy^2/dx = 2 x / (1 + eps)
  const std::vector<double> g = x.grad().to_vector();
  for (std::size_t k = 0; k < g.size(); ++k)
    CHECK(g[k] == doctest::Approx(2.0 * static_cast<double>(k + 1) / (1 + 1e-5)));
}

TEST_CASE("instance_norm / layer_norm: an empty batch with a huge normalized extent (block size overflowed int64)") {
  // [0, 2, 2^62] as a view: no elements, but count x sizeof(T) = 2^64 computing the block size
  const Tensor x = slice(zeros({1, 1, 1}).expand({1, 1, std::int64_t{1} << 62}), 0, 0, 0);
  CHECK(instance_norm(x).shape() == Shape{0, 1, std::int64_t{1} << 62});
  CHECK(layer_norm(x, Shape{std::int64_t{1} << 62}).numel() == 0);
}

TEST_CASE("scaled_dot_product_attention: empty inputs with a huge batch finish at once") {
  // q, k, v [2^20, 0, 3]: no work; the kernel walked 2^20 empty batch products (2^40 timed out)
  const std::int64_t B = std::int64_t{1} << 20;
  const Tensor q = zeros({1, 0, 3}).expand({B, 0, 3});
  const Tensor o = scaled_dot_product_attention(q, q, q);
  CHECK(o.shape() == Shape{B, 0, 3});
  // S = 0 with queries: each output row is an empty sum, 0
  const Tensor q1 = zeros({2, 1, 3}), k0 = zeros({2, 0, 3});
  CHECK(scaled_dot_product_attention(q1, k0, k0).to_vector() == std::vector<double>(6, 0.0));
}

TEST_CASE("cross_entropy: probability targets with zero classes have loss 0 per sample, mean 0 (was 0/0 = NaN)") {
  // (N, C, d) = (1, 0, 5): five samples, each an empty sum over classes; mean divided by numel / C = 0
  const Tensor x = zeros({1, 0, 5}, DType::f64), t = zeros({1, 0, 5}, DType::f64);
  CHECK(cross_entropy(x, t).item() == 0.0);
  CHECK(cross_entropy(x, t, Reduction::none).shape() == Shape{1, 5});
  // C > 0 unchanged: uniform logits, one-hot targets: log 3 per sample
  const Tensor t3 = tensor({1, 0, 0, 0, 1, 0}, {2, 3}, DType::f64);
  CHECK(cross_entropy(zeros({2, 3}, DType::f64), t3).item() == doctest::Approx(std::log(3.0)));
}

TEST_CASE("cross_entropy: label smoothing with zero classes adds nothing (was 0 * eps / 0 = NaN)") {
  // (N, C, d) = (0, 0, 3), class targets (0, 3): no samples; the smoothing term was sum * (eps / 0)
  const Tensor x = zeros({0, 0, 3}), t = zeros({0, 3}, DType::i64);
  LossOptions o;
  o.reduction = Reduction::sum;
  o.label_smoothing = 0.1;
  CHECK(cross_entropy(x, t, o).item() == 0.0);
  // C > 0 unchanged: uniform logits: every term is log 3
  o.reduction = Reduction::mean;
  CHECK(cross_entropy(zeros({2, 3}), tensor({0, 2}, {2}, DType::i64), o).item() == doctest::Approx(std::log(3.0)));
}
