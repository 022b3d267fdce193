// nn::MultiheadAttention, nn::TransformerEncoderLayer, nn::TransformerEncoder and the positional
// encodings (layers/attention.*, layers/transformer.*, layers/positional.*): PyTorch's state_dict
// names and shapes, forward values against a per-head composite of primitive ops in float64
// (masks, padding, cross-attention with kdim/vdim, need_weights averaging, pre/post-LN), float64
// gradchecks, and the error cases.
#include <cmath>
#include <limits>

#include "layers/attention.h"
#include "layers/init.h"
#include "layers/positional.h"
#include "layers/transformer.h"
#include "tests/helpers.h"

using namespace ng;
using namespace ng::nn;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<std::pair<std::string, Shape>> names_shapes(const Module& m) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& [n, t] : m.state_dict()) out.emplace_back(n, t.shape());
  return out;
}

// Multi-head attention written head by head with slices, matmul and softmax (no reshapes, no
// fused op). Batch-first inputs (N, L, E); additive mask broadcastable to (N, H, L, S) or undefined.
Tensor reference_mha(const MultiheadAttention& m, const Tensor& query, const Tensor& key, const Tensor& value,
                     const Tensor& mask, Tensor* avg_weights = nullptr) {
  const std::int64_t E = m.embed_dim, H = m.num_heads, hd = m.head_dim;
  auto w = [&](int i) {
    if (m.in_proj_weight.defined()) return slice(m.in_proj_weight, 0, i * E, (i + 1) * E);
    return i == 0 ? m.q_proj_weight : (i == 1 ? m.k_proj_weight : m.v_proj_weight);
  };
  auto proj = [&](const Tensor& x, int i) {
    Tensor y = matmul(x, transpose(w(i), 0, 1));
    return m.in_proj_bias.defined() ? add(y, slice(m.in_proj_bias, 0, i * E, (i + 1) * E)) : y;
  };
  Tensor q = proj(query, 0), k = proj(key, 1), v = proj(value, 2);
  if (m.bias_k.defined()) {
    const std::int64_t N = q.size(0);
    k = cat({k, expand(m.bias_k, {N, 1, E})}, 1);
    v = cat({v, expand(m.bias_v, {N, 1, E})}, 1);
  }
  std::vector<Tensor> heads;
  Tensor wsum;
  for (std::int64_t h = 0; h < H; ++h) {
    const Tensor qh = slice(q, 2, h * hd, (h + 1) * hd), kh = slice(k, 2, h * hd, (h + 1) * hd),
                 vh = slice(v, 2, h * hd, (h + 1) * hd);
    Tensor s = mul(matmul(qh, transpose(kh, 1, 2)), 1.0 / std::sqrt(static_cast<double>(hd)));
    if (mask.defined())
      s = add(s, mask.dim() == 4 ? select(broadcast_to(mask, {mask.size(0), H, s.size(1), s.size(2)}), 1, h) : mask);
    const Tensor p = softmax(s, -1);
    wsum = wsum.defined() ? add(wsum, p) : p;
    heads.push_back(matmul(p, vh));
  }
  if (avg_weights) *avg_weights = mul(wsum, 1.0 / static_cast<double>(H));
  Tensor out = matmul(cat(heads, 2), transpose(m.out_proj->weight, 0, 1));
  return m.out_proj->bias.defined() ? add(out, m.out_proj->bias) : out;
}

Tensor i64(const std::vector<std::int64_t>& v, const Shape& s) {
  return from_vector(v, s);
}

}  // namespace

