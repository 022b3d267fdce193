// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * weight over the trailing
// `normalized_shape` dims: LayerNorm without re-centering and without bias. The math lives in
// ng::rms_norm (autograd/ops/norm.cpp). eps unset = the machine epsilon of the input's dtype
// (as torch.nn.RMSNorm).
#pragma once
#include <optional>
#include <string>

#include "layers/module.h"

namespace ng::nn {

// RMSNormOptions({8}).eps(1e-6).elementwise_affine(true)
struct RMSNormOptions {
  RMSNormOptions(Shape normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}  // NOLINT: implicit
  const Shape& normalized_shape() const { return normalized_shape_; }
  std::optional<double> eps() const { return eps_; }
  bool elementwise_affine() const { return elementwise_affine_; }
  RMSNormOptions& eps(std::optional<double> v) { eps_ = v; return *this; }
  RMSNormOptions& elementwise_affine(bool v) { elementwise_affine_ = v; return *this; }
  DType dtype() const { return dtype_; }
  RMSNormOptions& dtype(DType v) { dtype_ = v; return *this; }  // of the parameters and float buffers

 private:
  Shape normalized_shape_;
  std::optional<double> eps_;
  bool elementwise_affine_ = true;
  DType dtype_ = DType::f32;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(RMSNormOptions opt);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "RMSNorm"; }
  std::string extra_repr() const override;  // "(5,), eps=None, elementwise_affine=True"
  const RMSNormOptions& options() const { return opt_; }

  Tensor weight;  // normalized_shape; undefined without elementwise_affine

 private:
  RMSNormOptions opt_;
};

}  // namespace ng::nn
