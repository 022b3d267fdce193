// Fused LSTM cell pointwise ops: see rnn.h for the equations. Each op is one pass over its
// rows forward and one pass backward; the activations the backward needs are saved by the
// forward (so it evaluates no exp a second time).
//
// Derivatives used (s = sigmoid, s' = s (1 - s); tanh' = 1 - tanh^2):
//   c' = f c + i g:   dc'/di = g, dc'/df = c, dc'/dg = i, dc'/dc = f, so with dc = dL/dc'
//       dgates_i = dc g i (1 - i),   dgates_f = dc c f (1 - f),   dgates_g = dc i (1 - g^2),
//       dc_prev  = dc f,             dgates_o = 0.
//   h' = o tanh(u):   with dh = dL/dh' and t = tanh(u),
//       dgates_o = dh t o (1 - o),   du = dh o (1 - t^2),   dgates_i,f,g = 0.
#include "autograd/ops/rnn.h"

#include <algorithm>
#include <vector>

#include "autograd/blas.h"
#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "autograd/ops/rnn_detail.h"
#include "autograd/simd_math.h"

namespace ng {

using rnn_detail::dsigmoid;
using rnn_detail::gate_acts;
using rnn_detail::GateActs;
using rnn_detail::transpose_into;

namespace {

// gates (N, 4H) and a state (N, H) of the same dtype; returns H.
std::int64_t check_cell_args(const Tensor& gates, const Tensor& state, const char* op, const char* state_name) {
  if (gates.dim() != 2 || gates.size(1) % 4 != 0)
    fail<ShapeError>("{}: gates must have shape (N, 4H): got {}", op, gates.shape());
  const std::int64_t N = gates.size(0), H = gates.size(1) / 4;
  if (state.shape() != Shape{N, H})
    fail<ShapeError>("{}: {} must have shape (N, H) = [{}, {}] for gates {}: expected [{}, {}] vs actual {}", op,
                     state_name, N, H, gates.shape(), N, H, state.shape());
  if (state.dtype() != gates.dtype())
    fail<DTypeError>("{}: dtypes differ: gates {} vs {} {}", op, gates.dtype(), state_name, state.dtype());
  return H;
}

}  // namespace

Tensor lstm_cell_state(const Tensor& gates_in, const Tensor& c_in) {
  constexpr const char* op = "lstm_cell_state";
  const std::int64_t H = check_cell_args(gates_in, c_in, op, "c");
  const std::int64_t N = gates_in.size(0);
  const Tensor gates = gates_in.contiguous(), c = c_in.contiguous();
  Tensor c_next = empty({N, H}, gates.dtype());
  Tensor act = empty({N, 3 * H}, gates.dtype());  // saved [i, f, g] per row
  dispatch_float(gates.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* pg = gates.data<T>();
    const T* pc = c.data<T>();
    T* pa = act.data<T>();
    T* pn = c_next.data<T>();
    for (std::int64_t n = 0; n < N; ++n) {
      const T* gr = pg + n * 4 * H;
      const T* cr = pc + n * H;
      T* ar = pa + n * 3 * H;
      T* nr = pn + n * H;
#pragma omp simd
      for (std::int64_t j = 0; j < H; ++j) {
        const T i = detail::sigmoid_of(gr[j]), f = detail::sigmoid_of(gr[H + j]), g = detail::tanh_of(gr[2 * H + j]);
        ar[j] = i;
        ar[H + j] = f;
        ar[2 * H + j] = g;
        nr[j] = f * cr[j] + i * g;  // c' = f c + i g
      }
    }
  });
  return record(op, {gates, c}, c_next, [gates, c, act, N, H](BackwardContext& ctx, const Tensor& dc_in) -> Grads {
    if (ctx.create_graph()) {  // the same formulas with differentiable ops
      const GateActs a = gate_acts(gates);
      Tensor dgates, dc_prev;
      if (gates.requires_grad())
        dgates = cat({mul(dc_in, mul(a.g, dsigmoid(a.i))), mul(dc_in, mul(c, dsigmoid(a.f))),
                      mul(dc_in, mul(a.i, rsub(1.0, mul(a.g, a.g)))), zeros_like(a.o)},
                     -1);
      if (c.requires_grad()) dc_prev = mul(dc_in, a.f);
      return {dgates, dc_prev};
    }
    const Tensor dc = dc_in.contiguous();
    Tensor dgates = gates.requires_grad() ? empty({N, 4 * H}, gates.dtype()) : Tensor();
    Tensor dc_prev = c.requires_grad() ? empty({N, H}, gates.dtype()) : Tensor();
    dispatch_float(gates.dtype(), "lstm_cell_state", [&](auto tag) {
      using T = decltype(tag);
      const T* pa = act.data<T>();
      const T* pc = c.data<T>();
      const T* pd = dc.data<T>();
      T* pdg = dgates.defined() ? dgates.data<T>() : nullptr;
      T* pdc = dc_prev.defined() ? dc_prev.data<T>() : nullptr;
      for (std::int64_t n = 0; n < N; ++n) {
        const T* ar = pa + n * 3 * H;
        const T* cr = pc + n * H;
        const T* dr = pd + n * H;
        if (pdg) {
          T* gr = pdg + n * 4 * H;
#pragma omp simd
          for (std::int64_t j = 0; j < H; ++j) {
            const T i = ar[j], f = ar[H + j], g = ar[2 * H + j], d = dr[j];
            gr[j] = d * g * i * (T(1) - i);              // dgates_i = dc g i (1 - i)
            gr[H + j] = d * cr[j] * f * (T(1) - f);      // dgates_f = dc c f (1 - f)
            gr[2 * H + j] = d * i * (T(1) - g * g);      // dgates_g = dc i (1 - g^2)
            gr[3 * H + j] = T(0);                        // c' does not depend on o
          }
        }
        if (pdc) {
          T* pr = pdc + n * H;
#pragma omp simd
          for (std::int64_t j = 0; j < H; ++j) pr[j] = dr[j] * ar[H + j];  // dc_prev = dc f
        }
      }
    });
    return {dgates, dc_prev};
  });
}

