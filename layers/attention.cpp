#include "layers/attention.h"

#include <limits>

#include "layers/dropout.h"
#include "layers/init.h"

namespace ng::nn {

namespace {

constexpr const char* kName = "MultiheadAttention";

// A module-convention mask (int64 nonzero = masked out, or float added) as an additive float
// mask of dtype d: 0 where allowed, -inf where masked.
Tensor additive_mask(const Tensor& m, DType d, const char* what) {
  if (m.dtype() == DType::i64) return where(m, full({}, -std::numeric_limits<double>::infinity(), d), zeros({}, d));
  if (m.dtype() != d)
    fail<DTypeError>("{}: {} must be int64 (nonzero = not allowed to attend) or the query's dtype {}, got {}", kName,
                     what, d, m.dtype());
  return m;
}

// Appends one key column (mask value 0: the extra key of add_bias_kv / add_zero_attn is visible).
Tensor add_key_column(const Tensor& m) {
  Shape s = m.shape();
  s[s.size() - 1] = 1;
  return cat({m, zeros(s, m.dtype())}, -1);
}

}  // namespace

MultiheadAttention::MultiheadAttention(MultiheadAttentionOptions opt, Generator* gen)
    : embed_dim(opt.embed_dim()), num_heads(opt.num_heads()), head_dim(0), opt_(opt), gen_(nullptr) {
  if (embed_dim <= 0 || num_heads <= 0)
    fail<ValueError>("{}: embed_dim and num_heads must be positive, got embed_dim={} num_heads={}", kName, embed_dim,
                     num_heads);
  if (embed_dim % num_heads != 0)
    fail<ValueError>("{}: embed_dim must be divisible by num_heads: {} % {} = {} (choose num_heads dividing {})", kName,
                     embed_dim, num_heads, embed_dim % num_heads, embed_dim);
  if (opt.kdim() <= 0 || opt.vdim() <= 0)
    fail<ValueError>("{}: kdim and vdim must be positive, got kdim={} vdim={}", kName, opt.kdim(), opt.vdim());
  if (!(opt.dropout() >= 0.0 && opt.dropout() <= 1.0))
    fail<ValueError>("{}: dropout probability has to be between 0 and 1, but got {}", kName, opt.dropout());
  if (!is_floating(opt.dtype())) fail<DTypeError>("{}: dtype must be float32 or float64, got {}", kName, opt.dtype());
  head_dim = embed_dim / num_heads;
  const std::int64_t E = embed_dim;
  std::int64_t E3 = 0;  // rows of the packed [Wq; Wk; Wv] and of in_proj_bias
  if (!size_mul(3, E, E3))
    fail<ShapeError>("{}: embed_dim {} is too large: the packed input projection has 3 * embed_dim rows, which "
                     "overflows int64 (2^63 - 1)",
                     kName, E);
  const DType d = opt.dtype();
  if (opt.kdim() == E && opt.vdim() == E) {  // PyTorch's _qkv_same_embed_dim: one packed weight
    in_proj_weight = register_parameter("in_proj_weight", empty({E3, E}, d));
    register_parameter("q_proj_weight", Tensor());
    register_parameter("k_proj_weight", Tensor());
    register_parameter("v_proj_weight", Tensor());
  } else {
    q_proj_weight = register_parameter("q_proj_weight", empty({E, E}, d));
    k_proj_weight = register_parameter("k_proj_weight", empty({E, opt.kdim()}, d));
    v_proj_weight = register_parameter("v_proj_weight", empty({E, opt.vdim()}, d));
    register_parameter("in_proj_weight", Tensor());
  }
  in_proj_bias = register_parameter("in_proj_bias", opt.bias() ? empty({E3}, d) : Tensor());
  out_proj = register_module("out_proj", std::make_shared<Linear>(E, E, opt.bias(), gen, d));
  bias_k = register_parameter("bias_k", opt.add_bias_kv() ? empty({1, 1, E}, d) : Tensor());
  bias_v = register_parameter("bias_v", opt.add_bias_kv() ? empty({1, 1, E}, d) : Tensor());
  reset_parameters(gen);
}

void MultiheadAttention::reset_parameters(Generator* gen) {
  for (Tensor* w : {&in_proj_weight, &q_proj_weight, &k_proj_weight, &v_proj_weight})
    if (w->defined()) init::xavier_uniform_(*w, 1.0, gen);
  if (in_proj_bias.defined()) {
    init::zeros_(in_proj_bias);
    init::zeros_(out_proj->bias);
  }
  if (bias_k.defined()) init::xavier_normal_(bias_k, 1.0, gen);
  if (bias_v.defined()) init::xavier_normal_(bias_v, 1.0, gen);
}

Tensor MultiheadAttention::forward(const Tensor& x) {
  AttentionArgs a;
  a.need_weights = false;
  return forward(x, x, x, a).first;
}

std::pair<Tensor, Tensor> MultiheadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                                      const Tensor& key_padding_mask, bool need_weights,
                                                      const Tensor& attn_mask, bool average_attn_weights,
                                                      bool is_causal) {
  return forward(query, key, value,
                 AttentionArgs{key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal});
}

