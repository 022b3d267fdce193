// LibTorch's side of the benchmark rows (see torch_rows.h). Every closure mirrors the normgrad
// closure of the same row in bench/main.cpp: same shapes, float32, inputs made once, gradients
// reset to none after each repetition (so neither side pays for accumulating into an old .grad).
#include "bench/torch_rows.h"

#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <stdexcept>

namespace bench::torch_rows {

namespace {
torch::Tensor leaf(torch::Tensor t) { return t.requires_grad_(true); }
void reset_grad(torch::Tensor& t) { t.mutable_grad() = torch::Tensor(); }
torch::TensorOptions f32() { return torch::TensorOptions().dtype(torch::kFloat32); }
}  // namespace

std::string version() { return TORCH_VERSION; }
void set_threads(int n) { torch::set_num_threads(n); }
int get_threads() { return torch::get_num_threads(); }

std::function<void()> tiny_ops(int n) {
  torch::Tensor a = leaf(torch::ones({1}, f32()));
  torch::Tensor b = leaf(torch::ones({1}, f32()));
  return [a, b, n]() mutable {
    torch::Tensor y = a;
    for (int i = 0; i < n; ++i) y = y + b;
    y.backward();
    reset_grad(a);
    reset_grad(b);
  };
}

std::function<void()> matmul(int n) {
  torch::NoGradGuard no_grad;
  torch::Tensor a = torch::randn({n, n}, f32()), b = torch::randn({n, n}, f32());
  return [a, b]() {
    torch::NoGradGuard guard;
    torch::Tensor c = torch::matmul(a, b);
  };
}

std::function<void()> batch_norm_fb(const std::vector<std::int64_t>& shape) {
  const std::int64_t C = shape[1];
  torch::Tensor x = leaf(torch::randn(shape, f32()));
  torch::Tensor w = leaf(torch::ones({C}, f32())), b = leaf(torch::zeros({C}, f32()));
  torch::Tensor rm = torch::zeros({C}, f32()), rv = torch::ones({C}, f32());
  torch::Tensor dy = torch::randn(shape, f32());
  return [=]() mutable {
    torch::Tensor y = torch::batch_norm(x, w, b, rm, rv, /*training=*/true, 0.1, 1e-5, /*cudnn_enabled=*/false);
    y.backward(dy);
    reset_grad(x);
    reset_grad(w);
    reset_grad(b);
  };
}

std::function<void()> layer_norm_fb(std::int64_t rows, std::int64_t d, bool no_bias) {
  torch::Tensor x = leaf(torch::randn({rows, d}, f32()));
  torch::Tensor w = leaf(torch::ones({d}, f32()));
  torch::Tensor b = no_bias ? torch::Tensor() : leaf(torch::zeros({d}, f32()));
  torch::Tensor dy = torch::randn({rows, d}, f32());
  return [=]() mutable {
    torch::Tensor y = torch::layer_norm(x, {d}, w, b, 1e-5, /*cudnn_enable=*/false);
    y.backward(dy);
    reset_grad(x);
    reset_grad(w);
    if (b.defined()) reset_grad(b);
  };
}

std::function<void()> group_norm_fb(const std::vector<std::int64_t>& shape, std::int64_t groups) {
  const std::int64_t C = shape[1];
  torch::Tensor x = leaf(torch::randn(shape, f32()));
  torch::Tensor w = leaf(torch::ones({C}, f32())), b = leaf(torch::zeros({C}, f32()));
  torch::Tensor dy = torch::randn(shape, f32());
  return [=]() mutable {
    torch::Tensor y = torch::group_norm(x, groups, w, b, 1e-5, /*cudnn_enabled=*/false);
    y.backward(dy);
    reset_grad(x);
    reset_grad(w);
    reset_grad(b);
  };
}

// ---- the demo models ---------------------------------------------------------------------

namespace {

// Copies `init` into m's parameters by name; every parameter of m must be given, with its shape.
void load_params(torch::nn::Module& m, const NamedArrays& init) {
  if (init.empty()) return;
  torch::NoGradGuard no_grad;
  auto params = m.named_parameters();
  if (params.size() != init.size())
    throw std::runtime_error("torch_rows: the LibTorch model has " + std::to_string(params.size()) +
                             " parameters, normgrad's " + std::to_string(init.size()));
  for (const auto& a : init) {
    torch::Tensor* p = params.find(a.name);
    if (!p) throw std::runtime_error("torch_rows: the LibTorch model has no parameter " + a.name);
    if (p->sizes().vec() != a.shape) throw std::runtime_error("torch_rows: shape mismatch for " + a.name);
    p->copy_(torch::from_blob(const_cast<float*>(a.values.data()), a.shape, f32()));
  }
}

torch::Tensor images(const Batch& b) {
  return torch::from_blob(const_cast<float*>(b.x.data()), b.x_shape, f32()).clone();
}
torch::Tensor labels(const Batch& b) {
  return torch::from_blob(const_cast<std::int64_t*>(b.y.data()), {static_cast<std::int64_t>(b.y.size())},
                          torch::TensorOptions().dtype(torch::kInt64))
      .clone();
}

// PyTorch's optimizer.zero_grad(set_to_none=True), as normgrad's zero_grad (LibTorch 1.13's
// Optimizer::zero_grad() fills the old gradients with zeros instead).
void grads_to_none(torch::nn::Module& m) {
  for (auto& p : m.parameters()) reset_grad(p);
}

// demo::fmnist_cnn(Norm::batch), layer for layer (state_dict keys 0.weight, 1.running_mean, ...).
torch::nn::Sequential make_cnn() {
  namespace nn = torch::nn;
  return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1)), nn::BatchNorm2d(32), nn::ReLU(),
                        nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1)),
                        nn::BatchNorm2d(64), nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::Flatten(),
                        nn::Linear(64 * 7 * 7, 128), nn::BatchNorm1d(128), nn::ReLU(), nn::Linear(128, 10));
}

