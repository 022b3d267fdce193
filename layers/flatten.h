// Flatten: merges dims start_dim..end_dim into one, as torch.nn.Flatten (defaults 1, -1, so
// (N, C, H, W) -> (N, C*H*W) keeps the batch dim). A view when the input is contiguous.
#pragma once
#include "layers/module.h"

namespace ng::nn {

class Flatten : public Module {
 public:
  explicit Flatten(std::int64_t start = 1, std::int64_t end = -1) : start_dim(start), end_dim(end) {}
  Tensor forward(const Tensor& x) override { return flatten(x, start_dim, end_dim); }
  std::string type_name() const override { return "Flatten"; }
  std::string extra_repr() const override { return fmt::format("start_dim={}, end_dim={}", start_dim, end_dim); }
  std::int64_t start_dim, end_dim;
};

}  // namespace ng::nn
