// DataLoader: batching, order, seeding, drop_last, buffer reuse and exact resumption.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "io/data_loader.h"

using ng::io::Batch;
using ng::io::DataLoader;
using ng::io::TensorDataset;

namespace {

// n samples: input row i is [3i, 3i+1, 3i+2] (float32), target i is i (int64), so every
// batch shows which samples it holds and whether inputs and targets stayed paired.
TensorDataset numbered(std::int64_t n) {
  return {ng::arange(0.0, static_cast<double>(3 * n)).reshape({n, 3}), ng::arange(n, ng::DType::i64)};
}

// The targets of every batch of one (remaining) epoch, checking input/target pairing.
std::vector<std::vector<std::int64_t>> run_epoch(DataLoader& loader) {
  std::vector<std::vector<std::int64_t>> batches;
  for (auto [x, y] : loader) {
    REQUIRE(x.is_contiguous());
    REQUIRE(y.is_contiguous());
    REQUIRE(x.size(0) == y.size(0));
    std::vector<std::int64_t> ids(y.data<std::int64_t>(), y.data<std::int64_t>() + y.numel());
    for (std::int64_t i = 0; i < x.size(0); ++i)
      for (std::int64_t j = 0; j < 3; ++j) CHECK(x.at({i, j}) == static_cast<double>(3 * ids[static_cast<std::size_t>(i)] + j));
    batches.push_back(std::move(ids));
  }
  return batches;
}

std::vector<std::int64_t> flat(const std::vector<std::vector<std::int64_t>>& batches) {
  std::vector<std::int64_t> out;
  for (const auto& b : batches) out.insert(out.end(), b.begin(), b.end());
  return out;
}

}  // namespace

TEST_CASE("DataLoader: in order, batch counts, last batch, drop_last") {
  DataLoader loader(numbered(7), {.batch_size = 3});
  CHECK(loader.num_batches() == 3);
  const auto batches = run_epoch(loader);
  CHECK(batches == std::vector<std::vector<std::int64_t>>{{0, 1, 2}, {3, 4, 5}, {6}});

  DataLoader dropping(numbered(7), {.batch_size = 3, .drop_last = true});
  CHECK(dropping.num_batches() == 2);
  CHECK(run_epoch(dropping) == std::vector<std::vector<std::int64_t>>{{0, 1, 2}, {3, 4, 5}});

  // ceil(N / B) without drop_last, floor with it.
  for (std::int64_t n : {0, 1, 5, 6, 7}) {
    for (std::int64_t b : {1, 2, 3, 7, 9}) {
      CAPTURE(n);
      CAPTURE(b);
      CHECK(DataLoader(numbered(n), {.batch_size = b}).num_batches() == (n + b - 1) / b);
      CHECK(DataLoader(numbered(n), {.batch_size = b, .drop_last = true}).num_batches() == n / b);
    }
  }
  DataLoader empty(numbered(0), {.batch_size = 2});
  CHECK(run_epoch(empty).empty());
}

TEST_CASE("DataLoader: a multi-dimensional, non-contiguous dataset is gathered row by row") {
  // inputs [5, 2, 3] built as a transpose, so not contiguous in memory.
  const ng::Tensor base = ng::arange(0.0, 30.0, 1.0, ng::DType::f64).reshape({5, 3, 2});
  const ng::Tensor inputs = base.transpose(1, 2);
  REQUIRE_FALSE(inputs.is_contiguous());
  DataLoader loader({inputs, ng::arange(5, ng::DType::i64)}, {.batch_size = 2, .shuffle = true, .seed = 3});
  for (auto [x, y] : loader) {
    CHECK(x.shape() == ng::Shape{y.size(0), 2, 3});
    CHECK(x.dtype() == ng::DType::f64);
    for (std::int64_t i = 0; i < x.size(0); ++i) {
      const auto s = static_cast<std::int64_t>(y.at({i}));
      for (std::int64_t a = 0; a < 2; ++a)
        for (std::int64_t c = 0; c < 3; ++c) CHECK(x.at({i, a, c}) == inputs.at({s, a, c}));
    }
  }
}

TEST_CASE("DataLoader: shuffling is a seeded permutation, new every epoch") {
  DataLoader a(numbered(50), {.batch_size = 4, .shuffle = true, .seed = 7});
  DataLoader b(numbered(50), {.batch_size = 4, .shuffle = true, .seed = 7});
  DataLoader c(numbered(50), {.batch_size = 4, .shuffle = true, .seed = 8});
  std::vector<std::int64_t> identity(50);
  std::iota(identity.begin(), identity.end(), 0);

  const auto a0 = flat(run_epoch(a));
  const auto a1 = flat(run_epoch(a));
  CHECK(a.epoch() == 1);
  auto sorted = a0;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == identity);  // every sample exactly once
  CHECK(a0 != identity);
  CHECK(a1 != a0);            // reshuffled for the next epoch
  CHECK(flat(run_epoch(b)) == a0);
  CHECK(flat(run_epoch(b)) == a1);
  CHECK(flat(run_epoch(c)) != a0);

  // The order is fixed by the seed on every machine: Fisher-Yates over the standard-defined
  // mt19937_64 stream. These are the first two epochs for seed 42, 10 samples.
  DataLoader pinned(numbered(10), {.batch_size = 10, .shuffle = true, .seed = 42});
  CHECK(flat(run_epoch(pinned)) == std::vector<std::int64_t>{1, 7, 9, 0, 3, 8, 4, 2, 5, 6});
  CHECK(flat(run_epoch(pinned)) == std::vector<std::int64_t>{1, 2, 8, 0, 5, 4, 3, 6, 9, 7});
}

