// Dropout (Srivastava et al. 2014), "inverted" as in PyTorch: in training each element is
// kept with probability 1 - p and scaled by 1 / (1 - p), so the expected output equals the
// input and evaluation needs no rescaling:
//     y = x * m / (1 - p),   m ~ Bernoulli(1 - p) elementwise;   eval: y = x.
// p = 1 zeroes everything. The mask is drawn from `gen` (seedable) or the thread's default
// generator; the generator must outlive the module.
#pragma once
#include "layers/module.h"

namespace ng::F {

Tensor dropout(const Tensor& x, double p = 0.5, bool training = true, Generator* gen = nullptr);

}  // namespace ng::F

namespace ng::nn {

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override { return F::dropout(x, p, is_training(), gen_); }
  std::string type_name() const override { return "Dropout"; }
  std::string extra_repr() const override;
  void set_generator(Generator* gen) { gen_ = gen; }
  double p;

 private:
  Generator* gen_;
};

}  // namespace ng::nn
