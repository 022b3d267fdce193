// Scaled dot-product attention: see attention.h for the semantics, docs/attention.md for the
// derivation of the backward. Per batch matrix b (one (batch, head) pair):
//
//   forward   S = scale Q K^T            GEMM (L x E) (E x S)
//             S_ij = -inf where masked, S_ij += M_ij for a float mask
//             P_ij = exp(S_ij - m_i) / sum_j exp(S_ij - m_j),  m_i = max_j S_ij
//             (a row with m_i = -inf is fully masked: P_i = 0)
//             Pd = P o D  (D = dropout mask scaled by 1/(1-p); Pd = P without dropout)
//             O = Pd V                   GEMM (L x S) (S x Ev)
//   saved     P (and D), the inputs (no copies unless a layout BLAS cannot read)
//   backward  dV = Pd^T dO               GEMM
//             dP = (dO V^T) o D          GEMM
//             dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik)     softmax's vector-Jacobian product
//             dQ = scale dS K,  dK = scale dS^T Q         GEMMs;  dM = dS (float mask)
//   Gradients of broadcast inputs are summed over the batch dims they were broadcast along.
#include "autograd/ops/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "autograd/blas.h"
#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "autograd/simd_math.h"

namespace ng {

namespace {

constexpr const char* kOp = "scaled_dot_product_attention";

// Sizes and the broadcast batch shape, validated once.
struct Geometry {
  Shape batch;  // broadcast of the batch dims of q, k, v
  std::int64_t L = 0, S = 0, E = 0, Ev = 0;
  double scale = 1.0;
  Shape full(std::int64_t rows, std::int64_t cols) const {
    Shape s = batch;
    s.push_back(rows);
    s.push_back(cols);
    return s;
  }
  // Batch matrices the kernels walk: none when every per-batch matrix (Q, K, V, P, O and their
  // gradients) is empty, so that an empty input with a huge batch ([2^40, 0, E]) is not a loop
  // over 2^40 empty products.
  std::int64_t batches_to_walk() const {
    const bool empty = (L == 0 || S == 0) && (E == 0 || (L == 0 && S == 0)) && (Ev == 0 || (L == 0 && S == 0));
    return empty ? 0 : batch.numel();
  }
  // Multiply-adds of the two products, in double (the int64 product can overflow).
  double work() const {
    return static_cast<double>(batch.numel()) * static_cast<double>(L) * static_cast<double>(S) *
           (static_cast<double>(E) + static_cast<double>(Ev));
  }
};

Shape batch_of(const Tensor& t) {
  return Shape(t.shape().begin(), t.shape().end() - 2);
}

Geometry check_args(const char* op, const Tensor& q, const Tensor& k, const Tensor* v, const Tensor& mask,
                    bool is_causal, std::optional<double> scale) {
  const auto shapes = [&] {
    return v ? fmt::format("query {}, key {}, value {}", q.shape(), k.shape(), v->shape())
             : fmt::format("query {}, key {}", q.shape(), k.shape());
  };
  if (q.dim() < 2 || k.dim() < 2 || (v && v->dim() < 2))
    fail<ShapeError>("{}: query, key and value need at least 2 dims (..., L, E), (..., S, E), (..., S, Ev): got {}", op,
                     shapes());
  if (!is_floating(q.dtype())) fail<DTypeError>("{}: query must be float32 or float64, got {}", op, q.dtype());
  if (k.dtype() != q.dtype() || (v && v->dtype() != q.dtype()))
    fail<DTypeError>("{}: query, key and value must have one dtype: got {}, {}, {}", op, q.dtype(), k.dtype(),
                     v ? v->dtype() : k.dtype());
  Geometry g;
  g.L = q.size(-2), g.E = q.size(-1), g.S = k.size(-2);
  if (k.size(-1) != g.E)
    fail<ShapeError>("{}: query and key must have the same embedding size (last dim): expected {} vs actual {} ({})",
                     op, g.E, k.size(-1), shapes());
  if (v) {
    g.Ev = v->size(-1);
    if (v->size(-2) != g.S)
      fail<ShapeError>("{}: key and value must have the same sequence length (dim -2): expected {} vs actual {} ({})",
                       op, g.S, v->size(-2), shapes());
  }
  g.batch = broadcast_shapes(batch_of(q), batch_of(k), op);
  if (v) g.batch = broadcast_shapes(g.batch, batch_of(*v), op);
  if (mask.defined()) {
    if (is_causal)
      fail<ValueError>("{}: an explicit attn_mask cannot be combined with is_causal=true (pass one or the other)", op);
    if (mask.dtype() != DType::i64 && mask.dtype() != q.dtype())
      fail<DTypeError>(
          "{}: attn_mask must be int64 (boolean: nonzero = may attend) or the query's dtype {} "
          "(added to the scores), got {}",
          op, q.dtype(), mask.dtype());
    const Shape full = g.full(g.L, g.S);
    Shape b;
    try {
      b = broadcast_shapes(mask.shape(), full, op);
    } catch (const ShapeError&) {
      b = Shape{};
    }
    if (b != full) fail<ShapeError>("{}: attn_mask {} must broadcast to (..., L, S) = {}", op, mask.shape(), full);
  }
  g.scale = scale ? *scale : (g.E > 0 ? 1.0 / std::sqrt(static_cast<double>(g.E)) : 1.0);
  if (!std::isfinite(g.scale)) fail<ValueError>("{}: scale must be finite, got {}", op, g.scale);
  return g;
}

// A matrix operand as BLAS reads it: last dim contiguous, rows at a stride >= cols (else a
// contiguous copy), and the element offset of each batch matrix (0 stride on broadcast dims).
struct MatOperand {
  Tensor t;  // detached, BLAS-readable
  std::int64_t ld = 1;
  std::vector<std::int64_t> offsets;  // one per batch matrix
};

std::vector<std::int64_t> batch_offsets(const Tensor& t, const Shape& full) {
  const Strides st = detail::broadcast_strides(t, full);
  const int nb = full.ndim() - 2;
  const std::int64_t n = Shape(full.begin(), full.end() - 2).numel();
  // one offset per batch matrix: a scratch buffer held to the allocation limit (a huge batch of
  // empty matrices would otherwise ask for 2^40 offsets)
  checked_nbytes(Shape{n}, sizeof(std::int64_t), "scaled_dot_product_attention");
  std::vector<std::int64_t> off(static_cast<std::size_t>(n), t.offset());
  std::vector<std::int64_t> idx(static_cast<std::size_t>(nb), 0);
  std::int64_t cur = t.offset();
  for (std::int64_t b = 0; b < n; ++b) {
    off[static_cast<std::size_t>(b)] = cur;
    for (int d = nb - 1; d >= 0; --d) {
      const auto du = static_cast<std::size_t>(d);
      cur += st[du];
      if (++idx[du] < full[du]) break;
      cur -= st[du] * full[du];
      idx[du] = 0;
    }
  }
  return off;
}

MatOperand mat_operand(const Tensor& in, const Geometry& g) {
  MatOperand m;
  m.t = in.detach();
  const std::int64_t rows = in.size(-2), cols = in.size(-1);
  const std::int64_t rs = in.strides()[static_cast<std::size_t>(in.dim() - 2)], cs = in.strides().back();
  const bool ok = (cols <= 1 || cs == 1) && (rows <= 1 || rs >= std::max<std::int64_t>(cols, 1));
  if (!ok) m.t = m.t.contiguous();
  m.ld = rows <= 1 ? std::max<std::int64_t>(cols, 1)
                   : std::max<std::int64_t>(m.t.strides()[static_cast<std::size_t>(m.t.dim() - 2)], 1);
  m.offsets = batch_offsets(m.t, g.full(rows, cols));
  return m;
}

// A result matrix stack (the output O, or a gradient dQ, dK, dV), shape `full`, laid out in the
// dim order of the input `like` when like is a dense view of that shape (not broadcast, rows
// contiguous). MultiheadAttention passes its heads as the view (N, L, H, hd) -> (N, H, L, hd):
// the output then comes back in (N, L, H, hd) memory, so merging the heads is a view, and so
// are the head splits in the backward. Otherwise contiguous. The kernels write row r of batch
// matrix b at data[offsets[b] + r * ld].
struct MatResult {
  Tensor t;
  std::int64_t ld = 1;
  std::vector<std::int64_t> offsets;
};

MatResult mat_result(const Tensor& like, const Shape& full, DType d) {
  MatResult m;
  const int n = full.ndim();
  const Strides& ls = like.strides();
  bool dense =
      like.dim() == n && ls.back() == 1 && std::none_of(ls.begin(), ls.end(), [](std::int64_t st) { return st == 0; });
  for (int i = 0; dense && i < n - 1; ++i)
    dense = like.shape()[static_cast<std::size_t>(i)] == full[static_cast<std::size_t>(i)];
  if (!dense) {
    m.t = empty(full, d);
  } else {
    // dims by decreasing stride in `like` (the last dim stays innermost: stride 1, ties by index)
    std::vector<int> order(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
    std::stable_sort(order.begin(), order.end() - 1,
                     [&](int a, int b) { return ls[static_cast<std::size_t>(a)] > ls[static_cast<std::size_t>(b)]; });
    Shape stored;
    for (int i : order) stored.push_back(full[static_cast<std::size_t>(i)]);
    const Tensor base = empty(stored, d);
    Strides st(static_cast<std::size_t>(n));
    for (int k = 0; k < n; ++k)
      st[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])] = base.strides()[static_cast<std::size_t>(k)];
    m.t = make_view(base, full, st, 0);
  }
  const std::int64_t rows = full[static_cast<std::size_t>(n - 2)], cols = full[static_cast<std::size_t>(n - 1)];
  m.ld = rows <= 1 ? std::max<std::int64_t>(cols, 1)
                   : std::max<std::int64_t>(m.t.strides()[static_cast<std::size_t>(n - 2)], 1);
  m.offsets = batch_offsets(m.t, full);
  return m;
}

// C = alpha op(A) op(B) (beta = 0), tolerating empty sizes (K = 0 gives zeros).
template <class T>
void gemm0(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, double alpha, const T* A, std::int64_t lda,
           const T* B, std::int64_t ldb, T* C, std::int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (std::int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, T(0));
    return;
  }
  detail::gemm(ta, tb, M, N, K, static_cast<T>(alpha), A, lda, B, ldb, T(0), C, ldc);
}

