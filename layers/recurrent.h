// Recurrent layers with PyTorch's equations, gate layouts, parameter names and shapes.
//
// Cells (one time step; x (N, F) or unbatched (F), h and c (N, H)):
//   RNNCell:  h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)            (or relu)
//   LSTMCell: [i, f, g, o] = x W_ih^T + b_ih + h W_hh^T + b_hh         (gate blocks of H rows
//             i = sigmoid(i), f = sigmoid(f), g = tanh(g), o = sigmoid(o)  in weight_ih (4H, F))
//             c' = f * c + i * g,   h' = o * tanh(c')
//   GRUCell:  [r, z, n] blocks of W (3H, .):
//             r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//             n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h
// All weights and biases start U(-1/sqrt(H), 1/sqrt(H)), as PyTorch.
//
// Layer-normalized LSTM (Ba, Kiros & Hinton 2016, "Layer Normalization", the recurrent
// formulation; pitfalls.md #13): the two pre-activations are normalized separately over the 4H
// gate vector, each with its own gain and bias, and the cell state only inside the output tanh:
//   [i, f, g, o] = LN_ih(x W_ih^T) + LN_hh(h W_hh^T) + b
//   c' = sigmoid(f) * c + sigmoid(i) * tanh(g)          (c' is carried unnormalized)
//   h' = sigmoid(o) * tanh(LN_c(c'))
// LayerNormGRUCell likewise: LN_ih over x W_ih^T and LN_hh over h W_hh^T (3H each), then the
// GRU equations with b_ih / b_hh added after the normalization.
//
// Sequence modules RNN / LSTM / GRU / LayerNormLSTM / LayerNormGRU run a stack of num_layers
// cells over x (T, N, F) (or (N, T, F) with batch_first, or unbatched (T, F)). forward_seq returns
//   output  (T, N, H): the last layer's h at every step (batch_first: (N, T, H))
//   h_n     (num_layers, N, H): every layer's h after the last step; c_n likewise (LSTMs)
// and takes an optional initial state of the same shapes (zeros when undefined).
// bidirectional (as PyTorch): each layer has a second direction, with its own parameters
// (PyTorch's names with the suffix `_reverse`: weight_ih_l0_reverse, ...; for the LayerNorm
// kinds a child cell "l0_reverse"), that runs from t = T-1 down to 0. Its outputs, put back in
// time order, are concatenated after the forward direction's: output (T, N, 2H), and layer
// k > 0 reads 2H features. h_n (and c_n) are (num_layers * 2, N, H), ordered layer 0 forward,
// layer 0 reverse, layer 1 forward, ...; the initial state likewise.
// Layer k > 0 reads layer k-1's outputs, through dropout(p) in training (PyTorch's `dropout`).
// The input projections x W_ih^T of all T steps are one GEMM per layer; only h W_hh^T is
// computed step by step.
//
// Truncated backpropagation through time: process a long sequence in chunks and carry the
// final state into the next chunk detached from the graph,
//     RNNState s;                               // zeros
//     for (auto& chunk : chunks) {
//       auto r = lstm.forward_seq(chunk, s);
//       loss(r.output).backward();  optimizer.step();
//       s = r.state().detach();                 // the values flow on, the gradient stops here
//     }
// so each backward runs through one chunk only and the tape never holds more than a chunk.
#pragma once
#include <string>

#include "layers/module.h"

