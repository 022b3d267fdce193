// GroupNorm (Wu & He 2018) and InstanceNorm2d (Ulyanov, Vedaldi & Lempitsky 2016): per-sample
// statistics, so the output of one sample never depends on the rest of the batch.
//   GroupNorm:    statistics per (sample, group of C / num_groups channels)
//   InstanceNorm: statistics per (sample, channel) = GroupNorm with num_groups = C
// Both have a per-channel affine. The math lives in autograd/ops/norm.cpp.
#pragma once
#include <cstdint>
#include <string>

#include "layers/module.h"

namespace ng::nn {

// GroupNormOptions(num_groups, num_channels).eps(1e-5).affine(true)
struct GroupNormOptions {
  GroupNormOptions(std::int64_t num_groups, std::int64_t num_channels) : num_groups_(num_groups), num_channels_(num_channels) {}
  std::int64_t num_groups() const { return num_groups_; }
  std::int64_t num_channels() const { return num_channels_; }
  double eps() const { return eps_; }
  bool affine() const { return affine_; }
  GroupNormOptions& eps(double v) { eps_ = v; return *this; }
  GroupNormOptions& affine(bool v) { affine_ = v; return *this; }
  DType dtype() const { return dtype_; }
  GroupNormOptions& dtype(DType v) { dtype_ = v; return *this; }  // of the parameters and float buffers

 private:
  std::int64_t num_groups_, num_channels_;
  double eps_ = 1e-5;
  bool affine_ = true;
  DType dtype_ = DType::f32;
};

// Input (N, C, *).
class GroupNorm : public Module {
 public:
  explicit GroupNorm(GroupNormOptions opt);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "GroupNorm"; }
  std::string extra_repr() const override;  // "2, 6, eps=1e-05, affine=True"
  const GroupNormOptions& options() const { return opt_; }

  Tensor weight, bias;  // (C), undefined without affine

 private:
  GroupNormOptions opt_;
};

// InstanceNormOptions(num_features).eps(1e-5).momentum(0.1).affine(false).track_running_stats(false)
// (PyTorch's defaults: no affine, no running statistics).
struct InstanceNormOptions {
  InstanceNormOptions(std::int64_t num_features) : num_features_(num_features) {}  // NOLINT: implicit
  std::int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  bool affine() const { return affine_; }
  bool track_running_stats() const { return track_running_stats_; }
  InstanceNormOptions& eps(double v) { eps_ = v; return *this; }
  InstanceNormOptions& momentum(double v) { momentum_ = v; return *this; }
  InstanceNormOptions& affine(bool v) { affine_ = v; return *this; }
  InstanceNormOptions& track_running_stats(bool v) { track_running_stats_ = v; return *this; }
  DType dtype() const { return dtype_; }
  InstanceNormOptions& dtype(DType v) { dtype_ = v; return *this; }  // of the parameters and float buffers

 private:
  std::int64_t num_features_;
  double eps_ = 1e-5;
  double momentum_ = 0.1;
  bool affine_ = false;
  bool track_running_stats_ = false;
  DType dtype_ = DType::f32;
};

// Input (N, C, H, W), or unbatched (C, H, W). With track_running_stats, training updates
// running_mean / running_var (batch averages of the per-instance statistics) and eval uses
// them; num_batches_tracked is kept for state_dict compatibility with PyTorch, which never
// increments it for instance norm.
class InstanceNorm2d : public Module {
 public:
  explicit InstanceNorm2d(InstanceNormOptions opt);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "InstanceNorm2d"; }
  std::string extra_repr() const override;  // "3, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False"
  const InstanceNormOptions& options() const { return opt_; }

  Tensor weight, bias;
  Tensor running_mean, running_var, num_batches_tracked;

 protected:
  // As BatchNorm: a missing num_batches_tracked loads as 0.
  void upgrade_state_dict(const std::string& prefix, std::map<std::string, Tensor>& entries) const override;

 private:
  InstanceNormOptions opt_;
};

}  // namespace ng::nn
