// LayerNorm (Ba, Kiros & Hinton 2016): normalize each sample over its trailing
// `normalized_shape` dims, with an elementwise weight and bias of that shape. Same statistics
// in training and eval, no buffers. The math lives in ng::layer_norm (autograd/ops/norm.cpp).
#pragma once
#include <string>

#include "layers/module.h"

namespace ng::nn {

// LayerNormOptions({4, 5}).eps(1e-6).elementwise_affine(true).bias(false)
struct LayerNormOptions {
  LayerNormOptions(Shape normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}  // NOLINT: implicit
  const Shape& normalized_shape() const { return normalized_shape_; }
  double eps() const { return eps_; }
  bool elementwise_affine() const { return elementwise_affine_; }
  bool bias() const { return bias_; }
  LayerNormOptions& eps(double v) { eps_ = v; return *this; }
  LayerNormOptions& elementwise_affine(bool v) { elementwise_affine_ = v; return *this; }
  LayerNormOptions& bias(bool v) { bias_ = v; return *this; }  // only with elementwise_affine
  DType dtype() const { return dtype_; }
  LayerNormOptions& dtype(DType v) { dtype_ = v; return *this; }  // of the parameters and float buffers

 private:
  Shape normalized_shape_;
  double eps_ = 1e-5;
  bool elementwise_affine_ = true;
  bool bias_ = true;
  DType dtype_ = DType::f32;
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(LayerNormOptions opt);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LayerNorm"; }
  std::string extra_repr() const override;  // "(5,), eps=1e-05, elementwise_affine=True"
  const LayerNormOptions& options() const { return opt_; }

  Tensor weight, bias;  // normalized_shape; undefined without elementwise_affine (bias: or bias(false))

 private:
  LayerNormOptions opt_;
};

}  // namespace ng::nn