// The LayerNorm-LSTM cell of layers/recurrent.h (Ba et al. 2016), parameters named as normgrad's
// LayerNormLSTMCell: weight_ih (4H, F), weight_hh (4H, H), bias (4H), LayerNorms ln_ih (4H),
// ln_hh (4H), ln_c (H).
struct LNLSTMCellImpl : torch::nn::Module {
  LNLSTMCellImpl(std::int64_t in, std::int64_t hidden) {
    const double k = 1.0 / std::sqrt(static_cast<double>(hidden));
    weight_ih = register_parameter("weight_ih", torch::empty({4 * hidden, in}, f32()).uniform_(-k, k));
    weight_hh = register_parameter("weight_hh", torch::empty({4 * hidden, hidden}, f32()).uniform_(-k, k));
    bias = register_parameter("bias", torch::empty({4 * hidden}, f32()).uniform_(-k, k));
    ln_ih = register_module("ln_ih", torch::nn::LayerNorm(torch::nn::LayerNormOptions({4 * hidden}).eps(1e-5)));
    ln_hh = register_module("ln_hh", torch::nn::LayerNorm(torch::nn::LayerNormOptions({4 * hidden}).eps(1e-5)));
    ln_c = register_module("ln_c", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden}).eps(1e-5)));
  }
  torch::Tensor weight_ih, weight_hh, bias;
  torch::nn::LayerNorm ln_ih{nullptr}, ln_hh{nullptr}, ln_c{nullptr};
};
TORCH_MODULE(LNLSTMCell);

