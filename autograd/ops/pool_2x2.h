// max_pool2d's common case, the 2 x 2 window with stride 2 (no padding, no dilation), written
// for speed; ops/pool.cpp uses it and keeps the general kernel for everything else.
//
// The windows tile the image without overlap (an odd last row or column is left out), so each
// input element belongs to at most one window, and a window's winner is one of four places:
//   code 0 = a, 1 = b, 2 = c, 3 = d  for the window   a b
//                                                      c d
// The forward saves that code (4 bytes) instead of a flat int64 index, and the backward writes
// g at the winner of each window and 0 elsewhere.
//
// The winner rule is the general kernel's: scan a, b, c, d in order and take an element if it
// is larger than the best so far or is NaN, i.e. the winner maximizes the key
//   (is NaN, then: for NaNs the later position, for numbers the larger value, then the earlier
//   position).
// A maximum under a total order can be folded in any grouping, which is what makes the fast
// loops possible: first each column (c over a, d over b, by the scan rule itself since c and
// d come later), in a vertical pass over row pairs; then the right column's winner Y over the
// left one's X, in one flat loop over all windows:
//   Y wins if  Y is NaN and (X is not, or Y's position is later)
//          or  neither is NaN and (y > x, or y == x and Y's position is earlier).
// Both loops run over same-width elements (T and a 32-bit code), so the compiler vectorizes
// them with full-width vectors.
//
// With relu = true the output is relu(max) = max(relu) (both maps are monotone, and a NaN
// stays NaN through either): relu_max_pool2d, a ReLU followed by this pooling in one pass.
// The gradient is the same as through the two: g at the winner if the output is not <= 0
// (a window whose max is <= 0 gives 0 after the ReLU, and so does its gradient).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "autograd/kernels.h"
#include "autograd/ops/conv.h"  // Size2

