// Fused LSTM cell pointwise ops (ops/rnn.cpp). An LSTM step is a GEMM that produces the
// gate pre-activations, then about ten small elementwise ops per step (four activations,
// products and sums, and their backward); done one op at a time they cost more than the
// GEMM at typical sizes. These ops do the pointwise part in one pass each, forward and
// analytic backward side by side (as PyTorch's fused LSTM cell).
//
// gates (N, 4H) holds the pre-activations in PyTorch's order [i, f, g, o]:
//     i = sigmoid(gates_i), f = sigmoid(gates_f), g = tanh(gates_g), o = sigmoid(gates_o)
//     c' = f * c + i * g                 lstm_cell_state(gates, c)
//     h' = o * tanh(u)                   lstm_cell_output(gates, u), u = c' (LSTM) or
//                                        LayerNorm(c') (LayerNorm-LSTM, Ba et al. 2016)
// Differentiable twice: under create_graph the backward is written with tensor ops.
#pragma once
#include <utility>

#include "autograd/tape.h"
#include "autograd/tensor.h"

namespace ng {

// c' = f * c + i * g for gates (N, 4H) and c (N, H); returns c' (N, H).
Tensor lstm_cell_state(const Tensor& gates, const Tensor& c);

// h' = o * tanh(u) for gates (N, 4H) (only the o block is read) and u (N, H).
Tensor lstm_cell_output(const Tensor& gates, const Tensor& u);

// The plain LSTM cell: {h', c'} = {lstm_cell_output(gates, c'), c'} with c' = lstm_cell_state(gates, c).
std::pair<Tensor, Tensor> lstm_cell(const Tensor& gates, const Tensor& c);

// A whole single-layer LSTM over a sequence, fused (as cuDNN's / PyTorch's LSTM kernels):
//     gates_t = [x_t, h_{t-1}] [W_ih, W_hh]^T + (b_ih + b_hh)    one GEMM per step
//     c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)                 the cell above, t = 1..T
// x (T, N, F), h0 and c0 (N, H), w_ih (4H, F), w_hh (4H, H), b_ih and b_hh (4H) or undefined.
// Returns ONE tensor (T + 1, N, H): rows 0..T-1 hold h_1..h_T and row T holds c_T (an op
// has one output; callers take views of it, and gradients flowing into the views land in
// this op). The backward is backpropagation through time with the weight gradients summed
// over all steps in one GEMM each.
Tensor lstm_sequence(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                     const Tensor& b_ih = {}, const Tensor& b_hh = {});

// A whole single-layer LayerNorm-LSTM over a sequence, fused (ops/rnn_layer_norm.cpp), the cell
// of Ba, Kiros & Hinton 2016 as layers/recurrent.h's LayerNormLSTMCell computes it:
//     A = LN_ih(X W_ih^T)                      all T steps: one GEMM and one LayerNorm over T N rows
//     gates_t = A_t + LN_hh(h_{t-1} W_hh^T) + bias                          one GEMM per step
//     c_t = f c_{t-1} + i g,   h_t = o tanh(LN_c(c_t))                      (c_t unnormalized)
// x (T, N, F), h0 and c0 (N, H), w_ih (4H, F), w_hh (4H, H); bias (4H), the LayerNorms' gains
// and biases ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b (4H) and ln_c_w, ln_c_b (H), each optional
// (undefined: none); eps of the three LayerNorms. Returns (T + 1, N, H) = [h_1 .. h_T, c_T],
// as lstm_sequence. The LayerNorms are the normalization core's row kernels (norm_kernels.h).
struct LnLstmNorms {
  Tensor ih_weight{}, ih_bias{}, hh_weight{}, hh_bias{}, c_weight{}, c_bias{};
  double eps = 1e-5;
};
Tensor ln_lstm_sequence(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                        const Tensor& bias, const LnLstmNorms& ln);

}  // namespace ng
