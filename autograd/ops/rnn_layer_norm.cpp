// The fused LayerNorm-LSTM over a whole sequence (rnn.h: ln_lstm_sequence), the cell of Ba,
// Kiros & Hinton 2016 ("Layer Normalization", recurrent formulation; pitfalls.md #13):
//
// Forward (A_t = the activations [i, f, g, o] of step t, saved):
//     P = X W_ih^T (T N, 4H),  A = LN_ih(P)          one GEMM and one LayerNorm over all T N rows
//     per step t = 1..T:
//       Q_t = h_{t-1} W_hh^T (N, 4H)                 one GEMM per step
//       gates_t = A_t + LN_hh(Q_t) + bias
//       c_t = f c_{t-1} + i g,  u_t = LN_c(c_t),  h_t = o tanh(u_t)
// The input side does not depend on the recurrence, so its GEMM and LayerNorm run once over all
// steps (the LayerNorm normalizes each row by itself: the same numbers as step by step).
//
// Backward through time, t = T..1, with dh_t = dL/dh_t from the output plus the recurrent part
// from step t+1, and dc carried from step t+1 (dL/dc_T from the output at the start):
//     dgates_o = dh_t tanh(u_t) o (1 - o),   du = dh_t o (1 - tanh(u_t)^2)
//     dc      += LN_c backward of du at c_t                       (and LN_c's gain and bias sums)
//     dgates_i = dc g i (1 - i),  dgates_f = dc c_{t-1} f (1 - f),  dgates_g = dc i (1 - g^2)
//     dc      <- dc f                                             (dL/dc_{t-1})
//     dQ_t     = LN_hh backward of dgates_t at Q_t                 (and LN_hh's sums)
//     dh_{t-1} = dQ_t W_hh                                        (one GEMM per step)
// then, with dG the dgates of all steps stacked (T N, 4H) (it is also dA, the gradient of the
// input part, and of gates w.r.t. bias):
//     dP = LN_ih backward of dG at P,  dX = dP W_ih,  dW_ih = dP^T X,  dW_hh = dQ^T [h_0 .. h_{T-1}],
//     dbias = column sums of dG                                   (one GEMM or pass each)
// The three LayerNorms, forward and backward, are the normalization core's row kernels
// (norm_kernels.h: row_forward, row_backward) on raw arrays: one LayerNorm implementation.
// Under create_graph the backward is the same formulas in tensor ops, with the LayerNorm
// backwards from normalize_backward_composite (norm.h), so second derivatives work.
#include <algorithm>
#include <memory>
#include <vector>

#include "autograd/blas.h"
#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "autograd/ops/norm.h"
#include "autograd/ops/norm_kernels.h"
#include "autograd/ops/rnn.h"
#include "autograd/ops/rnn_detail.h"
#include "autograd/simd_math.h"

