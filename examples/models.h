// The models of the demos, in one header so that the tests train exactly what the demos train.
//
//   fmnist_cnn(Norm::batch)   examples/fmnist_cnn.cpp, the README's main demo
//   SequenceClassifier        examples/fmnist_rnn.cpp, an (LayerNorm-)LSTM reading an image row by row
//
// Every model takes Fashion-MNIST images (N, 1, 28, 28) and returns logits (N, 10).
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "layers/activation.h"
#include "layers/batch_norm.h"
#include "layers/conv.h"
#include "layers/flatten.h"
#include "layers/group_norm.h"
#include "layers/layer_norm.h"
#include "layers/linear.h"
#include "layers/pool.h"
#include "layers/recurrent.h"

namespace demo {

using ng::nn::ModulePtr;

// The normalization a model uses after each conv (and, in the big CNN, after the hidden
// linear layer).
enum class Norm { batch, layer, group, none };

inline const char* norm_name(Norm n) {
  switch (n) {
    case Norm::batch: return "bn";
    case Norm::layer: return "ln";
    case Norm::group: return "gn";
    case Norm::none: return "none";
  }
  return "?";
}

inline const char* norm_title(Norm n) {
  switch (n) {
    case Norm::batch: return "BatchNorm";
    case Norm::layer: return "LayerNorm";
    case Norm::group: return "GroupNorm";
    case Norm::none: return "no norm";
  }
  return "?";
}

// "bn" / "ln" / "gn" / "none" (also the long names) -> Norm; std::invalid_argument otherwise.
inline Norm parse_norm(const std::string& s) {
  if (s == "bn" || s == "batch" || s == "batchnorm") return Norm::batch;
  if (s == "ln" || s == "layer" || s == "layernorm") return Norm::layer;
  if (s == "gn" || s == "group" || s == "groupnorm") return Norm::group;
  if (s == "none") return Norm::none;
  throw std::invalid_argument("unknown normalization '" + s + "' (expected bn, ln, gn or none)");
}

// The README's CNN (about 420k parameters):
//   Conv2d(1, 32, 3, padding 1) -> BatchNorm2d(32) -> ReLU -> MaxPool2d(2)      28x28 -> 14x14
//   Conv2d(32, 64, 3, padding 1) -> BatchNorm2d(64) -> ReLU -> MaxPool2d(2)     14x14 -> 7x7
//   Flatten -> Linear(64*7*7 = 3136, 128) -> BatchNorm1d(128) -> ReLU -> Linear(128, 10)
// With Norm::none the BatchNorm layers are left out (the convs and the linear keep their bias).
// Only Norm::batch and Norm::none are offered here.
inline std::shared_ptr<ng::nn::Sequential> fmnist_cnn(Norm n = Norm::batch, ng::Generator* gen = nullptr) {
  if (n != Norm::batch && n != Norm::none) throw std::invalid_argument("fmnist_cnn: --norm must be bn or none");
  using namespace ng::nn;
  const bool bn = n == Norm::batch;
  auto net = std::make_shared<Sequential>();
  net->push_back(std::make_shared<Conv2d>(1, 32, 3, 1, 1, 1, 1, true, gen));
  if (bn) net->push_back(std::make_shared<BatchNorm2d>(32));
  net->push_back(std::make_shared<ReLU>());
  net->push_back(std::make_shared<MaxPool2d>(2));
  net->push_back(std::make_shared<Conv2d>(32, 64, 3, 1, 1, 1, 1, true, gen));
  if (bn) net->push_back(std::make_shared<BatchNorm2d>(64));
  net->push_back(std::make_shared<ReLU>());
  net->push_back(std::make_shared<MaxPool2d>(2));
  net->push_back(std::make_shared<Flatten>());
  net->push_back(std::make_shared<Linear>(64 * 7 * 7, 128, true, gen));
  if (bn) net->push_back(std::make_shared<BatchNorm1d>(128));
  net->push_back(std::make_shared<ReLU>());
  net->push_back(std::make_shared<Linear>(128, 10, true, gen));
  return net;
}

// An image read as a sequence: the 28 rows are 28 time steps of 28 features. A one-layer
// LSTM (Norm::layer: the layer-normalized LSTM of Ba et al., layers/recurrent.h) with hidden
// size H reads them; a Linear(H, 10) classifies its last hidden state h_T.
//   x (N, 1, 28, 28) -> (N, T = 28, F = 28) -> LSTM -> h_T (N, H) -> logits (N, 10)
class SequenceClassifier : public ng::nn::Module {
 public:
  SequenceClassifier(Norm n, std::int64_t hidden, ng::Generator* gen = nullptr) : norm(n) {
    if (n != Norm::layer && n != Norm::none) throw std::invalid_argument("SequenceClassifier: --norm must be ln or none");
    ng::nn::RNNOptions opt;
    opt.batch_first = true;
    opt.gen = gen;
    if (n == Norm::layer)
      rnn = register_module("rnn", std::shared_ptr<ng::nn::RNNBase>(std::make_shared<ng::nn::LayerNormLSTM>(28, hidden, opt)));
    else
      rnn = register_module("rnn", std::shared_ptr<ng::nn::RNNBase>(std::make_shared<ng::nn::LSTM>(28, hidden, opt)));
    fc = register_module("fc", std::make_shared<ng::nn::Linear>(hidden, 10, true, gen));
  }
  ng::Tensor forward(const ng::Tensor& x) override {
    const std::int64_t N = x.size(0);
    ng::Tensor seq = ng::reshape(x, {N, 28, 28});
    ng::Tensor h_n = rnn->forward_seq(seq).h_n;  // (1, N, H)
    return fc->forward(ng::select(h_n, 0, 0));
  }
  std::string type_name() const override { return "SequenceClassifier"; }

  Norm norm;
  std::shared_ptr<ng::nn::RNNBase> rnn;
  std::shared_ptr<ng::nn::Linear> fc;
};

}  // namespace demo