// The mask as the kernels read it: element (b, i, j) at data[offsets[b] + i * si + j * sj].
struct MaskView {
  Tensor t;
  std::vector<std::int64_t> offsets;
  std::int64_t si = 0, sj = 0;
};

MaskView mask_view(const Tensor& mask, const Geometry& g) {
  MaskView m;
  if (!mask.defined()) return m;
  m.t = mask.detach();
  const Shape full = g.full(g.L, g.S);
  const Strides st = detail::broadcast_strides(m.t, full);
  m.si = st[st.size() - 2];
  m.sj = st.back();
  m.offsets = batch_offsets(m.t, full);
  return m;
}

// Query blocks. A causal query i sees keys [0, i + 1) only, so the kernels walk the queries in
// blocks of kBlock rows and, for the block [i0, i1), touch keys [0, kmax) with
// kmax = min(i1, S): the products Q K^T, P V, dO V^T, dS K skip the blocks above the
// diagonal, about half the work at L = S. (Without causal masking one block holds every
// query and kmax = S: one GEMM per product, as in the plain formulas.)
constexpr std::int64_t kBlock = 32;

struct Blocks {
  std::int64_t L = 0, S = 0;
  std::int64_t rows = 1, cols = 1;  // queries per query block, keys per key block
  bool causal = false;
  Blocks(const Geometry& g, bool is_causal)
      : L(g.L),
        S(g.S),
        rows(is_causal ? kBlock : std::max<std::int64_t>(g.L, 1)),
        cols(is_causal ? kBlock : std::max<std::int64_t>(g.S, 1)),
        causal(is_causal) {}
  // the columns of P written for the query block starting at i0: the keys its queries may see,
  // rounded up to the block's end (not capped at L: see the invariant below)
  std::int64_t kmax(std::int64_t i0) const { return causal ? std::min(i0 + rows, S) : S; }
  // keys query i may see
  std::int64_t visible(std::int64_t i) const { return causal ? std::min(i + 1, S) : S; }
  // the first query that may see key j0 (all queries see every key without causal masking)
  std::int64_t first_query(std::int64_t j0) const { return causal ? std::min(j0, L) : 0; }
};
// Invariant of the causal layout: row i of P (and of dS) is written on the columns [0, kmax) of
// its block and is zero on [visible(i), kmax); columns past kmax are never read (the softmax
// may write zeros there, up to its group of 16 columns).
// Query and key blocks have one size B and start at multiples of B, so a key block
// [j0, j1) is read only from the queries i >= j0, whose blocks start at i0 >= j0 and have
// kmax = min(i0 + B, S) >= j1: every element read was written.

