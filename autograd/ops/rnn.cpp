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

#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "autograd/simd_math.h"

namespace ng {

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

// The four activations of gates (N, 4H) as tensor ops (for the create_graph backward).
struct GateActs {
  Tensor i, f, g, o;
};
GateActs gate_acts(const Tensor& gates) {
  const auto q = chunk(gates, 4, -1);
  return {sigmoid(q[0]), sigmoid(q[1]), tanh(q[2]), sigmoid(q[3])};
}
Tensor dsigmoid(const Tensor& s) { return mul(s, rsub(1.0, s)); }  // s (1 - s)

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

}  // namespace ng