TEST_CASE("multihead_attention: state_dict names and shapes are PyTorch's") {
  Generator g(1);
  MultiheadAttention a(MultiheadAttentionOptions(8, 2), &g);
  CHECK(names_shapes(a) ==
        std::vector<std::pair<std::string, Shape>>{
            {"in_proj_weight", {24, 8}}, {"in_proj_bias", {24}}, {"out_proj.weight", {8, 8}}, {"out_proj.bias", {8}}});
  MultiheadAttention b(MultiheadAttentionOptions(8, 2).kdim(5).vdim(3).add_bias_kv(true), &g);
  CHECK(names_shapes(b) == std::vector<std::pair<std::string, Shape>>{{"q_proj_weight", {8, 8}},
                                                                      {"k_proj_weight", {8, 5}},
                                                                      {"v_proj_weight", {8, 3}},
                                                                      {"in_proj_bias", {24}},
                                                                      {"bias_k", {1, 1, 8}},
                                                                      {"bias_v", {1, 1, 8}},
                                                                      {"out_proj.weight", {8, 8}},
                                                                      {"out_proj.bias", {8}}});
  MultiheadAttention c(MultiheadAttentionOptions(6, 3).bias(false).dtype(DType::f64), &g);
  CHECK(names_shapes(c) ==
        std::vector<std::pair<std::string, Shape>>{{"in_proj_weight", {18, 6}}, {"out_proj.weight", {6, 6}}});
  CHECK(c.in_proj_weight.dtype() == DType::f64);
  // PyTorch's initialization: zero biases, xavier-uniform packed weight
  CHECK(test::max_abs(a.in_proj_bias) == 0.0);
  CHECK(test::max_abs(a.out_proj->bias) == 0.0);
  CHECK(test::max_abs(a.in_proj_weight) <= std::sqrt(6.0 / (8 + 24)));
}

TEST_CASE("multihead_attention: output and averaged weights equal the per-head composite (masks, padding)") {
  Generator g(2);
  const std::int64_t N = 2, L = 3, S = 4, E = 6, H = 3;
  MultiheadAttention m(MultiheadAttentionOptions(E, H).batch_first(true).dtype(DType::f64), &g);
  init::normal_(m.in_proj_bias, 0.0, 0.5, &g);
  const Tensor x = test::rnd({N, L, E}, 3, false), mem = test::rnd({N, S, E}, 4, false);
  // no mask; cross-attention (key = value = mem); weights averaged over heads
  Tensor wref;
  const Tensor ref = reference_mha(m, x, mem, mem, {}, &wref);
  auto [out, w] = m.forward(x, mem, mem);
  CHECK(test::max_abs_diff(out, ref) < 1e-12);
  CHECK(w.shape() == Shape{N, L, S});
  CHECK(test::max_abs_diff(w, wref) < 1e-12);
  // need_weights = false goes through the fused op: the same output
  CHECK(test::max_abs_diff(m.forward(x, mem, mem, Tensor(), false).first, ref) < 1e-12);
  // per-head weights
  CHECK(m.forward(x, mem, mem, Tensor(), true, Tensor(), false).second.shape() == Shape{N, H, L, S});
  // key_padding_mask (true = padding, ignore) and a boolean attn_mask (true = not allowed)
  const Tensor kpm = i64({0, 0, 0, 0, 0, 0, 1, 1}, {N, S});
  const Tensor am = i64({0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0}, {L, S});
  const Tensor add_mask = add(reshape(where(kpm, full({}, -kInf, DType::f64), zeros({}, DType::f64)), {N, 1, 1, S}),
                              where(am, full({}, -kInf, DType::f64), zeros({}, DType::f64)));
  const Tensor ref_m = reference_mha(m, x, mem, mem, add_mask, &wref);
  for (bool need_weights : {true, false}) {
    auto [om, wm] = m.forward(x, mem, mem, kpm, need_weights, am);
    CHECK(test::max_abs_diff(om, ref_m) < 1e-12);
    if (need_weights) CHECK(test::max_abs_diff(wm, wref) < 1e-12);
  }
  // a float 3-d attn_mask (N * H, L, S), added to the scores
  const Tensor fm = test::rnd({N * H, L, S}, 5, false);
  CHECK(test::max_abs_diff(m.forward(x, mem, mem, Tensor(), false, fm).first,
                           reference_mha(m, x, mem, mem, reshape(fm, {N, H, L, S}))) < 1e-12);
  // is_causal on self-attention equals the explicit causal mask
  const Tensor causal = i64({0, 1, 1, 0, 0, 1, 0, 0, 0}, {L, L});
  CHECK(test::max_abs_diff(m.forward(x, x, x, Tensor(), false, Tensor(), true, true).first,
                           m.forward(x, x, x, Tensor(), false, causal).first) < 1e-12);
}