TEST_CASE("DataLoader: a batch you keep is never overwritten, and released buffers are reused") {
  DataLoader loader(numbered(9), {.batch_size = 3});
  Batch first, second;
  REQUIRE(loader.next(first));
  const std::vector<double> first_values = first.inputs.to_vector();
  REQUIRE(loader.next(second));  // `first` still held: a fresh buffer
  CHECK(first.inputs.to_vector() == first_values);
  CHECK(first.inputs.data<float>() != second.inputs.data<float>());

  // Released batch: the next one lands in the same memory.
  Batch b;
  DataLoader reuse(numbered(9), {.batch_size = 3});
  REQUIRE(reuse.next(b));
  const float* where = b.inputs.data<float>();
  REQUIRE(reuse.next(b));
  CHECK(b.inputs.data<float>() == where);
  CHECK(b.targets.to_vector() == std::vector<double>{3, 4, 5});
  REQUIRE(reuse.next(b));
  CHECK_FALSE(reuse.next(b));  // end of the epoch
  CHECK_FALSE(b.inputs.defined());
}

TEST_CASE("DataLoader: state() / set_state() resume at the exact batch") {
  const auto options = ng::io::DataLoaderOptions{.batch_size = 3, .shuffle = true, .drop_last = false, .seed = 11};
  DataLoader uninterrupted(numbered(10), options);
  std::vector<std::vector<std::int64_t>> reference;  // epochs 0, 1, 2
  for (int e = 0; e < 3; ++e) {
    const auto batches = run_epoch(uninterrupted);
    reference.insert(reference.end(), batches.begin(), batches.end());
  }
  REQUIRE(reference.size() == 12);

  // Interrupted after batch 1 of epoch 1 (6 batches consumed), saved through JSON.
  DataLoader first_run(numbered(10), options);
  run_epoch(first_run);
  std::string saved;
  int seen = 0;
  for (auto [x, y] : first_run) {
    (void)x;
    (void)y;
    if (++seen == 2) {
      saved = first_run.state().to_json();  // taken after consuming the batch
      break;
    }
  }
  const auto state = ng::io::DataLoaderState::from_json(saved);
  CHECK(state.epoch == 1);
  CHECK(state.batch == 2);

  DataLoader resumed(numbered(10), options);
  resumed.set_state(state);
  std::vector<std::vector<std::int64_t>> rest = run_epoch(resumed);  // batches 2, 3 of epoch 1
  const auto next_epoch = run_epoch(resumed);
  rest.insert(rest.end(), next_epoch.begin(), next_epoch.end());
  CHECK(rest == std::vector<std::vector<std::int64_t>>(reference.begin() + 6, reference.end()));
  CHECK(resumed.epoch() == 2);

  // A finished epoch's state resumes with the next epoch.
  DataLoader done(numbered(10), options);
  run_epoch(done);
  DataLoader after(numbered(10), options);
  after.set_state(done.state());
  CHECK(run_epoch(after) == std::vector<std::vector<std::int64_t>>(reference.begin() + 4, reference.begin() + 8));
}

TEST_CASE("DataLoader: errors") {
  CHECK_THROWS_WITH_AS(DataLoader(numbered(4), {.batch_size = 0}), doctest::Contains("batch_size must be positive"),
                       ng::ValueError);
  CHECK_THROWS_WITH_AS(DataLoader({ng::zeros({4, 2}), ng::zeros({3}, ng::DType::i64)}, {.batch_size = 2}),
                       doctest::Contains("differ in the number of samples: 4 vs 3"), ng::ShapeError);
  CHECK_THROWS_WITH_AS(DataLoader({ng::zeros({4, 2}), ng::Tensor()}, {.batch_size = 2}),
                       doctest::Contains("needs both inputs and targets"), ng::ValueError);
  DataLoader a(numbered(10), {.batch_size = 3, .shuffle = true});
  DataLoader b(numbered(10), {.batch_size = 4, .shuffle = true});
  CHECK_THROWS_WITH_AS(b.set_state(a.state()), doctest::Contains("belongs to another loader"), ng::ValueError);
  CHECK_THROWS_WITH_AS(ng::io::DataLoaderState::from_json("{\"epoch\": 1}"), doctest::Contains("malformed state"),
                       ng::ValueError);
}
