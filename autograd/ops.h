// Every differentiable op of normgrad. Each is defined in one place under autograd/ops/,
// its forward, what it saves, and its backward side by side.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <utility>
#include <vector>

#include "autograd/tape.h"
#include "autograd/tensor.h"

namespace ng {

using Axes = std::vector<std::int64_t>;

// ---- elementwise (ops/elementwise.cpp), with NumPy/PyTorch broadcasting ----------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor rdiv(double s, const Tensor& a);  // s / a
Tensor neg(const Tensor& a);
Tensor pow(const Tensor& a, double p);
Tensor pow(const Tensor& a, const Tensor& p);  // a > 0 where p is not an integer
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor clamp(const Tensor& a, std::optional<double> lo, std::optional<double> hi);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// cond is a tensor whose nonzero elements select a (any dtype; no gradient).
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// Activations.
Tensor relu(const Tensor& a);
Tensor leaky_relu(const Tensor& a, double negative_slope = 0.01);
Tensor sigmoid(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor gelu(const Tensor& a);  // exact (erf) form: x * Phi(x)
Tensor softplus(const Tensor& a, double beta = 1.0, double threshold = 20.0);
// Comparisons (no gradient): 1 where true, 0 elsewhere, in a's dtype.
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(const Tensor& a, double s);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(const Tensor& a, double s);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(const Tensor& a, double s);
Tensor operator/(double s, const Tensor& a);

// ---- reductions (ops/reduce.cpp): over `axes` (empty = all), keepdim keeps size-1 dims ---
Tensor sum(const Tensor& a, const Axes& axes = {}, bool keepdim = false);
Tensor mean(const Tensor& a, const Axes& axes = {}, bool keepdim = false);
// correction 0 = biased (divide by n), 1 = unbiased (divide by n-1), as torch.var.
Tensor var(const Tensor& a, const Axes& axes = {}, int64_t correction = 1, bool keepdim = false);
Tensor std(const Tensor& a, const Axes& axes = {}, int64_t correction = 1, bool keepdim = false);
// max/min: the gradient goes to the first element attaining the extremum.
Tensor max(const Tensor& a, const Axes& axes = {}, bool keepdim = false);
Tensor min(const Tensor& a, const Axes& axes = {}, bool keepdim = false);
Tensor logsumexp(const Tensor& a, const Axes& axes = {}, bool keepdim = false);
// Index of the max along one axis (int64, no gradient).
Tensor argmax(const Tensor& a, int64_t axis, bool keepdim = false);
// Sum `g` down to `shape` (the adjoint of broadcasting `shape` up to g's shape).
Tensor sum_to(const Tensor& g, const Shape& shape);

// ---- linear algebra (ops/matmul.cpp) ---------------------------------------------------
// 1-d and 2-d operands, and batched (..., n, k) x (..., k, m) with broadcast batch dims.
// Goes to BLAS sgemm/dgemm; a transposed operand is passed as a transpose flag, not copied.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x W^T + b, as torch.nn.functional.linear (bias may be undefined).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

// ---- shape (ops/shape.cpp); views share storage with their input ----------------------
Tensor reshape(const Tensor& a, const Shape& s);  // one size may be -1
Tensor view(const Tensor& a, const Shape& s);     // like reshape, but never copies
Tensor flatten(const Tensor& a, int64_t start = 0, int64_t end = -1);
Tensor squeeze(const Tensor& a, int64_t axis);
Tensor unsqueeze(const Tensor& a, int64_t axis);
Tensor transpose(const Tensor& a, int64_t a0, int64_t a1);
Tensor permute(const Tensor& a, const std::vector<int64_t>& order);
Tensor expand(const Tensor& a, const Shape& s);  // broadcast_to
Tensor broadcast_to(const Tensor& a, const Shape& s);
Tensor cat(const std::vector<Tensor>& ts, int64_t axis = 0);
Tensor stack(const std::vector<Tensor>& ts, int64_t axis = 0);
std::vector<Tensor> split(const Tensor& a, int64_t split_size, int64_t axis = 0);
std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t axis = 0);
std::vector<Tensor> chunk(const Tensor& a, int64_t chunks, int64_t axis = 0);
// a[start:end:step] along axis (negative start/end count from the end; end clamped).
Tensor slice(const Tensor& a, int64_t axis, int64_t start, int64_t end, int64_t step = 1);
Tensor select(const Tensor& a, int64_t axis, int64_t index);  // removes the axis
Tensor index_select(const Tensor& a, int64_t axis, const Tensor& index);  // index: int64 1-d
Tensor gather(const Tensor& a, int64_t axis, const Tensor& index);        // index: int64, same rank
// out = zeros of `shape`, then out[..., index[i], ...] += src[..., i, ...] along axis.
Tensor index_add(const Shape& shape, int64_t axis, const Tensor& index, const Tensor& src);
// out = zeros of `shape`, then out[index[...]] += src[...] along axis (gather's adjoint);
// src must have index's shape.
Tensor scatter_add(const Shape& shape, int64_t axis, const Tensor& index, const Tensor& src);
// zeros of `shape` with `src` written at a[start:end:step] along axis (slice's adjoint).
Tensor slice_backward(const Tensor& src, const Shape& shape, int64_t axis, int64_t start, int64_t end,
                      int64_t step);

// ---- padding (ops/pad.cpp), as torch.nn.functional.pad -------------------------------------
// `pad` lists (before, after) pairs starting from the LAST dim: {l, r} pads the last dim,
// {l, r, t, b} the last two (l, r on the last). Modes:
//   constant   the value (default 0); negative widths crop
//   reflect    mirror without repeating the edge: [1 2 3] by 2 -> [3 2 | 1 2 3 | 2 1]; width < size
//   replicate  repeat the edge: [1 2 3] by 2 -> [1 1 | 1 2 3 | 3 3]
//   circular   wrap around: [1 2 3] by 2 -> [2 3 | 1 2 3 | 1 2]; width <= size
// Negative widths crop. As PyTorch, the non-constant modes pad the last 1, 2 or 3 dims of a
// tensor with one or two more dims ((C, W) or (N, C, W) for one pair, ...) and take no value.
enum class PadMode { constant, reflect, replicate, circular };
Tensor pad(const Tensor& a, const std::vector<int64_t>& pad, PadMode mode = PadMode::constant,
           std::optional<double> value = std::nullopt);
const char* to_string(PadMode m);
// The pairs-from-the-first-dim form of normgrad before issue 22 (`pad(x, {{1, 1}})`), refused
// at compile time so that old code cannot silently pad another dim: list the widths flat,
// from the last dim (`pad(x, {1, 1})` pads the last dim).
Tensor pad(const Tensor& a, std::initializer_list<std::pair<int64_t, int64_t>> old_pairs_from_first_dim,
           PadMode mode = PadMode::constant, std::optional<double> value = std::nullopt) = delete;

// ---- losses (ops/loss.cpp) -------------------------------------------------------------
enum class Reduction { none, mean, sum };
Tensor softmax(const Tensor& a, int64_t axis = -1);
Tensor log_softmax(const Tensor& a, int64_t axis = -1);
// Options of nll_loss and cross_entropy, with PyTorch's names and defaults:
//   weight           (C) per-class weights w_c (a constant: no gradient), or undefined (all 1)
//   ignore_index     class-index targets equal to it contribute 0 and are left out of `mean`
//   reduction        none: per-sample losses (ignored ones 0); sum; mean: see below
//   label_smoothing  cross_entropy only; eps in [0, 1]
// With class-index targets y_n, loss_n = -w_{y_n} log p_{n, y_n} and `mean` divides the sum by
// sum_n w_{y_n} over the non-ignored targets (not by their count), exactly as PyTorch: NaN when
// every target is ignored. With probability targets, `mean` divides by the batch size.
struct LossOptions {
  Tensor weight = Tensor();
  int64_t ignore_index = -100;
  Reduction reduction = Reduction::mean;
  double label_smoothing = 0.0;
};
// logits (C), (N, C) or (N, C, d...) and either int64 class targets (), (N) or (N, d...), or
// (cross_entropy only) class probabilities of the logits' shape and dtype ("soft" targets):
//   loss_n = -sum_c w_c t'_{n,c} log p_{n,c},  t' = (1 - eps) t + eps / C.
// Class-index targets with label smoothing eps (PyTorch's formula):
//   loss_n = (1 - eps) nll_n + (eps / C) * (-sum_c w_c log p_{n,c}),
// both terms reduced with the same denominator under `mean`.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const LossOptions& options);
Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction r = Reduction::mean,
                     double label_smoothing = 0.0);
// log_probs and int64 class targets as cross_entropy's; label_smoothing must be 0.
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const LossOptions& options);
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction r = Reduction::mean);
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::mean);
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        Reduction r = Reduction::mean);

// ---- dtype ----------------------------------------------------------------------------
Tensor cast(const Tensor& a, DType d);  // differentiable between float dtypes

}  // namespace ng

// Families declared in their own headers (each defined in the matching ops/*.cpp):
#include "autograd/ops/attention.h"  // scaled_dot_product_attention (fused), attention_weights
#include "autograd/ops/conv.h"  // conv2d (im2col + GEMM)
#include "autograd/ops/norm.h"  // the one normalization core: batch/layer/group/instance/rms norm
#include "autograd/ops/pool.h"  // max_pool2d, avg_pool2d
