// MultiheadAttention, as torch.nn.MultiheadAttention (Vaswani et al. 2017, sec. 3.2.2):
//
//     head_h = Attention(Q Wq_h^T + bq_h, K Wk_h^T + bk_h, V Wv_h^T + bv_h)   h = 1..num_heads
//     out    = concat(head_1, ..., head_H) Wo^T + bo
//
// each head working on embed_dim / num_heads features. Parameters and state_dict names as
// PyTorch's: in_proj_weight (3E, E) and in_proj_bias (3E) hold [Wq; Wk; Wv] and [bq; bk; bv];
// when kdim or vdim differ from embed_dim there are q_proj_weight (E, E), k_proj_weight
// (E, kdim) and v_proj_weight (E, vdim) instead of in_proj_weight; out_proj.weight (E, E),
// out_proj.bias (E); bias_k, bias_v (1, 1, E) with add_bias_kv. Initialization as PyTorch:
// xavier_uniform_ for the input projections, zero biases, xavier_normal_ for bias_k/bias_v,
// out_proj.weight as nn::Linear.
//
// Inputs are (L, N, E) (or (N, L, E) with batch_first), or unbatched (L, E). Masks follow
// PyTorch's MODULE convention, the opposite of scaled_dot_product_attention's boolean one:
//   key_padding_mask (N, S) or (S): int64 (normgrad's bool) nonzero = this key is padding,
//                                   ignore it; or float, added to the scores;
//   attn_mask (L, S) or (N * num_heads, L, S): int64 nonzero = NOT allowed; or float, added.
//   is_causal: also mask the future (key j > query i).
// A query whose keys are all masked gets output out_proj.bias (its attention output is 0, see
// autograd/ops/attention.h); PyTorch's module returns NaN there.
//
// need_weights (default true, as PyTorch) also returns the attention weights (N, L, S), averaged
// over the heads (or (N, num_heads, L, S) without average_attn_weights); the weights returned
// are the ones the values were multiplied by (after dropout in training, as PyTorch). With
// need_weights the attention runs as a composite of ops (ng::attention_weights); without, as the
// fused ng::scaled_dot_product_attention (faster, less memory): pass need_weights = false when
// the weights are not needed, as nn::TransformerEncoderLayer does.
#pragma once
#include <optional>
#include <utility>

#include "layers/linear.h"
#include "layers/module.h"

namespace ng::nn {

// MultiheadAttentionOptions(64, 4).dropout(0.1).batch_first(true)
struct MultiheadAttentionOptions {
  MultiheadAttentionOptions(std::int64_t embed_dim, std::int64_t num_heads)
      : embed_dim_(embed_dim), num_heads_(num_heads) {}
  std::int64_t embed_dim() const { return embed_dim_; }
  std::int64_t num_heads() const { return num_heads_; }
  double dropout() const { return dropout_; }
  bool bias() const { return bias_; }
  bool add_bias_kv() const { return add_bias_kv_; }
  bool add_zero_attn() const { return add_zero_attn_; }
  std::int64_t kdim() const { return kdim_.value_or(embed_dim_); }
  std::int64_t vdim() const { return vdim_.value_or(embed_dim_); }
  bool batch_first() const { return batch_first_; }
  DType dtype() const { return dtype_; }
  MultiheadAttentionOptions& dropout(double v) {
    dropout_ = v;
    return *this;
  }
  MultiheadAttentionOptions& bias(bool v) {
    bias_ = v;
    return *this;
  }
  MultiheadAttentionOptions& add_bias_kv(bool v) {
    add_bias_kv_ = v;
    return *this;
  }
  MultiheadAttentionOptions& add_zero_attn(bool v) {
    add_zero_attn_ = v;
    return *this;
  }
  MultiheadAttentionOptions& kdim(std::optional<std::int64_t> v) {
    kdim_ = v;
    return *this;
  }
  MultiheadAttentionOptions& vdim(std::optional<std::int64_t> v) {
    vdim_ = v;
    return *this;
  }
  MultiheadAttentionOptions& batch_first(bool v) {
    batch_first_ = v;
    return *this;
  }
  MultiheadAttentionOptions& dtype(DType v) {
    dtype_ = v;
    return *this;
  }

 private:
  std::int64_t embed_dim_, num_heads_;
  double dropout_ = 0.0;
  bool bias_ = true, add_bias_kv_ = false, add_zero_attn_ = false;
  std::optional<std::int64_t> kdim_, vdim_;
  bool batch_first_ = false;
  DType dtype_ = DType::f32;
};

// What forward takes besides query, key and value (all optional).
struct AttentionArgs {
  Tensor key_padding_mask;
  bool need_weights = true;
  Tensor attn_mask;
  bool average_attn_weights = true;
  bool is_causal = false;
};

class MultiheadAttention : public Module {
 public:
  explicit MultiheadAttention(MultiheadAttentionOptions opt, Generator* gen = nullptr);
  // {output, weights}: output as query ((L, N, E), (N, L, E) or (L, E)); weights undefined
  // unless need_weights.
  std::pair<Tensor, Tensor> forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                    const AttentionArgs& args = {});
  // PyTorch's positional order: forward(query, key, value, key_padding_mask, need_weights,
  // attn_mask, average_attn_weights, is_causal).
  std::pair<Tensor, Tensor> forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                    const Tensor& key_padding_mask, bool need_weights = true,
                                    const Tensor& attn_mask = {}, bool average_attn_weights = true,
                                    bool is_causal = false);
  // Self-attention without masks; returns the output only.
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MultiheadAttention"; }
  void reset_parameters(Generator* gen = nullptr);
  const MultiheadAttentionOptions& options() const { return opt_; }
  // The dropout on the attention weights draws from `gen` (default: the thread's generator).
  void set_generator(Generator* gen) { gen_ = gen; }

  std::int64_t embed_dim, num_heads, head_dim;
  Tensor in_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias, bias_k, bias_v;
  std::shared_ptr<Linear> out_proj;

 private:
  MultiheadAttentionOptions opt_;
  Generator* gen_ = nullptr;
};

}  // namespace ng::nn
