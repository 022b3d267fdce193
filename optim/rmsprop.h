// RMSprop (Hinton, Lecture 6e; centered variant of Graves 2013), as torch.optim.RMSprop.
//
// For each parameter p with gradient g, per step (PyTorch's documented algorithm):
//   g   <- g + weight_decay * p                         (if weight_decay != 0)
//   s   <- alpha * s + (1 - alpha) * g^2                ("square_avg", starts at 0)
//   centered:  a <- alpha * a + (1 - alpha) * g         ("grad_avg", starts at 0)
//              r  = sqrt(s - a^2) + eps
//   otherwise: r  = sqrt(s) + eps
//   momentum > 0:  b <- momentum * b + g / r;  p <- p - lr * b   ("momentum_buffer", starts at 0)
//   otherwise:     p <- p - lr * g / r
// State per parameter: "step", "square_avg", "momentum_buffer" (momentum > 0), "grad_avg"
// (centered). Defaults: lr 1e-2, alpha 0.99, eps 1e-8, weight_decay 0, momentum 0,
// centered false. Errors (ValueError naming RMSprop and the value): lr, alpha, eps,
// momentum or weight_decay < 0.
#pragma once
#include "optim/optimizer.h"

namespace ng::optim {

struct RMSpropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
};

class RMSprop : public Optimizer {
 public:
  explicit RMSprop(std::vector<Tensor> params, RMSpropOptions options = {});
  explicit RMSprop(std::vector<ParamGroup> groups, RMSpropOptions options = {});
  void step() override;

 protected:
  void check_group(const ParamGroup& g, std::size_t index) const override;
};

}  // namespace ng::optim
