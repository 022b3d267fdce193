// max_pool2d, avg_pool2d, adaptive_avg_pool2d: one pass over each (n, c) plane per output
// window; forward and backward kernels side by side. Planes are independent, so OpenMP
// splits over them when the work is large.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "autograd/ops/pool_2x2.h"

namespace ng {

namespace {

// A (C, H, W) input is treated as a batch of one, as PyTorch's unbatched form.
Tensor as_batched(const Tensor& x, const char* op) {
  if (x.dim() == 4) return x;
  if (x.dim() == 3) return unsqueeze(x, 0);
  fail<ShapeError>("{}: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got {}", op, x.shape());
}

// Output length of one spatial dim (see pool.h); `in + 2 pad >= effective kernel` checked before.
std::int64_t pool_out_size(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t pad, std::int64_t dil,
                           bool ceil_mode) {
  const std::int64_t span = in + 2 * pad - dil * (k - 1) - 1;
  std::int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  // ceil_mode: the last window must start inside the image or the left padding.
  if (ceil_mode && (out - 1) * s >= in + pad) --out;
  return out;
}

struct PoolArgs {
  Size2 k, s, pad, dil{1};
  bool ceil_mode = false;
};

// Checks shared by max and avg pooling; returns (Ho, Wo).
Size2 check_pool(const char* op, const Tensor& x4, const Tensor& x, const PoolArgs& a) {
  if (!is_floating(x.dtype()))
    fail<DTypeError>("{}: expected a floating dtype (float32 or float64), got {}", op, x.dtype());
  if (a.k.h <= 0 || a.k.w <= 0) fail<ValueError>("{}: kernel size must be positive, got ({}, {})", op, a.k.h, a.k.w);
  if (a.s.h <= 0 || a.s.w <= 0) fail<ValueError>("{}: stride must be positive, got ({}, {})", op, a.s.h, a.s.w);
  if (a.dil.h <= 0 || a.dil.w <= 0)
    fail<ValueError>("{}: dilation must be positive, got ({}, {})", op, a.dil.h, a.dil.w);
  // 2 pad > k, written pad > k / 2 (equal for k > 0) so that a huge padding cannot overflow
  if (a.pad.h < 0 || a.pad.w < 0 || a.pad.h > a.k.h / 2 || a.pad.w > a.k.w / 2)
    fail<ValueError>("{}: padding must be between 0 and half the kernel size: kernel ({}, {}) vs padding ({}, {})", op,
                     a.k.h, a.k.w, a.pad.h, a.pad.w);
  const std::int64_t H = x4.size(2), W = x4.size(3);
  // effective (dilated) kernel dil (k - 1) + 1 and padded input H + 2 pad, checked for overflow
  // (2 pad <= k fits); then every index the kernels form lies within [-pad, H + pad).
  std::int64_t ekh = 0, ekw = 0, ph = 0, pw = 0;
  if (!size_mul(a.dil.h, a.k.h - 1, ekh) || !size_mul(a.dil.w, a.k.w - 1, ekw) || !size_add(H, 2 * a.pad.h, ph) ||
      !size_add(W, 2 * a.pad.w, pw) || !size_add(ph, a.s.h, ph) || !size_add(pw, a.s.w, pw))
    fail<ShapeError>("{}: input {} with kernel ({}, {}), stride ({}, {}), padding ({}, {}) and dilation ({}, {}): "
                     "the window arithmetic overflows int64",
                     op, x.shape(), a.k.h, a.k.w, a.s.h, a.s.w, a.pad.h, a.pad.w, a.dil.h, a.dil.w);
  ++ekh, ++ekw;
  ph = H + 2 * a.pad.h, pw = W + 2 * a.pad.w;
  if (ekh > ph || ekw > pw)
    fail<ShapeError>("{}: kernel ({}, {}) is larger than the padded input ({}, {}) of {}", op, ekh, ekw, ph, pw,
                     x.shape());
  const Size2 out{pool_out_size(H, a.k.h, a.s.h, a.pad.h, a.dil.h, a.ceil_mode),
                  pool_out_size(W, a.k.w, a.s.w, a.pad.w, a.dil.w, a.ceil_mode)};
  if (!shape_fits(Shape{x4.size(0), x4.size(1), out.h, out.w}))
    fail<ShapeError>("{}: output size ({}, {}) for input {} overflows int64", op, out.h, out.w, x.shape());
  return out;
}

// work = planes x outputs x window elements, in double: with huge windows it exceeds int64.
inline bool parallel_pool(std::int64_t planes, double work) {
  return planes > 1 && work > static_cast<double>(detail::kParallelGrain);
}

// ---- max -----------------------------------------------------------------------------
// y[p, i, j] = max_{a, b} x[p, i s_h - pad_h + a d_h, j s_w - pad_w + b d_w]; idx = where (flat
// index in the H x W plane; -1 if the window saw no element). A NaN in the window wins (and
// stays), as in PyTorch.

// One plane. Windows entirely inside the image (all of them without padding) take the fast
// path: no bounds tests, and the running max is selected without a branch, because on real
// activations "is this element larger" is a coin flip that the branch predictor loses half
// the time (branchy code made the pooling 20% of a demo-CNN step).
template <class T>
void max_pool_plane(const T* xp, T* yp, std::int64_t* ip, std::int64_t H, std::int64_t W, std::int64_t Ho,
                    std::int64_t Wo, const PoolArgs& a) {
  const std::int64_t span_h = (a.k.h - 1) * a.dil.h, span_w = (a.k.w - 1) * a.dil.w;
  for (std::int64_t i = 0; i < Ho; ++i)
    for (std::int64_t j = 0; j < Wo; ++j) {
      const std::int64_t h0 = i * a.s.h - a.pad.h, w0 = j * a.s.w - a.pad.w;
      T best;
      std::int64_t arg;
      if (h0 >= 0 && w0 >= 0 && h0 + span_h < H && w0 + span_w < W) {
        arg = h0 * W + w0;
        best = xp[arg];
        for (std::int64_t u = 0; u < a.k.h; ++u)
          for (std::int64_t v = 0; v < a.k.w; ++v) {
            const std::int64_t at = (h0 + u * a.dil.h) * W + w0 + v * a.dil.w;
            const T val = xp[at];
            const bool take = (val > best) | (val != val);  // larger, or NaN
            best = take ? val : best;
            arg = take ? at : arg;
          }
      } else {
        best = -std::numeric_limits<T>::infinity();
        arg = -1;
        // only the taps inside the image: u in [u0, u1) with 0 <= h0 + u dil < H (a window
        // may be far larger than the image: kernel 2^40 with padding 2^39 on a 1 x 1 input)
        const std::int64_t u0 = h0 < 0 ? (-h0 + a.dil.h - 1) / a.dil.h : 0;
        const std::int64_t u1 = h0 >= H ? 0 : std::min(a.k.h, (H - h0 + a.dil.h - 1) / a.dil.h);
        const std::int64_t v0 = w0 < 0 ? (-w0 + a.dil.w - 1) / a.dil.w : 0;
        const std::int64_t v1 = w0 >= W ? 0 : std::min(a.k.w, (W - w0 + a.dil.w - 1) / a.dil.w);
        for (std::int64_t u = u0; u < u1; ++u) {
          const std::int64_t ih = h0 + u * a.dil.h;
          for (std::int64_t v = v0; v < v1; ++v) {
            const std::int64_t iw = w0 + v * a.dil.w;
            const T val = xp[ih * W + iw];
            if (arg < 0 || val > best || std::isnan(val)) {
              best = val;
              arg = ih * W + iw;
            }
          }
        }
      }
      yp[i * Wo + j] = best;
      ip[i * Wo + j] = arg;
    }
}

template <class T>
void max_pool_forward(const T* x, T* y, std::int64_t* idx, std::int64_t planes, std::int64_t H, std::int64_t W,
                      std::int64_t Ho, std::int64_t Wo, const PoolArgs& a) {
  auto plane = [&](std::int64_t p) { max_pool_plane(x + p * H * W, y + p * Ho * Wo, idx + p * Ho * Wo, H, W, Ho, Wo, a); };
  if (parallel_pool(planes, static_cast<double>(planes * Ho * Wo) * static_cast<double>(a.k.h) *
                                static_cast<double>(a.k.w))) {
#pragma omp parallel for
    for (std::int64_t p = 0; p < planes; ++p) plane(p);
  } else {
    for (std::int64_t p = 0; p < planes; ++p) plane(p);
  }
}

// ---- averages ------------------------------------------------------------------------
// A window [h0, h1) x [w0, w1) clipped to the image, and the number it is divided by.
struct Window {
  std::int64_t h0, h1, w0, w1;
  double divisor;
};

// y[p, i, j] = sum_{window(i, j)} x / divisor. window(i, j) -> Window.
template <class T, class WinF>
void avg_pool_forward(const T* x, T* y, std::int64_t planes, std::int64_t H, std::int64_t W, std::int64_t Ho,
                      std::int64_t Wo, double work_per_out, WinF window) {
  detail::parallel_for(planes, parallel_pool(planes, static_cast<double>(planes * Ho * Wo) * work_per_out), [&](std::int64_t p) {
    const T* xp = x + p * H * W;
    T* yp = y + p * Ho * Wo;
    for (std::int64_t i = 0; i < Ho; ++i)
      for (std::int64_t j = 0; j < Wo; ++j) {
        const Window wd = window(i, j);
        acc_t<T> s = 0;
        for (std::int64_t ih = wd.h0; ih < wd.h1; ++ih)
          for (std::int64_t iw = wd.w0; iw < wd.w1; ++iw) s += static_cast<acc_t<T>>(xp[ih * W + iw]);
        yp[i * Wo + j] = static_cast<T>(s / wd.divisor);
      }
  });
}

// dx[p, window(i, j)] += gy[p, i, j] / divisor (dx zeroed here).
template <class T, class WinF>
void avg_pool_backward(const T* gy, T* dx, std::int64_t planes, std::int64_t H, std::int64_t W, std::int64_t Ho,
                       std::int64_t Wo, double work_per_out, WinF window) {
  detail::parallel_for(planes, parallel_pool(planes, static_cast<double>(planes * Ho * Wo) * work_per_out), [&](std::int64_t p) {
    T* dxp = dx + p * H * W;
    std::fill(dxp, dxp + H * W, T(0));
    const T* gp = gy + p * Ho * Wo;
    for (std::int64_t i = 0; i < Ho; ++i)
      for (std::int64_t j = 0; j < Wo; ++j) {
        const Window wd = window(i, j);
        const T share = static_cast<T>(static_cast<double>(gp[i * Wo + j]) / wd.divisor);
        for (std::int64_t ih = wd.h0; ih < wd.h1; ++ih)
          for (std::int64_t iw = wd.w0; iw < wd.w1; ++iw) dxp[ih * W + iw] += share;
      }
  });
}

template <class WinF>
Tensor avg_pool_adjoint(const Tensor& g, const Shape& in_shape, double work_per_out, WinF window);

// Records an average pooling whose windows are given by `window` (copied into the backward).
// y = A x with A the (sparse) averaging matrix; the backward is dx = A^T g.
template <class WinF>
Tensor avg_pool_op(const char* op, const Tensor& x4, Size2 out_hw, double work_per_out, WinF window) {
  const std::int64_t N = x4.size(0), C = x4.size(1), H = x4.size(2), W = x4.size(3);
  const std::int64_t planes = N * C, Ho = out_hw.h, Wo = out_hw.w;
  const Tensor xc = x4.detach().contiguous();
  Tensor y = empty(Shape{N, C, Ho, Wo}, x4.dtype());
  dispatch_float(x4.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    avg_pool_forward<T>(xc.data<T>(), y.data<T>(), planes, H, W, Ho, Wo, work_per_out, window);
  });
  const Shape in_shape = x4.shape();
  return record(op, {x4}, y, [=](BackwardContext&, const Tensor& g) -> Grads {
    return {avg_pool_adjoint(g, in_shape, work_per_out, window)};
  });
}

// dx = A^T g (the fused backward kernel) as an op of its own, recorded under create_graph so
// that second derivatives flow through it. It is linear; its adjoint is the pooling A again.
template <class WinF>
Tensor avg_pool_adjoint(const Tensor& g, const Shape& in_shape, double work_per_out, WinF window) {
  const std::int64_t planes = in_shape[0] * in_shape[1], H = in_shape[2], W = in_shape[3];
  const std::int64_t Ho = g.size(2), Wo = g.size(3);
  const Tensor gc = g.detach().contiguous();
  Tensor dx = empty(in_shape, gc.dtype());
  dispatch_float(gc.dtype(), "avg_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    avg_pool_backward<T>(gc.data<T>(), dx.data<T>(), planes, H, W, Ho, Wo, work_per_out, window);
  });
  return record("avg_pool2d_backward", {g}, dx, [=](BackwardContext&, const Tensor& gg) -> Grads {
    return {avg_pool_op("avg_pool2d", gg, Size2(Ho, Wo), work_per_out, window)};
  });
}