// The sequence module around one cell ("rnn.l0.*", as normgrad's LayerNormLSTM), in two forms
// a LibTorch user would write (the bench times both and compares against the faster):
//   per_step_input = false: X = LN_ih(x W_ih^T) for all T steps in one GEMM + one LayerNorm;
//   per_step_input = true:  LN_ih(x_t W_ih^T) inside the loop (three LayerNorms per step);
// then per step
//   [i, f, g, o] = X_t + LN_hh(h W_hh^T) + b
//   c' = sigmoid(f) c + sigmoid(i) tanh(g),  h' = sigmoid(o) tanh(LN_c(c'))
// from h = c = 0. x (T, N, F) -> h_T (N, H). The steps are taken with unbind (one node whose
// backward stacks the step gradients) rather than select (whose backward would fill a zero
// tensor of the whole sequence per step).
struct LNLSTMImpl : torch::nn::Module {
  LNLSTMImpl(std::int64_t in, std::int64_t hidden, bool per_step_input) : H(hidden), per_step(per_step_input) {
    l0 = register_module("l0", LNLSTMCell(in, hidden));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    namespace F = torch::nn::functional;
    const std::int64_t T = x.size(0), N = x.size(1);
    std::vector<torch::Tensor> xs;
    if (per_step) xs = x.unbind(0);
    else xs = l0->ln_ih(F::linear(x.reshape({T * N, x.size(2)}), l0->weight_ih)).reshape({T, N, 4 * H}).unbind(0);
    torch::Tensor h = torch::zeros({N, H}, f32()), c = torch::zeros({N, H}, f32());
    for (std::int64_t t = 0; t < T; ++t) {
      const torch::Tensor& xt = xs[static_cast<std::size_t>(t)];
      const torch::Tensor ih = per_step ? l0->ln_ih(F::linear(xt, l0->weight_ih)) : xt;
      const torch::Tensor gates = ih + l0->ln_hh(F::linear(h, l0->weight_hh)) + l0->bias;
      const auto q = gates.chunk(4, -1);
      c = torch::sigmoid(q[1]) * c + torch::sigmoid(q[0]) * torch::tanh(q[2]);
      h = torch::sigmoid(q[3]) * torch::tanh(l0->ln_c(c));
    }
    return h;
  }
  std::int64_t H;
  bool per_step;
  LNLSTMCell l0{nullptr};
};
TORCH_MODULE(LNLSTM);

// The plain LSTM as a loop over steps, parameters named as torch::nn::LSTM's (weight_ih_l0 ...).
//   cell_op = false: the input projection of all T steps as one GEMM, X = x W_ih^T + b_ih + b_hh,
//                    then per step gates = X_t + h W_hh^T (addmm), chunk, sigmoid / tanh;
//   cell_op = true:  torch::lstm_cell(x_t, (h, c), W_ih, W_hh, b_ih, b_hh) per step.
// x (T, N, F) -> h_T (N, H).
struct LoopLSTMImpl : torch::nn::Module {
  LoopLSTMImpl(std::int64_t in, std::int64_t hidden, bool use_cell_op) : H(hidden), cell_op(use_cell_op) {
    const double k = 1.0 / std::sqrt(static_cast<double>(hidden));
    w_ih = register_parameter("weight_ih_l0", torch::empty({4 * hidden, in}, f32()).uniform_(-k, k));
    w_hh = register_parameter("weight_hh_l0", torch::empty({4 * hidden, hidden}, f32()).uniform_(-k, k));
    b_ih = register_parameter("bias_ih_l0", torch::empty({4 * hidden}, f32()).uniform_(-k, k));
    b_hh = register_parameter("bias_hh_l0", torch::empty({4 * hidden}, f32()).uniform_(-k, k));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const std::int64_t T = x.size(0), N = x.size(1);
    torch::Tensor h = torch::zeros({N, H}, f32()), c = torch::zeros({N, H}, f32());
    if (cell_op) {
      const auto xs = x.unbind(0);
      for (std::int64_t t = 0; t < T; ++t) {
        auto hc = torch::lstm_cell(xs[static_cast<std::size_t>(t)], {h, c}, w_ih, w_hh, b_ih, b_hh);
        h = std::get<0>(hc);
        c = std::get<1>(hc);
      }
      return h;
    }
    const auto X = torch::addmm(b_ih + b_hh, x.reshape({T * N, x.size(2)}), w_ih.t()).reshape({T, N, 4 * H}).unbind(0);
    const torch::Tensor w_hh_t = w_hh.t();
    for (std::int64_t t = 0; t < T; ++t) {
      const auto q = torch::addmm(X[static_cast<std::size_t>(t)], h, w_hh_t).chunk(4, 1);
      c = torch::sigmoid(q[1]) * c + torch::sigmoid(q[0]) * torch::tanh(q[2]);
      h = torch::sigmoid(q[3]) * torch::tanh(c);
    }
    return h;
  }
  std::int64_t H;
  bool cell_op;
  torch::Tensor w_ih, w_hh, b_ih, b_hh;
};
TORCH_MODULE(LoopLSTM);

