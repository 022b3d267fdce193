// Adam (Kingma & Ba 2015, with AMSGrad of Reddi et al. 2018) and AdamW (Loshchilov & Hutter
// 2019), as torch.optim.Adam / torch.optim.AdamW.
//
// For each parameter p with gradient g, at step t = 1, 2, ... (PyTorch's documented algorithm):
//   Adam:   g <- g + weight_decay * p                    (L2 penalty added to the gradient)
//   AdamW:  p <- p - lr * weight_decay * p               (decoupled decay, before the Adam step)
//   m     <- beta1 * m + (1 - beta1) * g                 ("exp_avg", starts at 0)
//   v     <- beta2 * v + (1 - beta2) * g^2               ("exp_avg_sq", starts at 0)
//   v_max <- max(v_max, v)                               ("max_exp_avg_sq", amsgrad only)
//   p     <- p - lr / (1 - beta1^t) * m / (sqrt(v or v_max) / sqrt(1 - beta2^t) + eps)
// State per parameter: "step" (t), "exp_avg", "exp_avg_sq", "max_exp_avg_sq" (amsgrad).
// Defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0 (Adam) / 1e-2 (AdamW).
// In a group, betas are "beta1" and "beta2", amsgrad is 0/1.
// Errors (ValueError naming the optimizer and the value): lr, eps or weight_decay < 0;
// a beta outside [0, 1).
#pragma once
#include <utility>

#include "optim/optimizer.h"

namespace ng::optim {

struct AdamOptions {
  double lr = 1e-3;
  std::pair<double, double> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
};

struct AdamWOptions {
  double lr = 1e-3;
  std::pair<double, double> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
};

class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, AdamOptions options = {});
  explicit Adam(std::vector<ParamGroup> groups, AdamOptions options = {});
  void step() override;

 protected:
  Adam(const char* name, std::vector<ParamGroup> groups, Hyper defaults, bool decoupled);
  void check_group(const ParamGroup& g, std::size_t index) const override;

 private:
  bool decoupled_;  // AdamW: weight decay applied to p, not added to g
};

class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  explicit AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {});
};

}  // namespace ng::optim