namespace ng::pool_2x2 {

// Does max_pool2d with these arguments take this path?
inline bool applies(Size2 k, Size2 s, Size2 pad, Size2 dil, std::int64_t H, std::int64_t W, std::int64_t Ho,
                    std::int64_t Wo) {
  return k == Size2(2) && s == Size2(2) && pad == Size2(0) && dil == Size2(1) && Ho > 0 && Wo > 0 && 2 * Ho <= H &&
         2 * Wo <= W;
}

// The scan rule: b (later) replaces a if it is larger or NaN.
template <class T>
inline bool takes(T b, T a) {
  return (b > a) | (b != b);
}

// Planes go through in blocks whose vertical maxima (and column codes) stay in cache.
constexpr std::int64_t kBlockElems = 1 << 13;

// relu(y) as relu_max_pool2d does (relu(NaN) = NaN).
template <class T>
inline T relu(T v) {
  return (v > 0) | (v != v) ? v : T(0);
}

// y (planes, Ho, Wo) from x (planes, H, W), then relu(y) if `with_relu`; code (planes, Ho,
// Wo) too unless it is null.
template <class T>
void forward(const T* x, T* y, std::int32_t* code, std::int64_t planes, std::int64_t H, std::int64_t W,
             std::int64_t Ho, std::int64_t Wo, bool with_relu = false) {
  const std::int64_t vrow = 2 * Wo;  // the columns that belong to a window
  const std::int64_t per_block = std::max<std::int64_t>(1, kBlockElems / (Ho * vrow));
  const std::int64_t blocks = (planes + per_block - 1) / per_block;
  detail::parallel_for(blocks, blocks > 1 && planes * H * W > detail::kParallelGrain, [&](std::int64_t blk) {
    const std::int64_t p0 = blk * per_block, p1 = std::min(planes, p0 + per_block);
    const std::size_t nv = static_cast<std::size_t>((p1 - p0) * Ho * vrow);
    thread_local std::vector<T> vbuf;
    thread_local std::vector<std::int32_t> bbuf;
    if (vbuf.size() < nv) vbuf.resize(nv), bbuf.resize(nv);
    T* __restrict v = vbuf.data();
    std::int32_t* __restrict bottom = bbuf.data();
    // column winners: v[p, i, w] and bottom = 1 if row 2i + 1 won (by the scan rule)
    for (std::int64_t p = p0; p < p1; ++p)
      for (std::int64_t i = 0; i < Ho; ++i) {
        const T* __restrict r0 = x + (p * H + 2 * i) * W;
        const T* __restrict r1 = r0 + W;
        const std::int64_t at = ((p - p0) * Ho + i) * vrow;
#pragma omp simd
        for (std::int64_t w = 0; w < vrow; ++w) {
          const bool t = takes(r1[w], r0[w]);
          v[at + w] = t ? r1[w] : r0[w];
          bottom[at + w] = t;
        }
      }
    // window winners: the right column's Y over the left column's X (positions from the codes)
    T* __restrict yb = y + p0 * Ho * Wo;
    std::int32_t* __restrict cb = code ? code + p0 * Ho * Wo : nullptr;
    const std::int64_t n = (p1 - p0) * Ho * Wo;
    if (!cb) {  // values only (no gradient needed): any grouping of the max gives them
#pragma omp simd
      for (std::int64_t m = 0; m < n; ++m) yb[m] = takes(v[2 * m + 1], v[2 * m]) ? v[2 * m + 1] : v[2 * m];
    } else {
#pragma omp simd
      for (std::int64_t m = 0; m < n; ++m) {
        const T vx = v[2 * m], vy = v[2 * m + 1];
        const std::int32_t px = 2 * bottom[2 * m], py = 1 + 2 * bottom[2 * m + 1];
        const bool nan_x = vx != vx, nan_y = vy != vy;
        const bool y_wins = nan_y ? (!nan_x || py > px) : (!nan_x && (vy > vx || (vy == vx && py < px)));
        yb[m] = y_wins ? vy : vx;
        cb[m] = y_wins ? py : px;
      }
    }
    if (with_relu)
#pragma omp simd
      for (std::int64_t m = 0; m < n; ++m) yb[m] = relu(yb[m]);
  });
}

// dx (planes, H, W) from g (planes, Ho, Wo) and the forward's codes; every dx element is
// written. y: null, or relu_max_pool2d's output, which lets g through only where it is not <= 0.
template <class T>
void backward(const std::int32_t* code, const T* g, T* dx, std::int64_t planes, std::int64_t H, std::int64_t W,
              std::int64_t Ho, std::int64_t Wo, const T* y = nullptr) {
  detail::parallel_for(planes, planes * H * W > detail::kParallelGrain, [&](std::int64_t p) {
    T* dp = dx + p * H * W;
    std::fill(dp, dp + H * W, T(0));
    for (std::int64_t i = 0; i < Ho; ++i) {
      T* d0 = dp + 2 * i * W;  // the window row's top-left
      const T* gr = g + (p * Ho + i) * Wo;
      const std::int32_t* cr = code + (p * Ho + i) * Wo;
      if (y) {
        const T* yr = y + (p * Ho + i) * Wo;
        for (std::int64_t j = 0; j < Wo; ++j) d0[2 * j + (cr[j] & 1) + (cr[j] >> 1) * W] = !(yr[j] <= 0) ? gr[j] : T(0);
      } else {
        for (std::int64_t j = 0; j < Wo; ++j) d0[2 * j + (cr[j] & 1) + (cr[j] >> 1) * W] = gr[j];
      }
    }
  });
}

// The flat index in its plane (as the general kernel's argmax) of each window's winner.
inline void to_flat_index(const std::int32_t* code, std::int64_t* idx, std::int64_t planes, std::int64_t W,
                          std::int64_t Ho, std::int64_t Wo) {
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t i = 0; i < Ho; ++i)
      for (std::int64_t j = 0; j < Wo; ++j) {
        const std::int64_t k = (p * Ho + i) * Wo + j;
        idx[k] = (2 * i + (code[k] >> 1)) * W + 2 * j + (code[k] & 1);
      }
}

}  // namespace ng::pool_2x2
