// conv2d as a matrix product (im2col), the way Caffe and PyTorch's CPU path do it:
//
//   col[(c, p, q), (i, j)] = x_padded[c, i*sh + p*dh, j*sw + q*dw]      (Cg*kh*kw, Ho*Wo)
//   y[n, group g]          = W_g (Og, Cg*kh*kw)  @  col(x[n, group g])   (Og, Ho*Wo)
//
// and its backward, with gy = dL/dy for one image and group:
//   dW_g   += gy @ col^T                         (Og, Cg*kh*kw), summed over images
//   dcol    = W_g^T @ gy                          (Cg*kh*kw, Ho*Wo)
//   dx      = col2im(dcol)   (each col entry adds back into the pixel it was copied from)
//   db[o]   = sum_{n, i, j} gy[n, o, i, j]
// col is recomputed in the backward instead of being stored (memory O(one image)).
#include <omp.h>

#include <algorithm>
#include <vector>

#include "autograd/blas.h"
#include "autograd/ops.h"

namespace ng {

namespace {

struct ConvGeom {
  std::int64_t N, C, H, W;  // input
  std::int64_t O, kh, kw;   // weight (O, C/groups, kh, kw)
  std::int64_t groups, Cg, Og;
  Size2 stride, pad, dil;
  std::int64_t Ho, Wo;
  std::int64_t K() const { return Cg * kh * kw; }  // GEMM inner size
  std::int64_t P() const { return Ho * Wo; }      // output pixels per image
  // 1x1 kernel, stride 1, no padding: col is the input itself.
  bool pointwise() const {
    return kh == 1 && kw == 1 && stride == Size2(1) && pad == Size2(0);
  }
};

// C = alpha op(A) op(B) + beta C, row-major (autograd/blas.h decides the threading).
template <class T>
void gemm(bool ta, bool tb, std::int64_t M, std::int64_t Nn, std::int64_t K, T alpha, const T* A, std::int64_t lda,
          const T* B, std::int64_t ldb, T beta, T* Cm, std::int64_t ldc) {
  detail::gemm(ta, tb, M, Nn, K, alpha, A, lda, B, ldb, beta, Cm, ldc);
}

// The output columns j whose input column j*s - pad + q*d lies in [0, W): [j0, j1).
inline void valid_range(std::int64_t off, std::int64_t s, std::int64_t W, std::int64_t Wo, std::int64_t& j0,
                        std::int64_t& j1) {
  // need 0 <= j*s + off < W
  j0 = off >= 0 ? 0 : (-off + s - 1) / s;
  j1 = off >= W ? 0 : std::min<std::int64_t>(Wo, (W - off + s - 1) / s);
  if (j1 < j0) j1 = j0;
}

// col (Cg*kh*kw, Ho*Wo) from one image-group x (Cg, H, W); out-of-image taps are 0.
template <class T>
void im2col(const ConvGeom& g, const T* x, T* col) {
  const std::int64_t Ho = g.Ho, Wo = g.Wo;
  for (std::int64_t c = 0; c < g.Cg; ++c)
    for (std::int64_t p = 0; p < g.kh; ++p)
      for (std::int64_t q = 0; q < g.kw; ++q) {
        T* row = col + ((c * g.kh + p) * g.kw + q) * Ho * Wo;
        const std::int64_t woff = q * g.dil.w - g.pad.w;
        std::int64_t j0, j1;
        valid_range(woff, g.stride.w, g.W, Wo, j0, j1);
        for (std::int64_t i = 0; i < Ho; ++i) {
          T* r = row + i * Wo;
          const std::int64_t ih = i * g.stride.h - g.pad.h + p * g.dil.h;
          if (ih < 0 || ih >= g.H) {
            std::fill(r, r + Wo, T(0));
            continue;
          }
          const T* xr = x + (c * g.H + ih) * g.W + woff;
          for (std::int64_t j = 0; j < j0; ++j) r[j] = T(0);
          if (g.stride.w == 1)  // a contiguous run of the input row: a plain copy
            std::copy(xr + j0, xr + j1, r + j0);
          else
            for (std::int64_t j = j0; j < j1; ++j) r[j] = xr[j * g.stride.w];
          for (std::int64_t j = j1; j < Wo; ++j) r[j] = T(0);
        }
      }
}

// dx (Cg, H, W) += col2im(dcol): the adjoint of im2col (dx must be zeroed by the caller).
template <class T>
void col2im(const ConvGeom& g, const T* dcol, T* dx) {
  const std::int64_t Ho = g.Ho, Wo = g.Wo;
  for (std::int64_t c = 0; c < g.Cg; ++c)
    for (std::int64_t p = 0; p < g.kh; ++p)
      for (std::int64_t q = 0; q < g.kw; ++q) {
        const T* row = dcol + ((c * g.kh + p) * g.kw + q) * Ho * Wo;
        const std::int64_t woff = q * g.dil.w - g.pad.w;
        std::int64_t j0, j1;
        valid_range(woff, g.stride.w, g.W, Wo, j0, j1);
        for (std::int64_t i = 0; i < Ho; ++i) {
          const std::int64_t ih = i * g.stride.h - g.pad.h + p * g.dil.h;
          if (ih < 0 || ih >= g.H) continue;
          const T* r = row + i * Wo;
          T* xr = dx + (c * g.H + ih) * g.W + woff;
          if (g.stride.w == 1)  // contiguous: the compiler vectorizes this add
            for (std::int64_t j = j0; j < j1; ++j) xr[j] += r[j];
          else
            for (std::int64_t j = j0; j < j1; ++j) xr[j * g.stride.w] += r[j];
        }
      }
}

// Images are split across OpenMP threads when the GEMM work is at least this many MACs.
constexpr std::int64_t kConvParallelWork = std::int64_t{1} << 20;

bool parallel_over_images(const ConvGeom& g) {
  // in double: the product of four sizes may exceed int64 even when each tensor fits
  return g.N > 1 && omp_get_max_threads() > 1 &&
         static_cast<double>(g.N) * static_cast<double>(g.O) * static_cast<double>(g.K()) * static_cast<double>(g.P()) >=
             static_cast<double>(kConvParallelWork);
}

template <class T>
void conv_forward(const ConvGeom& g, const T* x, const T* w, const T* b, T* y) {
  const std::int64_t K = g.K(), P = g.P();
  const bool par = parallel_over_images(g);
#pragma omp parallel if (par)
  {
    std::vector<T> col(g.pointwise() ? 0 : static_cast<std::size_t>(K * P));  // one buffer per thread
#pragma omp for
    for (std::int64_t n = 0; n < g.N; ++n) {
      for (std::int64_t gi = 0; gi < g.groups; ++gi) {
        const T* xg = x + (n * g.C + gi * g.Cg) * g.H * g.W;
        const T* cp = xg;
        if (!g.pointwise()) {
          im2col(g, xg, col.data());
          cp = col.data();
        }
        T* yg = y + (n * g.O + gi * g.Og) * P;
        // With a bias, each output row starts as b[o] and the GEMM adds onto it (beta = 1):
        // with beta = 0 OpenBLAS would first clear the rows in a pass of its own.
        if (b)
          for (std::int64_t o = 0; o < g.Og; ++o) std::fill(yg + o * P, yg + (o + 1) * P, b[gi * g.Og + o]);
        gemm<T>(false, false, g.Og, P, K, T(1), w + gi * g.Og * K, K, cp, P, b ? T(1) : T(0), yg, P);
      }
    }
  }
}

// gy (N, O, Ho, Wo) -> dx (N, C, H, W) (if dx), dw (O, Cg, kh, kw) (if dw), db (O) (if db).
// x is read only for dw, w only for dx (either may be null when not needed).
template <class T>
void conv_backward(const ConvGeom& g, const T* x, const T* w, const T* gy, T* dx, T* dw, T* db) {
  const std::int64_t K = g.K(), P = g.P();
  const bool par = parallel_over_images(g);
  const std::size_t wsize = static_cast<std::size_t>(g.O * K);
  if (dw) std::fill(dw, dw + wsize, T(0));
  // dB[o] = sum of gy over (n, p) and dW = sum over images: each thread sums its images (a
  // fixed static share) into its own part of db_part / dw_part (for dB while gy is in cache
  // for the GEMMs); the parts are added in thread order afterwards, so the result depends on
  // the thread count only, never on timing.
  const int threads = par ? omp_get_max_threads() : 1;
  std::vector<acc_t<T>> db_part(db ? static_cast<std::size_t>(threads * g.O) : 0, acc_t<T>(0));
  std::vector<T> dw_part(dw && threads > 1 ? static_cast<std::size_t>(threads) * wsize : 0, T(0));
#pragma omp parallel num_threads(threads) if (par)
  {
    const int tid = omp_get_thread_num();
    std::vector<T> col(static_cast<std::size_t>(K * P));  // im2col(x) or dcol, per thread
    // This thread's dW: its part of dw_part, or dw itself when there is one thread.
    T* dw_t = !dw ? nullptr : threads > 1 ? dw_part.data() + static_cast<std::size_t>(tid) * wsize : dw;
    acc_t<T>* db_t = db ? db_part.data() + tid * g.O : nullptr;
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < g.N; ++n) {
      if (db)
        for (std::int64_t o = 0; o < g.O; ++o) {
          const T* r = gy + (n * g.O + o) * P;
          acc_t<T> s = 0;
#pragma omp simd reduction(+ : s)
          for (std::int64_t k = 0; k < P; ++k) s += static_cast<acc_t<T>>(r[k]);
          db_t[o] += s;
        }
      for (std::int64_t gi = 0; gi < g.groups; ++gi) {
        const std::int64_t xo = (n * g.C + gi * g.Cg) * g.H * g.W;
        const T* gyg = gy + (n * g.O + gi * g.Og) * P;
        if (dw) {  // dW_g += gy (Og, P) @ col^T (P, K)
          const T* cp = x + xo;
          if (!g.pointwise()) {
            im2col(g, x + xo, col.data());
            cp = col.data();
          }
          gemm<T>(false, true, g.Og, K, P, T(1), gyg, P, cp, P, T(1), dw_t + gi * g.Og * K, K);
        }
        if (dx) {  // dcol = W_g^T (K, Og) @ gy (Og, P); dx += col2im(dcol)
          const T* wg = w + gi * g.Og * K;
          if (g.pointwise()) {
            gemm<T>(true, false, K, P, g.Og, T(1), wg, K, gyg, P, T(0), dx + xo, P);
          } else {
            gemm<T>(true, false, K, P, g.Og, T(1), wg, K, gyg, P, T(0), col.data(), P);
            std::fill(dx + xo, dx + xo + g.Cg * g.H * g.W, T(0));  // col2im adds into it
            col2im(g, col.data(), dx + xo);
          }
        }
      }
    }
  }
  for (int t = 0; dw && threads > 1 && t < threads; ++t) {
    const T* part = dw_part.data() + static_cast<std::size_t>(t) * wsize;
#pragma omp simd
    for (std::size_t k = 0; k < wsize; ++k) dw[k] += part[k];
  }
  if (db)
    for (std::int64_t o = 0; o < g.O; ++o) {
      acc_t<T> s = 0;
      for (int t = 0; t < threads; ++t) s += db_part[static_cast<std::size_t>(t * g.O + o)];
      db[o] = static_cast<T>(s);
    }
}

// ---- the op and its backward as differentiable ops -------------------------------------
// The backward pieces are linear in each argument, so each is an op whose own backward is
// built from the other two:
//   y  = conv(x, w)                 <gy, y>  is bilinear in (x, w)
//   dx = input_grad(gy, w) = A_w^T gy,       <G, dx>  = <conv(G, w), gy>
//   dw = weight_grad(x, gy),                 <Gw, dw> = <conv(x, Gw), gy>
// which gives:  d<G, dx>/dgy = conv(G, w),   d<G, dx>/dw = weight_grad(G, gy),
//               d<Gw, dw>/dx = input_grad(gy, Gw),   d<Gw, dw>/dgy = conv(x, Gw).
// First-order backward runs the fused kernel once (dx and dw together); under create_graph
// it calls these ops instead, so the gradients are recorded and can be differentiated again.
Tensor conv2d_input_grad(const Tensor& gy, const Tensor& weight, const ConvGeom& g);
Tensor conv2d_weight_grad(const Tensor& x, const Tensor& gy, const ConvGeom& g);

Tensor conv2d_op(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvGeom& g) {
  // ---- forward --------------------------------------------------------------------------
  const Tensor xc = x.detach().contiguous(), wc = weight.detach().contiguous();
  const Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = empty(Shape{g.N, g.O, g.Ho, g.Wo}, x.dtype());
  dispatch_float(x.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    if (y.numel() == 0) return;
    conv_forward<T>(g, xc.data<T>(), wc.data<T>(), bc.defined() ? bc.data<T>() : nullptr, y.data<T>());
  });

