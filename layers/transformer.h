// TransformerEncoderLayer and TransformerEncoder, as torch.nn's (Vaswani et al. 2017, sec. 3.1):
//
//   post-LN (norm_first = false, the original):   x = norm1(x + SA(x));       x = norm2(x + FF(x))
//   pre-LN  (norm_first = true, Xiong et al. 2020): x = x + SA(norm1(x));       x = x + FF(norm2(x))
//   SA(x) = dropout1(self_attn(x, x, x, masks, need_weights = false))
//   FF(x) = dropout2(linear2(dropout(activation(linear1(x)))))
//
// Names, shapes and defaults are PyTorch's (state_dict: self_attn.in_proj_weight,
// self_attn.in_proj_bias, self_attn.out_proj.weight/bias, linear1.*, linear2.*, norm1.*,
// norm2.*), so a checkpoint loads into torch.nn.TransformerEncoderLayer with strict=True.
//
// For experiments, the normalization is a choice (norm(...)): LayerNorm (default, PyTorch's),
// RMSNorm (Zhang & Sennrich 2019; norm*.weight only, eps = layer_norm_eps), BatchNorm over the
// tokens (every position of every sequence is one sample of a BatchNorm1d over d_model
// channels, with running statistics: what Shen et al. 2020, "PowerNorm", found to hurt in NLP
// Transformers; padding tokens count in its statistics), or none (Identity, no parameters).
// Only LayerNorm's checkpoints load into PyTorch's class.
#pragma once
#include <memory>
#include <string>

#include "layers/attention.h"
#include "layers/batch_norm.h"
#include "layers/dropout.h"

namespace ng::nn {

enum class TransformerActivation { relu, gelu };
enum class TransformerNorm { layer_norm, rms_norm, batch_norm, none };

// TransformerEncoderLayerOptions(64, 4).dim_feedforward(256).dropout(0.0).norm_first(true)
struct TransformerEncoderLayerOptions {
  TransformerEncoderLayerOptions(std::int64_t d_model, std::int64_t nhead) : d_model_(d_model), nhead_(nhead) {}
  std::int64_t d_model() const { return d_model_; }
  std::int64_t nhead() const { return nhead_; }
  std::int64_t dim_feedforward() const { return dim_feedforward_; }
  double dropout() const { return dropout_; }
  TransformerActivation activation() const { return activation_; }
  double layer_norm_eps() const { return layer_norm_eps_; }
  bool batch_first() const { return batch_first_; }
  bool norm_first() const { return norm_first_; }
  bool bias() const { return bias_; }
  TransformerNorm norm() const { return norm_; }
  DType dtype() const { return dtype_; }
  TransformerEncoderLayerOptions& dim_feedforward(std::int64_t v) {
    dim_feedforward_ = v;
    return *this;
  }
  TransformerEncoderLayerOptions& dropout(double v) {
    dropout_ = v;
    return *this;
  }
  TransformerEncoderLayerOptions& activation(TransformerActivation v) {
    activation_ = v;
    return *this;
  }
  TransformerEncoderLayerOptions& layer_norm_eps(double v) {
    layer_norm_eps_ = v;
    return *this;
  }
  TransformerEncoderLayerOptions& batch_first(bool v) {
    batch_first_ = v;
    return *this;
  }
  TransformerEncoderLayerOptions& norm_first(bool v) {
    norm_first_ = v;
    return *this;
  }
  TransformerEncoderLayerOptions& bias(bool v) {
    bias_ = v;
    return *this;
  }
  TransformerEncoderLayerOptions& norm(TransformerNorm v) {
    norm_ = v;
    return *this;
  }
  TransformerEncoderLayerOptions& dtype(DType v) {
    dtype_ = v;
    return *this;
  }

 private:
  std::int64_t d_model_, nhead_;
  std::int64_t dim_feedforward_ = 2048;
  double dropout_ = 0.1;
  TransformerActivation activation_ = TransformerActivation::relu;
  double layer_norm_eps_ = 1e-5;
  bool batch_first_ = false, norm_first_ = false, bias_ = true;
  TransformerNorm norm_ = TransformerNorm::layer_norm;
  DType dtype_ = DType::f32;
};

// BatchNorm1d over the last dim of (..., C): all leading positions are the batch.
class TokenBatchNorm : public BatchNorm1d {
 public:
  explicit TokenBatchNorm(BatchNormOptions opt) : BatchNorm1d(opt) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "TokenBatchNorm"; }
};

// A fresh normalization module over the last dim `d` (what TransformerNorm names).
ModulePtr make_token_norm(TransformerNorm kind, std::int64_t d, double eps, DType dtype);

class TransformerEncoderLayer : public Module {
 public:
  explicit TransformerEncoderLayer(TransformerEncoderLayerOptions opt, Generator* gen = nullptr);
  // src (L, N, E), (N, L, E) with batch_first, or (L, E); masks as nn::MultiheadAttention's
  // attn_mask and key_padding_mask (int64 nonzero = NOT allowed, or float added); is_causal
  // masks the future.
  Tensor forward(const Tensor& src, const Tensor& src_mask, const Tensor& src_key_padding_mask = {},
                 bool is_causal = false);
  Tensor forward(const Tensor& src) override { return forward(src, Tensor()); }
  std::string type_name() const override { return "TransformerEncoderLayer"; }
  const TransformerEncoderLayerOptions& options() const { return opt_; }
  // Every dropout of the layer (attention weights included) draws from `gen`.
  void set_generator(Generator* gen);

  std::shared_ptr<MultiheadAttention> self_attn;
  std::shared_ptr<Linear> linear1, linear2;
  ModulePtr norm1, norm2;
  std::shared_ptr<Dropout> dropout, dropout1, dropout2;

 private:
  Tensor sa_block(const Tensor& x, const Tensor& mask, const Tensor& kpm, bool is_causal);
  Tensor ff_block(const Tensor& x);
  TransformerEncoderLayerOptions opt_;
};

// num_layers copies of `layer` (same initial weights, as PyTorch's deep copies), then an
// optional final norm. Names layers.0.*, layers.1.*, ..., norm.*.
class TransformerEncoder : public Module {
 public:
  TransformerEncoder(const TransformerEncoderLayer& layer, std::int64_t num_layers, ModulePtr norm = nullptr);
  Tensor forward(const Tensor& src, const Tensor& mask, const Tensor& src_key_padding_mask = {},
                 bool is_causal = false);
  Tensor forward(const Tensor& src) override { return forward(src, Tensor()); }
  std::string type_name() const override { return "TransformerEncoder"; }
  void set_generator(Generator* gen);

  std::int64_t num_layers;
  std::vector<std::shared_ptr<TransformerEncoderLayer>> layers;
  ModulePtr norm;  // null without a final norm
};

}  // namespace ng::nn