// ---- max pooling's backward as a pair of ops (each the other's adjoint) ----------------
Tensor max_pool_gather(const Tensor& gx, const Tensor& argmax_idx, const Shape& out_shape);

// dx[p, argmax(p, k)] += g[p, k]   (p = plane, k = output pixel; skipped where argmax = -1).
// Linear in g; its adjoint reads a tensor of x's shape at the argmax positions.
Tensor max_pool_scatter(const Tensor& g, const Tensor& argmax_idx, const Shape& in_shape) {
  const Tensor gc = g.detach().contiguous();
  Tensor dx = empty(in_shape, gc.dtype());  // zeroed plane by plane below, in the parallel loop
  const std::int64_t planes = in_shape[0] * in_shape[1];
  const std::int64_t HW = in_shape[2] * in_shape[3], HoWo = gc.size(2) * gc.size(3);
  dispatch_float(gc.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = gc.data<T>();
    const std::int64_t* ip = argmax_idx.data<std::int64_t>();
    T* dxp = dx.data<T>();
    detail::parallel_for(planes, parallel_pool(planes, static_cast<double>(planes * HoWo)), [&](std::int64_t p) {
      std::fill(dxp + p * HW, dxp + (p + 1) * HW, T(0));
      for (std::int64_t k = 0; k < HoWo; ++k) {
        const std::int64_t at = ip[p * HoWo + k];
        if (at >= 0) dxp[p * HW + at] += gp[p * HoWo + k];
      }
    });
  });
  return record("max_pool2d_backward", {g}, dx, [argmax_idx, out_shape = g.shape()](BackwardContext&, const Tensor& gg) -> Grads {
    return {max_pool_gather(gg, argmax_idx, out_shape)};
  });
}