// demo::SequenceClassifier: "rnn" (one of the forms in lstm_forms) and "fc" = Linear(H, 10).
struct SequenceClassifierImpl : torch::nn::Module {
  SequenceClassifierImpl(bool layer_norm, int form, std::int64_t hidden) {
    if (layer_norm) ln_lstm = register_module("rnn", LNLSTM(28, hidden, form == 1));
    else if (form == 0) lstm = register_module("rnn", torch::nn::LSTM(torch::nn::LSTMOptions(28, hidden).batch_first(true)));
    else loop_lstm = register_module("rnn", LoopLSTM(28, hidden, form == 2));
    fc = register_module("fc", torch::nn::Linear(hidden, 10));
  }
  // x (N, 1, 28, 28) -> (N, T = 28, F = 28) -> h_T (N, H) -> logits (N, 10)
  torch::Tensor forward(const torch::Tensor& x) {
    const torch::Tensor seq = x.reshape({x.size(0), 28, 28});
    torch::Tensor h_T;
    if (lstm) h_T = std::get<0>(std::get<1>(lstm->forward(seq))).select(0, 0);
    else {
      const torch::Tensor tnf = seq.transpose(0, 1).contiguous();  // batch first -> (T, N, F)
      h_T = ln_lstm ? ln_lstm->forward(tnf) : loop_lstm->forward(tnf);
    }
    return fc->forward(h_T);
  }
  LNLSTM ln_lstm{nullptr};
  torch::nn::LSTM lstm{nullptr};
  LoopLSTM loop_lstm{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(SequenceClassifier);

}  // namespace

// channels_last: the 4-d weights and the images in NHWC order (torch.channels_last), the layout
// oneDNN's convolutions prefer on some CPUs; the bench tries both and keeps the faster.
void to_channels_last(torch::nn::Module& net, torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  for (auto& p : net.parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  x = x.contiguous(torch::MemoryFormat::ChannelsLast);
}

std::function<double()> cnn_step(const NamedArrays& init, const Batch& batch, bool channels_last) {
  torch::nn::Sequential net = make_cnn();
  load_params(*net, init);
  net->train();
  torch::Tensor x = images(batch);
  const torch::Tensor y = labels(batch);
  if (channels_last) to_channels_last(*net, x);
  // the optimizer after the layout change: it holds the parameters (their data may be replaced)
  auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  return [net, opt, x, y]() mutable {
    grads_to_none(*net);
    torch::Tensor loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt->step();
    return loss.item<double>();
  };
}

std::function<double()> cnn_eval(const NamedArrays& init, const Batch& batch, bool channels_last) {
  torch::nn::Sequential net = make_cnn();
  load_params(*net, init);
  net->eval();
  torch::Tensor x = images(batch);
  if (channels_last) to_channels_last(*net, x);
  return [net, x]() mutable {
    c10::InferenceMode inference;  // no autograd bookkeeping at all (stronger than NoGradGuard)
    return net->forward(x).sum().item<double>();
  };
}

std::vector<std::string> lstm_forms(bool layer_norm) {
  if (layer_norm) return {"cell loop, LN_ih over all steps up front", "cell loop, three LayerNorms per step"};
  return {"torch::nn::LSTM", "cell loop, input GEMM over all steps up front", "torch::lstm_cell loop"};
}

std::function<double()> lstm_step(bool layer_norm, int form, std::int64_t hidden, const NamedArrays& init,
                                  const Batch& batch) {
  SequenceClassifier model(layer_norm, form, hidden);
  load_params(*model, init);
  auto opt = std::make_shared<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(1e-3));
  const torch::Tensor x = images(batch), y = labels(batch);
  return [model, opt, x, y]() mutable {
    grads_to_none(*model);
    torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    opt->step();
    return loss.item<double>();
  };
}

void cnn_train(int steps, std::int64_t batch_size) {
  torch::manual_seed(1);
  Batch b;
  b.x_shape = {batch_size, 1, 28, 28};
  const torch::Tensor x = torch::randn(b.x_shape, f32()).contiguous();
  const torch::Tensor y = torch::randint(0, 10, {batch_size}, torch::TensorOptions().dtype(torch::kInt64));
  b.x.assign(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
  b.y.assign(y.data_ptr<std::int64_t>(), y.data_ptr<std::int64_t>() + y.numel());
  auto step = cnn_step({}, b);
  for (int i = 0; i < steps; ++i) step();
}

}  // namespace bench::torch_rows
