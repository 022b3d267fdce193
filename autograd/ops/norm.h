// The normalization family: BatchNorm, LayerNorm, GroupNorm, InstanceNorm and RMSNorm as ONE
// op (autograd/ops/norm.cpp) that differs only in which axes it reduces over.
//
// Every layer views its contiguous input as five axes [A, R, G, K, E]:
//
//     statistics (mean, variance) are indexed by (r, g) and reduced over (a, k, e);
//     affine parameters (weight, bias) are indexed by (g, k) and broadcast over (a, r, e).
//
//                      A     R      G        K       E      one statistic per    weight per
//   BatchNorm  [N,C,L]  N     1      C        1       L      channel              channel
//   LayerNorm  [rows,D] 1     rows   1        D       1      row                  feature
//   GroupNorm  [N,C,L]  1     N      groups   C/G     L      (sample, group)      channel
//   InstNorm   [N,C,L]  1     N      C        1       L      (sample, channel)    channel
//   RMSNorm    [rows,D] like LayerNorm, but the mean is not subtracted
//
// (L is the product of the spatial sizes, D the product of the normalized trailing sizes.)
// y = (x - mean) * rstd * weight + bias with rstd = 1 / sqrt(var + eps) and the biased
// variance. The backward is the fused analytic one: two reductions per statistic, then one
// elementwise pass. Functions mirror torch.nn.functional (names, defaults, semantics).
#pragma once
#include <cstdint>
#include <optional>

#include "autograd/tape.h"
#include "autograd/tensor.h"

namespace ng {

// Which axes a normalization reduces over; see the table above.
struct NormSpec {
  std::int64_t A = 1, R = 1, G = 1, K = 1, E = 1;
  bool subtract_mean = true;  // false: RMSNorm (normalize by the root mean square)

  std::int64_t num_stats() const { return R * G; }        // number of (mean, rstd) pairs
  std::int64_t count() const { return A * K * E; }        // elements behind each statistic
  std::int64_t num_channels() const { return G * K; }     // length of weight and bias
  std::int64_t numel() const { return A * R * G * K * E; }