TEST_CASE("multihead_attention: kdim/vdim cross-attention, add_bias_kv, sequence-first and unbatched layouts") {
  Generator g(6);
  const std::int64_t N = 2, L = 3, S = 5, E = 4;
  MultiheadAttention m(MultiheadAttentionOptions(E, 2).kdim(3).vdim(7).add_bias_kv(true).dtype(DType::f64), &g);
  const Tensor q = test::rnd({L, N, E}, 7, false), k = test::rnd({S, N, 3}, 8, false),
               v = test::rnd({S, N, 7}, 9, false);
  auto bf = [](const Tensor& t) { return transpose(t, 0, 1); };
  const Tensor ref = reference_mha(m, bf(q), bf(k), bf(v), {});
  auto [out, w] = m.forward(q, k, v);
  CHECK(out.shape() == Shape{L, N, E});  // sequence-first, as batch_first = false
  CHECK(test::max_abs_diff(bf(out), ref) < 1e-12);
  CHECK(w.shape() == Shape{N, L, S + 1});  // the bias_k key counts
  // unbatched (L, E): the same as a batch of one
  const Tensor q0 = select(q, 1, 0), k0 = select(k, 1, 0), v0 = select(v, 1, 0);
  auto [o0, w0] = m.forward(q0, k0, v0);
  CHECK(o0.shape() == Shape{L, E});
  CHECK(w0.shape() == Shape{L, S + 1});
  CHECK(test::max_abs_diff(o0, select(out, 1, 0)) < 1e-12);
}

TEST_CASE("multihead_attention: float64 gradcheck w.r.t. inputs and parameters") {
  Generator g(10);
  MultiheadAttention m(MultiheadAttentionOptions(4, 2).batch_first(true).add_zero_attn(true).dtype(DType::f64), &g);
  const Tensor x = test::rnd({2, 3, 4}, 11);
  const Tensor kpm = i64({0, 0, 1, 0, 0, 0}, {2, 3});
  CHECK_GRADCHECK(gradcheck(
      [&](const std::vector<Tensor>& in) {
        Tensor o = m.forward(in[0], in[0], in[0], kpm, false).first;
        return o;
      },
      {x, m.in_proj_weight, m.in_proj_bias, m.out_proj->weight}));
  CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& in) { return m.forward(in[0], in[0], in[0]).second; }, {x}));
}

TEST_CASE("multihead_attention: a fully padded sample gives out_proj.bias, not NaN") {
  Generator g(12);
  MultiheadAttention m(MultiheadAttentionOptions(4, 2).batch_first(true).dtype(DType::f64), &g);
  init::normal_(m.out_proj->bias, 0.0, 1.0, &g);
  const Tensor x = test::rnd({2, 3, 4}, 13, false);
  const auto out = m.forward(x, x, x, i64({0, 0, 0, 1, 1, 1}, {2, 3})).first;
  for (std::int64_t i = 0; i < 3; ++i)
    CHECK(test::max_abs_diff(select(select(out, 0, 1), 0, i), m.out_proj->bias) == 0.0);
}