  // ---- backward (fused: im2col / GEMM / col2im kernels above) ---------------------------
  // Saved: the contiguous input and weight (their data, no history) and which grads to make.
  const bool need_dx = x.requires_grad(), need_dw = weight.requires_grad(),
             need_db = bias.defined() && bias.requires_grad();
  // x and weight themselves (not only their data) for the create_graph path.
  return record("conv2d", {x, weight, bias}, y,
                [g, x, weight, xc, wc, need_dx, need_dw, need_db](BackwardContext& ctx, const Tensor& gy_in) -> Grads {
    if (ctx.create_graph())
      return {need_dx ? conv2d_input_grad(gy_in, weight, g) : Tensor(),
              need_dw ? conv2d_weight_grad(x, gy_in, g) : Tensor(),
              need_db ? sum(gy_in, {0, 2, 3}) : Tensor()};
    const Tensor gy = gy_in.contiguous();
    Tensor dx, dw, db;
    if (need_dx) dx = empty(xc.shape(), xc.dtype());
    if (need_dw) dw = empty(wc.shape(), xc.dtype());
    if (need_db) db = empty(Shape{g.O}, xc.dtype());
    dispatch_float(xc.dtype(), "conv2d", [&](auto tag) {
      using T = decltype(tag);
      if (g.N == 0) {
        for (Tensor* t : {&dx, &dw, &db})
          if (t->defined()) t->fill_(0);
        return;
      }
      conv_backward<T>(g, xc.data<T>(), wc.data<T>(), gy.data<T>(), dx.defined() ? dx.data<T>() : nullptr,
                       dw.defined() ? dw.data<T>() : nullptr, db.defined() ? db.data<T>() : nullptr);
    });
    return {dx, dw, db};
  });
}