// y[p, k] = gx[p, argmax(p, k)] (0 where argmax = -1): the adjoint of max_pool_scatter.
Tensor max_pool_gather(const Tensor& gx, const Tensor& argmax_idx, const Shape& out_shape) {
  const Tensor gc = gx.detach().contiguous();
  Tensor y = empty(out_shape, gc.dtype());
  const std::int64_t n = y.numel(), HW = gc.size(2) * gc.size(3), HoWo = out_shape[2] * out_shape[3];
  dispatch_float(gc.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = gc.data<T>();
    const std::int64_t* ip = argmax_idx.data<std::int64_t>();
    T* yp = y.data<T>();
    for (std::int64_t o = 0; o < n; ++o) yp[o] = ip[o] >= 0 ? gp[(o / HoWo) * HW + ip[o]] : T(0);
  });
  return record("max_pool2d_gather", {gx}, y, [argmax_idx, in_shape = gx.shape()](BackwardContext&, const Tensor& gg) -> Grads {
    return {max_pool_scatter(gg, argmax_idx, in_shape)};
  });
}

Tensor unbatch_like(const Tensor& y, const Tensor& x) { return x.dim() == 3 ? squeeze(y, 0) : y; }

}  // namespace

namespace {

// 1 where y is not <= 0 (NaN included), else 0: the ReLU's gradient mask, as a constant.
Tensor not_le0(const Tensor& y) {
  Tensor m = empty(y.shape(), y.dtype());
  dispatch_float(y.dtype(), "relu_max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* yp = y.data<T>();
    T* mp = m.data<T>();
    for (std::int64_t i = 0; i < y.numel(); ++i) mp[i] = !(yp[i] <= 0) ? T(1) : T(0);
  });
  return m;
}

