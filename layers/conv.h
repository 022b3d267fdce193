// Conv2d: torch.nn.Conv2d over (N, C, H, W) (or unbatched (C, H, W)) inputs, computed by
// ng::conv2d (autograd/ops/conv.h). weight (out, in/groups, kh, kw), bias (out).
// Default initialization as PyTorch: kaiming_uniform_(a = sqrt(5)) on the weight and
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on the bias, fan_in = in/groups * kh * kw.
//
// padding is a number, a pair, or PyTorch's strings:
//   "valid"  no padding (the same as 0)
//   "same"   the output keeps the input's H and W (stride must be 1, as PyTorch). Per dim the
//            total padding dilation * (k - 1) is split left = total / 2 (rounded down), right =
//            total - left: for an even kernel the extra row/column goes at the bottom/right,
//            as PyTorch's.
#pragma once
#include <concepts>
#include <string>

#include "layers/module.h"

namespace ng::nn {

// Conv2d's padding argument: numbers (0, 1, {1, 2}) or "same" / "valid".
struct Conv2dPadding {
  Size2 size = 0;
  std::string mode;  // "" (numbers), "same" or "valid"
  template <std::integral I>
  Conv2dPadding(I p) : size(static_cast<std::int64_t>(p)) {}  // NOLINT: implicit, like `padding=1`
  Conv2dPadding(Size2 p) : size(p) {}                          // NOLINT
  Conv2dPadding(std::int64_t h, std::int64_t w) : size(h, w) {}
  Conv2dPadding(const char* m) : mode(m) {}         // NOLINT: implicit, like `padding="same"`
  Conv2dPadding(std::string m) : mode(std::move(m)) {}  // NOLINT
};

class Conv2d : public Module {
 public:
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, Size2 kernel_size, Size2 stride = 1,
         Conv2dPadding padding = 0, Size2 dilation = 1, std::int64_t groups = 1, bool bias = true,
         Generator* gen = nullptr, DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Conv2d"; }
  std::string extra_repr() const override;
  void reset_parameters(Generator* gen = nullptr);

  std::int64_t in_channels, out_channels;
  Size2 kernel_size, stride, padding, dilation;  // padding: for "same", the left/top part
  std::string padding_string;                      // "", "same" or "valid" (as given)
  std::int64_t groups;
  Tensor weight, bias;
};

}  // namespace ng::nn
