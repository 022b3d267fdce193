// Activation modules (torch.nn.ReLU, LeakyReLU, Tanh, Sigmoid, GELU): parameter-free wrappers
// of the elementwise ops in autograd/ops.h.
#pragma once
#include "layers/module.h"

namespace ng::nn {

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string type_name() const override { return "ReLU"; }
};

// y = x if x >= 0 else negative_slope * x
class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double slope = 0.01) : negative_slope(slope) {}
  Tensor forward(const Tensor& x) override { return leaky_relu(x, negative_slope); }
  std::string type_name() const override { return "LeakyReLU"; }
  std::string extra_repr() const override;
  double negative_slope;
};

class Tanh : public Module {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
  std::string type_name() const override { return "Tanh"; }
};

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
  std::string type_name() const override { return "Sigmoid"; }
};

// The exact GELU, x * Phi(x) (PyTorch's approximate='none').
class GELU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return gelu(x); }
  std::string type_name() const override { return "GELU"; }
  std::string extra_repr() const override { return "approximate='none'"; }
};

}  // namespace ng::nn
