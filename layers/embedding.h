// Embedding: a lookup table, as torch.nn.Embedding. indices (int64, any shape) ->
// weight[indices] with shape indices.shape + [embedding_dim]; weight ~ N(0, 1) at the start.
// The gradient w.r.t. weight adds each output row's gradient into the row it came from
// (rows looked up several times accumulate: index_select's backward is index_add). With
// padding_idx, that row starts at zero and never receives a gradient (the "no token" vector),
// as in PyTorch.
#pragma once
#include <optional>

#include "layers/module.h"

namespace ng::nn {

class Embedding : public Module {
 public:
  Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim,
            std::optional<std::int64_t> padding_idx = std::nullopt, Generator* gen = nullptr,
            DType dtype = DType::f32);
  Tensor forward(const Tensor& indices) override;
  std::string type_name() const override { return "Embedding"; }
  std::string extra_repr() const override;

  std::int64_t num_embeddings, embedding_dim;
  std::optional<std::int64_t> padding_idx;  // normalized to [0, num_embeddings)
  Tensor weight;
};

}  // namespace ng::nn