Tensor lstm_cell_output(const Tensor& gates_in, const Tensor& u_in) {
  constexpr const char* op = "lstm_cell_output";
  const std::int64_t H = check_cell_args(gates_in, u_in, op, "u");
  const std::int64_t N = gates_in.size(0);
  const Tensor gates = gates_in.contiguous(), u = u_in.contiguous();
  Tensor h = empty({N, H}, gates.dtype());
  Tensor act = empty({N, 2 * H}, gates.dtype());  // saved [o, tanh(u)] per row
  dispatch_float(gates.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* pg = gates.data<T>();
    const T* pu = u.data<T>();
    T* pa = act.data<T>();
    T* ph = h.data<T>();
    for (std::int64_t n = 0; n < N; ++n) {
      const T* gr = pg + n * 4 * H + 3 * H;  // the o block
      const T* ur = pu + n * H;
      T* ar = pa + n * 2 * H;
      T* hr = ph + n * H;
#pragma omp simd
      for (std::int64_t j = 0; j < H; ++j) {
        const T o = detail::sigmoid_of(gr[j]), t = detail::tanh_of(ur[j]);
        ar[j] = o;
        ar[H + j] = t;
        hr[j] = o * t;  // h' = o tanh(u)
      }
    }
  });
  return record(op, {gates, u}, h, [gates, u, act, N, H](BackwardContext& ctx, const Tensor& dh_in) -> Grads {
    if (ctx.create_graph()) {  // the same formulas with differentiable ops
      const Tensor o = sigmoid(chunk(gates, 4, -1)[3]), t = tanh(u);
      Tensor dgates, du;
      if (gates.requires_grad()) {
        const Tensor z = zeros_like(o);
        dgates = cat({z, z, z, mul(dh_in, mul(t, dsigmoid(o)))}, -1);
      }
      if (u.requires_grad()) du = mul(dh_in, mul(o, rsub(1.0, mul(t, t))));
      return {dgates, du};
    }
    const Tensor dh = dh_in.contiguous();
    Tensor dgates = gates.requires_grad() ? empty({N, 4 * H}, gates.dtype()) : Tensor();
    Tensor du = u.requires_grad() ? empty({N, H}, gates.dtype()) : Tensor();
    dispatch_float(gates.dtype(), "lstm_cell_output", [&](auto tag) {
      using T = decltype(tag);
      const T* pa = act.data<T>();
      const T* pd = dh.data<T>();
      T* pdg = dgates.defined() ? dgates.data<T>() : nullptr;
      T* pdu = du.defined() ? du.data<T>() : nullptr;
      for (std::int64_t n = 0; n < N; ++n) {
        const T* ar = pa + n * 2 * H;
        const T* dr = pd + n * H;
        if (pdg) {
          T* gr = pdg + n * 4 * H;
          std::fill(gr, gr + 3 * H, T(0));  // h' does not depend on i, f, g directly
#pragma omp simd
          for (std::int64_t j = 0; j < H; ++j) {
            const T o = ar[j], t = ar[H + j];
            gr[3 * H + j] = dr[j] * t * o * (T(1) - o);  // dgates_o = dh tanh(u) o (1 - o)
          }
        }
        if (pdu) {
          T* ur = pdu + n * H;
#pragma omp simd
          for (std::int64_t j = 0; j < H; ++j) {
            const T o = ar[j], t = ar[H + j];
            ur[j] = dr[j] * o * (T(1) - t * t);  // du = dh o (1 - tanh(u)^2)
          }
        }
      }
    });
    return {dgates, du};
  });
}