// max_pool2d, and relu_max_pool2d when with_relu (only on the 2 x 2 path; the caller composes
// otherwise).
Tensor max_pool2d_impl(const Tensor& x, Size2 kernel, std::optional<Size2> stride, Size2 padding, Size2 dilation,
                       bool ceil_mode, bool with_relu) {
  const Tensor x4 = as_batched(x, "max_pool2d");
  const PoolArgs a{kernel, stride.value_or(kernel), padding, dilation, ceil_mode};
  const Size2 out = check_pool("max_pool2d", x4, x, a);
  const std::int64_t N = x4.size(0), C = x4.size(1), H = x4.size(2), W = x4.size(3);
  const bool two_by_two = pool_2x2::applies(a.k, a.s, a.pad, a.dil, H, W, out.h, out.w);
  if (with_relu && !two_by_two)  // relu_max_pool2d elsewhere: the two ops in turn
    return max_pool2d_impl(relu(x), kernel, stride, padding, dilation, ceil_mode, false);
  const std::int64_t planes = N * C;
  const Tensor xc = x4.detach().contiguous();
  Tensor y = empty(Shape{N, C, out.h, out.w}, x.dtype());
  const Shape in_shape = x4.shape();
  if (two_by_two) {
    // The winner of each window as a code 0..3 (pool_2x2.h), only if a gradient can be asked for.
    const bool need_code = grad_enabled() && x.requires_grad();
    auto code = std::make_shared<std::vector<std::int32_t>>(need_code ? static_cast<std::size_t>(y.numel()) : 0);
    dispatch_float(x.dtype(), "max_pool2d", [&](auto tag) {
      using T = decltype(tag);
      pool_2x2::forward<T>(xc.data<T>(), y.data<T>(), need_code ? code->data() : nullptr, planes, H, W,
                           out.h, out.w, with_relu);
    });
    const char* op = with_relu ? "relu_max_pool2d" : "max_pool2d";
    y = record(
        op, {x4}, y,
        [=](BackwardContext& ctx, const Tensor& g) -> Grads {
          // relu_max_pool2d: g passes where the output is not <= 0 (the ReLU's mask, a constant)
          const Tensor y_out = with_relu ? ctx.output().detach() : Tensor();
          if (ctx.create_graph()) {  // through the differentiable scatter, with flat indices
            Tensor idx = empty(g.shape(), DType::i64);
            pool_2x2::to_flat_index(code->data(), idx.data<std::int64_t>(), planes, W, out.h, out.w);
            const Tensor gm = with_relu ? mul(g, not_le0(y_out)) : g;
            return {max_pool_scatter(gm, idx, in_shape)};
          }
          const Tensor gc = g.contiguous();
          Tensor dx = empty(in_shape, gc.dtype());
          dispatch_float(gc.dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            pool_2x2::backward<T>(code->data(), gc.data<T>(), dx.data<T>(), planes, H, W, out.h, out.w,
                                  with_relu ? y_out.data<T>() : nullptr);
          });
          return {dx};
        },
        with_relu ? SaveOutput::yes : SaveOutput::no);
    return unbatch_like(y, x);
  }
  Tensor argmax_idx = empty(y.shape(), DType::i64);  // saved for the backward
  dispatch_float(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    max_pool_forward<T>(xc.data<T>(), y.data<T>(), argmax_idx.data<std::int64_t>(), planes, H, W, out.h, out.w, a);
  });
  // dx[p, argmax(p, i, j)] += gy[p, i, j]  (an op itself, so create_graph can differentiate it)
  y = record("max_pool2d", {x4}, y, [in_shape, argmax_idx](BackwardContext&, const Tensor& g) -> Grads {
    return {max_pool_scatter(g, argmax_idx, in_shape)};
  });
  return unbatch_like(y, x);
}

}  // namespace