TEST_CASE("multihead_attention: errors name the layer, the shapes and the fix") {
  CHECK_THROWS_WITH_AS(MultiheadAttention(MultiheadAttentionOptions(10, 3)),
                       doctest::Contains("embed_dim must be divisible by num_heads: 10 % 3 = 1"), ValueError);
  CHECK_THROWS_AS(MultiheadAttention(MultiheadAttentionOptions(4, 2).dropout(1.5)), ValueError);
  MultiheadAttention m(MultiheadAttentionOptions(4, 2));
  const Tensor x = zeros({3, 2, 4});
  CHECK_THROWS_WITH_AS(m.forward(zeros({3, 2, 5}), x, x),
                       doctest::Contains("feature sizes (last dim) must be embed_dim=4"), ShapeError);
  CHECK_THROWS_WITH_AS(m.forward(x, zeros({3, 1, 4}), zeros({3, 1, 4})), doctest::Contains("same batch size"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(m.forward(x, x, x, Tensor(), true, zeros({3, 2}, DType::i64)),
                       doctest::Contains("a 2-d attn_mask must be (L, S) = [3, 3], got [3, 2]"), ShapeError);
  CHECK_THROWS_WITH_AS(m.forward(x, x, x, zeros({3, 2}, DType::i64)),
                       doctest::Contains("key_padding_mask must be (N, S) = [2, 3], got [3, 2]"), ShapeError);
  CHECK_THROWS_WITH_AS(m.forward(x, x, x, zeros({2, 3}, DType::f64)),
                       doctest::Contains("key_padding_mask must be int64 (nonzero = not allowed to attend)"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(m.forward(zeros({4})), doctest::Contains("must all be 3-d"), ShapeError);
  CHECK_THROWS_AS(m.forward(x.to(DType::f64)), DTypeError);
}

TEST_CASE("transformer_encoder_layer: PyTorch's names, post-LN and pre-LN equal their composites") {
  Generator g(20);
  const std::int64_t E = 4, N = 2, L = 3;
  for (bool norm_first : {false, true}) {
    CAPTURE(norm_first);
    TransformerEncoderLayer layer(TransformerEncoderLayerOptions(E, 2)
                                      .dim_feedforward(6)
                                      .norm_first(norm_first)
                                      .batch_first(true)
                                      .activation(TransformerActivation::gelu)
                                      .dtype(DType::f64),
                                  &g);
    CHECK(names_shapes(layer) == std::vector<std::pair<std::string, Shape>>{{"self_attn.in_proj_weight", {12, 4}},
                                                                            {"self_attn.in_proj_bias", {12}},
                                                                            {"self_attn.out_proj.weight", {4, 4}},
                                                                            {"self_attn.out_proj.bias", {4}},
                                                                            {"linear1.weight", {6, 4}},
                                                                            {"linear1.bias", {6}},
                                                                            {"linear2.weight", {4, 6}},
                                                                            {"linear2.bias", {4}},
                                                                            {"norm1.weight", {4}},
                                                                            {"norm1.bias", {4}},
                                                                            {"norm2.weight", {4}},
                                                                            {"norm2.bias", {4}}});
    layer.eval();  // dropout off (PyTorch's default dropout is 0.1)
    Module& n1 = *layer.norm1;
    Module& n2 = *layer.norm2;
    Tensor n1_weight = n1.named_parameters()[0].second;
    init::normal_(n1_weight, 1.0, 0.3, &g);
    const Tensor x = test::rnd({N, L, E}, 21, false);
    const Tensor kpm = i64({0, 0, 1, 0, 0, 0}, {N, L});
    const Tensor mask = reshape(where(kpm, full({}, -kInf, DType::f64), zeros({}, DType::f64)), {N, 1, 1, L});
    auto sa = [&](const Tensor& t) { return reference_mha(*layer.self_attn, t, t, t, mask); };
    auto ff = [&](const Tensor& t) {
      return add(matmul(gelu(add(matmul(t, transpose(layer.linear1->weight, 0, 1)), layer.linear1->bias)),
                        transpose(layer.linear2->weight, 0, 1)),
                 layer.linear2->bias);
    };
    auto ln = [](Module& n, const Tensor& t) {
      const auto p = n.named_parameters();
      const Tensor mu = mean(t, {-1}, true), var_ = var(t, {-1}, 0, true);
      return add(mul(div(sub(t, mu), sqrt(add(var_, 1e-5))), p[0].second), p[1].second);
    };
    Tensor ref;
    if (norm_first) {
      ref = add(x, sa(ln(n1, x)));
      ref = add(ref, ff(ln(n2, ref)));
    } else {
      ref = ln(n1, add(x, sa(x)));
      ref = ln(n2, add(ref, ff(ref)));
    }
    CHECK(test::max_abs_diff(layer.forward(x, Tensor(), kpm), ref) < 1e-12);
  }
}

TEST_CASE("transformer_encoder_layer: float64 gradcheck, pre-LN, causal, every norm choice") {
  for (auto norm :
       {TransformerNorm::layer_norm, TransformerNorm::rms_norm, TransformerNorm::batch_norm, TransformerNorm::none}) {
    Generator g(30);
    TransformerEncoderLayer layer(TransformerEncoderLayerOptions(4, 2)
                                      .dim_feedforward(5)
                                      .dropout(0.0)
                                      .norm_first(true)
                                      .batch_first(true)
                                      .norm(norm)
                                      .dtype(DType::f64),
                                  &g);
    const Tensor x = test::rnd({2, 3, 4}, 31);
    CHECK_GRADCHECK(gradcheck(layer, x));
    CHECK_GRADCHECK(
        gradcheck([&](const std::vector<Tensor>& in) { return layer.forward(in[0], Tensor(), Tensor(), true); }, {x}));
  }
  TransformerEncoderLayer rms(TransformerEncoderLayerOptions(4, 2).norm(TransformerNorm::rms_norm));
  CHECK(names_shapes(rms).back() == std::pair<std::string, Shape>{"norm2.weight", {4}});
  TransformerEncoderLayer bn(TransformerEncoderLayerOptions(4, 2).norm(TransformerNorm::batch_norm));
  CHECK(bn.state_dict().size() == 8 + 2 * 5);  // weight, bias, running_mean, running_var, num_batches_tracked
}

TEST_CASE("transformer_encoder: copies of one layer named layers.i, final norm, sequence-first input") {
  Generator g(40);
  TransformerEncoderLayer layer(TransformerEncoderLayerOptions(4, 2).dim_feedforward(8).dropout(0.0).dtype(DType::f64),
                                &g);
  TransformerEncoder enc(layer, 2, make_token_norm(TransformerNorm::layer_norm, 4, 1e-5, DType::f64));
  const auto sd = enc.state_dict();
  CHECK(sd.size() == 2 * 12 + 2);
  CHECK(sd[0].first == "layers.0.self_attn.in_proj_weight");
  CHECK(sd[12].first == "layers.1.self_attn.in_proj_weight");
  CHECK(sd[24].first == "norm.weight");
  CHECK(test::max_abs_diff(sd[0].second, sd[12].second) == 0.0);  // deep copies: same start
  CHECK_FALSE(sd[0].second.same(sd[12].second));                  // but separate tensors
  const Tensor x = test::rnd({3, 2, 4}, 41, false);               // (L, N, E)
  Tensor ref = layer.forward(layer.forward(x));
  ref = enc.norm->forward(ref);
  CHECK(test::max_abs_diff(enc.forward(x), ref) < 1e-12);
  CHECK_THROWS_AS(TransformerEncoder(layer, 0), ValueError);
}

TEST_CASE("positional: sinusoidal table values, learned embedding shape, names and gradient") {
  SinusoidalPositionalEncoding pe(5, 16);
  const Tensor t = pe.table(4, DType::f64);
  CHECK(t.at({0, 0}) == 0.0);
  CHECK(t.at({0, 1}) == 1.0);
  CHECK(t.at({3, 2}) == doctest::Approx(std::sin(3.0 / std::pow(10000.0, 2.0 / 5))).epsilon(1e-14));
  CHECK(t.at({3, 3}) == doctest::Approx(std::cos(3.0 / std::pow(10000.0, 2.0 / 5))).epsilon(1e-14));
  CHECK(t.at({2, 4}) == doctest::Approx(std::sin(2.0 / std::pow(10000.0, 4.0 / 5))).epsilon(1e-14));
  const Tensor x = zeros({2, 4, 5}, DType::f64);
  CHECK(test::max_abs_diff(select(pe.forward(x), 0, 1), t) == 0.0);
  CHECK(pe.state_dict().empty());
  SinusoidalPositionalEncoding seq_first(5, 16, false);
  CHECK(test::max_abs_diff(select(seq_first.forward(zeros({4, 2, 5}, DType::f64)), 1, 0), t) == 0.0);
  Generator g(50);
  LearnedPositionalEmbedding wpe(8, 5, true, &g, DType::f64);
  CHECK(names_shapes(wpe) == std::vector<std::pair<std::string, Shape>>{{"weight", {8, 5}}});
  CHECK_GRADCHECK(gradcheck(wpe, test::rnd({2, 3, 5}, 51)));
  CHECK_THROWS_WITH_AS(wpe.forward(zeros({1, 9, 5}, DType::f64)),
                       doctest::Contains("sequence length 9 exceeds max_len 8"), ValueError);
  CHECK_THROWS_WITH_AS(pe.forward(zeros({2, 4, 6})), doctest::Contains("input must be (N, L, d) with d = 5"),
                       ShapeError);
}
