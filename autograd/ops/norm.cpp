// The normalization op: BatchNorm, LayerNorm, GroupNorm, InstanceNorm and RMSNorm are the same
// computation on the same five-axis view [A, R, G, K, E] of the input (see the table in norm.h);
// a NormSpec says which sizes are 1. This file is the op around the kernels: it checks the
// arguments once, runs the forward kernel, records the node on the tape with its backward (the
// fused kernels, or a composite of differentiable ops under create_graph), and holds the
// torch.nn.functional API and the running statistics.
//
// The kernels (norm_kernels.h) compute, per statistic s of n elements,
//   mean, var (biased), rstd = 1 / sqrt(var + eps), xhat = (x - mean) * rstd,
//   y = xhat * weight + bias,
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dxhat = dy * weight.
// Read them in norm_plain.cpp first: the definition in ~100 lines. norm_rows.cpp and
// norm_columns.cpp are the same loops arranged for the two memory layouts.
//
// Sources: Ioffe & Szegedy 2015 (BatchNorm, Alg. 1 and 2); Ba, Kiros & Hinton 2016
// (LayerNorm); Wu & He 2018 (GroupNorm); Ulyanov, Vedaldi & Lempitsky 2016 (InstanceNorm);
// Zhang & Sennrich 2019 (RMSNorm); Chan, Golub & LeVeque 1979 (merging moments).
#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "autograd/ops/norm_kernels.h"

namespace ng {

namespace {

// The same backward with differentiable ops, used under create_graph (second-order
// gradients). The statistics are recomputed from x with ops, so that their dependence on x
// is part of the new graph; differentiating this expression gives the exact second
// derivative. Same formula as plain_backward (norm_plain.cpp), on the 5-d view.
Grads backward_composite(const Tensor& x, const Tensor& dy, const Tensor& weight, const Tensor& bias,
                         const NormSpec& sp, double eps, bool batch_stats, const Tensor& mean_s,
                         const Tensor& rstd_s) {
  const Shape v5{sp.A, sp.R, sp.G, sp.K, sp.E};
  const Shape stat5{1, sp.R, sp.G, 1, 1}, chan5{1, 1, sp.G, sp.K, 1};
  const Axes red{0, 3, 4};  // the reduced axes a, k, e
  const Tensor x5 = reshape(x, v5), dy5 = reshape(dy, v5);
  Tensor xc, r;
  if (batch_stats) {
    xc = sp.subtract_mean ? sub(x5, mean(x5, red, true)) : x5;
    r = rsqrt(add(mean(mul(xc, xc), red, true), eps));
  } else {
    xc = sub(x5, reshape(mean_s.to(x.dtype()), stat5));
    r = reshape(rstd_s.to(x.dtype()), stat5);
  }
  const Tensor xhat = mul(xc, r);
  const Tensor dxhat = weight.defined() ? mul(dy5, reshape(weight, chan5)) : dy5;
  Tensor inner = dxhat;
  if (batch_stats) {
    inner = sub(inner, mul(xhat, mean(mul(dxhat, xhat), red, true)));
    if (sp.subtract_mean) inner = sub(inner, mean(dxhat, red, true));
  }
  const Tensor dx = reshape(mul(r, inner), x.shape());
  const Tensor dw = weight.defined() ? reshape(sum_to(mul(dy5, xhat), chan5), weight.shape()) : Tensor();
  const Tensor db = bias.defined() ? reshape(sum_to(dy5, chan5), bias.shape()) : Tensor();
  return {dx, dw, db};
}

// normalize_impl assumes these hold; every entry point (ng::normalize, normalize_with_stats and
// the functional API) establishes them once.
//   x holds sp.numel() elements and each statistic at least one; weight and bias (if given) hold
//   sp.num_channels() elements of x's dtype; eps >= 0; given statistics hold sp.num_stats().

// normalize() and normalize_with_stats(): given_mean / given_var null = batch statistics.
Tensor normalize_impl(const Tensor& x_in, const NormSpec& sp, const Tensor& weight_in, const Tensor& bias_in,
                      double eps, const char* op, const Tensor* given_mean, const Tensor* given_var,
                      NormMoments* moments) {
  assert(x_in.numel() == sp.numel() && sp.count() > 0);
  const std::int64_t S = sp.num_stats();
  const Tensor x = x_in.contiguous();
  const Tensor weight = weight_in.defined() ? weight_in.contiguous() : Tensor();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();

  Tensor mean_s = empty(Shape{S}, DType::f64), var_s = empty(Shape{S}, DType::f64);
  Tensor rstd_s = empty(Shape{S}, DType::f64);
  Tensor y = empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    if (given_mean) {
      NoGradGuard no_grad;
      mean_s.copy_(given_mean->detach().reshape(Shape{S}));
      var_s.copy_(given_var->detach().reshape(Shape{S}));
    }
    double* mean = mean_s.data<double>();
    double* var = var_s.data<double>();
    double* rstd = rstd_s.data<double>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const T* b = bias.defined() ? bias.data<T>() : nullptr;
    if (norm_kernels::uses_columns(sp)) {  // BatchNorm over (N, C) or (N, C, short L): norm_columns.cpp
      if (!given_mean) norm_kernels::column_moments<T>(x.data<T>(), sp, mean, var);
      for (std::int64_t s = 0; s < S; ++s) rstd[s] = 1.0 / std::sqrt(std::max(var[s], 0.0) + eps);  // eps inside the sqrt
      norm_kernels::column_normalize<T>(x.data<T>(), sp, mean, rstd, w, b, y.data<T>());
    } else {  // every other layout: norm_rows.cpp
      norm_kernels::row_forward<T>(x.data<T>(), sp, w, b, eps, given_mean != nullptr, mean, var, rstd, y.data<T>());
    }
  });
  if (moments) *moments = NormMoments{mean_s, var_s, sp.count()};

