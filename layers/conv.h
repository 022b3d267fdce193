// Conv2d: torch.nn.Conv2d over (N, C, H, W) (or unbatched (C, H, W)) inputs, computed by
// ng::conv2d (autograd/ops/conv.h). weight (out, in/groups, kh, kw), bias (out).
// Default initialization as PyTorch: kaiming_uniform_(a = sqrt(5)) on the weight and
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on the bias, fan_in = in/groups * kh * kw.
#pragma once
#include "layers/module.h"

namespace ng::nn {

class Conv2d : public Module {
 public:
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, Size2 kernel_size, Size2 stride = 1, Size2 padding = 0,
         Size2 dilation = 1, std::int64_t groups = 1, bool bias = true, Generator* gen = nullptr,
         DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Conv2d"; }
  std::string extra_repr() const override;
  void reset_parameters(Generator* gen = nullptr);

  std::int64_t in_channels, out_channels;
  Size2 kernel_size, stride, padding, dilation;
  std::int64_t groups;
  Tensor weight, bias;
};

}  // namespace ng::nn
