// Reductions over any set of axes. One generic kernel (reduce_sum_kernel) walks the input
// once in memory order and adds each element into its output slot; adjacent axes of the
// same kind (reduced / kept) are merged first so that the inner loop runs over long rows.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

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

// ---- var, std: composites of mean/sub/mul/sum, so autograd comes for free -------------
// Two passes (pitfalls.md #6): d = x - mean(x), var = sum(d^2) / (n - correction). The
// one-pass E[x^2] - E[x]^2 cancels catastrophically for rows with a large mean.
// Like torch.var, n - correction <= 0 gives inf (or nan for 0/0), not an error.
Tensor var(const Tensor& a, const Axes& axes_in, std::int64_t correction, bool keepdim) {
  if (!is_floating(a.dtype())) fail<DTypeError>("var: expected a floating dtype (float32 or float64), got {}", a.dtype());
  const auto axes = normalize_axes(axes_in, a.dim(), "var");
  const std::int64_t n = count_reduced(a.shape(), axes);
  if (n == 0) fail<ValueError>("var: reducing over zero elements of shape {}", a.shape());
  const Axes ax(axes.begin(), axes.end());
  Tensor d = sub(a, mean(a, ax, true));  // d = x - mean(x), broadcast over the reduced axes
  // n - correction in double: in int64 it overflows for correction near INT64_MIN / INT64_MAX
  const double dof = std::max(0.0, static_cast<double>(n) - static_cast<double>(correction));
  return mul(sum(mul(d, d), ax, keepdim), 1.0 / dof);
}

// std = sqrt(var); its gradient d/dx = (x - mean) / ((n - correction) std), infinite where std = 0.
Tensor std(const Tensor& a, const Axes& axes, std::int64_t correction, bool keepdim) {
  if (!is_floating(a.dtype())) fail<DTypeError>("std: expected a floating dtype (float32 or float64), got {}", a.dtype());
  return sqrt(var(a, axes, correction, keepdim));
}

// ---- max, min, argmax: the first extremum of each reduced group ----------------------------
namespace {

// For each group of elements reduced together (one per output element), find the first
// extremum in row-major order of the group. Writes its value, its position inside the group
// (the index along the axis when one axis is reduced) and its flat row-major index in `a`.
// NaN wins (propagates), as in PyTorch.
template <class T, bool kMax>
void extremum_kernel(const Tensor& a, const std::vector<int>& axes, T* value, std::int64_t* pos,
                     std::int64_t* flat) {
  // Move the kept dims first and the reduced ones last: each group becomes one contiguous row.
  std::vector<int> kept;
  for (int d = 0; d < a.dim(); ++d)
    if (std::find(axes.begin(), axes.end(), d) == axes.end()) kept.push_back(d);
  std::vector<std::int64_t> order(kept.begin(), kept.end());
  order.insert(order.end(), axes.begin(), axes.end());
  const Tensor rows = permute(a.detach(), order).contiguous();
  const Shape& rs = rows.shape();
  const Strides flat_strides = contiguous_strides(a.shape());  // row-major index in a
  const std::size_t nk = kept.size();
  std::int64_t outer = 1, inner = 1;
  for (std::size_t i = 0; i < rs.size(); ++i) (i < nk ? outer : inner) *= rs[i];
  const T* pr = rows.data<T>();
  auto better = [](T v, T best) {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(v)) return !std::isnan(best);
    }
    return kMax ? v > best : v < best;
  };
  detail::parallel_for(outer, outer * inner > detail::kParallelGrain, [&](std::int64_t o) {
    const T* row = pr + o * inner;
    std::int64_t r = 0;
    for (std::int64_t i = 1; i < inner; ++i)
      if (better(row[i], row[r])) r = i;
    value[o] = row[r];
    pos[o] = r;
    // flat index = sum over dims of (index along the dim) * (row-major stride of a)
    std::int64_t f = 0, ko = o, kr = r;
    for (std::size_t i = rs.size(); i-- > 0;) {
      const auto d = static_cast<std::size_t>(order[i]);
      std::int64_t& rem = i < nk ? ko : kr;
      f += (rem % rs[i]) * flat_strides[d];
      rem /= rs[i];
    }
    flat[o] = f;
  });
}