namespace ng {

namespace {

using rnn_detail::dsigmoid;
using rnn_detail::gate_acts;
using rnn_detail::GateActs;
using rnn_detail::transpose_into;

constexpr const char* kOp = "ln_lstm_sequence";

struct Dims {
  std::int64_t T, N, F, H;
};

Dims check_args(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                const Tensor& bias, const LnLstmNorms& ln) {
  if (x.dim() != 3 || x.size(0) == 0)
    fail<ShapeError>("{}: x must have shape (T, N, F) with T >= 1: got {}", kOp, x.shape());
  if (w_hh.dim() != 2 || w_hh.size(0) != 4 * w_hh.size(1) || w_hh.size(1) == 0)
    fail<ShapeError>("{}: w_hh must have shape (4H, H) with H >= 1: got {}", kOp, w_hh.shape());
  const std::int64_t T = x.size(0), N = x.size(1), F = x.size(2), H = w_hh.size(1);
  if (w_ih.shape() != Shape{4 * H, F})
    fail<ShapeError>("{}: w_ih must have shape (4H, F): expected [{}, {}] vs actual {}", kOp, 4 * H, F, w_ih.shape());
  for (const auto& [s, name] : {std::pair{&h0, "h0"}, std::pair{&c0, "c0"}})
    if (s->shape() != Shape{N, H})
      fail<ShapeError>("{}: {} must have shape (N, H): expected [{}, {}] vs actual {}", kOp, name, N, H, s->shape());
  const std::pair<const Tensor*, const char*> vectors[] = {
      {&bias, "bias"},          {&ln.ih_weight, "ln_ih weight"}, {&ln.ih_bias, "ln_ih bias"},
      {&ln.hh_weight, "ln_hh weight"}, {&ln.hh_bias, "ln_hh bias"}, {&ln.c_weight, "ln_c weight"},
      {&ln.c_bias, "ln_c bias"}};
  for (const auto& [v, name] : vectors) {
    const std::int64_t n = v == &ln.c_weight || v == &ln.c_bias ? H : 4 * H;
    if (v->defined() && v->shape() != Shape{n})
      fail<ShapeError>("{}: {} must have shape [{}]: expected [{}] vs actual {}", kOp, name, n, n, v->shape());
    if (v->defined() && v->dtype() != x.dtype())
      fail<DTypeError>("{}: dtypes differ: x {} vs {} {}", kOp, x.dtype(), name, v->dtype());
  }
  for (const auto& [t, name] : {std::pair{&h0, "h0"}, std::pair{&c0, "c0"}, std::pair{&w_ih, "w_ih"},
                                std::pair{&w_hh, "w_hh"}})
    if (t->dtype() != x.dtype())
      fail<DTypeError>("{}: dtypes differ: x {} vs {} {}", kOp, x.dtype(), name, t->dtype());
  if (!(ln.eps >= 0.0)) fail<ValueError>("{}: eps must be >= 0: got {}", kOp, ln.eps);
  return {T, N, F, H};
}

template <class T>
const T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
bool wants(const Tensor& t) { return t.defined() && t.requires_grad(); }

// The backward in tensor ops (under create_graph): the forward recomputed step by step from the
// saved inputs with differentiable ops, then the same BPTT formulas as the fused kernel.
Grads backward_composite(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                         const Tensor& bias, const LnLstmNorms& ln, const Tensor& dout, const Dims& d) {
  const std::int64_t T = d.T, N = d.N, F = d.F, H = d.H;
  const NormSpec sp_ih = NormSpec::layer(T * N, 4 * H), sp_hh = NormSpec::layer(N, 4 * H), sp_c = NormSpec::layer(N, H);
  const Tensor X = reshape(x, {T * N, F});
  const Tensor P = matmul(X, transpose(w_ih, 0, 1));
  const Tensor A = reshape(layer_norm(P, {4 * H}, ln.ih_weight, ln.ih_bias, ln.eps), {T, N, 4 * H});
  std::vector<GateActs> a;
  std::vector<Tensor> hs{h0}, cs{c0}, qs, tus;  // h_0..h_T, c_0..c_T, Q_1..Q_T, tanh(u_1)..tanh(u_T)
  for (std::int64_t t = 0; t < T; ++t) {
    qs.push_back(matmul(hs.back(), transpose(w_hh, 0, 1)));
    Tensor gates = add(select(A, 0, t), layer_norm(qs.back(), {4 * H}, ln.hh_weight, ln.hh_bias, ln.eps));
    if (bias.defined()) gates = add(gates, bias);
    a.push_back(gate_acts(gates));
    const GateActs& q = a.back();
    cs.push_back(add(mul(q.f, cs.back()), mul(q.i, q.g)));
    tus.push_back(tanh(layer_norm(cs.back(), {H}, ln.c_weight, ln.c_bias, ln.eps)));
    hs.push_back(mul(q.o, tus.back()));
  }
  // LN parameter gradients are summed over the steps (undefined stays undefined)
  auto acc = [](Tensor& sum, const Tensor& part) {
    if (part.defined()) sum = sum.defined() ? add(sum, part) : part;
  };
  Tensor dg_hh, db_hh, dg_c, db_c;
  std::vector<Tensor> dgs(static_cast<std::size_t>(T)), dqs(static_cast<std::size_t>(T));
  Tensor dh, dc = select(dout, 0, T);
  for (std::int64_t t = T - 1; t >= 0; --t) {
    const auto k = static_cast<std::size_t>(t);
    const GateActs& q = a[k];
    const Tensor& tu = tus[k];
    const Tensor dht = dh.defined() ? add(select(dout, 0, t), dh) : select(dout, 0, t);
    const Tensor dgo = mul(dht, mul(tu, dsigmoid(q.o)));
    const Tensor du = mul(dht, mul(q.o, rsub(1.0, mul(tu, tu))));
    const auto lc = normalize_backward_composite(cs[k + 1], du, ln.c_weight, ln.c_bias, sp_c, ln.eps);
    acc(dg_c, lc[1]);
    acc(db_c, lc[2]);
    dc = add(dc, lc[0]);
    dgs[k] = cat({mul(dc, mul(q.g, dsigmoid(q.i))), mul(dc, mul(cs[k], dsigmoid(q.f))),
                  mul(dc, mul(q.i, rsub(1.0, mul(q.g, q.g)))), dgo},
                 -1);
    dc = mul(dc, q.f);
    const auto lh = normalize_backward_composite(qs[k], dgs[k], ln.hh_weight, ln.hh_bias, sp_hh, ln.eps);
    acc(dg_hh, lh[1]);
    acc(db_hh, lh[2]);
    dqs[k] = lh[0];
    dh = matmul(dqs[k], w_hh);
  }
  const Tensor dG = reshape(stack(dgs, 0), {T * N, 4 * H});
  const auto li = normalize_backward_composite(P, dG, ln.ih_weight, ln.ih_bias, sp_ih, ln.eps);
  const Tensor& dP = li[0];
  Tensor dx, dw_ih, dw_hh, dbias;
  if (x.requires_grad()) dx = reshape(matmul(dP, w_ih), x.shape());
  if (w_ih.requires_grad()) dw_ih = matmul(transpose(dP, 0, 1), X);
  if (w_hh.requires_grad()) {
    hs.pop_back();  // h_0 .. h_{T-1}
    dw_hh = matmul(transpose(reshape(stack(dqs, 0), {T * N, 4 * H}), 0, 1), reshape(stack(hs, 0), {T * N, H}));
  }
  if (wants(bias)) dbias = sum(dG, {0});
  auto keep = [](const Tensor& input, const Tensor& g) { return wants(input) ? g : Tensor(); };
  return {dx,
          keep(h0, dh),
          keep(c0, dc),
          dw_ih,
          dw_hh,
          dbias,
          keep(ln.ih_weight, li[1]),
          keep(ln.ih_bias, li[2]),
          keep(ln.hh_weight, dg_hh),
          keep(ln.hh_bias, db_hh),
          keep(ln.c_weight, dg_c),
          keep(ln.c_bias, db_c)};
}

// What the fused backward reads: the inputs (contiguous) and the forward's saved arrays.
struct Saved {
  Tensor x, h0, c0, w_ih, w_hh, bias;
  LnLstmNorms ln;
  Tensor p, q, act, cs, tus, stats;  // P, Q, [i, f, g, o], c_t, tanh(u_t); mean and rstd of the LayerNorm rows
  Dims d;
};

// The fused backward (the BPTT at the top of the file); out = the op's output (h_1 .. h_T for dW_hh).
Grads fused_backward(const Saved& sv, const Tensor& out, const Tensor& dout_in) {
  const Tensor &x = sv.x, &h0 = sv.h0, &c0 = sv.c0, &w_ih = sv.w_ih, &w_hh = sv.w_hh, &bias = sv.bias;
  const Tensor &p = sv.p, &q = sv.q, &act = sv.act, &cs = sv.cs, &tus = sv.tus, &stats = sv.stats;
  const LnLstmNorms& ln = sv.ln;
  const Dims& d = sv.d;
  const std::int64_t T = d.T, N = d.N, F = d.F, H = d.H, G4 = 4 * d.H, TN = d.T * d.N;
  const DType dt = x.dtype();
  const Tensor dout = dout_in.contiguous();
  Tensor dG = empty({T, N, G4}, dt);  // dgates of every step
  Tensor dQ = empty({T, N, G4}, dt);  // dL/dQ_t
  Tensor dh = zeros({N, H}, dt);      // recurrent dL/dh_{t-1} from step t
  Tensor dc = empty({N, H}, dt);      // dL/dc_t carried backwards
  Tensor du_buf = empty({N, H}, dt), dcn_buf = empty({N, H}, dt);  // du_t, LN_c's dc_t
  Tensor dx, dw_ih, dw_hh, dbias;
  // double sums of the vector parameters' gradients: bias, then each LayerNorm's gain and bias
  const auto vec = [](const Tensor& t) { return std::vector<double>(wants(t) ? t.numel() : 0, 0.0); };
  std::vector<double> s_bias = vec(bias), s_ih_w = vec(ln.ih_weight), s_ih_b = vec(ln.ih_bias),
                      s_hh_w = vec(ln.hh_weight), s_hh_b = vec(ln.hh_bias), s_c_w = vec(ln.c_weight),
                      s_c_b = vec(ln.c_bias);
  const auto data_or_null = [](std::vector<double>& v) { return v.empty() ? nullptr : v.data(); };
  dispatch_float(dt, kOp, [&](auto tag) {
    using T_ = decltype(tag);
    const double* st = stats.data<double>();
    const double *mean_ih = st, *rstd_ih = st + TN, *mean_hh = st + 2 * TN, *rstd_hh = st + 3 * TN,
                 *mean_c = st + 4 * TN, *rstd_c = st + 5 * TN;
    const T_* pa = act.data<T_>();
    const T_* pc = cs.data<T_>();
    const T_* ptu = tus.data<T_>();
    const T_* pd = dout.data<T_>();
    const T_* pq = q.data<T_>();
    T_* pg = dG.data<T_>();
    T_* pdq = dQ.data<T_>();
    T_* pdh = dh.data<T_>();
    T_* pdc = dc.data<T_>();
    T_* du = du_buf.data<T_>();
    T_* dcn = dcn_buf.data<T_>();
    const bool parallel_rows = N * G4 >= detail::kParallelGrain;
    std::copy(pd + T * N * H, pd + (T + 1) * N * H, pdc);  // dL/dc_T from the output row T
    for (std::int64_t t = T - 1; t >= 0; --t) {
      const T_* c_prev = t == 0 ? c0.data<T_>() : pc + (t - 1) * N * H;
      detail::parallel_for(N, parallel_rows, [&](std::int64_t n) {
        const T_* ar = pa + (t * N + n) * G4;
        const T_* tr = ptu + (t * N + n) * H;
        const T_* dor = pd + (t * N + n) * H;
        const T_* dhr = pdh + n * H;
        T_* gr = pg + (t * N + n) * G4;
        T_* dur = du + n * H;
#pragma omp simd
        for (std::int64_t j = 0; j < H; ++j) {
          const T_ o = ar[3 * H + j], tu = tr[j], dht = dor[j] + dhr[j];
          gr[3 * H + j] = dht * tu * o * (T_(1) - o);  // dgates_o = dh tanh(u) o (1 - o)
          dur[j] = dht * o * (T_(1) - tu * tu);        // du = dh o (1 - tanh(u)^2)
        }
      });
      // dc_t += LN_c backward of du at c_t
      norm_kernels::row_backward<T_>(pc + t * N * H, du, NormSpec::layer(N, H), mean_c + t * N, rstd_c + t * N,
                                     ptr<T_>(ln.c_weight), true, dcn, data_or_null(s_c_w), data_or_null(s_c_b));
      detail::parallel_for(N, parallel_rows, [&](std::int64_t n) {
        const T_* ar = pa + (t * N + n) * G4;
        const T_* cp = c_prev + n * H;
        const T_* dnr = dcn + n * H;
        T_* gr = pg + (t * N + n) * G4;
        T_* dcr = pdc + n * H;
#pragma omp simd
        for (std::int64_t j = 0; j < H; ++j) {
          const T_ i = ar[j], f = ar[H + j], g = ar[2 * H + j];
          const T_ dct = dcr[j] + dnr[j];
          gr[j] = dct * g * i * (T_(1) - i);          // dgates_i
          gr[H + j] = dct * cp[j] * f * (T_(1) - f);  // dgates_f
          gr[2 * H + j] = dct * i * (T_(1) - g * g);  // dgates_g
          dcr[j] = dct * f;                           // dL/dc_{t-1}
        }
      });
      if (!s_bias.empty())  // dbias += column sums of dG_t, while dG_t is in cache
        for (std::int64_t n = 0; n < N; ++n) {
          const T_* gr = pg + (t * N + n) * G4;
          double* sb = s_bias.data();
#pragma omp simd
          for (std::int64_t j = 0; j < G4; ++j) sb[j] += static_cast<double>(gr[j]);
        }
      // dQ_t = LN_hh backward of dgates_t at Q_t
      T_* dqt = pdq + t * N * G4;
      norm_kernels::row_backward<T_>(pq + t * N * G4, pg + t * N * G4, NormSpec::layer(N, G4), mean_hh + t * N,
                                     rstd_hh + t * N, ptr<T_>(ln.hh_weight), true, dqt, data_or_null(s_hh_w),
                                     data_or_null(s_hh_b));
      // dh_{t-1} = dQ_t W_hh
      if (t > 0 || h0.requires_grad())
        detail::gemm(false, false, N, H, G4, T_(1), dqt, G4, w_hh.data<T_>(), H, T_(0), pdh, H);
    }
    // dP = LN_ih backward of dG at P (only what is wanted: dP for x and w_ih, the sums for LN_ih)
    const bool need_dp = x.requires_grad() || w_ih.requires_grad();
    Tensor dp_buf = need_dp ? empty({TN, G4}, dt) : Tensor();
    T_* dp = need_dp ? dp_buf.data<T_>() : nullptr;
    if (need_dp || !s_ih_w.empty() || !s_ih_b.empty())
      norm_kernels::row_backward<T_>(p.data<T_>(), pg, NormSpec::layer(TN, G4), mean_ih, rstd_ih,
                                     ptr<T_>(ln.ih_weight), true, dp, data_or_null(s_ih_w), data_or_null(s_ih_b));
    if (x.requires_grad()) {  // dX = dP W_ih
      dx = empty({T, N, F}, dt);
      detail::gemm(false, false, TN, F, G4, T_(1), dp, G4, w_ih.data<T_>(), F, T_(0), dx.data<T_>(), F);
    }
    if (w_ih.requires_grad()) {  // dW_ih = dP^T X
      dw_ih = empty({G4, F}, dt);
      detail::gemm(true, false, G4, F, TN, T_(1), dp, G4, x.data<T_>(), F, T_(0), dw_ih.data<T_>(), F);
    }
    if (w_hh.requires_grad()) {  // dW_hh = dQ_1^T h_0 + [dQ_2 .. dQ_T]^T [h_1 .. h_{T-1}]
      dw_hh = empty({G4, H}, dt);
      T_* dw = dw_hh.data<T_>();
      detail::gemm(true, false, G4, H, N, T_(1), pdq, G4, h0.data<T_>(), H, T_(0), dw, H);
      if (T > 1)
        detail::gemm(true, false, G4, H, (T - 1) * N, T_(1), pdq + N * G4, G4, out.data<T_>(), H, T_(1), dw, H);
    }
  });
  const auto as_grad = [&](const Tensor& param, const std::vector<double>& s) {
    return s.empty() ? Tensor() : from_vector(s, param.shape(), dt);
  };
  if (!s_bias.empty()) dbias = as_grad(bias, s_bias);
  return {dx,
          h0.requires_grad() ? dh : Tensor(),
          c0.requires_grad() ? dc : Tensor(),
          dw_ih,
          dw_hh,
          dbias,
          as_grad(ln.ih_weight, s_ih_w),
          as_grad(ln.ih_bias, s_ih_b),
          as_grad(ln.hh_weight, s_hh_w),
          as_grad(ln.hh_bias, s_hh_b),
          as_grad(ln.c_weight, s_c_w),
          as_grad(ln.c_bias, s_c_b)};
}

}  // namespace

Tensor ln_lstm_sequence(const Tensor& x_in, const Tensor& h0_in, const Tensor& c0_in, const Tensor& w_ih_in,
                        const Tensor& w_hh_in, const Tensor& bias_in, const LnLstmNorms& ln_in) {
  const Dims d = check_args(x_in, h0_in, c0_in, w_ih_in, w_hh_in, bias_in, ln_in);
  const Tensor x = x_in.contiguous();  // X (T N, F) as one matrix
  const Tensor h0 = h0_in.contiguous(), c0 = c0_in.contiguous();
  const Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  const auto cont = [](const Tensor& t) { return t.defined() ? t.contiguous() : Tensor(); };
  const Tensor bias = cont(bias_in);
  const LnLstmNorms ln{cont(ln_in.ih_weight), cont(ln_in.ih_bias), cont(ln_in.hh_weight),
                       cont(ln_in.hh_bias),   cont(ln_in.c_weight), cont(ln_in.c_bias), ln_in.eps};
  const std::int64_t T = d.T, N = d.N, F = d.F, H = d.H, G4 = 4 * d.H, TN = d.T * d.N;
  const DType dt = x.dtype();
  Tensor out = empty({T + 1, N, H}, dt);  // h_1..h_T, c_T
  Tensor p = empty({T, N, G4}, dt);       // P = X W_ih^T
  Tensor q = empty({T, N, G4}, dt);       // Q_t = h_{t-1} W_hh^T
  Tensor act = empty({T, N, G4}, dt);     // A_t, then gates_t, overwritten by [i, f, g, o]_t
  Tensor cs = empty({T, N, H}, dt);       // c_1..c_T
  Tensor tus = empty({T, N, H}, dt);      // tanh(u_1)..tanh(u_T)
  // mean and rstd of every LayerNorm row (float64, as the core keeps them): ih, hh, c; T N each
  Tensor stats = empty({6, TN}, DType::f64);
  dispatch_float(dt, kOp, [&](auto tag) {
    using T_ = decltype(tag);
    double* st = stats.data<double>();
    double *mean_ih = st, *rstd_ih = st + TN, *mean_hh = st + 2 * TN, *rstd_hh = st + 3 * TN,
           *mean_c = st + 4 * TN, *rstd_c = st + 5 * TN;
    std::vector<double> var(static_cast<std::size_t>(TN));  // the kernels' output, not needed afterwards
    // A = LN_ih(X W_ih^T), all steps
    T_* pp = p.data<T_>();
    T_* pa = act.data<T_>();
    detail::gemm(false, true, TN, G4, F, T_(1), x.data<T_>(), F, w_ih.data<T_>(), F, T_(0), pp, G4);
    norm_kernels::row_forward<T_>(pp, NormSpec::layer(TN, G4), ptr<T_>(ln.ih_weight), ptr<T_>(ln.ih_bias), ln.eps,
                                  false, mean_ih, var.data(), rstd_ih, pa);
    // W_hh^T (H, 4H), transposed once (see lstm_sequence on operand layouts)
    const Tensor wt_buf = empty({H, G4}, dt);
    T_* wt = wt_buf.data<T_>();
    transpose_into(w_hh.data<T_>(), G4, H, H, wt, G4);
    Tensor lnq_buf = empty({N, G4}, dt), u_buf = empty({N, H}, dt);  // LN_hh(Q_t), u_t of one step
    T_* lnq = lnq_buf.data<T_>();
    T_* u = u_buf.data<T_>();
    T_* pq = q.data<T_>();
    T_* po = out.data<T_>();
    T_* pc = cs.data<T_>();
    T_* ptu = tus.data<T_>();
    const T_* pb = ptr<T_>(bias);
    const bool parallel_rows = N * G4 >= detail::kParallelGrain;
    for (std::int64_t t = 0; t < T; ++t) {
      const T_* h_prev = t == 0 ? h0.data<T_>() : po + (t - 1) * N * H;
      const T_* c_prev = t == 0 ? c0.data<T_>() : pc + (t - 1) * N * H;
      T_* qt = pq + t * N * G4;
      T_* at = pa + t * N * G4;
      T_* ct = pc + t * N * H;
      detail::gemm(false, false, N, G4, H, T_(1), h_prev, H, wt, G4, T_(0), qt, G4);  // Q_t = h_{t-1} W_hh^T
      norm_kernels::row_forward<T_>(qt, NormSpec::layer(N, G4), ptr<T_>(ln.hh_weight), ptr<T_>(ln.hh_bias), ln.eps,
                                    false, mean_hh + t * N, var.data(), rstd_hh + t * N, lnq);
      detail::parallel_for(N, parallel_rows, [&](std::int64_t n) {
        T_* ar = at + n * G4;
        const T_* lr = lnq + n * G4;
        const T_* cp = c_prev + n * H;
        T_* cr = ct + n * H;
#pragma omp simd
        for (std::int64_t j = 0; j < G4; ++j) ar[j] += lr[j] + (pb ? pb[j] : T_(0));  // gates = A_t + LN_hh(Q_t) + bias
#pragma omp simd
        for (std::int64_t j = 0; j < H; ++j) {
          const T_ i = detail::sigmoid_of(ar[j]), f = detail::sigmoid_of(ar[H + j]);
          const T_ g = detail::tanh_of(ar[2 * H + j]), o = detail::sigmoid_of(ar[3 * H + j]);
          ar[j] = i;
          ar[H + j] = f;
          ar[2 * H + j] = g;
          ar[3 * H + j] = o;
          cr[j] = f * cp[j] + i * g;  // c_t = f c_{t-1} + i g
        }
      });
      norm_kernels::row_forward<T_>(ct, NormSpec::layer(N, H), ptr<T_>(ln.c_weight), ptr<T_>(ln.c_bias), ln.eps, false,
                                    mean_c + t * N, var.data(), rstd_c + t * N, u);  // u_t = LN_c(c_t)
      detail::parallel_for(N, parallel_rows, [&](std::int64_t n) {
        const T_* ar = at + n * G4;
        const T_* ur = u + n * H;
        T_* tr = ptu + (t * N + n) * H;
        T_* hr = po + (t * N + n) * H;
#pragma omp simd
        for (std::int64_t j = 0; j < H; ++j) {
          const T_ tu = detail::tanh_of(ur[j]);
          tr[j] = tu;
          hr[j] = ar[3 * H + j] * tu;  // h_t = o tanh(u_t)
        }
      });
    }
    std::copy(pc + (T - 1) * N * H, pc + T * N * H, po + T * N * H);  // row T = c_T
  });
  auto saved = std::make_shared<const Saved>(Saved{x, h0, c0, w_ih, w_hh, bias, ln, p, q, act, cs, tus, stats, d});
  return record(
      kOp,
      {x, h0, c0, w_ih, w_hh, bias, ln.ih_weight, ln.ih_bias, ln.hh_weight, ln.hh_bias, ln.c_weight, ln.c_bias}, out,
      [saved](BackwardContext& ctx, const Tensor& dout) -> Grads {
        const Saved& sv = *saved;
        if (ctx.create_graph()) return backward_composite(sv.x, sv.h0, sv.c0, sv.w_ih, sv.w_hh, sv.bias, sv.ln, dout, sv.d);
        return fused_backward(sv, ctx.output(), dout);
      },
      SaveOutput::yes);
}


}  // namespace ng