std::pair<Tensor, Tensor> lstm_cell(const Tensor& gates, const Tensor& c) {
  Tensor c_next = lstm_cell_state(gates, c);
  Tensor h_next = lstm_cell_output(gates, c_next);
  return {h_next, c_next};
}

// ---- the fused sequence ---------------------------------------------------------------------
//
// Forward, per step t = 1..T (A_t = the activations [i, f, g, o] of step t, saved):
//     gates_t = x_t W_ih^T + h_{t-1} W_hh^T + b_ih + b_hh = Z_t W^T + b
//     c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)
// with Z_t = [x_t, h_{t-1}] (N, F+H) and W = [W_ih, W_hh] (4H, F+H): ONE GEMM per step with
// K = F + H. The rows Z_t of all steps, Z (T N, F+H), are saved for the weight gradient.
// Backward through time, t = T..1, with dh_t = dL/dh_t from the output plus the recurrent
// part from step t+1, and dc carried from step t+1 (dc = dL/dc_T at the start):
//     dgates_o = dh_t tanh(c_t) o (1 - o)
//     dc      += dh_t o (1 - tanh(c_t)^2)
//     dgates_i = dc g i (1 - i),  dgates_f = dc c_{t-1} f (1 - f),  dgates_g = dc i (1 - g^2)
//     dc      <- dc f                                      (dL/dc_{t-1})
//     dh_{t-1} += dgates_t W_hh                            (one GEMM per step)
// and, with dG the dgates of all steps stacked (T N, 4H):
//     [dW_ih, dW_hh] = dW = dG^T Z,  dX = dG W_ih,  db_ih = db_hh = column sums of dG
// (one GEMM each instead of one per step).
//
// Operand layouts, chosen by measurement (OpenBLAS 0.3.21, Zen 3, the demo's T 28, N 64,
// F 28, H 128): BLAS copies ("packs") both operands of every product into its own layout
// first, and copying a large operand that is passed transposed costs the most. So the
// forward multiplies by W^T stored as (F+H, 4H) -- transposed once per call, not packed
// transposed 28 times -- and the backward computes dW^T = Z^T dG (F+H, 4H) rather than
// dG^T Z, so that the large dG (T N, 4H) is read as it lies. One GEMM per step on Z_t also
// replaces a (T N, 4H) GEMM for X W_ih^T whose whole output BLAS first zeroed (beta = 0), and
// the one GEMM for dW packs dG once instead of twice. (On the demo's training step: 4% fewer
// instructions, and the transposing copy of dG fell from 7% of the profile to 2%.)

