// Scaled dot-product attention (ops/attention.cpp), as
// torch.nn.functional.scaled_dot_product_attention (Vaswani et al. 2017, eq. 1):
//
//     S = scale * Q K^T + M          scores, (..., L, S)      scale defaults to 1/sqrt(E)
//     P = softmax(S) along the keys  attention weights       (max-shifted: exp never overflows)
//     O = dropout(P) V               output, (..., L, Ev)
//
// query (..., L, E), key (..., S, E), value (..., S, Ev); the batch dims (everything before
// the last two: batch, heads, ...) broadcast among the three, as matmul's do.
//
// Masks. attn_mask broadcasts to (..., L, S):
//   * int64 (normgrad has no bool dtype; int64 stands in for it): nonzero = the query MAY
//     attend to the key (torch's bool convention for this function), zero = masked out;
//   * float (query's dtype): added to the scores (0 = keep, -inf = masked out); it is
//     differentiable (its gradient is dL/dS).
// is_causal masks key j for query i when j > i (the top-left aligned lower triangle, as
// PyTorch); it cannot be combined with attn_mask (as PyTorch).
//
// Fully masked rows (a query that may attend to no key): softmax would be 0/0. normgrad
// returns weights 0 and output 0 for such a query, with zero gradient, instead of NaN. This is
// what PyTorch's own scaled_dot_product_attention does since 2.5 (its "safe softmax"); its
// nn.MultiheadAttention returns NaN there. A NaN (rather than a masked -inf) in a row's scores
// still gives NaN.
//
// Dropout (dropout_p > 0) zeroes each attention weight with probability p and scales the kept
// ones by 1/(1-p), drawn from `gen` or the thread's default generator; pass dropout_p = 0 in
// evaluation (the function does not know about training mode, as PyTorch's).
//
// The op is fused: one GEMM for Q K^T, a stable softmax per row, one GEMM for P V per batch
// matrix, in parallel over the batch. Backward is analytic (docs/attention.md). It keeps P
// (prod(batch) x L x S elements) for the backward, plus the dropout mask when p > 0; under
// create_graph it is written with differentiable ops, so second derivatives exist.
#pragma once
#include <optional>

#include "autograd/random.h"
#include "autograd/tape.h"
#include "autograd/tensor.h"

namespace ng {

Tensor scaled_dot_product_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                                    const Tensor& attn_mask = {}, double dropout_p = 0.0, bool is_causal = false,
                                    std::optional<double> scale = std::nullopt, Generator* gen = nullptr);

// The attention weights P = softmax(scale * Q K^T + M) alone, (..., L, S), with the same
// masks and the same rule for fully masked rows (zero weights), written as a composite of
// differentiable ops (any order). nn::MultiheadAttention uses it when asked for the weights;
// the op above uses it for its create_graph backward.
Tensor attention_weights(const Tensor& query, const Tensor& key, const Tensor& attn_mask = {}, bool is_causal = false,
                         std::optional<double> scale = std::nullopt);

}  // namespace ng
