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
#include "layers/recurrent.h"

using namespace ng;
using doctest::Contains;

namespace {
constexpr std::int64_t kI64Max = std::numeric_limits<std::int64_t>::max();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

TEST_CASE("text_windows / sample_windows / word_examples: huge block sizes are errors, not overflow or length_error") {
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
                       Contains("sample_windows: shape [1099511627776, 2] needs"), OutOfMemoryError);
  // word_examples sized a std::vector of block_size (std::length_error, or 2^34 bytes)
  const io::CharVocab vocab = io::CharVocab::from_text(U"ab", U'.');
  CHECK_THROWS_WITH_AS(io::word_examples({U"ab"}, vocab, std::int64_t{1} << 62),
                       Contains("word_examples: shape [3, 4611686018427387904] needs"), OutOfMemoryError);
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

TEST_CASE("full / fill_ / from_vector: NaN, inf and out-of-range values have no int64 value (was undefined behaviour)") {
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

TEST_CASE("fill_: an expanded view (elements sharing memory) is refused, as for copy_") {
  // was: a loop over all 2^40 elements of a view of one element
  Tensor one = zeros({1, 1});
  Tensor wide = one.expand({std::int64_t{1} << 20, std::int64_t{1} << 20});
  CHECK_THROWS_WITH_AS(wide.fill_(1.0), Contains("fill_"), ValueError);
  CHECK(one.to_vector() == std::vector<double>{0});
  Tensor base = zeros({2, 3});
  slice(base, 1, 0, 3, 2).fill_(5.0);  // a strided view is fine
  CHECK(base.to_vector() == std::vector<double>{5, 0, 5, 5, 0, 5});
}