  // The choice of axes, one line per layer (x [N, C, L] or [rows, D]):
  static NormSpec batch(std::int64_t N, std::int64_t C, std::int64_t L) { return {.A = N, .R = 1, .G = C, .K = 1, .E = L}; }
  static NormSpec layer(std::int64_t rows, std::int64_t D) { return {.A = 1, .R = rows, .G = 1, .K = D, .E = 1}; }
  static NormSpec group(std::int64_t N, std::int64_t C, std::int64_t L, std::int64_t groups) {
    return {.A = 1, .R = N, .G = groups, .K = C / groups, .E = L};
  }
  static NormSpec instance(std::int64_t N, std::int64_t C, std::int64_t L) { return {.A = 1, .R = N, .G = C, .K = 1, .E = L}; }
  static NormSpec rms(std::int64_t rows, std::int64_t D) {
    return {.A = 1, .R = rows, .G = 1, .K = D, .E = 1, .subtract_mean = false};
  }
};

// Per-statistic moments of a batch: mean and biased variance (for RMSNorm: 0 and the mean
// square), float64 tensors of shape [R * G], and the number of elements behind each.
struct NormMoments {
  Tensor mean;
  Tensor var;
  std::int64_t count = 0;
};

// The core op. x must hold spec.numel() elements (any shape; it is viewed as [A,R,G,K,E]);
// weight and bias (each optional) hold spec.num_channels() elements. Statistics come from x;
// if `moments` is given they are also returned there (for running averages). `op` names the
// node on the tape ("batch_norm", "layer_norm", ...). Differentiable w.r.t. x, weight, bias
// (twice, through a composite backward when create_graph is set).
Tensor normalize(const Tensor& x, const NormSpec& spec, const Tensor& weight, const Tensor& bias, double eps,
                 const char* op, NormMoments* moments = nullptr);

// The same with given, constant statistics mean and var of shape [R * G] (eval-mode
// BatchNorm): y = (x - mean) / sqrt(var + eps) * weight + bias; no gradient to mean or var.
Tensor normalize_with_stats(const Tensor& x, const NormSpec& spec, const Tensor& mean, const Tensor& var,
                            const Tensor& weight, const Tensor& bias, double eps, const char* op);

// The backward of normalize() (batch statistics) written in differentiable ops: {dx, dweight,
// dbias} for the output gradient dy (dweight / dbias undefined when weight / bias are). It is
// what normalize() itself runs under create_graph, exposed for fused ops that contain a
// normalization (ln_lstm_sequence in ops/rnn.h), so that their second derivatives go through
// the same formula.
std::vector<Tensor> normalize_backward_composite(const Tensor& x, const Tensor& dy, const Tensor& weight,
                                                 const Tensor& bias, const NormSpec& spec, double eps);

// ---- torch.nn.functional counterparts ---------------------------------------------------

// x (N, C, *). Training: normalize with the batch statistics (biased variance); if running
// statistics are given, update them in place:
//     running_mean = (1 - f) * running_mean + f * batch_mean
//     running_var  = (1 - f) * running_var  + f * batch_var * m / (m - 1)   (unbiased, m = N*L)
// with f = momentum (PyTorch's convention: the weight of the NEW batch; Keras' 0.99 is 1 - f),
// or, if momentum is nullopt, f = 1 / num_batches_tracked (cumulative moving average).
// num_batches_tracked (an int64 0-d tensor, optional) is incremented whenever the running
// statistics are updated; it is required when momentum is nullopt.
// Not training: normalize with running_mean / running_var (both required).
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight = {},
                  const Tensor& bias = {}, bool training = false, std::optional<double> momentum = 0.1,
                  double eps = 1e-5, const Tensor& num_batches_tracked = {});

// Normalize over the trailing dims `normalized_shape` of x; weight/bias of that shape.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {}, const Tensor& bias = {},
                  double eps = 1e-5);

// x (N, C, *): statistics per sample and group of C / num_groups channels; weight/bias (C).
Tensor group_norm(const Tensor& x, std::int64_t num_groups, const Tensor& weight = {}, const Tensor& bias = {},
                  double eps = 1e-5);

// x (N, C, *): statistics per sample and channel. With use_input_stats and running
// statistics given, they are updated with the batch average of the per-instance mean and
// unbiased variance (as PyTorch). use_input_stats = false normalizes with the running ones.
Tensor instance_norm(const Tensor& x, const Tensor& running_mean = {}, const Tensor& running_var = {},
                     const Tensor& weight = {}, const Tensor& bias = {}, bool use_input_stats = true,
                     double momentum = 0.1, double eps = 1e-5);

// y = x / sqrt(mean(x^2) + eps) * weight over the trailing dims `normalized_shape`.
// eps = nullopt: the machine epsilon of x's dtype (as torch.nn.functional.rms_norm).
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {},
                std::optional<double> eps = std::nullopt);

// ---- composite references (autograd/ops/norm_reference.cpp) ----------------------------
// The same layers written only with primitive ops (mean, sub, mul, rsqrt, ...): readable
// definitions, and an independent autograd path the tests compare the fused op against.
namespace reference {
// Normalize over `axes` (keepdim statistics): (x - mean) / sqrt(var + eps), biased variance.
Tensor normalize_over(const Tensor& x, const std::vector<std::int64_t>& axes, double eps);
// Training mode (batch statistics), x (N, C, *), weight/bias (C) optional.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// Eval mode: given statistics (C).
Tensor batch_norm_eval(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, double eps = 1e-5);
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps = 1e-5);
Tensor group_norm(const Tensor& x, std::int64_t num_groups, const Tensor& weight, const Tensor& bias,
                  double eps = 1e-5);
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, double eps);
}  // namespace reference

}  // namespace ng
