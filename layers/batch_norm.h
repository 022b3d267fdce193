// BatchNorm1d and BatchNorm2d (Ioffe & Szegedy 2015): normalize each channel with statistics
// over the batch and the spatial positions. The math lives in ng::batch_norm
// (autograd/ops/norm.cpp); the module owns weight, bias and the running statistics and
// applies PyTorch's rules:
//   training and track_running_stats  -> batch statistics; running stats updated
//   eval and track_running_stats      -> running statistics (the output no longer depends
//                                        on the rest of the batch)
//   track_running_stats = false       -> batch statistics in both modes, no buffers
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "layers/module.h"

namespace ng::nn {

// BatchNormOptions(64).eps(1e-3).momentum(0.1); momentum(std::nullopt) = cumulative average.
struct BatchNormOptions {
  BatchNormOptions(std::int64_t num_features) : num_features_(num_features) {}  // NOLINT: implicit, as PyTorch
  std::int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  std::optional<double> momentum() const { return momentum_; }
  bool affine() const { return affine_; }
  bool track_running_stats() const { return track_running_stats_; }
  BatchNormOptions& eps(double v) { eps_ = v; return *this; }
  BatchNormOptions& momentum(std::optional<double> v) { momentum_ = v; return *this; }
  BatchNormOptions& affine(bool v) { affine_ = v; return *this; }
  BatchNormOptions& track_running_stats(bool v) { track_running_stats_ = v; return *this; }
  DType dtype() const { return dtype_; }
  BatchNormOptions& dtype(DType v) { dtype_ = v; return *this; }  // of the parameters and float buffers

 private:
  std::int64_t num_features_;
  double eps_ = 1e-5;
  std::optional<double> momentum_ = 0.1;  // weight of the new batch (PyTorch's convention)
  bool affine_ = true;
  bool track_running_stats_ = true;
  DType dtype_ = DType::f32;
};

class BatchNormBase : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;  // "32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True"
  const BatchNormOptions& options() const { return opt_; }
  void reset_running_stats();  // running_mean 0, running_var 1, num_batches_tracked 0
  void reset_parameters();     // also weight 1, bias 0

  Tensor weight, bias;                                     // (C), undefined without affine
  Tensor running_mean, running_var, num_batches_tracked;  // undefined without track_running_stats

 protected:
  BatchNormBase(BatchNormOptions opt, const char* name);
  // A state dict without num_batches_tracked (written before PyTorch 0.4.1) loads it as 0.
  void upgrade_state_dict(const std::string& prefix, std::map<std::string, Tensor>& entries) const override;
  // Throws unless x has an accepted rank; returns the name of "values per channel" (N*L, N*H*W).
  virtual const char* check_rank(const Tensor& x) const = 0;

 private:
  BatchNormOptions opt_;
};

// Input (N, C) or (N, C, L).
class BatchNorm1d : public BatchNormBase {
 public:
  explicit BatchNorm1d(BatchNormOptions opt) : BatchNormBase(opt, "BatchNorm1d") {}
  std::string type_name() const override { return "BatchNorm1d"; }

 protected:
  const char* check_rank(const Tensor& x) const override;
};

// Input (N, C, H, W).
class BatchNorm2d : public BatchNormBase {
 public:
  explicit BatchNorm2d(BatchNormOptions opt) : BatchNormBase(opt, "BatchNorm2d") {}
  std::string type_name() const override { return "BatchNorm2d"; }

 protected:
  const char* check_rank(const Tensor& x) const override;
};

}  // namespace ng::nn
