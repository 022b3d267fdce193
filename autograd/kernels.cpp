#include "autograd/kernels.h"

namespace ng::detail {

Strides broadcast_strides(const Tensor& t, const Shape& out) {
  Strides st(out.size(), 0);
  const int lead = out.ndim() - t.dim();
  for (int d = 0; d < t.dim(); ++d) {
    const auto du = static_cast<std::size_t>(d);
    if (t.shape()[du] != 1) st[du + static_cast<std::size_t>(lead)] = t.strides()[du];
  }
  return st;
}

}  // namespace ng::detail