  const bool batch_stats = given_mean == nullptr;
  // Saved for backward: x (an input), mean and rstd per statistic; xhat is recomputed.
  return record(op, {x, weight, bias}, y,
                [x, weight, bias, sp, eps, batch_stats, mean_s, rstd_s, op](BackwardContext& ctx, const Tensor& dy) -> Grads {
                  if (ctx.create_graph()) return backward_composite(x, dy, weight, bias, sp, eps, batch_stats, mean_s, rstd_s);
                  const Tensor dyc = dy.contiguous();
                  const std::int64_t C = sp.num_channels();
                  Tensor dx = x.requires_grad() ? empty(x.shape(), x.dtype()) : Tensor();
                  const bool want_w = weight.defined() && weight.requires_grad();
                  const bool want_b = bias.defined() && bias.requires_grad();
                  std::vector<double> dw(want_w ? static_cast<std::size_t>(C) : 0, 0.0), db(want_b ? static_cast<std::size_t>(C) : 0, 0.0);
                  Tensor dweight, dbias;
                  dispatch_float(x.dtype(), op, [&](auto tag) {
                    using T = decltype(tag);
                    const auto kernel = norm_kernels::uses_columns(sp) ? norm_kernels::column_backward<T>
                                                                       : norm_kernels::row_backward<T>;
                    kernel(x.data<T>(), dyc.data<T>(), sp, mean_s.data<double>(), rstd_s.data<double>(),
                           weight.defined() ? weight.data<T>() : nullptr, batch_stats,
                           dx.defined() ? dx.data<T>() : nullptr, want_w ? dw.data() : nullptr,
                           want_b ? db.data() : nullptr);
                    if (want_w) dweight = from_vector(dw, weight.shape(), x.dtype());
                    if (want_b) dbias = from_vector(db, bias.shape(), x.dtype());
                  });
                  return {dx, dweight, dbias};
                });
}

// ---- argument checks shared by the functional API ------------------------------------------

void check_eps(double eps, const char* op) {  // >= 0 as PyTorch (eps = 0: see layers/norm_util.h); NaN refused
  if (!(eps >= 0.0)) fail<ValueError>("{}: eps must be >= 0 (it is added to the variance): got {}", op, eps);
}

// What every entry point checks after its own, shape-specific checks: the statistics have
// elements to be computed over, and weight and bias have x's dtype.
void check_common(const Tensor& x, const NormSpec& sp, const Tensor& weight, const Tensor& bias, const char* op) {
  if (sp.count() == 0) fail<ValueError>("{}: no elements to compute statistics over (input shape {})", op, x.shape());
  for (const Tensor* p : {&weight, &bias})
    if (p->defined() && p->dtype() != x.dtype())
      fail<DTypeError>("{}: {} has dtype {} but the input has {}", op, p == &weight ? "weight" : "bias", p->dtype(),
                       x.dtype());
}

