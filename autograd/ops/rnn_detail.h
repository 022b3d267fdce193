// Pieces shared by the fused recurrent ops (ops/rnn.cpp, ops/rnn_layer_norm.cpp). Internal.
#pragma once
#include <algorithm>
#include <cstdint>

#include "autograd/ops.h"

namespace ng::rnn_detail {

// The four activations of gates (N, 4H) = [i, f, g, o] as tensor ops (for the create_graph
// backwards): i = sigmoid, f = sigmoid, g = tanh, o = sigmoid of the four blocks.
struct GateActs {
  Tensor i, f, g, o;
};
inline GateActs gate_acts(const Tensor& gates) {
  const auto q = chunk(gates, 4, -1);
  return {sigmoid(q[0]), sigmoid(q[1]), tanh(q[2]), sigmoid(q[3])};
}
inline Tensor dsigmoid(const Tensor& s) { return mul(s, rsub(1.0, s)); }  // s (1 - s)

// dst (C, R) = src (R, C)^T for row strides lds (src) and ldd (dst); in 32 x 32 tiles, so
// that the strided side of the copy stays in cache.
template <class T>
void transpose_into(const T* src, std::int64_t R, std::int64_t C, std::int64_t lds, T* dst, std::int64_t ldd) {
  constexpr std::int64_t kTile = 32;
  for (std::int64_t r0 = 0; r0 < R; r0 += kTile)
    for (std::int64_t c0 = 0; c0 < C; c0 += kTile) {
      const std::int64_t r1 = std::min(R, r0 + kTile), c1 = std::min(C, c0 + kTile);
      for (std::int64_t r = r0; r < r1; ++r)
        for (std::int64_t c = c0; c < c1; ++c) dst[c * ldd + r] = src[r * lds + c];
    }
}

}  // namespace ng::rnn_detail
