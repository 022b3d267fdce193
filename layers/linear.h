// Linear: y = x W^T + b, as torch.nn.Linear. x (..., in_features) -> y (..., out_features).
// weight (out_features, in_features), bias (out_features). Default initialization as PyTorch:
// W ~ kaiming_uniform_(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), b ~ U(-1/sqrt(in), 1/sqrt(in)).
#pragma once
#include "layers/module.h"

namespace ng::nn {

class Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true, Generator* gen = nullptr,
         DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override;
  // Re-draw weight and bias with the default initialization.
  void reset_parameters(Generator* gen = nullptr);

  std::int64_t in_features, out_features;
  Tensor weight, bias;  // bias undefined when constructed with bias = false
};

// Identity: returns its input (a placeholder in Sequential, as torch.nn.Identity).
class Identity : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Identity"; }
};

}  // namespace ng::nn
