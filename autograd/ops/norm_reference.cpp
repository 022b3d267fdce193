// Composite references: the normalization layers written only with primitive, differentiable
// ops. They are what the fused core in norm.cpp computes, said in the fewest words: the
// difference between BatchNorm and LayerNorm is the list of axes passed to normalize_over.
// Autograd differentiates them op by op, which makes them an independent check of the fused
// backward (tests/test_norm.cpp) and a baseline for benchmarks. Not tuned for speed.
#include "autograd/ops.h"

namespace ng::reference {

namespace {
// Shape [1, C, 1, ..., 1] of rank `ndim`: a per-channel vector broadcast over (N, C, *).
Shape channel_shape(std::int64_t C, int ndim) {
  Shape s{1, C};
  for (int d = 2; d < ndim; ++d) s.push_back(1);
  return s;
}
Tensor affine(Tensor y, const Tensor& weight, const Tensor& bias, const Shape& param_shape) {
  if (weight.defined()) y = mul(y, reshape(weight, param_shape));
  if (bias.defined()) y = add(y, reshape(bias, param_shape));
  return y;
}
}  // namespace

Tensor normalize_over(const Tensor& x, const std::vector<std::int64_t>& axes, double eps) {
  const Tensor mu = mean(x, axes, true);                    // E[x]
  const Tensor xc = sub(x, mu);                             // x - E[x]
  const Tensor var = mean(mul(xc, xc), axes, true);         // E[(x - E[x])^2], biased, never negative
  return mul(xc, rsqrt(add(var, eps)));                     // (x - E[x]) / sqrt(var + eps)
}

// BatchNorm: statistics over every axis except the channel axis 1.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  std::vector<std::int64_t> axes{0};
  for (int d = 2; d < x.dim(); ++d) axes.push_back(d);
  return affine(normalize_over(x, axes, eps), weight, bias, channel_shape(x.size(1), x.dim()));
}

Tensor batch_norm_eval(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, double eps) {
  const Shape cs = channel_shape(x.size(1), x.dim());
  const Tensor y = mul(sub(x, reshape(running_mean, cs)), rsqrt(add(reshape(running_var, cs), eps)));
  return affine(y, weight, bias, cs);
}

// LayerNorm: statistics over the trailing normalized_shape.ndim() axes.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias, double eps) {
  std::vector<std::int64_t> axes;
  for (int d = x.dim() - normalized_shape.ndim(); d < x.dim(); ++d) axes.push_back(d);
  return affine(normalize_over(x, axes, eps), weight, bias, normalized_shape);
}

// GroupNorm: view (N, C, *) as (N, G, C/G * L), normalize over the last axis, view back.
Tensor group_norm(const Tensor& x, std::int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  const Tensor grouped = reshape(x, Shape{x.size(0), num_groups, -1});
  const Tensor y = reshape(normalize_over(grouped, {2}, eps), x.shape());
  return affine(y, weight, bias, channel_shape(x.size(1), x.dim()));
}

// RMSNorm: x / sqrt(mean(x^2) + eps) over the trailing axes, then weight; no mean, no bias.
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, double eps) {
  std::vector<std::int64_t> axes;
  for (int d = x.dim() - normalized_shape.ndim(); d < x.dim(); ++d) axes.push_back(d);
  const Tensor y = mul(x, rsqrt(add(mean(mul(x, x), axes, true), eps)));
  return affine(y, weight, Tensor(), normalized_shape);
}

}  // namespace ng::reference
