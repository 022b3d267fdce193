// Matrix products through BLAS (sgemm / dgemm). Views whose last two dims are a transposed
// contiguous matrix are passed to BLAS with a transpose flag instead of being copied.
#include <algorithm>
#include <vector>

#include "autograd/blas.h"
#include "autograd/kernels.h"
#include "autograd/ops.h"

namespace ng {

namespace {

// How a 2-d matrix view is handed to BLAS: pointer offset, leading dimension, transposed?
struct BlasMat {
  bool trans;
  std::int64_t ld;
};

// rows x cols matrix with element strides (rs, cs): usable directly if one stride is 1.
bool blas_layout(std::int64_t rows, std::int64_t cols, std::int64_t rs, std::int64_t cs, BlasMat& m) {
  if (cs == 1 && (rows == 1 || rs >= std::max<std::int64_t>(cols, 1))) {
    m = {false, rows == 1 ? std::max<std::int64_t>(cols, 1) : rs};
    return true;
  }
  if (rs == 1 && (cols == 1 || cs >= std::max<std::int64_t>(rows, 1))) {
    m = {true, cols == 1 ? std::max<std::int64_t>(rows, 1) : cs};
    return true;
  }
  return false;
}

template <class T>
void gemm(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, const T* A, std::int64_t lda,
          const T* B, std::int64_t ldb, T* C, std::int64_t ldc) {
  detail::gemm(ta, tb, M, N, K, T(1), A, lda, B, ldb, T(0), C, ldc);
}

// (..., n, k) x (..., k, m) -> (..., n, m) for operands of rank >= 2, batch dims broadcast.
Tensor matmul_nd(const Tensor& a_in, const Tensor& b_in) {
  const auto n = a_in.size(-2), k = a_in.size(-1), k2 = b_in.size(-2), m = b_in.size(-1);
  if (k != k2)
    fail<ShapeError>("matmul: cannot multiply {} by {}: inner dimensions {} and {} differ", a_in.shape(), b_in.shape(),
                     k, k2);
  if (a_in.dtype() != b_in.dtype())
    fail<DTypeError>("matmul: dtypes differ: {} vs {}", a_in.dtype(), b_in.dtype());
  // Batch shape = broadcast of the leading dims.
  const Shape ba(a_in.shape().begin(), a_in.shape().end() - 2), bb(b_in.shape().begin(), b_in.shape().end() - 2);
  const Shape batch = broadcast_shapes(ba, bb, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(n);
  out_shape.push_back(m);
  if (!shape_fits(out_shape))
    fail<ShapeError>("matmul: {} times {} gives shape {}, whose product of sizes overflows int64 (2^63 - 1)",
                     a_in.shape(), b_in.shape(), out_shape);
  Tensor out = empty(out_shape, a_in.dtype());

  dispatch_float(a_in.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    if (out.numel() == 0) return;
    if (k == 0) {
      std::fill(out.data<T>(), out.data<T>() + out.numel(), T(0));
      return;
    }
    Tensor a = a_in, b = b_in;
    std::int64_t rows = n;
    std::int64_t nbatch = batch.numel();
    // A contiguous batched a times a plain matrix b: fold the batch into the rows (one GEMM).
    if (b.dim() == 2 && a.dim() > 2 && a.is_contiguous()) {
      rows = n * nbatch;
      nbatch = 1;
    }
    // Expand both to the full batch, view the matrices, copy only if BLAS cannot take them.
    auto prep = [&](Tensor t, std::int64_t r, std::int64_t c, BlasMat& bm) {
      if (!blas_layout(r, c, t.strides()[static_cast<std::size_t>(t.dim() - 2)], t.strides().back(), bm)) {
        t = t.detach().contiguous();
        blas_layout(r, c, c, 1, bm);
      }
      return t;
    };
    BlasMat ma{}, mb{};
    if (nbatch == 1 && rows != n) {  // folded
      Tensor ad = a.detach();
      BlasMat tmp{false, k};
      ma = tmp;
      b = prep(b.detach(), k, m, mb);
      gemm<T>(ma.trans, mb.trans, rows, m, k, ad.data<T>(), ma.ld, b.data<T>(), mb.ld, out.data<T>(), m);
      return;
    }
    Shape fa = batch, fb = batch;
    fa.push_back(n), fa.push_back(k);
    fb.push_back(k), fb.push_back(m);
    Tensor ae = a.detach(), be = b.detach();
    ae = make_view(ae, fa, detail::broadcast_strides(ae, fa), ae.offset());
    be = make_view(be, fb, detail::broadcast_strides(be, fb), be.offset());
    ae = prep(ae, n, k, ma);
    be = prep(be, k, m, mb);
    // Offsets of each batch matrix (batch dims may be strided or broadcast with stride 0).
    const Shape bshape = batch;
    Strides sa(ae.strides().begin(), ae.strides().end() - 2), sb(be.strides().begin(), be.strides().end() - 2);
    const T* pa = ae.data<T>();
    const T* pb = be.data<T>();
    T* po = out.data<T>();
    if (bshape.ndim() == 0) {
      gemm<T>(ma.trans, mb.trans, n, m, k, pa, ma.ld, pb, mb.ld, po, m);
      return;
    }
    std::vector<std::int64_t> idx(bshape.size(), 0);
    for (std::int64_t bi = 0; bi < nbatch; ++bi) {
      std::int64_t oa = 0, ob = 0;
      for (std::size_t d = 0; d < bshape.size(); ++d) oa += idx[d] * sa[d], ob += idx[d] * sb[d];
      gemm<T>(ma.trans, mb.trans, n, m, k, pa + oa, ma.ld, pb + ob, mb.ld, po + bi * n * m, m);
      for (int d = bshape.ndim() - 1; d >= 0; --d) {
        if (++idx[static_cast<std::size_t>(d)] < bshape[static_cast<std::size_t>(d)]) break;
        idx[static_cast<std::size_t>(d)] = 0;
      }
    }
  });
  // d(AB)/dA = G B^T,  d(AB)/dB = A^T G  (summed over broadcast batch dims)
  return record("matmul", {a_in, b_in}, out, [a_in, b_in](BackwardContext&, const Tensor& g) -> Grads {
    Tensor ga, gb;
    if (a_in.requires_grad()) ga = sum_to(matmul_nd(g, transpose(b_in, -1, -2)), a_in.shape());
    if (b_in.requires_grad()) gb = sum_to(matmul_nd(transpose(a_in, -1, -2), g), b_in.shape());
    return {ga, gb};
  });
}

// db_j = sum over the rows r of g[r, j] for a contiguous g (..., n), accumulated in double
// (as sum does), walking g row by row: one pass in memory order, vectorized over j.
Tensor row_sum(const Tensor& g) {
  const std::int64_t n = g.size(-1), rows = n > 0 ? g.numel() / n : 0;
  Tensor out = empty({n}, g.dtype());
  dispatch_float(g.dtype(), "linear", [&](auto tag) {
    using T = decltype(tag);
    std::vector<double> acc(static_cast<std::size_t>(n), 0.0);
    const T* pg = g.data<T>();
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < n; ++j) acc[static_cast<std::size_t>(j)] += static_cast<double>(pg[r * n + j]);
    T* po = out.data<T>();
    for (std::int64_t j = 0; j < n; ++j) po[j] = static_cast<T>(acc[static_cast<std::size_t>(j)]);
  });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (a.dim() == 0 || b.dim() == 0)
    fail<ShapeError>("matmul: both operands need at least 1 dim, got {} and {}", a.shape(), b.shape());
  // 1-d operands become a row (left) or column (right) vector, as in NumPy/PyTorch.
  if (a.dim() == 1 && b.dim() == 1) {
    if (a.size(0) != b.size(0))
      fail<ShapeError>("matmul: cannot multiply {} by {}: inner dimensions {} and {} differ", a.shape(), b.shape(),
                       a.size(0), b.size(0));
    return reshape(matmul_nd(unsqueeze(a, 0), unsqueeze(b, 1)), Shape{});
  }
  if (a.dim() == 1) {
    if (a.size(0) != b.size(-2))
      fail<ShapeError>("matmul: cannot multiply {} by {}: inner dimensions {} and {} differ", a.shape(), b.shape(),
                       a.size(0), b.size(-2));
    return squeeze(matmul_nd(unsqueeze(a, 0), b), -2);
  }
  if (b.dim() == 1) {
    if (a.size(-1) != b.size(0))
      fail<ShapeError>("matmul: cannot multiply {} by {}: inner dimensions {} and {} differ", a.shape(), b.shape(),
                       a.size(-1), b.size(0));
    return squeeze(matmul_nd(a, unsqueeze(b, 1)), -1);
  }
  return matmul_nd(a, b);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (weight.dim() != 2) fail<ShapeError>("linear: weight must be 2-d (out, in), got {}", weight.shape());
  if (x.dim() == 0 || x.size(-1) != weight.size(1))
    fail<ShapeError>("linear: input {} has {} features, weight {} expects {}", x.shape(), x.dim() ? x.size(-1) : 0,
                     weight.shape(), weight.size(1));
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0)))
    fail<ShapeError>("linear: bias {} does not match weight {}", bias.shape(), weight.shape());
  Tensor y;
  {
    NoGradGuard no_grad;  // one node for the whole layer, recorded below
    const std::int64_t out = weight.size(0), in = weight.size(1);
    const bool fused = bias.defined() && is_floating(x.dtype()) && weight.dtype() == x.dtype() &&
                       bias.dtype() == x.dtype() && x.is_contiguous() && weight.is_contiguous() &&
                       bias.is_contiguous() && x.numel() > 0 && in > 0 && out > 0;
    if (fused) {  // y = b (every row), then y += x W^T in the GEMM itself (beta = 1): no second pass
      Shape ys = x.shape();
      ys[ys.size() - 1] = out;
      y = empty(ys, x.dtype());
      const std::int64_t rows = x.numel() / in;
      dispatch_float(x.dtype(), "linear", [&](auto tag) {
        using T = decltype(tag);
        T* py = y.data<T>();
        const T* pb = bias.data<T>();
        detail::parallel_for(rows, rows * out > detail::kParallelGrain,
                             [&](std::int64_t r) {
                               for (std::int64_t j = 0; j < out; ++j) py[r * out + j] = pb[j];
                             });
        detail::gemm(false, true, rows, out, in, T(1), x.data<T>(), in, weight.data<T>(), in, T(1), py, out);
      });
    } else {
      y = matmul(x, transpose(weight, 0, 1));  // y = x W^T
      if (bias.defined()) y = add(y, bias);
    }
  }
  // dx = G W,  dW = G^T x (rows of x and G flattened),  db = sum of G over the rows.
  // Written out here, rather than left to matmul and transpose, so that dW comes out as a
  // contiguous (out, in) matrix: through transpose's backward it arrived as a transposed
  // view, which every accumulation into weight.grad then had to copy element by element.
  return record("linear", {x, weight, bias}, y, [x, weight, bias](BackwardContext& ctx, const Tensor& g) -> Grads {
    Tensor dx, dw, db;
    if (x.requires_grad()) dx = matmul(g, weight);
    if (weight.requires_grad()) {
      const std::int64_t out = weight.size(0), in = weight.size(1);
      dw = matmul(transpose(reshape(g, {-1, out}), 0, 1), reshape(x, {-1, in}));
    }
    if (bias.defined() && bias.requires_grad())
      db = !ctx.create_graph() && g.is_contiguous() && g.dtype() == bias.dtype() ? row_sum(g) : sum_to(g, bias.shape());
    return {dx, dw, db};
  });
}

}  // namespace ng
