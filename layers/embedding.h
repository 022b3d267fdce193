// Embedding: a lookup table, as torch.nn.Embedding. indices (int64, any shape) ->
// weight[indices] with shape indices.shape + [embedding_dim]; weight ~ N(0, 1) at the start.
// The gradient w.r.t. weight adds each output row's gradient into the row it came from
// (rows looked up several times accumulate: index_select's backward is index_add). With
// padding_idx, that row starts at zero and never receives a gradient (the "no token" vector),
// as in PyTorch.
// max_norm (PyTorch's): before each lookup, every row about to be looked up whose norm_type-norm
// exceeds max_norm is rescaled in place to norm max_norm (w_i *= max_norm / (||w_i|| + 1e-7)),
// under no_grad: the rescaling changes the weight itself and is not part of the gradient.
#pragma once
#include <optional>

#include "layers/module.h"

namespace ng::nn {

class Embedding : public Module {
 public:
  Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim,
            std::optional<std::int64_t> padding_idx = std::nullopt, Generator* gen = nullptr,
            DType dtype = DType::f32, std::optional<double> max_norm = std::nullopt, double norm_type = 2.0);
  Tensor forward(const Tensor& indices) override;
  std::string type_name() const override { return "Embedding"; }
  std::string extra_repr() const override;

  std::int64_t num_embeddings, embedding_dim;
  std::optional<std::int64_t> padding_idx;  // normalized to [0, num_embeddings)
  std::optional<double> max_norm;           // > 0, or none
  double norm_type = 2.0;                   // p of the p-norm (> 0; infinity = max |w|)
  Tensor weight;

 private:
  void renorm_rows(const Tensor& flat_indices);
};

}  // namespace ng::nn