Tensor max_pool2d(const Tensor& x, Size2 kernel, std::optional<Size2> stride, Size2 padding, Size2 dilation,
                  bool ceil_mode) {
  return max_pool2d_impl(x, kernel, stride, padding, dilation, ceil_mode, false);
}

Tensor relu_max_pool2d(const Tensor& x, Size2 kernel, std::optional<Size2> stride, Size2 padding, Size2 dilation,
                       bool ceil_mode) {
  return max_pool2d_impl(x, kernel, stride, padding, dilation, ceil_mode, true);
}

Tensor avg_pool2d(const Tensor& x, Size2 kernel, std::optional<Size2> stride, Size2 padding, bool ceil_mode,
                  bool count_include_pad) {
  const Tensor x4 = as_batched(x, "avg_pool2d");
  const PoolArgs a{kernel, stride.value_or(kernel), padding, Size2(1), ceil_mode};
  const Size2 out = check_pool("avg_pool2d", x4, x, a);
  const std::int64_t H = x4.size(2), W = x4.size(3);
  // PyTorch's window: clipped first to the padded image (this is the count_include_pad size),
  // then to the image itself (the elements that are summed).
  auto window = [a, H, W, count_include_pad](std::int64_t i, std::int64_t j) {
    std::int64_t h0 = i * a.s.h - a.pad.h, w0 = j * a.s.w - a.pad.w;
    std::int64_t h1 = std::min(h0 + a.k.h, H + a.pad.h), w1 = std::min(w0 + a.k.w, W + a.pad.w);
    const double padded = static_cast<double>(h1 - h0) * static_cast<double>(w1 - w0);
    h0 = std::max<std::int64_t>(h0, 0), w0 = std::max<std::int64_t>(w0, 0);
    h1 = std::min(h1, H), w1 = std::min(w1, W);
    const double inside = static_cast<double>((h1 - h0) * (w1 - w0));
    return Window{h0, h1, w0, w1, count_include_pad ? padded : inside};
  };
  return unbatch_like(avg_pool_op("avg_pool2d", x4, out, static_cast<double>(a.k.h) * static_cast<double>(a.k.w), window), x);
}

