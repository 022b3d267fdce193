// SGD with momentum, dampening, Nesterov momentum and L2 weight decay, as torch.optim.SGD.
//
// For each parameter p with gradient g, per step t (PyTorch's documented algorithm):
//   g   <- g + weight_decay * p                           (if weight_decay != 0)
//   if momentum != 0:
//     b <- g                                              (t = 1: the buffer starts as g)
//     b <- momentum * b + (1 - dampening) * g             (t > 1)
//     g <- g + momentum * b   if nesterov,   else  g <- b
//   p   <- p - lr * g
// State per parameter: "momentum_buffer" (when momentum != 0).
// Errors (ValueError naming SGD and the value): lr, momentum, dampening or weight_decay < 0;
// nesterov with momentum <= 0 or dampening != 0.
#pragma once
#include "optim/optimizer.h"

namespace ng::optim {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> params, SGDOptions options = {});
  explicit SGD(std::vector<ParamGroup> groups, SGDOptions options = {});
  void step() override;

 protected:
  void check_group(const ParamGroup& g, std::size_t index) const override;
};

}  // namespace ng::optim