namespace {

struct SeqDims {
  std::int64_t T, N, F, H;
};

SeqDims check_sequence_args(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                            const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh) {
  constexpr const char* op = "lstm_sequence";
  if (x.dim() != 3 || x.size(0) == 0)
    fail<ShapeError>("{}: x must have shape (T, N, F) with T >= 1: got {}", op, x.shape());
  if (w_hh.dim() != 2 || w_hh.size(0) != 4 * w_hh.size(1))
    fail<ShapeError>("{}: w_hh must have shape (4H, H): got {}", op, w_hh.shape());
  const std::int64_t T = x.size(0), N = x.size(1), F = x.size(2), H = w_hh.size(1);
  if (w_ih.shape() != Shape{4 * H, F})
    fail<ShapeError>("{}: w_ih must have shape (4H, F): expected [{}, {}] vs actual {}", op, 4 * H, F, w_ih.shape());
  for (const auto& [s, name] : {std::pair{&h0, "h0"}, std::pair{&c0, "c0"}})
    if (s->shape() != Shape{N, H})
      fail<ShapeError>("{}: {} must have shape (N, H): expected [{}, {}] vs actual {}", op, name, N, H, s->shape());
  for (const auto& [b, name] : {std::pair{&b_ih, "b_ih"}, std::pair{&b_hh, "b_hh"}})
    if (b->defined() && b->shape() != Shape{4 * H})
      fail<ShapeError>("{}: {} must have shape (4H): expected [{}] vs actual {}", op, name, 4 * H, b->shape());
  for (const auto& [t, name] : {std::pair{&h0, "h0"}, std::pair{&c0, "c0"}, std::pair{&w_ih, "w_ih"},
                                std::pair{&w_hh, "w_hh"}, std::pair{&b_ih, "b_ih"}, std::pair{&b_hh, "b_hh"}})
    if (t->defined() && t->dtype() != x.dtype())
      fail<DTypeError>("{}: dtypes differ: x {} vs {} {}", op, x.dtype(), name, t->dtype());
  return {T, N, F, H};
}

// The backward with differentiable ops, under create_graph: the forward is recomputed step by
// step from the saved inputs with tensor ops (so that the activations depend on the inputs in
// the new graph), then the same BPTT formulas as the fused kernel.
Grads sequence_backward_composite(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                                  const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh, const Tensor& dout,
                                  const SeqDims& d) {
  const std::int64_t T = d.T;
  std::vector<GateActs> a;
  std::vector<Tensor> hs{h0}, cs{c0}, tcs;  // h_0..h_T, c_0..c_T, tanh(c_1)..tanh(c_T)
  for (std::int64_t t = 0; t < T; ++t) {
    a.push_back(gate_acts(add(linear(select(x, 0, t), w_ih, b_ih), linear(hs.back(), w_hh, b_hh))));
    const GateActs& q = a.back();
    cs.push_back(add(mul(q.f, cs.back()), mul(q.i, q.g)));
    tcs.push_back(tanh(cs.back()));
    hs.push_back(mul(q.o, tcs.back()));
  }
  std::vector<Tensor> dgs(static_cast<std::size_t>(T));
  Tensor dh, dc = select(dout, 0, T);
  for (std::int64_t t = T - 1; t >= 0; --t) {
    const auto k = static_cast<std::size_t>(t);
    const GateActs& q = a[k];
    const Tensor& tc = tcs[k];
    const Tensor dht = dh.defined() ? add(select(dout, 0, t), dh) : select(dout, 0, t);
    const Tensor dgo = mul(dht, mul(tc, dsigmoid(q.o)));
    dc = add(dc, mul(dht, mul(q.o, rsub(1.0, mul(tc, tc)))));
    dgs[k] = cat({mul(dc, mul(q.g, dsigmoid(q.i))), mul(dc, mul(cs[k], dsigmoid(q.f))),
                  mul(dc, mul(q.i, rsub(1.0, mul(q.g, q.g)))), dgo},
                 -1);
    dc = mul(dc, q.f);
    dh = matmul(dgs[k], w_hh);
  }
  const Tensor dG = reshape(stack(dgs, 0), {T * d.N, 4 * d.H});
  Tensor dx, dw_ih, dw_hh, db_ih, db_hh;
  if (x.requires_grad()) dx = reshape(matmul(dG, w_ih), x.shape());
  if (w_ih.requires_grad()) dw_ih = matmul(transpose(dG, 0, 1), reshape(x, {T * d.N, d.F}));
  if (w_hh.requires_grad()) {
    hs.pop_back();  // Hprev = h_0 .. h_{T-1}
    dw_hh = matmul(transpose(dG, 0, 1), reshape(stack(hs, 0), {T * d.N, d.H}));
  }
  if (b_ih.defined() && b_ih.requires_grad()) db_ih = sum(dG, {0});
  if (b_hh.defined() && b_hh.requires_grad()) db_hh = sum(dG, {0});
  return {dx, h0.requires_grad() ? dh : Tensor(), c0.requires_grad() ? dc : Tensor(), dw_ih, dw_hh, db_ih, db_hh};
}

}  // namespace

