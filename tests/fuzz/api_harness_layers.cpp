// The API harness's table of layers (see api_harness_internal.h): each entry builds an nn::
// module from decoded (often bad) options and runs its forward through layer(), which checks
// the result and the gradients of the input and of every parameter.
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "dist/sync_batch_norm.h"
#include "layers/activation.h"
#include "layers/attention.h"
#include "layers/batch_norm.h"
#include "layers/conv.h"
#include "layers/dropout.h"
#include "layers/embedding.h"
#include "layers/group_norm.h"
#include "layers/layer_norm.h"
#include "layers/linear.h"
#include "layers/pool.h"
#include "layers/positional.h"
#include "layers/recurrent.h"
#include "layers/rms_norm.h"
#include "layers/transformer.h"
#include "tests/fuzz/api_harness_internal.h"

namespace ng::fuzz {
namespace {

// The masks of a self-attention call: PyTorch's module convention (int64 nonzero = NOT allowed,
// or float added), of the usual shapes or any shape.
struct Mask {
  Tensor attn, key_padding;
  bool causal = false;
};
Mask decode_mask(Ctx& c) {
  Mask m;
  const std::uint8_t b = c.byte();
  if (b & 1) m.attn = b & 2 ? c.index(Shape{c.size(), c.size()}, 1) : c.xf();
  if (b & 4) m.key_padding = b & 8 ? c.index(Shape{c.size(), c.size()}, 1) : c.xf();
  m.causal = b & 16;
  return m;
}

std::vector<Tensor> with_parameters(std::vector<Tensor> inputs, const nn::Module& m) {
  for (const Tensor& p : m.parameters()) inputs.push_back(p);
  return inputs;
}

// MultiheadAttention on decoded options and inputs; with dropout off (or in eval mode), the
// fused path (need_weights = false) must agree with the composite one (need_weights = true).
void multihead_attention(Ctx& c) {
  const std::int64_t e = c.pos(), h = c.pos();
  nn::MultiheadAttentionOptions o(e, h);
  o.dropout(c.flag() ? c.real() : 0.0).bias(c.flag()).add_bias_kv(c.flag()).add_zero_attn(c.flag()).batch_first(c.flag()).dtype(c.dtype());
  if (c.flag()) o.kdim(c.pos()).vdim(c.pos());
  auto m = std::make_shared<nn::MultiheadAttention>(o, &c.gen());
  if (c.flag()) m->eval();
  const Tensor q = c.x(), k = c.flag() ? q : c.x(), v = c.flag() ? k : c.x();
  const Mask mask = decode_mask(c);
  nn::AttentionArgs args{.key_padding_mask = mask.key_padding, .need_weights = c.flag(), .attn_mask = mask.attn,
                         .average_attn_weights = c.flag(), .is_causal = mask.causal};
  const auto [out, weights] = m->forward(q, k, v, args);
  check_tensor(weights, "MultiheadAttention");
  if ((!m->is_training() || o.dropout() == 0.0) && tame(q) && tame(k) && tame(v) && tame(mask.attn) &&
      tame(mask.key_padding)) {
    NoGradGuard no_grad;
    args.need_weights = !args.need_weights;
    const double tol = out.dtype() == DType::f64 ? 1e-8 : 2e-3;
    check_agree(out.detach(), m->forward(q, k, v, args).first.detach(), tol, tol, "MultiheadAttention",
                "the other attention path (need_weights flipped)");
  }
  finish(c, "MultiheadAttention", out, with_parameters({q, k, v}, *m));
}

std::shared_ptr<nn::TransformerEncoderLayer> encoder_layer(Ctx& c) {
  nn::TransformerEncoderLayerOptions o(c.pos(), c.pos());
  o.dim_feedforward(c.pos()).dropout(c.flag() ? c.real() : 0.0).layer_norm_eps(c.flag() ? c.real() : 1e-5);
  o.activation(c.flag() ? nn::TransformerActivation::gelu : nn::TransformerActivation::relu);
  o.batch_first(c.flag()).norm_first(c.flag()).bias(c.flag()).norm(static_cast<nn::TransformerNorm>(c.byte() % 4));
  o.dtype(c.dtype());
  auto m = std::make_shared<nn::TransformerEncoderLayer>(o, &c.gen());
  if (c.flag()) m->eval();
  return m;
}

// The communicating SyncBatchNorm kernel on a group of one process equals BatchNorm on the batch.
void sync_batch_norm_op(Ctx& c) {
  const Tensor x = c.xf();
  const std::int64_t ch = x.dim() >= 2 ? x.size(1) : 0;
  const Tensor w = param_like(c, ch, x.dtype()), b = param_like(c, ch, x.dtype());
  const double eps = c.real();
  const Tensor rm = c.flag() ? zeros(Shape{ch}, x.dtype()) : Tensor(), rv = rm.defined() ? ones(Shape{ch}, x.dtype()) : Tensor();
  const std::optional<double> momentum = c.flag() ? std::optional(c.real()) : std::nullopt;
  if (std::getenv("NG_FUZZ_TRACE"))
    std::fprintf(stderr, "api_fuzz:   x %s contiguous %d eps %g weight %s bias %s running %d\n",
                 fmt::format("{}", x.shape()).c_str(), x.is_contiguous(), eps,
                 w.defined() ? fmt::format("{}", w.shape()).c_str() : "none",
                 b.defined() ? fmt::format("{}", b.shape()).c_str() : "none", rm.defined());
  const Tensor r = dist::sync_batch_norm(x, rm, rv, w, b, momentum, eps, Tensor(), std::make_shared<dist::LocalGroup>());
  // the reference in float64: the kernel accumulates in double, and a float32 composite loses
  // digits on a channel whose spread is small against its mean (eps 1e-12: 0.45% off)
  const auto f64 = [](const Tensor& t) { return t.defined() ? t.detach().to(DType::f64) : t; };
  with_reference(
      c, "sync_batch_norm", r, {x, w, b},
      [=] { return reference::batch_norm(f64(x), f64(w), f64(b), eps).to(x.dtype()); }, "reference::batch_norm in float64");
}

const Op kLayers[] = {
    {"Linear", [](Ctx& c) { layer(c, "Linear", std::shared_ptr<nn::Linear>(new nn::Linear{c.pos(), c.pos(), c.flag(), &c.gen(), c.dtype()})); }},
    {"Conv2d", [](Ctx& c) { const std::int64_t i = c.pos(), o = c.pos(); const Size2 k{c.i(), c.i()}, s(c.i()); const std::uint8_t pm = c.byte() % 4; const nn::Conv2dPadding p = pm == 0 ? nn::Conv2dPadding("same") : pm == 1 ? nn::Conv2dPadding("valid") : pm == 2 ? nn::Conv2dPadding(c.flag() ? "Same" : "full") : nn::Conv2dPadding(Size2(c.i())); const Size2 d(c.i()); layer(c, "Conv2d", std::shared_ptr<nn::Conv2d>(new nn::Conv2d{i, o, k, s, p, d, c.i(), c.flag(), &c.gen(), c.dtype()})); }},
    {"BatchNorm1d", [](Ctx& c) { layer(c, "BatchNorm1d", std::make_shared<nn::BatchNorm1d>(nn::BatchNormOptions(c.pos()).eps(c.real()).momentum(c.real()).affine(c.flag()).track_running_stats(c.flag()))); }},
    {"BatchNorm2d", [](Ctx& c) { layer(c, "BatchNorm2d", std::make_shared<nn::BatchNorm2d>(nn::BatchNormOptions(c.pos()).eps(c.real()).momentum(c.flag() ? std::optional<double>() : std::optional(c.real())))); }},
    {"LayerNorm", [](Ctx& c) { layer(c, "LayerNorm", std::make_shared<nn::LayerNorm>(nn::LayerNormOptions(c.shape(2)).eps(c.real()).elementwise_affine(c.flag()).bias(c.flag()))); }},
    {"GroupNorm", [](Ctx& c) { layer(c, "GroupNorm", std::make_shared<nn::GroupNorm>(nn::GroupNormOptions{c.i(), c.pos()}.eps(c.real()).affine(c.flag()))); }},
    {"InstanceNorm2d", [](Ctx& c) { layer(c, "InstanceNorm2d", std::make_shared<nn::InstanceNorm2d>(nn::InstanceNormOptions(c.pos()).eps(c.real()).momentum(c.real()).affine(c.flag()).track_running_stats(c.flag()))); }},
    {"RMSNorm", [](Ctx& c) { layer(c, "RMSNorm", std::make_shared<nn::RMSNorm>(nn::RMSNormOptions(c.shape(2)).eps(c.flag() ? std::optional(c.real()) : std::nullopt))); }},
    {"Embedding", [](Ctx& c) { const std::int64_t n = c.pos(), dim = c.pos(); const std::optional<std::int64_t> pad = c.flag() ? std::optional(c.i()) : std::nullopt; const std::optional<double> max_norm = c.flag() ? std::optional(c.real()) : std::nullopt; const double norm_type = c.flag() ? c.real() : 2.0; auto m = std::make_shared<nn::Embedding>(n, dim, pad, &c.gen(), c.dtype(), max_norm, norm_type); layer(c, "Embedding", m, c.index(c.shape(2), n)); }},
    {"Dropout", [](Ctx& c) { layer(c, "Dropout", std::make_shared<nn::Dropout>(c.real(), &c.gen())); }},
    {"MaxPool2d", [](Ctx& c) { layer(c, "MaxPool2d", std::shared_ptr<nn::MaxPool2d>(new nn::MaxPool2d{Size2(c.i()), std::nullopt, Size2(c.i())})); }},
    {"AvgPool2d", [](Ctx& c) { layer(c, "AvgPool2d", std::shared_ptr<nn::AvgPool2d>(new nn::AvgPool2d{Size2(c.i()), std::optional(Size2(c.i())), Size2(c.i())})); }},
    {"AdaptiveAvgPool2d", [](Ctx& c) { layer(c, "AdaptiveAvgPool2d", std::make_shared<nn::AdaptiveAvgPool2d>(Size2{c.i(), c.i()})); }},
    {"LeakyReLU", [](Ctx& c) { layer(c, "LeakyReLU", std::make_shared<nn::LeakyReLU>(c.real())); }},
    {"GELU", [](Ctx& c) { layer(c, "GELU", std::make_shared<nn::GELU>()); }},
    {"RNN", [](Ctx& c) { nn::RNNOptions o; o.num_layers = c.layers(); o.bidirectional = c.flag(); o.batch_first = c.flag(); o.dropout = c.real(); o.gen = &c.gen(); o.dtype = c.dtype(); layer(c, "RNN", std::shared_ptr<nn::RNN>(new nn::RNN{c.pos(), c.pos(), o, c.flag() ? "tanh" : c.flag() ? "relu" : "sigmoid"})); }},
    {"LSTM", [](Ctx& c) { nn::RNNOptions o; o.num_layers = c.layers(); o.bidirectional = c.flag(); o.bias = c.flag(); o.gen = &c.gen(); o.dtype = c.dtype(); layer(c, "LSTM", std::shared_ptr<nn::LSTM>(new nn::LSTM{c.pos(), c.pos(), o})); }},
    {"GRU", [](Ctx& c) { nn::RNNOptions o; o.num_layers = c.layers(); o.bidirectional = c.flag(); o.batch_first = c.flag(); o.gen = &c.gen(); o.dtype = c.dtype(); layer(c, "GRU", std::shared_ptr<nn::GRU>(new nn::GRU{c.pos(), c.pos(), o})); }},
    {"LayerNormLSTM", [](Ctx& c) { nn::RNNOptions o; o.gen = &c.gen(); o.dtype = c.dtype(); layer(c, "LayerNormLSTM", std::shared_ptr<nn::LayerNormLSTM>(new nn::LayerNormLSTM{c.pos(), c.pos(), o, c.real()})); }},
    {"LSTMCell", [](Ctx& c) { layer(c, "LSTMCell", std::shared_ptr<nn::LSTMCell>(new nn::LSTMCell{c.pos(), c.pos(), c.flag(), &c.gen(), c.dtype()})); }},
    {"GRUCell", [](Ctx& c) { layer(c, "GRUCell", std::shared_ptr<nn::GRUCell>(new nn::GRUCell{c.pos(), c.pos(), c.flag(), &c.gen(), c.dtype()})); }},
    {"RNNCell", [](Ctx& c) { layer(c, "RNNCell", std::shared_ptr<nn::RNNCell>(new nn::RNNCell{c.pos(), c.pos(), c.flag(), c.flag() ? "tanh" : c.flag() ? "relu" : "gelu", &c.gen(), c.dtype()})); }},

    {"LayerNormGRU", [](Ctx& c) { nn::RNNOptions o; o.bidirectional = c.flag(); o.batch_first = c.flag(); o.gen = &c.gen(); o.dtype = c.dtype(); layer(c, "LayerNormGRU", std::shared_ptr<nn::LayerNormGRU>(new nn::LayerNormGRU{c.pos(), c.pos(), o, c.real()})); }},
    {"MultiheadAttention", multihead_attention},
    {"TransformerEncoderLayer", [](Ctx& c) { auto m = encoder_layer(c); const Mask mask = decode_mask(c); const Tensor x = c.x(); finish(c, "TransformerEncoderLayer", m->forward(x, mask.attn, mask.key_padding, mask.causal), with_parameters({x}, *m)); }},
    {"TransformerEncoder", [](Ctx& c) { auto l = encoder_layer(c); const std::int64_t n = c.layers(); const nn::ModulePtr norm = c.flag() ? nn::make_token_norm(static_cast<nn::TransformerNorm>(c.byte() % 4), c.pos(), c.real(), l->options().dtype()) : nullptr; auto m = std::make_shared<nn::TransformerEncoder>(*l, n, norm); if (c.flag()) m->eval(); const Mask mask = decode_mask(c); const Tensor x = c.x(); finish(c, "TransformerEncoder", m->forward(x, mask.attn, mask.key_padding, mask.causal), with_parameters({x}, *m)); }},
    {"SinusoidalPositionalEncoding", [](Ctx& c) { const std::int64_t d = c.pos(), len = c.pos(); layer(c, "SinusoidalPositionalEncoding", std::make_shared<nn::SinusoidalPositionalEncoding>(d, len, c.flag())); }},
    {"LearnedPositionalEmbedding", [](Ctx& c) { const std::int64_t len = c.pos(), d = c.pos(); const bool bf = c.flag(); layer(c, "LearnedPositionalEmbedding", std::make_shared<nn::LearnedPositionalEmbedding>(len, d, bf, &c.gen(), c.dtype())); }},
    {"SyncBatchNorm", [](Ctx& c) { auto m = std::make_shared<nn::SyncBatchNorm>(nn::BatchNormOptions(c.pos()).eps(c.real()).momentum(c.flag() ? std::optional<double>() : std::optional(c.real())).affine(c.flag()).track_running_stats(c.flag()), c.flag() ? std::make_shared<dist::LocalGroup>() : nullptr); layer(c, "SyncBatchNorm", m); }},
    {"sync_batch_norm", sync_batch_norm_op},
};

}  // namespace

std::span<const Op> layer_table() { return kLayers; }

}  // namespace ng::fuzz