template <bool kMax>
Tensor extremum(const Tensor& a, const Axes& axes_in, bool keepdim, const char* op) {
  const auto axes = normalize_axes(axes_in, a.dim(), op);
  if (count_reduced(a.shape(), axes) == 0)
    fail<ValueError>("{}: reducing over zero elements of shape {}", op, a.shape());
  const Shape os = reduced_shape(a.shape(), axes, keepdim);
  Tensor out = empty(os, a.dtype());
  Tensor pos = empty(Shape{os.numel()}, DType::i64);
  Tensor flat = empty(Shape{os.numel()}, DType::i64);  // saved: where each output came from
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    extremum_kernel<T, kMax>(a, axes, out.data<T>(), pos.data<std::int64_t>(), flat.data<std::int64_t>());
  });
  // The whole gradient of each output goes to the element it came from:
  // dx = zeros(numel), dx[flat[o]] += g[o], reshaped back (index_add is differentiable in g).
  return record(op, {a}, out, [flat, in = a.shape()](BackwardContext&, const Tensor& g) -> Grads {
    return {reshape(index_add(Shape{in.numel()}, 0, flat, reshape(g, Shape{-1})), in)};
  });
}

}  // namespace

Tensor max(const Tensor& a, const Axes& axes, bool keepdim) { return extremum<true>(a, axes, keepdim, "max"); }
Tensor min(const Tensor& a, const Axes& axes, bool keepdim) { return extremum<false>(a, axes, keepdim, "min"); }

Tensor argmax(const Tensor& a, std::int64_t axis, bool keepdim) {
  const int d = normalize_axis(axis, a.dim(), "argmax");
  const std::vector<int> axes = a.dim() == 0 ? std::vector<int>{} : std::vector<int>{d};
  if (count_reduced(a.shape(), axes) == 0)
    fail<ValueError>("argmax: reducing over zero elements of shape {} along dim {}", a.shape(), d);
  const Shape os = reduced_shape(a.shape(), axes, keepdim);
  Tensor out = empty(os, DType::i64);  // index along the axis of the first max; no gradient
  Tensor flat = empty(Shape{os.numel()}, DType::i64);
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> value(static_cast<std::size_t>(os.numel()));
    extremum_kernel<T, true>(a, axes, value.data(), out.data<std::int64_t>(), flat.data<std::int64_t>());
  });
  return out;
}

// ---- logsumexp ------------------------------------------------------------------------------
// log sum_i exp(x_i) = m + log sum_i exp(x_i - m) with m = max_i x_i (detached: the shift
// cancels, so it carries no gradient, and exp never overflows). An infinite m is replaced by 0
// so that all -inf gives -inf and a +inf gives +inf instead of nan. The gradient, softmax(x)
// over the group, follows from exp/sum/log.
Tensor logsumexp(const Tensor& a, const Axes& axes_in, bool keepdim) {
  const auto axes = normalize_axes(axes_in, a.dim(), "logsumexp");
  const Axes ax(axes.begin(), axes.end());
  Tensor m;
  if (count_reduced(a.shape(), axes) == 0) {  // empty sum: log 0 = -inf, as PyTorch
    m = zeros(reduced_shape(a.shape(), axes, true), a.dtype());
  } else {
    m = max(a.detach(), ax, true);
    dispatch_float(a.dtype(), "logsumexp", [&](auto tag) {
      using T = decltype(tag);
      T* pm = m.data<T>();
      for (std::int64_t i = 0; i < m.numel(); ++i)
        if (std::isinf(pm[i])) pm[i] = T(0);
    });
  }
  Tensor lse = log(sum(exp(sub(a, m)), ax, keepdim));
  return add(lse, keepdim ? m : reshape(m, lse.shape()));
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
