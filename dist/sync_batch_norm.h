// SyncBatchNorm (torch.nn.SyncBatchNorm): BatchNorm whose training statistics come from the
// whole global batch, spread over the ranks of a process group, instead of each rank's share.
// With a per-rank batch of 2-8, per-rank BatchNorm normalizes with very noisy statistics (and
// trains a different function from one process on the whole batch); SyncBatchNorm computes
// exactly what BatchNorm on the concatenated batch computes, at the price of communication in
// every training forward and backward. LayerNorm and GroupNorm need none: their statistics
// never cross samples.
//
// The math (Ioffe & Szegedy 2015, Alg. 1; moments merged as Chan, Golub & LeVeque 1979).
// x is (N_r, C, *) on rank r; per channel c and rank r, over its n_r = N_r * prod(*) values:
//   forward   local   n_r, mean_r, m2_r (sum of squared deviations; the norm core's moments)
//             all_gather [3, C] -> merge ranks 0..R-1 in order (Chan): n, mean, m2; n_r = 0 is
//             allowed (the rank adds nothing); n <= 1 is the BatchNorm error on every rank
//             var = m2 / n (biased), rstd = 1 / sqrt(var + eps), xhat = (x - mean) * rstd
//             y = xhat * weight + bias
//             running_mean <- (1-f) running_mean + f mean; running_var <- (1-f) running_var
//             + f m2 / (n - 1): the same numbers on every rank (the merge order is fixed)
//   backward  local   sum_dy = sum dy, sum_dy_xhat = sum dy * xhat;   all_reduce [2, C] (sum)
//             dx = weight * rstd / n * (n dy - SUM_dy - xhat SUM_dy_xhat)    (global sums)
//             dweight = local sum_dy_xhat, dbias = local sum_dy
// The parameter gradients stay local, as in PyTorch: DistributedDataParallel averages them
// with the other parameters' (and the average of the ranks' losses is the global loss).
// Per layer and step: one all-gather of 3C doubles forward, one all-reduce of 2C doubles
// backward (docs/distributed.md has the cost).
//
// Eval mode is BatchNorm's (running statistics, no communication). Without a process group
// (none given and ng::dist not initialized) or with a group of one process, SyncBatchNorm is
// BatchNorm exactly (the same op), as PyTorch's falls back to batch_norm. Double backward
// through the communicating op is not implemented: it throws AutogradError.
#pragma once
#include <memory>
#include <optional>

#include "dist/process_group.h"
#include "layers/batch_norm.h"

namespace ng::dist {

// The training forward above on the group's ranks (always the communicating kernel, even
// for a group of one: the tests check it against BatchNorm). x (N, C, *) with N >= 0;
// weight, bias (C) optional; running statistics and num_batches_tracked optional (updated
// in place when given; momentum nullopt: cumulative average as in ng::batch_norm).
Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, std::optional<double> momentum, double eps,
                       const Tensor& num_batches_tracked, const ProcessGroupPtr& group);

}  // namespace ng::dist

namespace ng::nn {

// Input (N, C, *) of any rank >= 2 (as PyTorch's). state_dict names: BatchNorm's.
class SyncBatchNorm : public BatchNormBase {
 public:
  explicit SyncBatchNorm(BatchNormOptions opt, dist::ProcessGroupPtr process_group = nullptr);
  // A SyncBatchNorm sharing bn's parameters and buffers (the same tensors: an optimizer built
  // on the old module keeps working) and its training mode.
  static std::shared_ptr<SyncBatchNorm> from_batch_norm(const BatchNormBase& bn,
                                                        dist::ProcessGroupPtr process_group = nullptr);

  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SyncBatchNorm"; }
  // The group the statistics are reduced over: the one given, else the world (if initialized).
  dist::ProcessGroupPtr process_group() const;

 protected:
  const char* check_rank(const Tensor& x) const override;

 private:
  dist::ProcessGroupPtr group_;
};

}  // namespace ng::nn

namespace ng::dist {

// torch.nn.SyncBatchNorm.convert_sync_batchnorm: every BatchNorm1d/2d in the tree becomes a
// SyncBatchNorm sharing its parameters and buffers. Returns the module (a new one if `module`
// itself is a BatchNorm). Children are swapped with Module::replace_child, so a custom module
// that keeps its own pointer to a BatchNorm child must update it in child_replaced.
nn::ModulePtr convert_sync_batchnorm(nn::ModulePtr module, ProcessGroupPtr process_group = nullptr);

}  // namespace ng::dist