// max_j x_j over n values (-inf for n = 0; NaNs are skipped), in 16 independent lanes that
// the compiler turns into vector max instructions (one running max would be a chain of
// dependent scalar maxes; for float the select is written as bit operations, see simd_math.h).
template <class T>
T row_max(const T* x, std::int64_t n) {
  constexpr int kLanes = 16;
  T lane[kLanes];
  for (T& m : lane) m = -std::numeric_limits<T>::infinity();
  std::int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      if constexpr (std::is_same_v<T, float>)
        lane[l] = detail::select(x[j + l] > lane[l], x[j + l], lane[l]);  // a blend GCC vectorizes
      else
        lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
    }
  T mx = -std::numeric_limits<T>::infinity();
  for (; j < n; ++j) mx = x[j] > mx ? x[j] : mx;
  for (const T m : lane) mx = m > mx ? m : mx;
  return mx;
}

// Row i of the scores of batch matrix b, in place, on its n = visible(i) keys: mask, then the
// max-shifted softmax; columns [n, n_written) are set to zero (the future keys). A fully
// masked row (every score -inf, no NaN) becomes all zeros. A NaN score, or a +inf one, makes
// the row NaN (exp(NaN - m) or exp(inf - inf)).
// The loops run over whole groups of kLanes columns: the future keys [n, m) of the last group
// (m = n rounded up, at most the row length S) are set to -inf first, so that they add nothing
// to the max or the sum and come out as exactly 0; a causal row thus needs no scalar tail.
template <class T>
void mask_softmax_row(T* row, std::int64_t i, std::int64_t n, std::int64_t n_written, std::int64_t S,
                      const MaskView& mv, std::int64_t b) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  constexpr std::int64_t kLanes = 16;
  if (mv.t.defined()) {
    const std::int64_t base = mv.offsets[static_cast<std::size_t>(b)] + i * mv.si;
    if (mv.t.dtype() == DType::i64) {
      const std::int64_t* m = mv.t.data<std::int64_t>() + base;
      for (std::int64_t j = 0; j < n; ++j)
        if (m[j * mv.sj] == 0) row[j] = kNegInf;  // boolean: 0 = may not attend
    } else {
      const T* m = mv.t.data<T>() + base;
      for (std::int64_t j = 0; j < n; ++j) row[j] += m[j * mv.sj];  // additive
    }
  }
  const std::int64_t m = std::min((n + kLanes - 1) / kLanes * kLanes, S);
  std::fill(row + n, row + m, kNegInf);
  const T mx = row_max(row, m);  // m_i = max_j S_ij (a NaN is caught below, by exp)
  if (mx == kNegInf && std::none_of(row, row + m, [](T x) { return std::isnan(x); })) {
    std::fill(row, row + std::max(m, n_written), T(0));  // fully masked: weights 0 (see attention.h)
    return;
  }
  double lane[kLanes] = {};  // the sum is accumulated in double
  std::int64_t j = 0;
  for (; j + kLanes <= m; j += kLanes)
    for (std::int64_t l = 0; l < kLanes; ++l) {
      row[j + l] = detail::exp_of(row[j + l] - mx);  // exp(S_ij - m_i) in [0, 1]
      lane[l] += static_cast<double>(row[j + l]);
    }
  double sum = 0.0;
  for (; j < m; ++j) {
    row[j] = detail::exp_of(row[j] - mx);
    sum += static_cast<double>(row[j]);
  }
  for (const double x : lane) sum += x;
  const T inv = static_cast<T>(1.0 / sum);
  for (j = 0; j < m; ++j) row[j] *= inv;
  if (m < n_written) std::fill(row + m, row + n_written, T(0));
}

