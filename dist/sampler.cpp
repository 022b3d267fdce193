#include "dist/sampler.h"

#include <numeric>

#include "autograd/ops.h"
#include "autograd/random.h"
#include "dist/dist.h"

namespace ng::dist {

DistributedSampler::DistributedSampler(std::int64_t dataset_size, DistributedSamplerOptions opt)
    : n_(dataset_size), opt_(std::move(opt)) {
  if (n_ < 0) fail<ValueError>("DistributedSampler: dataset_size must be >= 0: got {}", n_);
  ProcessGroupPtr g = group_or_world(opt_.process_group);
  if (opt_.num_replicas == -1) replicas_ = g ? g->size() : 1;
  else replicas_ = opt_.num_replicas;
  if (opt_.rank == -1) rank_ = g ? g->rank() : 0;
  else rank_ = opt_.rank;
  if (replicas_ < 1) fail<ValueError>("DistributedSampler: num_replicas must be >= 1: got {}", replicas_);
  if (rank_ < 0 || rank_ >= replicas_)
    fail<ValueError>("DistributedSampler: invalid rank {}: rank must be in [0, {}] (num_replicas - 1)", rank_,
                     replicas_ - 1);
  num_samples_ = opt_.drop_last ? n_ / replicas_ : (n_ + replicas_ - 1) / replicas_;
}

std::vector<std::int64_t> DistributedSampler::indices() const {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n_));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  if (opt_.shuffle) {
    Generator gen(opt_.seed + static_cast<std::uint64_t>(epoch_));
    for (std::int64_t i = n_ - 1; i > 0; --i)  // Fisher-Yates
      std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(gen.randint(0, i + 1))]);
  }
  const std::int64_t total = total_size();
  // Pad by repeating the order from its start (drop_last: total <= n_, nothing to pad).
  for (std::int64_t i = n_; i < total; ++i) order.push_back(order[static_cast<std::size_t>((i - n_) % n_)]);
  std::vector<std::int64_t> mine;
  mine.reserve(static_cast<std::size_t>(num_samples_));
  for (std::int64_t i = rank_; i < total; i += replicas_) mine.push_back(order[static_cast<std::size_t>(i)]);
  return mine;
}

io::TensorDataset DistributedSampler::shard(const io::TensorDataset& data) const {
  if (data.size() != n_)
    fail<ShapeError>("DistributedSampler::shard: the sampler was made for {} samples, the dataset has {}", n_,
                     data.size());
  NoGradGuard no_grad;
  const std::vector<std::int64_t> idx = indices();
  Tensor index = from_vector(idx, Shape{static_cast<std::int64_t>(idx.size())});
  return {index_select(data.inputs, 0, index), index_select(data.targets, 0, index)};
}

}  // namespace ng::dist
