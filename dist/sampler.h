// DistributedSampler: which samples each rank trains on, with torch.utils.data.distributed.
// DistributedSampler's semantics. Every rank builds the same sampler (same dataset size,
// seed and epoch) and takes its own shard:
//
//   order    = a permutation of 0..N-1 drawn from Generator(seed + epoch) if shuffle, else 0..N-1
//   drop_last: num_samples = floor(N / R); order is cut to R * num_samples
//   else:      num_samples = ceil(N / R);  order is padded to R * num_samples by repeating
//              its beginning (cyclically if the padding is longer than N)
//   shard(r) = order[r], order[r + R], order[r + 2R], ...          (num_samples indices)
//
// So the shards are disjoint (without padding) and of equal length on every rank, as
// collectives in the training step need: every rank does the same number of steps. Call
// set_epoch(e) before each epoch, or every epoch sees the same order. The permutation comes
// from normgrad's portable Generator (Fisher-Yates, as io::DataLoader), so it is the same on
// every machine but not torch.randperm's.
//
//   dist::DistributedSampler sampler(train.size(), {.shuffle = true, .seed = 1});
//   for (int e = 0; e < epochs; ++e) {
//     sampler.set_epoch(e);
//     io::DataLoader loader(sampler.shard(train), {.batch_size = 64});  // in shard order
//     for (auto [x, y] : loader) ...
//   }
#pragma once
#include <cstdint>
#include <vector>

#include "dist/process_group.h"
#include "io/dataset.h"

namespace ng::dist {

struct DistributedSamplerOptions {
  int num_replicas = -1;   // R; -1: the size of the group (world by default)
  int rank = -1;           // -1: this process's rank in the group
  bool shuffle = true;
  std::uint64_t seed = 0;  // must be the same on every rank
  bool drop_last = false;
  ProcessGroupPtr process_group = nullptr;  // where num_replicas/rank come from; nullptr: the world
};

class DistributedSampler {
 public:
  // ValueError for dataset_size < 0, num_replicas < 1, or rank outside [0, num_replicas).
  DistributedSampler(std::int64_t dataset_size, DistributedSamplerOptions opt = {});

  void set_epoch(std::int64_t epoch) { epoch_ = epoch; }
  std::int64_t epoch() const { return epoch_; }
  int num_replicas() const { return replicas_; }
  int rank() const { return rank_; }
  // Indices per rank and per epoch (len(sampler) in PyTorch), and over all ranks.
  std::int64_t num_samples() const { return num_samples_; }
  std::int64_t size() const { return num_samples_; }
  std::int64_t total_size() const { return num_samples_ * replicas_; }

  // This rank's indices for the current epoch, in order.
  std::vector<std::int64_t> indices() const;
  // The samples at indices(), gathered into a new dataset (the same rows, in that order).
  io::TensorDataset shard(const io::TensorDataset& data) const;

 private:
  std::int64_t n_;
  DistributedSamplerOptions opt_;
  int replicas_ = 1, rank_ = 0;
  std::int64_t num_samples_ = 0;
  std::int64_t epoch_ = 0;
};

}  // namespace ng::dist