// 0/1 in dtype `d`, shape (..., L, S): may query i attend to key j (not in the causal
// future, nonzero in a boolean mask, not -inf in a float mask). A constant (no gradient).
Tensor allowed_keys(const Geometry& g, const Tensor& mask, bool causal, DType d) {
  const MaskView mv = mask_view(mask, g);
  const std::int64_t nb = mask.defined() ? g.batch.numel() : 1;
  Tensor a = empty(mask.defined() ? g.full(g.L, g.S) : Shape{g.L, g.S}, d);
  dispatch_float(d, "attention", [&](auto tag) {
    using T = decltype(tag);
    T* p = a.data<T>();
    for (std::int64_t b = 0; b < nb; ++b)
      for (std::int64_t i = 0; i < g.L; ++i) {
        T* row = p + (b * g.L + i) * g.S;
        for (std::int64_t j = 0; j < g.S; ++j) row[j] = causal && j > i ? T(0) : T(1);
        if (!mv.t.defined()) continue;
        const std::int64_t base = mv.offsets[static_cast<std::size_t>(b)] + i * mv.si;
        if (mv.t.dtype() == DType::i64) {
          const std::int64_t* m = mv.t.data<std::int64_t>() + base;
          for (std::int64_t j = 0; j < g.S; ++j)
            if (m[j * mv.sj] == 0) row[j] = T(0);
        } else {
          const T* m = mv.t.data<T>() + base;
          for (std::int64_t j = 0; j < g.S; ++j)
            if (m[j * mv.sj] == -std::numeric_limits<T>::infinity()) row[j] = T(0);
        }
      }
  });
  return a;
}

}  // namespace