// The core op called directly (ng::normalize): what the functional API knows by construction.
void check_layout(const Tensor& x, const NormSpec& sp, const Tensor& weight, const Tensor& bias, const char* op) {
  if (x.numel() != sp.numel())
    fail<ShapeError>("{}: input of shape {} does not fit the normalization layout [A={}, R={}, G={}, K={}, E={}]", op,
                     x.shape(), sp.A, sp.R, sp.G, sp.K, sp.E);
  for (const Tensor* p : {&weight, &bias})
    if (p->defined() && p->numel() != sp.num_channels())
      fail<ShapeError>("{}: {} must have {} elements: expected {} vs actual {}", op, p == &weight ? "weight" : "bias",
                       sp.num_channels(), sp.num_channels(), p->numel());
}

void check_channel_vector(const Tensor& t, const char* what, std::int64_t C, const char* op) {
  if (t.defined() && t.shape() != Shape{C})
    fail<ShapeError>("{}: {} must have shape [{}] (one value per channel): expected [{}] vs actual {}", op, what, C, C, t.shape());
}

// Trailing-dims check of layer_norm / rms_norm; returns D = prod(normalized_shape).
std::int64_t check_normalized_shape(const Tensor& x, const Shape& ns, const Tensor& weight, const Tensor& bias,
                                    const char* op) {
  if (ns.ndim() == 0) fail<ShapeError>("{}: normalized_shape must have at least one dim: got []", op);
  bool ok = x.dim() >= ns.ndim();
  for (int i = 0; ok && i < ns.ndim(); ++i)
    ok = x.shape()[static_cast<std::size_t>(x.dim() - ns.ndim() + i)] == ns[static_cast<std::size_t>(i)];
  if (!ok)
    fail<ShapeError>("{}: normalized_shape must equal the trailing dims of the input: expected [*, {}] vs input {}", op,
                     fmt::join(ns.vec(), ", "), x.shape());
  for (const Tensor* p : {&weight, &bias})
    if (p->defined() && p->shape() != ns)
      fail<ShapeError>("{}: {} must have the normalized shape: expected {} vs actual {}", op,
                       p == &weight ? "weight" : "bias", ns, p->shape());
  return ns.numel();
}

void check_given_stats(const Tensor& mean, const Tensor& var, const NormSpec& sp, const char* op) {
  for (const Tensor* t : {&mean, &var})
    if (!t->defined() || t->numel() != sp.num_stats())
      fail<ShapeError>("{}: given statistics must have {} elements: expected [{}] vs actual {}", op, sp.num_stats(),
                       sp.num_stats(), t->defined() ? fmt::format("{}", t->shape()) : "undefined");
}

// (N, C, L) sizes of an input (N, C, *), L = product of the trailing sizes (1 if none).
struct NCL {
  std::int64_t N, C, L;
};
NCL ncl(const Tensor& x) {
  std::int64_t L = 1;
  for (int d = 2; d < x.dim(); ++d) L *= x.shape()[static_cast<std::size_t>(d)];
  return {x.size(0), x.size(1), L};
}

// Running averages, in place (no autograd). Statistic s belongs to channel s % C; with more
// statistics than channels (InstanceNorm: one per sample and channel) the batch value is the
// average over samples, as PyTorch does. `count` is the number of elements behind each
// statistic, m in the unbiased variance m / (m - 1) * var (Ioffe & Szegedy 2015, Alg. 2:
// inference uses the unbiased estimate; the forward normalizes with the biased one).
//   running = (1 - f) * running + f * batch       (f = momentum, PyTorch's convention)
void update_running_stats(const Tensor& running_mean, const Tensor& running_var, const NormMoments& mom, double f,
                          const char* op) {
  NoGradGuard no_grad;
  for (const Tensor* t : {&running_mean, &running_var})
    if (t->defined() && !t->is_contiguous()) fail<ValueError>("{}: running statistics must be contiguous", op);
  const std::int64_t C = running_mean.defined() ? running_mean.numel() : running_var.numel();
  if (C == 0) return;  // no channels: nothing to update (and S / C would divide by 0)
  const std::int64_t S = mom.mean.numel(), per_channel = S / C;
  const double unbias = static_cast<double>(mom.count) / static_cast<double>(mom.count - 1);
  const double* mean = mom.mean.data<double>();
  const double* var = mom.var.data<double>();
  for (const Tensor* t : {&running_mean, &running_var}) {
    if (!t->defined()) continue;
    const bool is_var = t == &running_var;
    dispatch_float(t->dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      T* run = t->data<T>();
      for (std::int64_t c = 0; c < C; ++c) {
        double batch = 0.0;
        for (std::int64_t j = 0; j < per_channel; ++j) batch += is_var ? var[j * C + c] * unbias : mean[j * C + c];
        batch /= static_cast<double>(per_channel);
        run[c] = static_cast<T>((1.0 - f) * static_cast<double>(run[c]) + f * batch);
      }
    });
  }
}

}  // namespace

