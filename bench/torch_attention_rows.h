// LibTorch's side of the attention rows (bench/attention_rows.h), in its own translation unit
// so that normgrad's and LibTorch's headers never meet; this interface uses only std types.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace bench::torch_rows {

// Causal attention forward + backward, composed: S = q k^T / sqrt(E), masked_fill(-inf) above
// the diagonal, softmax, P v; backward with a fixed random dO. Shape (batch, heads, len, dim).
std::function<void()> attention_fb(std::int64_t batch, std::int64_t heads, std::int64_t len, std::int64_t dim);

// tiny_gpt's post-LN model in LibTorch: Embedding + positions, torch::nn::TransformerEncoderLayer
// (GELU, dropout 0, sequence-first) with a causal float mask, Linear head; parameters set by name
// from `names`/`values`; one Adam step per call on the fixed batch x -> y; returns the loss.
std::function<double()> gpt_step(std::int64_t vocab, std::int64_t block, std::int64_t d_model, std::int64_t heads,
                                 std::int64_t layers, std::int64_t batch, double lr,
                                 const std::vector<std::string>& names,
                                 const std::vector<std::vector<std::int64_t>>& shapes,
                                 const std::vector<std::vector<float>>& values, const std::vector<std::int64_t>& x,
                                 const std::vector<std::int64_t>& y);

}  // namespace bench::torch_rows
