// Reductions over any set of axes. One generic kernel (reduce_sum_kernel) walks the input
// once in memory order and adds each element into its output slot; adjacent axes of the
// same kind (reduced / kept) are merged first so that the inner loop runs over long rows.
#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/kernels.h"
#include "autograd/ops.h"

namespace ng {

namespace {

// Output shape of reducing `axes` of s; with keepdim the reduced dims stay as size 1.
Shape reduced_shape(const Shape& s, const std::vector<int>& axes, bool keepdim) {
  Shape out;
  for (int d = 0; d < s.ndim(); ++d) {
    const bool red = std::find(axes.begin(), axes.end(), d) != axes.end();
    if (!red) out.push_back(s[static_cast<std::size_t>(d)]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// Merge adjacent dims that are both reduced or both kept (valid for contiguous data).
void coalesce(const Shape& s, const std::vector<int>& axes, Shape& cs, std::vector<bool>& red) {
  for (int d = 0; d < s.ndim(); ++d) {
    const std::int64_t n = s[static_cast<std::size_t>(d)];
    const bool r = std::find(axes.begin(), axes.end(), d) != axes.end();
    if (n == 1) continue;  // size-1 dims change nothing
    if (!red.empty() && red.back() == r) {
      cs[cs.size() - 1] *= n;
    } else {
      cs.push_back(n);
      red.push_back(r);
    }
  }
}

// sum over `axes` of contiguous `a` into acc (size = product of kept dims), in double.
template <class T>
void reduce_sum_kernel(const T* pa, const Shape& s, const std::vector<int>& axes, double* acc, std::int64_t out_n) {
  std::fill(acc, acc + out_n, 0.0);
  Shape cs;
  std::vector<bool> red;
  coalesce(s, axes, cs, red);
  if (cs.ndim() == 0) {  // every dim has size 1 (or the tensor is 0-d)
    if (s.numel() == 1) acc[0] = pa[0];
    return;
  }
  // Strides into the output for each coalesced input dim: 0 where reduced.
  Strides os(cs.size());
  std::int64_t st = 1;
  for (int d = cs.ndim() - 1; d >= 0; --d) {
    const auto du = static_cast<std::size_t>(d);
    os[du] = red[du] ? 0 : st;
    if (!red[du]) st *= cs[du];
  }
  const bool last_reduced = red.back();
  detail::for_each_row<1>(cs, {&os}, [&](std::int64_t n, const std::array<std::int64_t, 1>& off, std::int64_t in_off) {
    const T* row = pa + in_off;
    if (last_reduced) {
      double sacc = 0.0;
      for (std::int64_t i = 0; i < n; ++i) sacc += static_cast<double>(row[i]);
      acc[off[0]] += sacc;
    } else {
      double* o = acc + off[0];
      for (std::int64_t i = 0; i < n; ++i) o[i] += static_cast<double>(row[i]);
    }
  });
}

std::int64_t count_reduced(const Shape& s, const std::vector<int>& axes) {
  std::int64_t n = 1;
  for (int d : axes) n *= s[static_cast<std::size_t>(d)];
  return n;
}

// sum(a, axes) * scale, no autograd.
Tensor sum_forward(const Tensor& a, const std::vector<int>& axes, bool keepdim, double scale, const char* op) {
  const Shape os = reduced_shape(a.shape(), axes, keepdim);
  Tensor out = empty(os, a.dtype());
  dispatch_float(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    Tensor ac = a.detach().contiguous();
    std::vector<double> acc(static_cast<std::size_t>(os.numel()));
    reduce_sum_kernel<T>(ac.data<T>(), a.shape(), axes, acc.data(), os.numel());
    T* po = out.data<T>();
    for (std::int64_t i = 0; i < os.numel(); ++i) po[i] = static_cast<T>(acc[static_cast<std::size_t>(i)] * scale);
  });
  return out;
}

// The shape of g with the reduced axes put back as size 1 (so it broadcasts over the input).
Tensor unsqueeze_reduced(const Tensor& g, const Shape& in, const std::vector<int>& axes, bool keepdim) {
  if (keepdim) return g;
  return reshape(g, reduced_shape(in, axes, true));
}

}  // namespace

Tensor sum(const Tensor& a, const Axes& axes_in, bool keepdim) {
  const auto axes = normalize_axes(axes_in, a.dim(), "sum");
  Tensor out = sum_forward(a, axes, keepdim, 1.0, "sum");
  // d sum/da_i = 1: the output gradient broadcast back over the reduced axes
  return record("sum", {a}, out, [in = a.shape(), axes, keepdim](BackwardContext&, const Tensor& g) -> Grads {
    return {expand(unsqueeze_reduced(g, in, axes, keepdim), in)};
  });
}

Tensor mean(const Tensor& a, const Axes& axes_in, bool keepdim) {
  const auto axes = normalize_axes(axes_in, a.dim(), "mean");
  const std::int64_t n = count_reduced(a.shape(), axes);
  if (n == 0) fail<ValueError>("mean: reducing over zero elements of shape {}", a.shape());
  Tensor out = sum_forward(a, axes, keepdim, 1.0 / static_cast<double>(n), "mean");
  // d mean/da_i = 1/n
  return record("mean", {a}, out, [in = a.shape(), axes, keepdim, n](BackwardContext&, const Tensor& g) -> Grads {
    return {expand(unsqueeze_reduced(mul(g, 1.0 / static_cast<double>(n)), in, axes, keepdim), in)};
  });
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  // Leading dims that `shape` lacks, and dims where `shape` has 1 but g does not, are summed.
  const int lead = g.dim() - shape.ndim();
  if (lead < 0) fail<ShapeError>("sum_to: cannot reduce shape {} to larger shape {}", g.shape(), shape);
  Axes axes;
  for (int d = 0; d < g.dim(); ++d) {
    if (d < lead) {
      axes.push_back(d);
    } else if (shape[static_cast<std::size_t>(d - lead)] == 1 && g.shape()[static_cast<std::size_t>(d)] != 1) {
      axes.push_back(d);
    } else if (shape[static_cast<std::size_t>(d - lead)] != g.shape()[static_cast<std::size_t>(d)]) {
      fail<ShapeError>("sum_to: shape {} is not broadcastable to {}", shape, g.shape());
    }
  }
  if (axes.empty()) return reshape(g, shape);
  return reshape(sum(g, axes, true), shape);
}

}  // namespace ng
