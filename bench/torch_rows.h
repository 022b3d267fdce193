// LibTorch's side of the benchmark rows. Compiled in its own translation unit
// (torch_rows.cpp, only with -DNORMGRAD_WITH_TORCH=ON) so that normgrad's and LibTorch's
// headers never meet; this interface uses only the standard library.
//
// Each builder allocates its inputs once and returns the work of one repetition as a
// closure, which does exactly what the normgrad row of the same name does.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace bench::torch_rows {

std::string version();        // e.g. "1.13.0"
void set_threads(int n);      // torch::set_num_threads
int get_threads();

// y = a; n times y = y + b (one-element float32 tensors requiring grad); y.backward().
std::function<void()> tiny_ops(int n);
// C = A B, all n x n float32, no autograd.
std::function<void()> matmul(int n);
// Training-mode batch_norm forward + backward (x, weight, bias) with a given dy.
std::function<void()> batch_norm_fb(const std::vector<std::int64_t>& shape);
// layer_norm over the last dim, forward + backward (x, weight, bias; bias off for `no_bias`).
std::function<void()> layer_norm_fb(std::int64_t rows, std::int64_t d, bool no_bias = false);
// group_norm forward + backward (x, weight, bias).
std::function<void()> group_norm_fb(const std::vector<std::int64_t>& shape, std::int64_t groups);

}  // namespace bench::torch_rows
