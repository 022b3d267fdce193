// 2-d pooling (ops/pool.cpp), with torch.nn.functional's semantics and defaults.
// Inputs are (N, C, H, W) or unbatched (C, H, W). Output size per spatial dim:
//   out = floor((H + 2 pad - dilation (k - 1) - 1) / stride) + 1      (ceil with ceil_mode,
//   dropping a last window that would start in the right padding).
#pragma once
#include <cstdint>
#include <optional>

#include "autograd/ops/conv.h"  // Size2
#include "autograd/tape.h"
#include "autograd/tensor.h"

namespace ng {

// y = max over the window (padding counts as -inf); the gradient goes to the element that
// attained the max (the first one in row-major window order on ties; NaN wins, as PyTorch).
// stride defaults to the kernel size. padding <= kernel / 2 (PyTorch's rule).
Tensor max_pool2d(const Tensor& x, Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                  Size2 dilation = 1, bool ceil_mode = false);

// max_pool2d(relu(x), ...) in one op: the same values and gradients (ReLU and max commute), in
// one pass over x on the 2 x 2, stride 2 path (ops/pool_2x2.h); other windows compose the two.
// Sequential runs a ReLU followed by a MaxPool2d through it.
Tensor relu_max_pool2d(const Tensor& x, Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                       Size2 dilation = 1, bool ceil_mode = false);

// y = (sum over the window of x, zeros in the padding) / divisor, where divisor is the window
// size including padding (count_include_pad = true, PyTorch's default) or only the in-image
// elements (false). The gradient spreads g / divisor over the window.
Tensor avg_pool2d(const Tensor& x, Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                  bool ceil_mode = false, bool count_include_pad = true);

// Averages over adaptive windows giving exactly `output_size` (PyTorch's rule: output row i
// covers input rows [floor(i H / oh), ceil((i + 1) H / oh))). output_size 1 = global average.
Tensor adaptive_avg_pool2d(const Tensor& x, Size2 output_size);

}  // namespace ng
