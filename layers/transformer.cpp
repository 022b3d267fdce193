#include "layers/transformer.h"

#include "layers/activation.h"
#include "layers/layer_norm.h"
#include "layers/rms_norm.h"

namespace ng::nn {

Tensor TokenBatchNorm::forward(const Tensor& x) {
  if (x.dim() < 1 || x.size(-1) != options().num_features())
    fail<ShapeError>("TokenBatchNorm: input must be (..., C) with C = {}, got {}", options().num_features(), x.shape());
  return reshape(BatchNorm1d::forward(reshape(x, {-1, x.size(-1)})), x.shape());
}

ModulePtr make_token_norm(TransformerNorm kind, std::int64_t d, double eps, DType dtype) {
  ModulePtr m;
  switch (kind) {
    case TransformerNorm::layer_norm:
      m = std::make_shared<LayerNorm>(LayerNormOptions({d}).eps(eps));
      break;
    case TransformerNorm::rms_norm:
      m = std::make_shared<RMSNorm>(RMSNormOptions({d}).eps(eps));
      break;
    case TransformerNorm::batch_norm:
      m = std::make_shared<TokenBatchNorm>(BatchNormOptions(d).eps(eps));
      break;
    case TransformerNorm::none:
      m = std::make_shared<Identity>();
      break;
  }
  m->to(dtype);
  return m;
}

TransformerEncoderLayer::TransformerEncoderLayer(TransformerEncoderLayerOptions opt, Generator* gen) : opt_(opt) {
  const std::int64_t d = opt.d_model();
  if (opt.dim_feedforward() <= 0)
    fail<ValueError>("TransformerEncoderLayer: dim_feedforward must be positive, got {}", opt.dim_feedforward());
  // Registration order gives PyTorch's state_dict order.
  self_attn =
      register_module("self_attn", std::make_shared<MultiheadAttention>(MultiheadAttentionOptions(d, opt.nhead())
                                                                            .dropout(opt.dropout())
                                                                            .bias(opt.bias())
                                                                            .batch_first(opt.batch_first())
                                                                            .dtype(opt.dtype()),
                                                                        gen));
  linear1 =
      register_module("linear1", std::make_shared<Linear>(d, opt.dim_feedforward(), opt.bias(), gen, opt.dtype()));
  dropout = register_module("dropout", std::make_shared<Dropout>(opt.dropout()));
  linear2 =
      register_module("linear2", std::make_shared<Linear>(opt.dim_feedforward(), d, opt.bias(), gen, opt.dtype()));
  norm1 = register_module("norm1", make_token_norm(opt.norm(), d, opt.layer_norm_eps(), opt.dtype()));
  norm2 = register_module("norm2", make_token_norm(opt.norm(), d, opt.layer_norm_eps(), opt.dtype()));
  dropout1 = register_module("dropout1", std::make_shared<Dropout>(opt.dropout()));
  dropout2 = register_module("dropout2", std::make_shared<Dropout>(opt.dropout()));
}

void TransformerEncoderLayer::set_generator(Generator* gen) {
  self_attn->set_generator(gen);
  for (auto* d : {dropout.get(), dropout1.get(), dropout2.get()}) d->set_generator(gen);
}

Tensor TransformerEncoderLayer::sa_block(const Tensor& x, const Tensor& mask, const Tensor& kpm, bool is_causal) {
  AttentionArgs a;
  a.key_padding_mask = kpm;
  a.attn_mask = mask;
  a.need_weights = false;
  a.is_causal = is_causal;
  return dropout1->forward(self_attn->forward(x, x, x, a).first);
}

Tensor TransformerEncoderLayer::ff_block(const Tensor& x) {
  Tensor h = linear1->forward(x);
  h = opt_.activation() == TransformerActivation::relu ? relu(h) : gelu(h);
  return dropout2->forward(linear2->forward(dropout->forward(h)));
}

Tensor TransformerEncoderLayer::forward(const Tensor& src, const Tensor& src_mask, const Tensor& src_key_padding_mask,
                                        bool is_causal) {
  Tensor x = src;
  if (opt_.norm_first()) {  // pre-LN: x + SA(norm1(x)), then x + FF(norm2(x))
    x = add(x, sa_block(norm1->forward(x), src_mask, src_key_padding_mask, is_causal));
    x = add(x, ff_block(norm2->forward(x)));
  } else {  // post-LN: norm1(x + SA(x)), then norm2(x + FF(x))
    x = norm1->forward(add(x, sa_block(x, src_mask, src_key_padding_mask, is_causal)));
    x = norm2->forward(add(x, ff_block(x)));
  }
  return x;
}

TransformerEncoder::TransformerEncoder(const TransformerEncoderLayer& layer, std::int64_t n, ModulePtr final_norm)
    : num_layers(n), norm(std::move(final_norm)) {
  if (n <= 0) fail<ValueError>("TransformerEncoder: num_layers must be positive, got {}", n);
  auto list = register_module("layers", std::make_shared<Sequential>());
  const NamedTensors sd = layer.state_dict();
  for (std::int64_t i = 0; i < n; ++i) {
    auto copy = std::make_shared<TransformerEncoderLayer>(layer.options());
    copy->load_state_dict(sd);  // a deep copy: every layer starts from the same weights, as PyTorch
    copy->train(layer.is_training());
    layers.push_back(copy);
    list->push_back(copy);
  }
  if (norm) register_module("norm", norm);
}

void TransformerEncoder::set_generator(Generator* gen) {
  for (auto& l : layers) l->set_generator(gen);
}

Tensor TransformerEncoder::forward(const Tensor& src, const Tensor& mask, const Tensor& src_key_padding_mask,
                                   bool is_causal) {
  Tensor x = src;
  for (auto& l : layers) x = l->forward(x, mask, src_key_padding_mask, is_causal);
  return norm ? norm->forward(x) : x;
}

}  // namespace ng::nn