// ---- the core op ---------------------------------------------------------------------------

Tensor normalize(const Tensor& x, const NormSpec& spec, const Tensor& weight, const Tensor& bias, double eps,
                 const char* op, NormMoments* moments) {
  check_layout(x, spec, weight, bias, op);
  check_eps(eps, op);
  check_common(x, spec, weight, bias, op);
  return normalize_impl(x, spec, weight, bias, eps, op, nullptr, nullptr, moments);
}

Tensor normalize_with_stats(const Tensor& x, const NormSpec& spec, const Tensor& mean, const Tensor& var,
                            const Tensor& weight, const Tensor& bias, double eps, const char* op) {
  check_layout(x, spec, weight, bias, op);
  check_eps(eps, op);
  check_common(x, spec, weight, bias, op);
  check_given_stats(mean, var, spec, op);
  return normalize_impl(x, spec, weight, bias, eps, op, &mean, &var, nullptr);
}

// ---- the layers: each one is a choice of NormSpec ------------------------------------------

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, std::optional<double> momentum, double eps,
                  const Tensor& num_batches_tracked) {
  constexpr const char* op = "batch_norm";
  if (x.dim() < 2) fail<ShapeError>("{}: expected an input of shape (N, C) or (N, C, *): got {}", op, x.shape());
  check_eps(eps, op);
  if (momentum && !(*momentum >= 0.0 && *momentum <= 1.0))
    fail<ValueError>("{}: momentum must be in [0, 1] (the new batch's weight in running stats): got {}", op, *momentum);
  const auto [N, C, L] = ncl(x);
  check_channel_vector(weight, "weight", C, op);
  check_channel_vector(bias, "bias", C, op);
  check_channel_vector(running_mean, "running_mean", C, op);
  check_channel_vector(running_var, "running_var", C, op);
  const NormSpec spec = NormSpec::batch(N, C, L);  // statistics per channel, over (N, L)

  if (!training) {
    if (!running_mean.defined() || !running_var.defined())
      fail<ValueError>("{}: running_mean and running_var are required when not training", op);
    check_common(x, spec, weight, bias, op);
    return normalize_impl(x, spec, weight, bias, eps, op, &running_mean, &running_var, nullptr);
  }
  if (N * L == 1)
    fail<ValueError>(
        "{}: expected more than 1 value per channel when training: got input of shape {} (N*L = 1). The variance of "
        "one value is 0, so the output would not depend on the input; use eval mode (running statistics), or "
        "GroupNorm / LayerNorm, which do not normalize over the batch",
        op, x.shape());
  const bool update = running_mean.defined() || running_var.defined();
  if (update && !momentum && !num_batches_tracked.defined())
    fail<ValueError>("{}: momentum = none (cumulative average) needs num_batches_tracked", op);
  check_common(x, spec, weight, bias, op);
  NormMoments mom;
  Tensor y = normalize_impl(x, spec, weight, bias, eps, op, nullptr, nullptr, &mom);
  if (update) {
    if (num_batches_tracked.defined()) {
      NoGradGuard no_grad;
      num_batches_tracked.data<std::int64_t>()[0] += 1;
    }
    // f = momentum, or 1 / (number of batches so far): the plain average of all batch statistics.
    const double f =
        momentum ? *momentum : 1.0 / static_cast<double>(num_batches_tracked.data<std::int64_t>()[0]);
    update_running_stats(running_mean, running_var, mom, f, op);
  }
  return y;
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  check_eps(eps, "layer_norm");
  const std::int64_t D = check_normalized_shape(x, normalized_shape, weight, bias, "layer_norm");
  const std::int64_t rows = D == 0 ? 0 : x.numel() / D;
  const NormSpec spec = NormSpec::layer(rows, D);  // per row, over its D features
  check_common(x, spec, weight, bias, "layer_norm");
  return normalize_impl(x, spec, weight, bias, eps, "layer_norm", nullptr, nullptr, nullptr);
}