Tensor attention_weights(const Tensor& q, const Tensor& k, const Tensor& mask, bool is_causal,
                         std::optional<double> scale) {
  const Geometry g = check_args("attention_weights", q, k, nullptr, mask, is_causal, scale);
  // scores S = scale Q K^T + M (the finite part of a float mask; -inf entries become "not allowed")
  Tensor s = mul(matmul(q, transpose(k, -1, -2)), g.scale);
  const Tensor allowed = allowed_keys(g, mask, is_causal, q.dtype());
  if (mask.defined() && mask.dtype() != DType::i64) s = add(s, where(allowed, mask, zeros({}, q.dtype())));
  // shift m_i: the row max over allowed keys, 0 for fully masked rows (a constant: softmax
  // does not depend on it, it only keeps exp from overflowing)
  Tensor shift, empty_row;
  {
    NoGradGuard no_grad;
    const Tensor sd = s.detach();
    const Tensor neg_inf = full({}, -std::numeric_limits<double>::infinity(), q.dtype());
    const Tensor any = max(broadcast_to(allowed, sd.shape()), {-1}, true);  // 1 if the row has a key
    empty_row = rsub(1.0, any);
    shift = where(any, max(where(allowed, sd, neg_inf), {-1}, true), zeros({}, q.dtype()));
  }
  // P = e / (sum e + [row empty]),  e = exp(S - m) on allowed keys, 0 elsewhere
  const Tensor e = mul(exp(sub(where(allowed, s, shift), shift)), allowed);
  return div(e, add(sum(e, {-1}, true), empty_row));
}

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& mask,
                                    double dropout_p, bool is_causal, std::optional<double> scale, Generator* gen) {
  const Geometry g = check_args(kOp, q_in, k_in, &v_in, mask, is_causal, scale);
  if (!(dropout_p >= 0.0 && dropout_p <= 1.0))
    fail<ValueError>("{}: dropout_p must be in [0, 1], got {}", kOp, dropout_p);
  const MatOperand q = mat_operand(q_in, g), k = mat_operand(k_in, g), v = mat_operand(v_in, g);
  const MatResult o = mat_result(q_in, g.full(g.L, g.Ev), q_in.dtype());  // output, in query's dim order
  const Tensor out = o.t;
  Tensor P = empty(g.full(g.L, g.S), q_in.dtype());  // softmax weights, kept for the backward
  Tensor D;                                          // dropout mask scaled by 1/(1-p), if any
  {
    const std::int64_t L = g.L, S = g.S, E = g.E, Ev = g.Ev;
    const std::int64_t nbatch = g.batches_to_walk();
    const DType dt = q_in.dtype();
    const MaskView mv = mask_view(mask, g);
    Tensor Pd = P;  // the weights V is multiplied by (a temporary with dropout)
    if (dropout_p > 0.0) {
      Generator& rng = gen ? *gen : default_generator();
      D = empty(P.shape(), dt);
      Pd = empty(P.shape(), dt);
      dispatch_float(dt, kOp, [&](auto tag) {
        using T = decltype(tag);
        const T keep = dropout_p < 1.0 ? static_cast<T>(1.0 / (1.0 - dropout_p)) : T(0);
        T* pd = D.data<T>();
        for (std::int64_t i = 0; i < D.numel(); ++i) pd[i] = rng.uniform() < dropout_p ? T(0) : keep;
      });
    }
    dispatch_float(dt, kOp, [&](auto tag) {
      using T = decltype(tag);
      const T *pq = q.t.data<T>() - q.t.offset(), *pk = k.t.data<T>() - k.t.offset(),
              *pv = v.t.data<T>() - v.t.offset();
      T* pP = P.data<T>();
      T* pPd = Pd.data<T>();
      const T* pD = D.defined() ? D.data<T>() : nullptr;
      T* po = o.t.data<T>();
      const bool parallel = nbatch > 1 && g.work() > static_cast<double>(detail::kGemmParallelWork);
      const Blocks blk(g, is_causal);
      detail::parallel_for(nbatch, parallel, [&](std::int64_t b) {
        const auto bu = static_cast<std::size_t>(b);
        const T *Qb = pq + q.offsets[bu], *Kb = pk + k.offsets[bu], *Vb = pv + v.offsets[bu];
        for (std::int64_t i0 = 0; i0 < L; i0 += blk.rows) {  // query block [i0, i1), keys [0, kmax)
          const std::int64_t i1 = std::min(i0 + blk.rows, L), kmax = blk.kmax(i0);
          T* Pr = pP + (b * L + i0) * S;
          gemm0<T>(false, true, i1 - i0, kmax, E, g.scale, Qb + i0 * q.ld, q.ld, Kb, k.ld, Pr, S);  // scale Q K^T
          for (std::int64_t i = i0; i < i1; ++i)
            mask_softmax_row<T>(Pr + (i - i0) * S, i, blk.visible(i), kmax, S, mv, b);
          T* Pdr = pPd + (b * L + i0) * S;
          if (pD) {
            const T* Dr = pD + (b * L + i0) * S;
            for (std::int64_t i = 0; i < i1 - i0; ++i)
              for (std::int64_t j = 0; j < kmax; ++j) Pdr[i * S + j] = Pr[i * S + j] * Dr[i * S + j];
          }
          gemm0<T>(false, false, i1 - i0, Ev, kmax, 1.0, Pdr, S, Vb, v.ld, po + o.offsets[bu] + i0 * o.ld,
                   o.ld);  // Pd V
        }
      });
    });
  }  // Pd was a temporary: the backward forms P o D again from the saved P and D

  return record(
      kOp, {q_in, k_in, v_in, mask}, out,
      [q_in, k_in, v_in, mask, q, k, v, P, D, g, is_causal](BackwardContext& ctx, const Tensor& dO_in) -> Grads {
        const bool need_q = q_in.requires_grad(), need_k = k_in.requires_grad(), need_v = v_in.requires_grad();
        const bool need_m = mask.defined() && mask.requires_grad();
        if (ctx.create_graph()) {  // the same formulas with differentiable ops (docs/attention.md)
          const Tensor Pc = attention_weights(q_in, k_in, mask, is_causal, g.scale);
          const Tensor Pdc = D.defined() ? mul(Pc, D) : Pc;
          Tensor dq, dk, dv, dm;
          if (need_v) dv = sum_to(matmul(transpose(Pdc, -1, -2), dO_in), v_in.shape());
          if (need_q || need_k || need_m) {
            Tensor dP = matmul(dO_in, transpose(v_in, -1, -2));
            if (D.defined()) dP = mul(dP, D);
            const Tensor dS = mul(Pc, sub(dP, sum(mul(Pc, dP), {-1}, true)));
            if (need_q) dq = sum_to(mul(matmul(dS, k_in), g.scale), q_in.shape());
            if (need_k) dk = sum_to(mul(matmul(transpose(dS, -1, -2), q_in), g.scale), k_in.shape());
            if (need_m) dm = sum_to(dS, mask.shape());
          }
          return {dq, dk, dv, dm};
        }
        const std::int64_t L = g.L, S = g.S, E = g.E, Ev = g.Ev, nbatch = g.batches_to_walk();
        const MatOperand dO = mat_operand(dO_in, g);  // read in place when its rows are contiguous
        const DType dt = P.dtype();
        const bool need_ds = need_q || need_k || need_m;
        // gradients in their inputs' dim order (see mat_result)
        const MatResult rq = need_q ? mat_result(q_in, g.full(L, E), dt) : MatResult();
        const MatResult rk = need_k ? mat_result(k_in, g.full(S, E), dt) : MatResult();
        const MatResult rv = need_v ? mat_result(v_in, g.full(S, Ev), dt) : MatResult();
        Tensor dq = rq.t, dk = rk.t, dv = rv.t;
        // dS, also the scratch for P o D (dropout) before it is overwritten
        Tensor dS = (need_ds || D.defined()) ? empty(P.shape(), dt) : Tensor();
        dispatch_float(dt, kOp, [&](auto tag) {
          using T = decltype(tag);
          const T *pq = q.t.data<T>() - q.t.offset(), *pk = k.t.data<T>() - k.t.offset(),
                  *pv = v.t.data<T>() - v.t.offset();
          const T* pP = P.data<T>();
          const T* pD = D.defined() ? D.data<T>() : nullptr;
          const T* pdO = dO.t.data<T>() - dO.t.offset();
          T* pdS = dS.defined() ? dS.data<T>() : nullptr;
          const bool parallel = nbatch > 1 && g.work() > static_cast<double>(detail::kGemmParallelWork);
          const Blocks blk(g, is_causal);
          detail::parallel_for(nbatch, parallel, [&](std::int64_t b) {
            const auto bu = static_cast<std::size_t>(b);
            const T *Qb = pq + q.offsets[bu], *Kb = pk + k.offsets[bu], *Vb = pv + v.offsets[bu];
            const T* dOb = pdO + dO.offsets[bu];
            const T* Pb = pP + b * L * S;
            const T* Db = pD ? pD + b * L * S : nullptr;
            T* dSb = pdS ? pdS + b * L * S : nullptr;
            // Key blocks [j0, j1): the queries [r0, L) that may see them (see Blocks).
            auto for_key_blocks = [&](auto&& body) {
              for (std::int64_t j0 = 0; j0 < S; j0 += blk.cols)
                body(j0, std::min(j0 + blk.cols, S), blk.first_query(j0));
            };
            if (need_v) {  // dV = Pd^T dO, Pd = P o D (formed in dS's scratch before dS is)
              const T* Pdb = Pb;
              if (Db) {
                for (std::int64_t i0 = 0; i0 < L; i0 += blk.rows)
                  for (std::int64_t i = i0; i < std::min(i0 + blk.rows, L); ++i)
                    for (std::int64_t j = 0, kmax = blk.kmax(i0); j < kmax; ++j)
                      dSb[i * S + j] = Pb[i * S + j] * Db[i * S + j];
                Pdb = dSb;
              }
              for_key_blocks([&](std::int64_t j0, std::int64_t j1, std::int64_t r0) {
                gemm0<T>(true, false, j1 - j0, Ev, L - r0, 1.0, Pdb + r0 * S + j0, S, dOb + r0 * dO.ld, dO.ld,
                         dv.data<T>() + rv.offsets[bu] + j0 * rv.ld, rv.ld);
              });
            }
            if (!need_ds) return;
            for (std::int64_t i0 = 0; i0 < L; i0 += blk.rows) {  // query block [i0, i1), keys [0, kmax)
              const std::int64_t i1 = std::min(i0 + blk.rows, L), kmax = blk.kmax(i0);
              T* dSr = dSb + i0 * S;
              gemm0<T>(false, true, i1 - i0, kmax, Ev, 1.0, dOb + i0 * dO.ld, dO.ld, Vb, v.ld, dSr, S);  // dPd = dO V^T
              for (std::int64_t i = i0; i < i1; ++i) {  // dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik)
                const std::int64_t n = blk.visible(i);
                const T* pr = Pb + i * S;
                T* dr = dSb + i * S;
                if (Db)
                  for (std::int64_t j = 0; j < n; ++j) dr[j] *= Db[i * S + j];  // dP = dPd o D
                double dot = 0.0;  // accumulated in double
#pragma omp simd reduction(+ : dot)
                for (std::int64_t j = 0; j < n; ++j) dot += static_cast<double>(pr[j]) * static_cast<double>(dr[j]);
                const T c = static_cast<T>(dot);
#pragma omp simd
                for (std::int64_t j = 0; j < n; ++j) dr[j] = pr[j] * (dr[j] - c);
                std::fill(dr + n, dr + kmax, T(0));  // future keys: P = 0 there
              }
              if (need_q)  // dQ = scale dS K
                gemm0<T>(false, false, i1 - i0, E, kmax, g.scale, dSr, S, Kb, k.ld,
                         dq.data<T>() + rq.offsets[bu] + i0 * rq.ld, rq.ld);
            }
            if (need_k)  // dK = scale dS^T Q
              for_key_blocks([&](std::int64_t j0, std::int64_t j1, std::int64_t r0) {
                gemm0<T>(true, false, j1 - j0, E, L - r0, g.scale, dSb + r0 * S + j0, S, Qb + r0 * q.ld, q.ld,
                         dk.data<T>() + rk.offsets[bu] + j0 * rk.ld, rk.ld);
              });
          });
        });
        if (need_q) dq = sum_to(dq, q_in.shape());
        if (need_k) dk = sum_to(dk, k_in.shape());
        if (need_v) dv = sum_to(dv, v_in.shape());
        Tensor dm = need_m ? sum_to(dS, mask.shape()) : Tensor();
        return {dq, dk, dv, dm};
      });
}

}  // namespace ng
