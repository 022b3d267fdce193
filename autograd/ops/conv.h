// 2-d convolution (ops/conv.cpp): im2col + one GEMM per (image, group), col2im for the
// input gradient. Semantics, defaults and output size as torch.nn.functional.conv2d.
#pragma once
#include <cstdint>

#include "autograd/tape.h"
#include "autograd/tensor.h"

namespace ng {

// A (height, width) pair; one number means the same for both, as PyTorch's int-or-tuple.
struct Size2 {
  std::int64_t h = 0, w = 0;
  Size2() = default;
  Size2(std::int64_t v) : h(v), w(v) {}  // NOLINT: implicit, like PyTorch's `stride=2`
  Size2(std::int64_t h_, std::int64_t w_) : h(h_), w(w_) {}
  bool operator==(const Size2&) const = default;
};

// y[n, o, i, j] = b[o] + sum_{c in group(o), p, q} w[o, c, p, q] *
//                 x_padded[n, c, i*stride.h + p*dilation.h, j*stride.w + q*dilation.w]
// x: (N, C, H, W); weight: (O, C/groups, kh, kw); bias: (O) or undefined.
// Output (N, O, Ho, Wo) with Ho = floor((H + 2 pad.h - dilation.h (kh - 1) - 1) / stride.h) + 1.
// Gradients for x, weight and bias, to any order (under create_graph the backward is made of
// differentiable ops: see ops/conv.cpp).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = {}, Size2 stride = 1, Size2 padding = 0,
              Size2 dilation = 1, std::int64_t groups = 1);

}  // namespace ng
