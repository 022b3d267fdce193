// Positional information for attention, which by itself ignores the order of its keys.
//
// SinusoidalPositionalEncoding (Vaswani et al. 2017, sec. 3.5): adds the fixed
//     pe[pos, 2i] = sin(pos / 10000^(2i/d)),   pe[pos, 2i+1] = cos(pos / 10000^(2i/d))
// to x (no parameters, nothing in the state_dict; odd d_model allowed: the last column is a sin).
// LearnedPositionalEmbedding (GPT-2's wpe): adds a trained row weight[pos] (max_len, d_model),
// drawn N(0, 0.02^2) at the start as GPT-2 and nanoGPT do.
// Both take x (N, L, d) with batch_first (the default here), or (L, N, d), and need L <= max_len.
#pragma once
#include "layers/module.h"

namespace ng::nn {

class SinusoidalPositionalEncoding : public Module {
 public:
  SinusoidalPositionalEncoding(std::int64_t d_model, std::int64_t max_len = 5000, bool batch_first = true);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SinusoidalPositionalEncoding"; }
  std::string extra_repr() const override;
  // The table pe (L, d_model) for the first L positions, in dtype d.
  Tensor table(std::int64_t L, DType d) const;

  std::int64_t d_model, max_len;
  bool batch_first;
};

class LearnedPositionalEmbedding : public Module {
 public:
  LearnedPositionalEmbedding(std::int64_t max_len, std::int64_t d_model, bool batch_first = true,
                             Generator* gen = nullptr, DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LearnedPositionalEmbedding"; }
  std::string extra_repr() const override;

  std::int64_t max_len, d_model;
  bool batch_first;
  Tensor weight;  // (max_len, d_model)
};

}  // namespace ng::nn