namespace ng::nn {

// A recurrent state: h, and c for LSTMs (undefined otherwise). Shapes (num_layers, N, H) for
// sequence modules, (N, H) for cells.
struct RNNState {
  Tensor h, c;
  RNNState detach() const { return {h.defined() ? h.detach() : Tensor(), c.defined() ? c.detach() : Tensor()}; }
};

struct RNNResult {
  Tensor output;  // (T, N, H) (batch_first: (N, T, H); unbatched: (T, H))
  Tensor h_n;     // (num_layers, N, H) (unbatched: (num_layers, H))
  Tensor c_n;     // LSTMs only
  RNNState state() const { return {h_n, c_n}; }
};

// ---- cells ------------------------------------------------------------------------------
class RNNCell : public Module {
 public:
  // nonlinearity "tanh" (default) or "relu"
  RNNCell(std::int64_t input_size, std::int64_t hidden_size, bool bias = true, std::string nonlinearity = "tanh",
          Generator* gen = nullptr, DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override { return step(x, Tensor()); }
  Tensor step(const Tensor& x, const Tensor& h);  // h undefined = zeros
  std::string type_name() const override { return "RNNCell"; }
  std::string extra_repr() const override;

  std::int64_t input_size, hidden_size;
  std::string nonlinearity;
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;
};

class LSTMCell : public Module {
 public:
  LSTMCell(std::int64_t input_size, std::int64_t hidden_size, bool bias = true, Generator* gen = nullptr,
           DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override { return step(x, {}).h; }
  RNNState step(const Tensor& x, const RNNState& state);  // undefined h / c = zeros
  std::string type_name() const override { return "LSTMCell"; }
  std::string extra_repr() const override;

  std::int64_t input_size, hidden_size;
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;
};

class GRUCell : public Module {
 public:
  GRUCell(std::int64_t input_size, std::int64_t hidden_size, bool bias = true, Generator* gen = nullptr,
          DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override { return step(x, Tensor()); }
  Tensor step(const Tensor& x, const Tensor& h);
  std::string type_name() const override { return "GRUCell"; }
  std::string extra_repr() const override;

  std::int64_t input_size, hidden_size;
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;
};

class LayerNorm;  // layers/layer_norm.h

// Parameters: weight_ih (4H, F), weight_hh (4H, H), bias (4H); children ln_ih, ln_hh
// (LayerNorm(4H)) and ln_c (LayerNorm(H)), gains 1 and biases 0 at the start.
class LayerNormLSTMCell : public Module {
 public:
  LayerNormLSTMCell(std::int64_t input_size, std::int64_t hidden_size, double eps = 1e-5, Generator* gen = nullptr,
                    DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override { return step(x, {}).h; }
  RNNState step(const Tensor& x, const RNNState& state);
  // The step from a precomputed LN_ih(x W_ih^T) (the sequence module does all steps at once).
  RNNState step_from_input_part(const Tensor& ih, const RNNState& state);
  std::string type_name() const override { return "LayerNormLSTMCell"; }
  std::string extra_repr() const override;

  std::int64_t input_size, hidden_size;
  Tensor weight_ih, weight_hh, bias;
  std::shared_ptr<LayerNorm> ln_ih, ln_hh, ln_c;
};

// Parameters: weight_ih (3H, F), weight_hh (3H, H), bias_ih (3H), bias_hh (3H); children
// ln_ih, ln_hh (LayerNorm(3H)).
class LayerNormGRUCell : public Module {
 public:
  LayerNormGRUCell(std::int64_t input_size, std::int64_t hidden_size, double eps = 1e-5, Generator* gen = nullptr,
                   DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override { return step(x, Tensor()); }
  Tensor step(const Tensor& x, const Tensor& h);
  // The step from a precomputed LN_ih(x W_ih^T) (without b_ih).
  Tensor step_from_input_part(const Tensor& ih, const Tensor& h);
  std::string type_name() const override { return "LayerNormGRUCell"; }
  std::string extra_repr() const override;

  std::int64_t input_size, hidden_size;
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;
  std::shared_ptr<LayerNorm> ln_ih, ln_hh;
};

// ---- sequence modules -------------------------------------------------------------------
struct RNNOptions {
  std::int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;
  double dropout = 0.0;      // between layers, training only
  bool bidirectional = false;  // a second stack reads the sequence backwards (see below)
  Generator* gen = nullptr;  // initialization and dropout masks (must outlive the module)
  DType dtype = DType::f32;
};

enum class RNNKind { rnn_tanh, rnn_relu, lstm, gru, ln_lstm, ln_gru };

// The shared driver of RNN, LSTM, GRU, LayerNormLSTM, LayerNormGRU.
class RNNBase : public Module {
 public:
  Tensor forward(const Tensor& x) override { return forward_seq(x).output; }
  RNNResult forward_seq(const Tensor& x, const RNNState& init = {});
  std::string type_name() const override;
  std::string extra_repr() const override;

  RNNKind kind;
  std::int64_t input_size, hidden_size;
  RNNOptions options;

 protected:
  RNNBase(RNNKind kind, std::int64_t input_size, std::int64_t hidden_size, RNNOptions opt, double ln_eps = 1e-5);

 private:
  std::int64_t gate_count() const;
  std::int64_t directions() const { return options.bidirectional ? 2 : 1; }
  // One layer and direction (index layer * directions + direction) over the whole sequence, in
  // the order given: x (T, N, F_k) -> outputs (T, N, H); h (and c) carried.
  Tensor run_layer(std::size_t k, const Tensor& x, Tensor& h, Tensor& c);
  // Per layer: PyTorch-named parameters (weight_ih_l{k}, ...) for the plain kinds,
  // a child cell "l{k}" for the layer-normalized kinds.
  struct Layer {
    Tensor weight_ih, weight_hh, bias_ih, bias_hh;
    std::shared_ptr<LayerNormLSTMCell> ln_lstm;
    std::shared_ptr<LayerNormGRUCell> ln_gru;
  };
  std::vector<Layer> layers_;
};

class RNN : public RNNBase {
 public:
  RNN(std::int64_t input_size, std::int64_t hidden_size, RNNOptions opt = {}, const std::string& nonlinearity = "tanh");
};
class LSTM : public RNNBase {
 public:
  LSTM(std::int64_t input_size, std::int64_t hidden_size, RNNOptions opt = {});
};
class GRU : public RNNBase {
 public:
  GRU(std::int64_t input_size, std::int64_t hidden_size, RNNOptions opt = {});
};
// opt.bias is ignored: each cell always has its bias (besides the LayerNorms' biases).
class LayerNormLSTM : public RNNBase {
 public:
  LayerNormLSTM(std::int64_t input_size, std::int64_t hidden_size, RNNOptions opt = {}, double eps = 1e-5);
};
class LayerNormGRU : public RNNBase {
 public:
  LayerNormGRU(std::int64_t input_size, std::int64_t hidden_size, RNNOptions opt = {}, double eps = 1e-5);
};

}  // namespace ng::nn