Tensor group_norm(const Tensor& x, std::int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  constexpr const char* op = "group_norm";
  check_eps(eps, op);
  if (x.dim() < 2) fail<ShapeError>("{}: expected an input of shape (N, C, *): got {}", op, x.shape());
  if (num_groups <= 0) fail<ValueError>("{}: num_groups must be positive: got {}", op, num_groups);
  const auto [N, C, L] = ncl(x);
  if (C % num_groups != 0)
    fail<ShapeError>("{}: the number of channels must be divisible by num_groups: {} channels vs {} groups", op, C,
                     num_groups);
  check_channel_vector(weight, "weight", C, op);
  check_channel_vector(bias, "bias", C, op);
  const NormSpec spec = NormSpec::group(N, C, L, num_groups);  // per (sample, group)
  check_common(x, spec, weight, bias, op);
  return normalize_impl(x, spec, weight, bias, eps, op, nullptr, nullptr, nullptr);
}

Tensor instance_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                     const Tensor& bias, bool use_input_stats, double momentum, double eps) {
  constexpr const char* op = "instance_norm";
  check_eps(eps, op);
  if (!(momentum >= 0.0 && momentum <= 1.0))
    fail<ValueError>("{}: momentum must be in [0, 1] (the new batch's weight in running stats): got {}", op, momentum);
  if (x.dim() < 2) fail<ShapeError>("{}: expected an input of shape (N, C, *): got {}", op, x.shape());
  const auto [N, C, L] = ncl(x);
  check_channel_vector(weight, "weight", C, op);
  check_channel_vector(bias, "bias", C, op);
  check_channel_vector(running_mean, "running_mean", C, op);
  check_channel_vector(running_var, "running_var", C, op);
  const NormSpec spec = NormSpec::instance(N, C, L);  // per (sample, channel), over its L positions
  if (!use_input_stats) {
    if (!running_mean.defined() || !running_var.defined())
      fail<ValueError>("{}: running_mean and running_var are required when use_input_stats is false", op);
    // One statistic per (sample, channel): repeat the per-channel running values over N.
    const Tensor mean = expand(reshape(running_mean.detach(), Shape{1, C}), Shape{N, C}).contiguous();
    const Tensor var = expand(reshape(running_var.detach(), Shape{1, C}), Shape{N, C}).contiguous();
    check_common(x, spec, weight, bias, op);
    return normalize_impl(x, spec, weight, bias, eps, op, &mean, &var, nullptr);
  }
  if (L == 1)
    fail<ValueError>("{}: expected more than 1 spatial element when training: got input of shape {} (one value per "
                     "instance has variance 0)",
                     op, x.shape());
  check_common(x, spec, weight, bias, op);
  NormMoments mom;
  Tensor y = normalize_impl(x, spec, weight, bias, eps, op, nullptr, nullptr, &mom);
  if (running_mean.defined() || running_var.defined()) update_running_stats(running_mean, running_var, mom, momentum, op);
  return y;
}

Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, std::optional<double> eps) {
  const double e = eps ? *eps
                       : (x.dtype() == DType::f32 ? static_cast<double>(std::numeric_limits<float>::epsilon())
                                                  : std::numeric_limits<double>::epsilon());
  check_eps(e, "rms_norm");
  const std::int64_t D = check_normalized_shape(x, normalized_shape, weight, Tensor(), "rms_norm");
  const std::int64_t rows = D == 0 ? 0 : x.numel() / D;
  const NormSpec spec = NormSpec::rms(rows, D);  // per row, no mean
  check_common(x, spec, weight, Tensor(), "rms_norm");
  return normalize_impl(x, spec, weight, Tensor(), e, "rms_norm", nullptr, nullptr, nullptr);
}

std::vector<Tensor> normalize_backward_composite(const Tensor& x, const Tensor& dy, const Tensor& weight,
                                                 const Tensor& bias, const NormSpec& spec, double eps) {
  return backward_composite(x, dy, weight, bias, spec, eps, /*batch_stats=*/true, Tensor(), Tensor());
}

}  // namespace ng