Tensor conv2d_input_grad(const Tensor& gy, const Tensor& weight, const ConvGeom& g) {
  const Tensor gyc = gy.detach().contiguous(), wc = weight.detach().contiguous();
  Tensor dx = empty(Shape{g.N, g.C, g.H, g.W}, gy.dtype());  // conv_backward writes every element
  dispatch_float(gy.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    if (g.N == 0) return;
    conv_backward<T>(g, nullptr, wc.data<T>(), gyc.data<T>(), dx.data<T>(), nullptr, nullptr);
  });
  return record("conv2d_input_grad", {gy, weight}, dx, [g, gy, weight](BackwardContext&, const Tensor& G) -> Grads {
    return {gy.requires_grad() ? conv2d_op(G, weight, Tensor(), g) : Tensor(),
            weight.requires_grad() ? conv2d_weight_grad(G, gy, g) : Tensor()};
  });
}

Tensor conv2d_weight_grad(const Tensor& x, const Tensor& gy, const ConvGeom& g) {
  const Tensor xc = x.detach().contiguous(), gyc = gy.detach().contiguous();
  Tensor dw = zeros(Shape{g.O, g.Cg, g.kh, g.kw}, gy.dtype());
  dispatch_float(gy.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    if (g.N == 0) return;
    conv_backward<T>(g, xc.data<T>(), nullptr, gyc.data<T>(), nullptr, dw.data<T>(), nullptr);
  });
  return record("conv2d_weight_grad", {x, gy}, dw, [g, x, gy](BackwardContext&, const Tensor& Gw) -> Grads {
    return {x.requires_grad() ? conv2d_input_grad(gy, Gw, g) : Tensor(),
            gy.requires_grad() ? conv2d_op(x, Gw, Tensor(), g) : Tensor()};
  });
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2 stride, Size2 padding, Size2 dilation,
              std::int64_t groups) {
  // ---- validation at the boundary -----------------------------------------------------
  if (x.dim() != 4) fail<ShapeError>("conv2d: expected a 4-d input (N, C, H, W), got {}", x.shape());
  if (weight.dim() != 4) fail<ShapeError>("conv2d: expected a 4-d weight (O, C/groups, kh, kw), got {}", weight.shape());
  if (x.dtype() != weight.dtype() || (bias.defined() && bias.dtype() != x.dtype()))
    fail<DTypeError>("conv2d: input, weight and bias dtypes differ: {} vs {}{}", x.dtype(), weight.dtype(),
                     bias.defined() ? fmt::format(" vs {}", bias.dtype()) : std::string());
  if (stride.h <= 0 || stride.w <= 0)
    fail<ValueError>("conv2d: stride must be positive, got ({}, {})", stride.h, stride.w);
  if (padding.h < 0 || padding.w < 0)
    fail<ValueError>("conv2d: padding must be non-negative, got ({}, {})", padding.h, padding.w);
  if (dilation.h <= 0 || dilation.w <= 0)
    fail<ValueError>("conv2d: dilation must be positive, got ({}, {})", dilation.h, dilation.w);
  if (groups <= 0) fail<ValueError>("conv2d: groups must be positive, got {}", groups);
  ConvGeom g{};
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.O = weight.size(0), g.kh = weight.size(2), g.kw = weight.size(3);
  g.groups = groups;
  if (g.C % groups != 0)
    fail<ValueError>("conv2d: groups={} does not divide the input channels of {}: {} vs {}", groups, x.shape(), g.C,
                     groups);
  if (g.O % groups != 0)
    fail<ValueError>("conv2d: groups={} does not divide the output channels of weight {}", groups, weight.shape());
  g.Cg = g.C / groups, g.Og = g.O / groups;
  if (weight.size(1) != g.Cg)
    fail<ShapeError>(
        "conv2d: weight {} expects {} input channels (x groups={}), input {} has {}: expected {} vs actual {}",
        weight.shape(), weight.size(1) * groups, groups, x.shape(), g.C, weight.size(1) * groups, g.C);
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != g.O))
    fail<ShapeError>("conv2d: bias must have shape [{}], got {}", g.O, bias.shape());
  if (g.kh == 0 || g.kw == 0) fail<ShapeError>("conv2d: weight {} has an empty kernel", weight.shape());
  g.stride = stride, g.pad = padding, g.dil = dilation;
  // effective (dilated) kernel dil (k - 1) + 1 and padded input H + 2 pad, checked for overflow
  std::int64_t ekh = 0, ekw = 0, ph = 0, pw = 0;
  if (!size_mul(dilation.h, g.kh - 1, ekh) || !size_mul(dilation.w, g.kw - 1, ekw) ||
      !size_add(g.H, padding.h, ph) || !size_add(ph, padding.h, ph) || !size_add(g.W, padding.w, pw) ||
      !size_add(pw, padding.w, pw))
    fail<ShapeError>("conv2d: input {} with weight {}, padding ({}, {}) and dilation ({}, {}): the padded input or "
                     "the dilated kernel size overflows int64",
                     x.shape(), weight.shape(), padding.h, padding.w, dilation.h, dilation.w);
  ++ekh, ++ekw;
  if (ekh > ph || ekw > pw)
    fail<ShapeError>("conv2d: kernel size (dilated) ({}, {}) is larger than the padded input ({}, {}) of {}", ekh, ekw,
                     ph, pw, x.shape());
  g.Ho = (ph - ekh) / stride.h + 1;
  g.Wo = (pw - ekw) / stride.w + 1;
  const Shape out{g.N, g.O, g.Ho, g.Wo};
  if (!shape_fits(out))
    fail<ShapeError>("conv2d: output shape {} (input {}, weight {}) overflows int64", out, x.shape(), weight.shape());
  // the per-thread im2col buffer (Cg kh kw, Ho Wo): its size is checked like a tensor's
  if (g.N > 0 && !g.pointwise()) checked_nbytes(Shape{g.K(), g.P()}, dtype_size(x.dtype()), "conv2d (im2col buffer)");

  return conv2d_op(x, weight, bias, g);
}

}  // namespace ng
