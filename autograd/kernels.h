// Internal helpers for writing kernels: strided iteration for elementwise ops and
// contiguous copies. Not part of the public API (ops include it, users do not).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "autograd/tensor.h"

namespace ng::detail {

// Elements above which elementwise loops split across OpenMP threads.
inline constexpr std::int64_t kParallelGrain = 1 << 15;

// for i in [0, n): body(i), split across OpenMP threads only when `parallel` is true. Use this
// instead of `#pragma omp parallel for if (cond)`: with a false condition libgomp still sets up
// a one-thread team (~1,600 instructions and an allocation), more than a small op costs.
template <class F>
void parallel_for(std::int64_t n, bool parallel, F&& body) {
  if (parallel && n > 1) {
#pragma omp parallel for
    for (std::int64_t i = 0; i < n; ++i) body(i);
  } else {
    for (std::int64_t i = 0; i < n; ++i) body(i);
  }
}

// Strides of t as seen from a broadcast `out` shape: 0 on dims t lacks or has size 1.
Strides broadcast_strides(const Tensor& t, const Shape& out);

// Walks `shape` in row-major order, one innermost row at a time. For each row calls
// row(n, off[0..K), out_offset): n elements, the offsets of the row's first element in each
// of the K strided operands, and the offset in a contiguous output of `shape`.
template <std::size_t K, class F>
void for_each_row(const Shape& shape, const std::array<const Strides*, K>& st, F&& row) {
  const int nd = shape.ndim();
  const std::int64_t n = shape.numel();
  if (n == 0) return;
  std::array<std::int64_t, K> off{};
  if (nd == 0) {
    row(std::int64_t{1}, off, std::int64_t{0});
    return;
  }
  const std::int64_t inner = shape[static_cast<std::size_t>(nd - 1)];
  const std::int64_t outer = n / inner;
  std::vector<std::int64_t> idx(static_cast<std::size_t>(nd), 0);
  for (std::int64_t o = 0; o < outer; ++o) {
    row(inner, off, o * inner);
    for (int d = nd - 2; d >= 0; --d) {
      const auto du = static_cast<std::size_t>(d);
      ++idx[du];
      for (std::size_t k = 0; k < K; ++k) off[k] += (*st[k])[du];
      if (idx[du] < shape[du]) break;
      for (std::size_t k = 0; k < K; ++k) off[k] -= (*st[k])[du] * shape[du];
      idx[du] = 0;
    }
  }
}

// out[i] = f(a[i]) over a (any strides); out is contiguous with a's shape.
template <class T, class U, class F>
void unary_map(const Tensor& a, U* out, F f) {
  const T* pa = a.data<T>();
  const std::int64_t n = a.numel();
  if (a.is_contiguous()) {
    // Small tensors must not enter an OpenMP region at all: even with a false `if` clause,
    // libgomp sets up a one-thread team (~1,600 instructions and an allocation), which costs
    // more than a whole op on a tiny tensor.
    if (n <= kParallelGrain) {
      for (std::int64_t i = 0; i < n; ++i) out[i] = f(pa[i]);
      return;
    }
#pragma omp parallel for
    for (std::int64_t i = 0; i < n; ++i) out[i] = f(pa[i]);
    return;
  }
  const Strides& sa = a.strides();
  const std::int64_t s_last = a.dim() ? sa.back() : 1;
  for_each_row<1>(a.shape(), {&sa}, [&](std::int64_t m, const std::array<std::int64_t, 1>& off, std::int64_t o) {
    const T* r = pa + off[0];
    for (std::int64_t i = 0; i < m; ++i) out[o + i] = f(r[i * s_last]);
  });
}

// out[i] = f(a[i], b[i]) with broadcasting; out is contiguous with shape `shape`.
template <class T, class U, class F>
void binary_map(const Tensor& a, const Tensor& b, const Shape& shape, U* out, F f) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  const std::int64_t n = shape.numel();
  if (a.shape() == shape && b.shape() == shape && a.is_contiguous() && b.is_contiguous()) {
    if (n <= kParallelGrain) {  // no OpenMP region for small tensors (see unary_map)
      for (std::int64_t i = 0; i < n; ++i) out[i] = f(pa[i], pb[i]);
      return;
    }
#pragma omp parallel for
    for (std::int64_t i = 0; i < n; ++i) out[i] = f(pa[i], pb[i]);
    return;
  }
  const Strides sa = broadcast_strides(a, shape), sb = broadcast_strides(b, shape);
  const std::int64_t la = shape.ndim() ? sa.back() : 0, lb = shape.ndim() ? sb.back() : 0;
  for_each_row<2>(shape, {&sa, &sb}, [&](std::int64_t m, const std::array<std::int64_t, 2>& off, std::int64_t o) {
    const T* ra = pa + off[0];
    const T* rb = pb + off[1];
    U* ro = out + o;
    if (la == 1 && lb == 1) {
      for (std::int64_t i = 0; i < m; ++i) ro[i] = f(ra[i], rb[i]);
    } else if (la == 1 && lb == 0) {
      const T vb = rb[0];
      for (std::int64_t i = 0; i < m; ++i) ro[i] = f(ra[i], vb);
    } else if (la == 0 && lb == 1) {
      const T va = ra[0];
      for (std::int64_t i = 0; i < m; ++i) ro[i] = f(va, rb[i]);
    } else {
      for (std::int64_t i = 0; i < m; ++i) ro[i] = f(ra[i * la], rb[i * lb]);
    }
  });
}

// Copy any-strided src into contiguous dst (same dtype T).
template <class T>
void copy_to_contiguous(const Tensor& src, T* dst) {
  unary_map<T>(src, dst, [](T v) { return v; });
}

}  // namespace ng::detail
