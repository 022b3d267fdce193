// DataLoader: cuts a TensorDataset into mini-batches, in order or shuffled.
//
//   io::DataLoader loader(train, {.batch_size = 64, .shuffle = true, .seed = 1});
//   for (int e = 0; e < epochs; ++e)
//     for (auto [x, y] : loader) { ... }       // one epoch: x [B, 1, 28, 28], y [B]
//
// Order. With shuffle, each epoch visits the samples in a permutation drawn by Fisher-Yates
// from the loader's own ng::Generator (seeded by `seed`; Generator::randint is exact and
// portable, so the same seed gives the same order on every machine). The generator runs on
// from epoch to epoch, so each epoch gets a new permutation and the whole sequence is fixed
// by the seed.
//
// Epochs and resuming. The loader is a cursor (epoch, batch): the batch about to be
// delivered. A range-for runs from the cursor to the end of the epoch; if the epoch is
// already finished, it first starts the next one. A batch counts as consumed when it is
// delivered, so state() taken inside the loop body (after the optimizer step) resumes
// with the following batch. state() also records the generator state at the start of the
// epoch, from which set_state() re-draws the same permutation: a resumed run sees exactly
// the batches the uninterrupted run would have seen.
//
// Batches are contiguous tensors gathered row by row (one memcpy per sample) into a buffer
// the loader reuses when nothing else holds the previous batch any more (otherwise a new
// buffer is allocated, so a batch you keep is never overwritten).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/random.h"
#include "io/dataset.h"

namespace ng::io {

struct DataLoaderOptions {
  std::int64_t batch_size = 1;
  bool shuffle = false;
  bool drop_last = false;  // drop the last batch when it has fewer than batch_size samples
  std::uint64_t seed = 0;  // seeds the shuffling generator
};

struct Batch {
  Tensor inputs;   // [B, ...] contiguous
  Tensor targets;  // [B, ...] contiguous
};

// Where a loader stands, for checkpoints. to_json()/from_json() give a string that fits a
// safetensors metadata value (io/safetensors.h).
struct DataLoaderState {
  std::int64_t epoch = 0;         // current epoch, from 0
  std::int64_t batch = 0;         // next batch within it; == num_batches when it is finished
  std::string generator;          // Generator::state() before this epoch's shuffle
  std::int64_t num_samples = 0;   // checked on restore: the same data set size
  std::int64_t batch_size = 0;    //                     and batching
  bool shuffle = false;
  bool drop_last = false;

  std::string to_json() const;
  static DataLoaderState from_json(const std::string& text);  // throws ValueError
};

class DataLoader {
 public:
  DataLoader(TensorDataset data, DataLoaderOptions opt);

  // Batches per epoch: ceil(N / batch_size), or floor with drop_last (len(loader) in PyTorch).
  std::int64_t num_batches() const { return num_batches_; }
  std::int64_t size() const { return num_batches_; }
  std::int64_t epoch() const { return epoch_; }
  std::int64_t batch_index() const { return batch_; }
  const TensorDataset& dataset() const { return data_; }
  const DataLoaderOptions& options() const { return opt_; }
  // The sample indices of the current epoch, in visiting order.
  const std::vector<std::int64_t>& order() const { return order_; }

  // The next batch of the current epoch (advancing the cursor); false at the end of the epoch.
  bool next(Batch& out);
  // Starts the next epoch (new permutation when shuffling). range-for does this by itself
  // when it begins on a finished epoch.
  void start_next_epoch();

  DataLoaderState state() const;
  // Restores a state taken from a loader over the same data with the same options
  // (ValueError otherwise); the rest of that epoch follows exactly.
  void set_state(const DataLoaderState& s);

  class iterator {
   public:
    iterator() = default;
    explicit iterator(DataLoader* loader) : loader_(loader) { ++*this; }
    const Batch& operator*() const { return batch_; }
    const Batch* operator->() const { return &batch_; }
    iterator& operator++();
    bool operator==(const iterator& o) const { return loader_ == o.loader_; }

   private:
    DataLoader* loader_ = nullptr;  // nullptr once the epoch is exhausted (== end())
    Batch batch_;
  };
  iterator begin();  // one (remaining) epoch
  iterator end() { return {}; }

 private:
  void shuffle_();  // draws order_ for the current epoch from gen_
  Tensor gather_(const Tensor& src, Tensor& buffer, std::int64_t first, std::int64_t count);

  TensorDataset data_;
  DataLoaderOptions opt_;
  std::int64_t num_batches_ = 0;
  std::int64_t epoch_ = 0;
  std::int64_t batch_ = 0;
  std::vector<std::int64_t> order_;
  Generator gen_;
  std::string epoch_start_state_;  // gen_ before shuffling the current epoch
  Tensor inputs_buffer_, targets_buffer_;
};

}  // namespace ng::io