Tensor adaptive_avg_pool2d(const Tensor& x, Size2 output_size) {
  const Tensor x4 = as_batched(x, "adaptive_avg_pool2d");
  if (!is_floating(x.dtype()))
    fail<DTypeError>("adaptive_avg_pool2d: expected a floating dtype (float32 or float64), got {}", x.dtype());
  if (output_size.h <= 0 || output_size.w <= 0)
    fail<ValueError>("adaptive_avg_pool2d: output size must be positive, got ({}, {})", output_size.h, output_size.w);
  const std::int64_t H = x4.size(2), W = x4.size(3);
  if (H == 0 || W == 0) fail<ShapeError>("adaptive_avg_pool2d: empty spatial size in input {}", x.shape());
  const std::int64_t oh = output_size.h, ow = output_size.w;
  // rows [floor(i H / oh), ceil((i + 1) H / oh)), likewise columns
  auto window = [H, W, oh, ow](std::int64_t i, std::int64_t j) {
    const std::int64_t h0 = i * H / oh, h1 = ((i + 1) * H + oh - 1) / oh;
    const std::int64_t w0 = j * W / ow, w1 = ((j + 1) * W + ow - 1) / ow;
    return Window{h0, h1, w0, w1, static_cast<double>((h1 - h0) * (w1 - w0))};
  };
  const double work = static_cast<double>(H / oh + 1) * static_cast<double>(W / ow + 1);
  return unbatch_like(avg_pool_op("adaptive_avg_pool2d", x4, output_size, work, window), x);
}

}  // namespace ng
