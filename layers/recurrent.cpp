#include "layers/recurrent.h"

#include <cmath>

#include "autograd/ops/rnn.h"
#include "layers/dropout.h"
#include "layers/init.h"
#include "layers/layer_norm.h"
#include "layers/repr.h"

namespace ng::nn {

namespace {

// ---- the pointwise part of each cell, shared by cells and sequence modules -------------
// gates (N, 4H) = [i, f, g, o] pre-activations; c (N, H) -> (h', c'). The fused ops of
// autograd/ops/rnn.h compute c' = f c + i g and h' = o tanh(c') in one pass each.
RNNState lstm_pointwise(const Tensor& gates, const Tensor& c) {
  const auto [h_next, c_next] = lstm_cell(gates, c);
  return {h_next, c_next};
}

// Layer-normalized variant: h' = o tanh(LN_c(c')), c' carried unnormalized (Ba et al.).
RNNState ln_lstm_pointwise(const Tensor& gates, const Tensor& c, LayerNorm& ln_c) {
  const Tensor c_next = lstm_cell_state(gates, c);                   // c' = f c + i g
  return {lstm_cell_output(gates, ln_c.forward(c_next)), c_next};  // h' = o tanh(LN_c(c'))
}

// gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh, both (N, 3H) = [r, z, n] blocks:
// r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r gh_n),
// h' = (1 - z) n + z h = n + z (h - n)
Tensor gru_pointwise(const Tensor& gi, const Tensor& gh, const Tensor& h) {
  const auto a = chunk(gi, 3, -1), b = chunk(gh, 3, -1);
  const Tensor r = sigmoid(add(a[0], b[0])), z = sigmoid(add(a[1], b[1]));
  const Tensor n = tanh(add(a[2], mul(r, b[2])));
  return add(n, mul(z, sub(h, n)));
}

// A LayerNorm over the last dim of size n (gain 1, bias 0), in the module's dtype.
std::shared_ptr<LayerNorm> make_ln(std::int64_t n, double eps, DType dtype) {
  auto ln = std::make_shared<LayerNorm>(LayerNormOptions(Shape{n}).eps(eps));
  ln->to(dtype);
  return ln;
}

// PyTorch's recurrent init: every weight and bias U(-1/sqrt(H), 1/sqrt(H)).
Tensor rnn_param(const Shape& s, std::int64_t hidden, Generator* gen, DType dtype) {
  Tensor t = empty(s, dtype);
  const double k = hidden > 0 ? 1.0 / std::sqrt(static_cast<double>(hidden)) : 0.0;
  init::uniform_(t, -k, k, gen);
  return t;
}

// Sizes positive, and the parameter rows gates * hidden_size (and a bidirectional layer's
// input directions * hidden_size) representable: a huge hidden_size is a ShapeError here, not a
// signed overflow computing the weight shapes (the allocation limit refuses the rest).
void check_sizes(const std::string& who, std::int64_t input_size, std::int64_t hidden_size, std::int64_t gates = 1,
                 std::int64_t directions = 1) {
  if (input_size <= 0 || hidden_size <= 0)
    fail<ValueError>("{}: input_size and hidden_size must be positive, got {} and {}", who, input_size, hidden_size);
  std::int64_t rows = 0, features = 0;
  if (!size_mul(gates, hidden_size, rows) || !size_mul(directions, hidden_size, features))
    fail<ShapeError>("{}: hidden_size {} is too large: {} gates x {} direction(s) x hidden_size overflows int64 "
                     "(2^63 - 1); use a smaller hidden_size",
                     who, hidden_size, gates, directions);
}

// A cell's input: (N, F) or unbatched (F) -> (N, F); checks F.
Tensor cell_input(const Module& m, const Tensor& x, std::int64_t input_size) {
  if (x.dim() != 1 && x.dim() != 2)
    fail<ShapeError>("{}({}): expected a 1-d (F) or 2-d (N, F) input, got {}", m.type_name(), m.extra_repr(), x.shape());
  if (x.size(-1) != input_size)
    fail<ShapeError>("{}({}): input {} has {} features: expected {} vs actual {}", m.type_name(), m.extra_repr(),
                     x.shape(), x.size(-1), input_size, x.size(-1));
  return x.dim() == 1 ? unsqueeze(x, 0) : x;
}

// A cell's state tensor: undefined -> zeros (N, H); else (N, H) (or (H) when unbatched).
Tensor cell_state(const Module& m, const Tensor& s, const char* name, bool unbatched, std::int64_t N, std::int64_t H,
                  DType dtype) {
  if (!s.defined()) return zeros({N, H}, dtype);
  const Shape expect = unbatched ? Shape{H} : Shape{N, H};
  if (s.shape() != expect)
    fail<ShapeError>("{}({}): {} has the wrong shape: expected {} vs actual {}", m.type_name(), m.extra_repr(), name,
                     expect, s.shape());
  return unbatched ? unsqueeze(s, 0) : s;
}

Tensor maybe_squeeze(const Tensor& t, bool unbatched) { return unbatched ? squeeze(t, 0) : t; }

std::string cell_repr(std::int64_t in, std::int64_t hidden, bool bias) {
  std::string s = fmt::format("{}, {}", in, hidden);
  if (!bias) s += ", bias=False";
  return s;
}

}  // namespace

// ---- RNNCell ----------------------------------------------------------------------------
RNNCell::RNNCell(std::int64_t in, std::int64_t hidden, bool bias, std::string nl, Generator* gen, DType dtype)
    : input_size(in), hidden_size(hidden), nonlinearity(std::move(nl)) {
  check_sizes("RNNCell", in, hidden);
  if (nonlinearity != "tanh" && nonlinearity != "relu")
    fail<ValueError>("RNNCell: unknown nonlinearity '{}' (expected 'tanh' or 'relu')", nonlinearity);
  weight_ih = register_parameter("weight_ih", rnn_param({hidden, in}, hidden, gen, dtype));
  weight_hh = register_parameter("weight_hh", rnn_param({hidden, hidden}, hidden, gen, dtype));
  bias_ih = register_parameter("bias_ih", bias ? rnn_param({hidden}, hidden, gen, dtype) : Tensor());
  bias_hh = register_parameter("bias_hh", bias ? rnn_param({hidden}, hidden, gen, dtype) : Tensor());
}

Tensor RNNCell::step(const Tensor& x_in, const Tensor& h_in) {
  const Tensor x = cell_input(*this, x_in, input_size);
  const bool unbatched = x_in.dim() == 1;
  const Tensor h = cell_state(*this, h_in, "h", unbatched, x.size(0), hidden_size, x.dtype());
  // h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)
  const Tensor pre = add(linear(x, weight_ih, bias_ih), linear(h, weight_hh, bias_hh));
  return maybe_squeeze(nonlinearity == "tanh" ? tanh(pre) : relu(pre), unbatched);
}

std::string RNNCell::extra_repr() const {
  std::string s = cell_repr(input_size, hidden_size, bias_ih.defined());
  if (nonlinearity != "tanh") s += ", nonlinearity='" + nonlinearity + "'";
  return s;
}

// ---- LSTMCell ---------------------------------------------------------------------------
LSTMCell::LSTMCell(std::int64_t in, std::int64_t hidden, bool bias, Generator* gen, DType dtype)
    : input_size(in), hidden_size(hidden) {
  check_sizes("LSTMCell", in, hidden, 4);
  weight_ih = register_parameter("weight_ih", rnn_param({4 * hidden, in}, hidden, gen, dtype));
  weight_hh = register_parameter("weight_hh", rnn_param({4 * hidden, hidden}, hidden, gen, dtype));
  bias_ih = register_parameter("bias_ih", bias ? rnn_param({4 * hidden}, hidden, gen, dtype) : Tensor());
  bias_hh = register_parameter("bias_hh", bias ? rnn_param({4 * hidden}, hidden, gen, dtype) : Tensor());
}

RNNState LSTMCell::step(const Tensor& x_in, const RNNState& s) {
  const Tensor x = cell_input(*this, x_in, input_size);
  const bool unbatched = x_in.dim() == 1;
  const Tensor h = cell_state(*this, s.h, "h", unbatched, x.size(0), hidden_size, x.dtype());
  const Tensor c = cell_state(*this, s.c, "c", unbatched, x.size(0), hidden_size, x.dtype());
  const Tensor gates = add(linear(x, weight_ih, bias_ih), linear(h, weight_hh, bias_hh));
  const RNNState next = lstm_pointwise(gates, c);
  return {maybe_squeeze(next.h, unbatched), maybe_squeeze(next.c, unbatched)};
}

std::string LSTMCell::extra_repr() const { return cell_repr(input_size, hidden_size, bias_ih.defined()); }

// ---- GRUCell ----------------------------------------------------------------------------
GRUCell::GRUCell(std::int64_t in, std::int64_t hidden, bool bias, Generator* gen, DType dtype)
    : input_size(in), hidden_size(hidden) {
  check_sizes("GRUCell", in, hidden, 3);
  weight_ih = register_parameter("weight_ih", rnn_param({3 * hidden, in}, hidden, gen, dtype));
  weight_hh = register_parameter("weight_hh", rnn_param({3 * hidden, hidden}, hidden, gen, dtype));
  bias_ih = register_parameter("bias_ih", bias ? rnn_param({3 * hidden}, hidden, gen, dtype) : Tensor());
  bias_hh = register_parameter("bias_hh", bias ? rnn_param({3 * hidden}, hidden, gen, dtype) : Tensor());
}

Tensor GRUCell::step(const Tensor& x_in, const Tensor& h_in) {
  const Tensor x = cell_input(*this, x_in, input_size);
  const bool unbatched = x_in.dim() == 1;
  const Tensor h = cell_state(*this, h_in, "h", unbatched, x.size(0), hidden_size, x.dtype());
  return maybe_squeeze(gru_pointwise(linear(x, weight_ih, bias_ih), linear(h, weight_hh, bias_hh), h), unbatched);
}

std::string GRUCell::extra_repr() const { return cell_repr(input_size, hidden_size, bias_ih.defined()); }

// ---- LayerNormLSTMCell ------------------------------------------------------------------
LayerNormLSTMCell::LayerNormLSTMCell(std::int64_t in, std::int64_t hidden, double eps, Generator* gen, DType dtype)
    : input_size(in), hidden_size(hidden) {
  check_sizes("LayerNormLSTMCell", in, hidden, 4);
  weight_ih = register_parameter("weight_ih", rnn_param({4 * hidden, in}, hidden, gen, dtype));
  weight_hh = register_parameter("weight_hh", rnn_param({4 * hidden, hidden}, hidden, gen, dtype));
  bias = register_parameter("bias", rnn_param({4 * hidden}, hidden, gen, dtype));
  ln_ih = register_module("ln_ih", make_ln(4 * hidden, eps, dtype));
  ln_hh = register_module("ln_hh", make_ln(4 * hidden, eps, dtype));
  ln_c = register_module("ln_c", make_ln(hidden, eps, dtype));
}

RNNState LayerNormLSTMCell::step_from_input_part(const Tensor& ih, const RNNState& s) {
  // gates = LN_ih(x W_ih^T) + LN_hh(h W_hh^T) + b
  const Tensor gates = add(add(ih, ln_hh->forward(linear(s.h, weight_hh))), bias);
  return ln_lstm_pointwise(gates, s.c, *ln_c);
}

RNNState LayerNormLSTMCell::step(const Tensor& x_in, const RNNState& s) {
  const Tensor x = cell_input(*this, x_in, input_size);
  const bool unbatched = x_in.dim() == 1;
  const Tensor h = cell_state(*this, s.h, "h", unbatched, x.size(0), hidden_size, x.dtype());
  const Tensor c = cell_state(*this, s.c, "c", unbatched, x.size(0), hidden_size, x.dtype());
  const RNNState next = step_from_input_part(ln_ih->forward(linear(x, weight_ih)), {h, c});
  return {maybe_squeeze(next.h, unbatched), maybe_squeeze(next.c, unbatched)};
}

std::string LayerNormLSTMCell::extra_repr() const { return fmt::format("{}, {}", input_size, hidden_size); }

// ---- LayerNormGRUCell -------------------------------------------------------------------
LayerNormGRUCell::LayerNormGRUCell(std::int64_t in, std::int64_t hidden, double eps, Generator* gen, DType dtype)
    : input_size(in), hidden_size(hidden) {
  check_sizes("LayerNormGRUCell", in, hidden, 3);
  weight_ih = register_parameter("weight_ih", rnn_param({3 * hidden, in}, hidden, gen, dtype));
  weight_hh = register_parameter("weight_hh", rnn_param({3 * hidden, hidden}, hidden, gen, dtype));
  bias_ih = register_parameter("bias_ih", rnn_param({3 * hidden}, hidden, gen, dtype));
  bias_hh = register_parameter("bias_hh", rnn_param({3 * hidden}, hidden, gen, dtype));
  ln_ih = register_module("ln_ih", make_ln(3 * hidden, eps, dtype));
  ln_hh = register_module("ln_hh", make_ln(3 * hidden, eps, dtype));
}

Tensor LayerNormGRUCell::step_from_input_part(const Tensor& ih, const Tensor& h) {
  // gi = LN_ih(x W_ih^T) + b_ih, gh = LN_hh(h W_hh^T) + b_hh, then the GRU equations
  return gru_pointwise(add(ih, bias_ih), add(ln_hh->forward(linear(h, weight_hh)), bias_hh), h);
}

Tensor LayerNormGRUCell::step(const Tensor& x_in, const Tensor& h_in) {
  const Tensor x = cell_input(*this, x_in, input_size);
  const bool unbatched = x_in.dim() == 1;
  const Tensor h = cell_state(*this, h_in, "h", unbatched, x.size(0), hidden_size, x.dtype());
  return maybe_squeeze(step_from_input_part(ln_ih->forward(linear(x, weight_ih)), h), unbatched);
}

std::string LayerNormGRUCell::extra_repr() const { return fmt::format("{}, {}", input_size, hidden_size); }

// ---- sequence modules -------------------------------------------------------------------
RNNBase::RNNBase(RNNKind k, std::int64_t in, std::int64_t hidden, RNNOptions opt, double ln_eps)
    : kind(k), input_size(in), hidden_size(hidden), options(opt) {
  check_sizes(type_name(), in, hidden, gate_count(), directions());
  if (opt.num_layers <= 0) fail<ValueError>("{}: num_layers must be positive, got {}", type_name(), opt.num_layers);
  if (!(opt.dropout >= 0.0 && opt.dropout <= 1.0))
    fail<ValueError>("{}: dropout must be between 0 and 1, got {}", type_name(), opt.dropout);
  const std::int64_t G = gate_count();
  // PyTorch's names and order: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, then the
  // same with suffix _reverse (bidirectional), then l1 ...
  for (std::int64_t l = 0; l < opt.num_layers; ++l)
    for (std::int64_t dir = 0; dir < directions(); ++dir) {
      const std::int64_t f = l == 0 ? in : hidden * directions();
      const std::string sfx = fmt::format("l{}{}", l, dir ? "_reverse" : "");
      Layer L;
      if (kind == RNNKind::ln_lstm) {
        L.ln_lstm = register_module(sfx, std::make_shared<LayerNormLSTMCell>(f, hidden, ln_eps, opt.gen, opt.dtype));
      } else if (kind == RNNKind::ln_gru) {
        L.ln_gru = register_module(sfx, std::make_shared<LayerNormGRUCell>(f, hidden, ln_eps, opt.gen, opt.dtype));
      } else {
        L.weight_ih = register_parameter("weight_ih_" + sfx, rnn_param({G * hidden, f}, hidden, opt.gen, opt.dtype));
        L.weight_hh =
            register_parameter("weight_hh_" + sfx, rnn_param({G * hidden, hidden}, hidden, opt.gen, opt.dtype));
        if (opt.bias) {
          L.bias_ih = register_parameter("bias_ih_" + sfx, rnn_param({G * hidden}, hidden, opt.gen, opt.dtype));
          L.bias_hh = register_parameter("bias_hh_" + sfx, rnn_param({G * hidden}, hidden, opt.gen, opt.dtype));
        }
      }
      layers_.push_back(L);
    }
}

std::int64_t RNNBase::gate_count() const {
  switch (kind) {
    case RNNKind::lstm:
    case RNNKind::ln_lstm: return 4;
    case RNNKind::gru:
    case RNNKind::ln_gru: return 3;
    default: return 1;
  }
}

std::string RNNBase::type_name() const {
  switch (kind) {
    case RNNKind::lstm: return "LSTM";
    case RNNKind::gru: return "GRU";
    case RNNKind::ln_lstm: return "LayerNormLSTM";
    case RNNKind::ln_gru: return "LayerNormGRU";
    default: return "RNN";
  }
}

std::string RNNBase::extra_repr() const {
  // PyTorch: "10, 20, num_layers=2, batch_first=True" (options that differ from the defaults)
  std::string s = fmt::format("{}, {}", input_size, hidden_size);
  if (options.num_layers != 1) s += fmt::format(", num_layers={}", options.num_layers);
  if (kind == RNNKind::rnn_relu) s += ", nonlinearity='relu'";
  if (!options.bias && kind != RNNKind::ln_lstm && kind != RNNKind::ln_gru) s += ", bias=False";
  if (options.batch_first) s += ", batch_first=True";
  if (options.dropout != 0.0) s += ", dropout=" + detail::py_float(options.dropout);
  if (options.bidirectional) s += ", bidirectional=True";
  return s;
}

Tensor RNNBase::run_layer(std::size_t k, const Tensor& x, Tensor& h, Tensor& c) {
  const Layer& L = layers_[k];
  const std::int64_t T = x.size(0);
  if (kind == RNNKind::lstm) {
    // The fused whole-sequence op (autograd/ops/rnn.h): one GEMM per step for
    // [x_t, h_{t-1}] [W_ih, W_hh]^T, BPTT with one GEMM for both weight gradients. It returns
    // (T + 1, N, H) = [h_1 .. h_T, c_T]; the output, h_T and c_T are views of it.
    const Tensor hc = lstm_sequence(x, h, c, L.weight_ih, L.weight_hh, L.bias_ih, L.bias_hh);
    h = select(hc, 0, T - 1);
    c = select(hc, 0, T);
    return slice(hc, 0, 0, T);
  }
  if (kind == RNNKind::ln_lstm) {
    // The same for the LayerNorm-LSTM (ln_lstm_sequence): X W_ih^T and LN_ih over all steps at
    // once, one GEMM per step for h W_hh^T, the three LayerNorms by the normalization core's
    // row kernels, and BPTT in one backward.
    const LayerNormLSTMCell& cell = *L.ln_lstm;
    const LnLstmNorms norms{cell.ln_ih->weight, cell.ln_ih->bias, cell.ln_hh->weight, cell.ln_hh->bias,
                            cell.ln_c->weight,  cell.ln_c->bias,  cell.ln_ih->options().eps()};
    const Tensor hc = ln_lstm_sequence(x, h, c, cell.weight_ih, cell.weight_hh, cell.bias, norms);
    h = select(hc, 0, T - 1);
    c = select(hc, 0, T);
    return slice(hc, 0, 0, T);
  }
  // The input projection of step t, x_t W_ih^T (+ b_ih, or LN_ih for the LayerNorm-GRU).
  // Computed step by step rather than as one (T*N, F) GEMM followed by select(·, 0, t): the
  // backward of each select would fill a zero tensor of the whole (T, N, G*H) projection and
  // add it up, T times per sequence, which cost more than the GEMMs themselves. x_t itself is
  // a view, recorded only when x requires grad (deeper layers).
  auto input_part = [&](const Tensor& xt) {
    if (kind == RNNKind::ln_gru) return L.ln_gru->ln_ih->forward(linear(xt, L.ln_gru->weight_ih));
    return linear(xt, L.weight_ih, L.bias_ih);
  };
  std::vector<Tensor> hs;
  hs.reserve(static_cast<std::size_t>(T));
  for (std::int64_t t = 0; t < T; ++t) {
    const Tensor xt = input_part(select(x, 0, t));  // (N, G*H)
    switch (kind) {
      case RNNKind::rnn_tanh: h = tanh(add(xt, linear(h, L.weight_hh, L.bias_hh))); break;
      case RNNKind::rnn_relu: h = relu(add(xt, linear(h, L.weight_hh, L.bias_hh))); break;
      case RNNKind::lstm:
      case RNNKind::ln_lstm: break;  // the fused sequences above
      case RNNKind::gru: h = gru_pointwise(xt, linear(h, L.weight_hh, L.bias_hh), h); break;
      case RNNKind::ln_gru: h = L.ln_gru->step_from_input_part(xt, h); break;
    }
    hs.push_back(h);
  }
  return stack(hs, 0);  // (T, N, H)
}

RNNResult RNNBase::forward_seq(const Tensor& x_in, const RNNState& init) {
  const std::string who = fmt::format("{}({})", type_name(), extra_repr());
  if (x_in.dim() != 2 && x_in.dim() != 3)
    fail<ShapeError>("{}: expected a 3-d input ({}) or unbatched (T, F), got {}", who,
                     options.batch_first ? "N, T, F" : "T, N, F", x_in.shape());
  if (x_in.size(-1) != input_size)
    fail<ShapeError>("{}: input {} has {} features: expected {} vs actual {}", who, x_in.shape(), x_in.size(-1),
                     input_size, x_in.size(-1));
  const bool unbatched = x_in.dim() == 2;
  // Work in (T, N, F).
  Tensor x = unbatched ? unsqueeze(x_in, 1) : (options.batch_first ? transpose(x_in, 0, 1) : x_in);
  const std::int64_t L = options.num_layers, D = directions(), N = x.size(1), H = hidden_size;
  const bool is_lstm = kind == RNNKind::lstm || kind == RNNKind::ln_lstm;
  if (!is_lstm && init.c.defined()) fail<ValueError>("{}: got an initial cell state c, but only LSTMs have one", who);
  auto initial = [&](const Tensor& s, const char* name) {
    if (!s.defined()) return zeros({L * D, N, H}, x.dtype());
    const Shape expect = unbatched ? Shape{L * D, H} : Shape{L * D, N, H};
    if (s.shape() != expect)
      fail<ShapeError>("{}: initial {} has the wrong shape: expected {} vs actual {}", who, name, expect, s.shape());
    return unbatched ? unsqueeze(s, 1) : s;
  };
  const Tensor h0 = initial(init.h, "h"), c0 = is_lstm ? initial(init.c, "c") : Tensor();
  // time reversal t -> T-1-t (an index_select, so it has its gradient)
  const std::int64_t T = x.size(0);
  std::vector<std::int64_t> rev_idx(static_cast<std::size_t>(T));
  for (std::int64_t t = 0; t < T; ++t) rev_idx[static_cast<std::size_t>(t)] = T - 1 - t;
  const Tensor reversed = from_vector(rev_idx, Shape{T});

  std::vector<Tensor> h_n, c_n;
  for (std::int64_t l = 0; l < L; ++l) {
    if (l > 0 && options.dropout > 0.0) x = F::dropout(x, options.dropout, is_training(), options.gen);
    std::vector<Tensor> outs;
    for (std::int64_t dir = 0; dir < D; ++dir) {
      const std::int64_t k = l * D + dir;
      Tensor h = select(h0, 0, k), c = is_lstm ? select(c0, 0, k) : Tensor();
      if (dir == 0) {
        outs.push_back(run_layer(static_cast<std::size_t>(k), x, h, c));
      } else {  // read x from the end, then put the outputs back in time order
        const Tensor out_rev = run_layer(static_cast<std::size_t>(k), index_select(x, 0, reversed), h, c);
        outs.push_back(index_select(out_rev, 0, reversed));
      }
      h_n.push_back(h);
      if (is_lstm) c_n.push_back(c);
    }
    x = D == 1 ? outs[0] : cat(outs, -1);  // (T, N, D*H): [forward, reverse]
  }
  RNNResult r;
  r.output = unbatched ? squeeze(x, 1) : (options.batch_first ? transpose(x, 0, 1) : x);
  r.h_n = stack(h_n, 0);
  if (is_lstm) r.c_n = stack(c_n, 0);
  if (unbatched) {
    r.h_n = squeeze(r.h_n, 1);
    if (is_lstm) r.c_n = squeeze(r.c_n, 1);
  }
  return r;
}

RNN::RNN(std::int64_t in, std::int64_t hidden, RNNOptions opt, const std::string& nonlinearity)
    : RNNBase(nonlinearity == "relu" ? RNNKind::rnn_relu : RNNKind::rnn_tanh, in, hidden, opt) {
  if (nonlinearity != "tanh" && nonlinearity != "relu")
    fail<ValueError>("RNN: unknown nonlinearity '{}' (expected 'tanh' or 'relu')", nonlinearity);
}
LSTM::LSTM(std::int64_t in, std::int64_t hidden, RNNOptions opt) : RNNBase(RNNKind::lstm, in, hidden, opt) {}
GRU::GRU(std::int64_t in, std::int64_t hidden, RNNOptions opt) : RNNBase(RNNKind::gru, in, hidden, opt) {}
LayerNormLSTM::LayerNormLSTM(std::int64_t in, std::int64_t hidden, RNNOptions opt, double eps)
    : RNNBase(RNNKind::ln_lstm, in, hidden, opt, eps) {}
LayerNormGRU::LayerNormGRU(std::int64_t in, std::int64_t hidden, RNNOptions opt, double eps)
    : RNNBase(RNNKind::ln_gru, in, hidden, opt, eps) {}

}  // namespace ng::nn