Tensor lstm_sequence(const Tensor& x_in, const Tensor& h0_in, const Tensor& c0_in, const Tensor& w_ih_in,
                     const Tensor& w_hh_in, const Tensor& b_ih, const Tensor& b_hh) {
  constexpr const char* op = "lstm_sequence";
  const SeqDims d = check_sequence_args(x_in, h0_in, c0_in, w_ih_in, w_hh_in, b_ih, b_hh);
  // x is read one row of F features at a time: a view whose rows are contiguous (such as the
  // transposed batch-first input) is used as it is, without a copy.
  const Tensor x = x_in.strides()[2] == 1 ? x_in : x_in.contiguous();
  const Tensor h0 = h0_in.contiguous(), c0 = c0_in.contiguous();
  const Tensor w_ih = w_ih_in.contiguous(), w_hh = w_hh_in.contiguous();
  const std::int64_t K = d.F + d.H;
  Tensor out = empty({d.T + 1, d.N, d.H}, x.dtype());  // h_1..h_T, c_T
  Tensor act = empty({d.T, d.N, 4 * d.H}, x.dtype());  // gates_t, overwritten by [i, f, g, o]_t
  Tensor cs = empty({d.T, d.N, d.H}, x.dtype());       // c_1..c_T
  Tensor tcs = empty({d.T, d.N, d.H}, x.dtype());      // tanh(c_1)..tanh(c_T)
  Tensor z = empty({d.T, d.N, K}, x.dtype());          // Z_t = [x_t, h_{t-1}] per row
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T_ = decltype(tag);
    const std::int64_t T = d.T, N = d.N, F = d.F, H = d.H, G4 = 4 * d.H;
    // b = b_ih + b_hh: each step's rows start as b and the GEMM adds Z_t W^T to them (beta = 1),
    // which spares BLAS a pass that zeroes them first
    std::vector<T_> b(static_cast<std::size_t>(G4), T_(0));
    for (const Tensor* bt : {&b_ih, &b_hh})
      if (bt->defined()) {
        const Tensor bc = bt->contiguous();
        const T_* pb = bc.data<T_>();
        for (std::int64_t j = 0; j < G4; ++j) b[static_cast<std::size_t>(j)] += pb[j];
      }
    // W^T = [W_ih, W_hh]^T (F+H, 4H)
    const Tensor wt_buf = empty({K, G4}, x.dtype());  // (tensors come from the block cache, vectors from malloc)
    T_* wt = wt_buf.data<T_>();
    transpose_into(w_ih.data<T_>(), G4, F, F, wt, G4);
    transpose_into(w_hh.data<T_>(), G4, H, H, wt + F * G4, G4);
    // Z: the x_t parts of all rows, and h_0 in step 1's rows; h_t is written by step t.
    T_* pz = z.data<T_>();
    const T_* px = x.data<T_>();
    const std::int64_t sx_t = x.strides()[0], sx_n = x.strides()[1];
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t n = 0; n < N; ++n) {
        const T_* xr = px + t * sx_t + n * sx_n;
        std::copy(xr, xr + F, pz + (t * N + n) * K);
      }
    const T_* ph0 = h0.data<T_>();
    for (std::int64_t n = 0; n < N; ++n) std::copy(ph0 + n * H, ph0 + (n + 1) * H, pz + n * K + F);
    T_* pa = act.data<T_>();
    T_* po = out.data<T_>();
    T_* pc = cs.data<T_>();
    T_* ptc = tcs.data<T_>();
    const bool parallel_rows = N * G4 >= detail::kParallelGrain;  // the pointwise pass of a step, over rows
    for (std::int64_t t = 0; t < T; ++t) {
      const T_* c_prev = t == 0 ? c0.data<T_>() : pc + (t - 1) * N * H;
      T_* at = pa + t * N * G4;
      // gates_t = b + Z_t W^T
      for (std::int64_t n = 0; n < N; ++n) std::copy(b.begin(), b.end(), at + n * G4);
      detail::gemm(false, false, N, G4, K, T_(1), pz + t * N * K, K, wt, G4, T_(1), at, G4);
      detail::parallel_for(N, parallel_rows, [&](std::int64_t n) {
        T_* ar = at + n * G4;
        const T_* cp = c_prev + n * H;
        T_* cr = pc + (t * N + n) * H;
        T_* tr = ptc + (t * N + n) * H;
        T_* hr = po + (t * N + n) * H;
#pragma omp simd
        for (std::int64_t j = 0; j < H; ++j) {
          const T_ i = detail::sigmoid_of(ar[j]), f = detail::sigmoid_of(ar[H + j]);
          const T_ g = detail::tanh_of(ar[2 * H + j]), o = detail::sigmoid_of(ar[3 * H + j]);
          ar[j] = i;
          ar[H + j] = f;
          ar[2 * H + j] = g;
          ar[3 * H + j] = o;
          const T_ c = f * cp[j] + i * g;  // c_t = f c_{t-1} + i g
          const T_ tc = detail::tanh_of(c);
          cr[j] = c;
          tr[j] = tc;
          hr[j] = o * tc;  // h_t = o tanh(c_t)
        }
        if (t + 1 < T) std::copy(hr, hr + H, pz + ((t + 1) * N + n) * K + F);  // h_t into Z_{t+1}
      });
    }
    std::copy(pc + (T - 1) * N * H, pc + T * N * H, po + T * N * H);  // row T = c_T
  });
  return record(
      op, {x, h0, c0, w_ih, w_hh, b_ih, b_hh}, out,
      [x, h0, c0, w_ih, w_hh, b_ih, b_hh, act, cs, tcs, z, d, K](BackwardContext& ctx, const Tensor& dout_in) -> Grads {
        if (ctx.create_graph()) return sequence_backward_composite(x, h0, c0, w_ih, w_hh, b_ih, b_hh, dout_in, d);
        const std::int64_t T = d.T, N = d.N, F = d.F, H = d.H, G4 = 4 * d.H;
        const Tensor dout = dout_in.contiguous();
        const bool need_b = (b_ih.defined() && b_ih.requires_grad()) || (b_hh.defined() && b_hh.requires_grad());
        Tensor dG = empty({T, N, G4}, x.dtype());
        Tensor dh = zeros({N, H}, x.dtype());  // recurrent dL/dh_{t-1} from step t
        Tensor dc = empty({N, H}, x.dtype());  // dL/dc_t carried backwards
        Tensor dx, dw_ih, dw_hh, db_ih, db_hh;
        dispatch_float(x.dtype(), "lstm_sequence", [&](auto tag) {
          using T_ = decltype(tag);
          const T_* pa = act.data<T_>();
          const T_* pc = cs.data<T_>();
          const T_* ptc = tcs.data<T_>();
          const T_* pd = dout.data<T_>();
          T_* pg = dG.data<T_>();
          T_* pdh = dh.data<T_>();
          T_* pdc = dc.data<T_>();
          const bool parallel_rows = N * G4 >= detail::kParallelGrain;
          std::vector<double> db_sum(need_b ? static_cast<std::size_t>(G4) : 0, 0.0);  // db = column sums of dG
          double* ps = db_sum.data();
          std::copy(pd + T * N * H, pd + (T + 1) * N * H, pdc);  // dL/dc_T from the output row T
          for (std::int64_t t = T - 1; t >= 0; --t) {
            const T_* c_prev = t == 0 ? c0.data<T_>() : pc + (t - 1) * N * H;
            detail::parallel_for(N, parallel_rows, [&](std::int64_t n) {
              const T_* ar = pa + (t * N + n) * G4;
              const T_* cp = c_prev + n * H;
              const T_* tr = ptc + (t * N + n) * H;
              const T_* dor = pd + (t * N + n) * H;
              T_* gr = pg + (t * N + n) * G4;
              T_* dhr = pdh + n * H;
              T_* dcr = pdc + n * H;
#pragma omp simd
              for (std::int64_t j = 0; j < H; ++j) {
                const T_ i = ar[j], f = ar[H + j], g = ar[2 * H + j], o = ar[3 * H + j], tc = tr[j];
                const T_ dht = dor[j] + dhr[j];
                const T_ dct = dcr[j] + dht * o * (T_(1) - tc * tc);  // dc += dh o (1 - tanh(c)^2)
                gr[j] = dct * g * i * (T_(1) - i);                    // dgates_i
                gr[H + j] = dct * cp[j] * f * (T_(1) - f);            // dgates_f
                gr[2 * H + j] = dct * i * (T_(1) - g * g);            // dgates_g
                gr[3 * H + j] = dht * tc * o * (T_(1) - o);           // dgates_o
                dcr[j] = dct * f;                                     // dL/dc_{t-1}
              }
            });
            if (need_b)  // db += column sums of dG_t, while dG_t is still in cache
              for (std::int64_t n = 0; n < N; ++n) {
                const T_* gr = pg + (t * N + n) * G4;
#pragma omp simd
                for (std::int64_t j = 0; j < G4; ++j) ps[j] += static_cast<double>(gr[j]);
              }
            // dh_{t-1} = dgates_t W_hh
            if (t > 0 || h0.requires_grad())
              detail::gemm(false, false, N, H, G4, T_(1), pg + t * N * G4, G4, w_hh.data<T_>(), H, T_(0), pdh, H);
          }
          if (x.requires_grad()) {  // dX = dG W_ih
            dx = empty({T, N, F}, x.dtype());
            detail::gemm(false, false, T * N, F, G4, T_(1), pg, G4, w_ih.data<T_>(), F, T_(0), dx.data<T_>(), F);
          }
          if (w_ih.requires_grad() || w_hh.requires_grad()) {
            // dW^T = Z^T dG (F+H, 4H): rows 0..F-1 are dW_ih^T, rows F.. dW_hh^T; only the
            // columns [k0, k1) of Z whose weight requires grad.
            const std::int64_t k0 = w_ih.requires_grad() ? 0 : F, k1 = w_hh.requires_grad() ? K : F;
            const Tensor dwt_buf = empty({k1 - k0, G4}, x.dtype());
            T_* dwt = dwt_buf.data<T_>();
            detail::gemm(true, false, k1 - k0, G4, T * N, T_(1), z.data<T_>() + k0, K, pg, G4, T_(0), dwt, G4);
            if (w_ih.requires_grad()) {
              dw_ih = empty({G4, F}, x.dtype());
              transpose_into(dwt, F, G4, G4, dw_ih.data<T_>(), F);
            }
            if (w_hh.requires_grad()) {
              dw_hh = empty({G4, H}, x.dtype());
              transpose_into(dwt + (F - k0) * G4, H, G4, G4, dw_hh.data<T_>(), H);
            }
          }
          if (b_ih.defined() && b_ih.requires_grad()) db_ih = from_vector(db_sum, {G4}, x.dtype());
          if (b_hh.defined() && b_hh.requires_grad()) db_hh = from_vector(db_sum, {G4}, x.dtype());
        });
        return {dx, h0.requires_grad() ? dh : Tensor(), c0.requires_grad() ? dc : Tensor(), dw_ih, dw_hh, db_ih,
                db_hh};
      });
}

}  // namespace ng
