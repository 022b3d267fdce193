// The attention rows of the benchmark (bench/attention_rows.cpp for normgrad's side,
// bench/torch_attention_rows.cpp for LibTorch's), hooked into bench/main.cpp:
//
//   attention_fb  scaled_dot_product_attention, batch 32, 4 heads, length 128, head size 16,
//                 causal, forward + backward (gradients of q, k, v). LibTorch 1.13 has no
//                 fused SDPA: its column is the composite in its fastest form (the one its
//                 F::multi_head_attention_forward uses): q * scale, baddbmm adding the
//                 additive causal mask, softmax, bmm, and its autograd.
//   gpt_step      one Adam step (lr 1e-3) of examples/tiny_gpt's model in its post-LN form
//                 (LibTorch 1.13's torch::nn::TransformerEncoderLayer is post-LN and
//                 sequence-first only): 2 layers, d_model 64, 4 heads, feed-forward 256, GELU,
//                 no dropout, vocabulary 96, batch 32 x 64 tokens, causal. Both start from
//                 normgrad's initial parameters (copied by name: tok_emb, pos_emb,
//                 blocks.<i>.self_attn / linear1 / linear2 / norm1 / norm2, head).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace bench::attention {

inline constexpr std::int64_t kBatch = 32, kHeads = 4, kLen = 128, kHeadDim = 16;
struct GptConfig {
  std::int64_t vocab = 96, block = 64, d_model = 64, heads = 4, layers = 2, batch = 32;
  double lr = 1e-3;
};

// One forward + backward of causal attention on fixed random q, k, v, dO.
std::function<void()> ng_attention_fb();
// One training step; returns its loss.
std::function<double()> ng_gpt_step(const GptConfig& c = {});

// What LibTorch's gpt_step needs from normgrad: its initial parameters by name, and the batch.
struct GptInit {
  std::vector<std::string> names;
  std::vector<std::vector<std::int64_t>> shapes;
  std::vector<std::vector<float>> values;
  std::vector<std::int64_t> x, y;  // (batch, block) token ids: inputs and next-token targets
};
GptInit gpt_init(const GptConfig& c = {});

}  // namespace bench::attention