std::pair<Tensor, Tensor> MultiheadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                                      const AttentionArgs& a) {
  const std::int64_t E = embed_dim, H = num_heads, hd = head_dim;
  if ((query.dim() != 2 && query.dim() != 3) || key.dim() != query.dim() || value.dim() != query.dim())
    fail<ShapeError>(
        "{}: query, key and value must all be 3-d ({}) or all 2-d (L, E) unbatched: got query {}, key {}, "
        "value {}",
        kName, opt_.batch_first() ? "(N, L, E) with batch_first" : "(L, N, E)", query.shape(), key.shape(),
        value.shape());
  const bool batched = query.dim() == 3;
  // Work batch-first: (N, L, E).
  auto to_nle = [&](const Tensor& t) {
    return !batched ? unsqueeze(t, 0) : (opt_.batch_first() ? t : transpose(t, 0, 1));
  };
  const Tensor q_in = to_nle(query), k_in = to_nle(key), v_in = to_nle(value);
  const std::int64_t N = q_in.size(0), L = q_in.size(1);
  std::int64_t S = k_in.size(1);
  if (q_in.size(2) != E || k_in.size(2) != opt_.kdim() || v_in.size(2) != opt_.vdim())
    fail<ShapeError>(
        "{}: feature sizes (last dim) must be embed_dim={}, kdim={}, vdim={}: got query {}, key {}, value {}", kName, E,
        opt_.kdim(), opt_.vdim(), query.shape(), key.shape(), value.shape());
  if (k_in.size(0) != N || v_in.size(0) != N || v_in.size(1) != S)
    fail<ShapeError>(
        "{}: query, key and value must have the same batch size, and key and value the same length: got "
        "query {}, key {}, value {}",
        kName, query.shape(), key.shape(), value.shape());
  const DType d = query.dtype();
  if (key.dtype() != d || value.dtype() != d || d != (out_proj->weight.dtype()))
    fail<DTypeError>("{}: query, key, value and the parameters must have one dtype: got {}, {}, {} and {}", kName, d,
                     key.dtype(), value.dtype(), out_proj->weight.dtype());

  // Projections: q = query Wq^T + bq, ... (the packed weight's rows are [Wq; Wk; Wv]).
  auto bias_part = [&](int i) {
    return in_proj_bias.defined() ? slice(in_proj_bias, 0, i * E, (i + 1) * E) : Tensor();
  };
  const Tensor Wq = in_proj_weight.defined() ? slice(in_proj_weight, 0, 0, E) : q_proj_weight;
  const Tensor Wk = in_proj_weight.defined() ? slice(in_proj_weight, 0, E, 2 * E) : k_proj_weight;
  const Tensor Wv = in_proj_weight.defined() ? slice(in_proj_weight, 0, 2 * E, 3 * E) : v_proj_weight;
  Tensor q = linear(q_in, Wq, bias_part(0));  // (N, L, E)
  Tensor k = linear(k_in, Wk, bias_part(1));  // (N, S, E)
  Tensor v = linear(v_in, Wv, bias_part(2));

  // Masks, as one additive float mask broadcastable to (N, H, L, S) (undefined if none).
  Tensor mask;
  if (a.attn_mask.defined()) {
    const Tensor& m = a.attn_mask;
    if (m.dim() == 2) {
      if (m.shape() != Shape{L, S})
        fail<ShapeError>("{}: a 2-d attn_mask must be (L, S) = [{}, {}], got {}", kName, L, S, m.shape());
      mask = additive_mask(m, d, "attn_mask");
    } else if (m.dim() == 3) {
      if (m.shape() != Shape{N * H, L, S})
        fail<ShapeError>("{}: a 3-d attn_mask must be (N * num_heads, L, S) = [{}, {}, {}], got {}", kName, N * H, L, S,
                         m.shape());
      mask = reshape(additive_mask(m, d, "attn_mask"), {N, H, L, S});
    } else {
      fail<ShapeError>("{}: attn_mask must be 2-d (L, S) or 3-d (N * num_heads, L, S), got {}", kName, m.shape());
    }
  }
  if (a.key_padding_mask.defined()) {
    const Tensor& m = a.key_padding_mask;
    const Shape expect = batched ? Shape{N, S} : Shape{S};
    if (m.shape() != expect)
      fail<ShapeError>("{}: key_padding_mask must be {} = {}, got {}", kName, batched ? "(N, S)" : "(S)", expect,
                       m.shape());
    const Tensor kpm = reshape(additive_mask(m, d, "key_padding_mask"), {N, 1, 1, S});
    mask = mask.defined() ? add(mask, kpm) : kpm;
  }
  bool causal = a.is_causal;
  // The op takes causal alone; with other masks or extra keys, it becomes part of the mask
  // (before the extra keys are appended: those stay visible to every query).
  if (causal && (mask.defined() || bias_k.defined() || opt_.add_zero_attn())) {
    Tensor c = zeros({L, S}, d);
    dispatch_float(d, kName, [&](auto tag) {
      using T = decltype(tag);
      T* p = c.data<T>();
      for (std::int64_t i = 0; i < L; ++i)
        for (std::int64_t j = i + 1; j < S; ++j) p[i * S + j] = -std::numeric_limits<T>::infinity();
    });
    mask = mask.defined() ? add(mask, c) : c;
    causal = false;
  }
  if (bias_k.defined()) {  // one more key and value, the learned bias_k / bias_v, for every sample
    k = cat({k, expand(bias_k, {N, 1, E})}, 1);
    v = cat({v, expand(bias_v, {N, 1, E})}, 1);
    if (mask.defined()) mask = add_key_column(mask);
    ++S;
  }
  // Heads: (N, L, E) -> (N, L, H, hd) -> (N, H, L, hd) (a view: the op reads rows at stride E).
  q = transpose(reshape(q, {N, L, H, hd}), 1, 2);
  k = transpose(reshape(k, {N, S, H, hd}), 1, 2);
  v = transpose(reshape(v, {N, S, H, hd}), 1, 2);
  if (opt_.add_zero_attn()) {  // one more key and value of zeros
    k = cat({k, zeros({N, H, 1, hd}, d)}, 2);
    v = cat({v, zeros({N, H, 1, hd}, d)}, 2);
    if (mask.defined()) mask = add_key_column(mask);
    ++S;
  }

  const double p = is_training() ? opt_.dropout() : 0.0;
  Tensor attn, weights;  // attn (N, H, L, hd)
  if (a.need_weights) {
    weights = attention_weights(q, k, mask, causal);
    if (p > 0.0) weights = F::dropout(weights, p, true, gen_);
    attn = matmul(weights, v);
    if (a.average_attn_weights) weights = mean(weights, {1});
    if (!batched) weights = squeeze(weights, 0);
  } else {
    attn = scaled_dot_product_attention(q, k, v, mask, p, causal, std::nullopt, gen_);
  }
  Tensor out = out_proj->forward(reshape(transpose(attn, 1, 2), {N, L, E}));  // concat heads, project
  if (!batched)
    out = squeeze(out, 0);
  else if (!opt_.batch_first())
    out = transpose(out, 0, 1);
  return {out, weights};
}

}  // namespace ng::nn
