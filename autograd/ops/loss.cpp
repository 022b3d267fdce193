// Softmax family and losses. softmax/log_softmax have fused kernels (max-shifted, so exp
// never overflows) with backwards written in tensor ops; the losses are composites of
// log_softmax, gather and reductions, so their gradients come from those ops.
#include <cmath>
#include <limits>

#include "autograd/kernels.h"
#include "autograd/ops.h"

namespace ng {

namespace {

std::size_t U(int d) { return static_cast<std::size_t>(d); }

// x viewed (contiguous) as [outer, n, inner]: each (o, j) is one row of n elements at stride
// `inner`. softmax: y_k = exp(x_k - m) / s; log_softmax: y_k = x_k - m - log s, with
// m = max_k x_k and s = sum_k exp(x_k - m) (accumulated in double).
template <class T, bool kLog>
void softmax_kernel(const T* x, T* y, std::int64_t outer, std::int64_t n, std::int64_t inner) {
  const std::int64_t rows = outer * inner;
  detail::parallel_for(rows, rows * n > detail::kParallelGrain, [&](std::int64_t r) {
    const std::int64_t base = (r / inner) * n * inner + r % inner;
    const T* xr = x + base;
    T* yr = y + base;
    T m = -std::numeric_limits<T>::infinity();
    for (std::int64_t k = 0; k < n; ++k) m = std::max(m, xr[k * inner]);
    double s = 0.0;
    if constexpr (kLog) {
      for (std::int64_t k = 0; k < n; ++k) s += static_cast<double>(std::exp(xr[k * inner] - m));
      // (x_k - m) - log s, not x_k - (m + log s): for large logits m + log s rounds to the
      // spacing of m (~1e-3 at 1e4 in float32) and the log-probabilities inherit that error.
      const T log_s = static_cast<T>(std::log(s));
      for (std::int64_t k = 0; k < n; ++k) yr[k * inner] = (xr[k * inner] - m) - log_s;
    } else {
      for (std::int64_t k = 0; k < n; ++k) {
        yr[k * inner] = std::exp(xr[k * inner] - m);
        s += static_cast<double>(yr[k * inner]);
      }
      const T inv = static_cast<T>(1.0 / s);
      for (std::int64_t k = 0; k < n; ++k) yr[k * inner] *= inv;
    }
  });
}

template <bool kLog>
Tensor softmax_forward(const Tensor& a, int d, const char* op) {
  Tensor out = empty(a.shape(), a.dtype());
  // nothing to compute; and with a 0 on the softmax axis of [2^40, 0] the kernel would still
  // walk outer x inner = 2^40 empty rows
  if (a.numel() == 0) return out;
  std::int64_t outer = 1, n = 1, inner = 1;
  if (a.dim() > 0) {
    for (int i = 0; i < d; ++i) outer *= a.shape()[U(i)];
    n = a.shape()[U(d)];
    for (int i = d + 1; i < a.dim(); ++i) inner *= a.shape()[U(i)];
  }
  dispatch_float(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const Tensor ac = a.detach().contiguous();
    softmax_kernel<T, kLog>(ac.data<T>(), out.data<T>(), outer, n, inner);
  });
  return out;
}

Tensor reduce_loss(const Tensor& loss, Reduction r) {
  switch (r) {
    case Reduction::none: return loss;
    case Reduction::sum: return sum(loss);
    case Reduction::mean: break;
  }
  return mean(loss);
}

void check_float(const Tensor& t, const char* op, const char* what) {
  if (!is_floating(t.dtype()))
    fail<DTypeError>("{}: {} must be float32 or float64, got {}", op, what, t.dtype());
}

// Class-index targets: input (C), (N, C) or (N, C, d1, ...) and int64 target (), (N) or
// (N, d1, ...) with values in [0, C) or equal to ignore_index. Returns the class axis.
int check_class_targets(const Tensor& input, const Tensor& target, std::int64_t ignore_index, const char* op) {
  check_float(input, op, "input");
  if (target.dtype() != DType::i64)
    fail<DTypeError>("{}: target must hold int64 class indices, got {} (cross_entropy also takes class probabilities "
                     "of the input's shape)",
                     op, target.dtype());
  if (input.dim() == 0) fail<ShapeError>("{}: input must have a class dim, got shape {}", op, input.shape());
  const int cax = input.dim() == 1 ? 0 : 1;
  Shape expect = input.shape();
  expect.erase(U(cax));
  if (target.shape() != expect)
    fail<ShapeError>("{}: target shape must be input shape {} without the class dim: {} vs {}", op, input.shape(),
                     expect, target.shape());
  const std::int64_t C = input.shape()[U(cax)];
  const Tensor t = target.contiguous();
  const std::int64_t* pt = t.data<std::int64_t>();
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if ((pt[i] < 0 || pt[i] >= C) && pt[i] != ignore_index)
      fail<IndexError>("{}: target {} is out of range for {} classes (and is not ignore_index {})", op, pt[i], C,
                       ignore_index);
  return cax;
}

// weight must be undefined or a float (C) of the input's dtype. Returned detached (a constant).
Tensor check_weight(const Tensor& weight, const Tensor& input, int cax, const char* op) {
  if (!weight.defined()) return weight;
  const std::int64_t C = input.shape()[U(cax)];
  if (weight.dim() != 1 || weight.shape()[0] != C)
    fail<ShapeError>("{}: weight must hold one value per class, shape [{}]: got {}", op, C, weight.shape());
  if (weight.dtype() != input.dtype())
    fail<DTypeError>("{}: weight dtype must match the input's: {} vs {}", op, input.dtype(), weight.dtype());
  return weight.detach();
}

// The weight broadcast along the class axis of an input of `nd` dims: (C) -> (C, 1, ..., 1).
Tensor weight_along_classes(const Tensor& w, int cax, int nd) {
  Shape s{w.shape()[0]};
  for (int d = cax + 1; d < nd; ++d) s.push_back(1);
  return reshape(w, s);
}

// Per-target constants of the target's shape: `weight` w_{y_n} where y_n is not ignored and 0
// where it is (w = 1 without a class weight), `kept` 1 / 0 for not ignored / ignored, and `safe`
// the target with ignored entries set to class 0 (valid for gather; their loss is multiplied by 0).
struct TargetWeights {
  Tensor weight, kept, safe;
};
TargetWeights target_weights(const Tensor& target, const Tensor& weight, std::int64_t ignore_index, DType dt) {
  const Tensor t = target.detach().contiguous();
  const std::size_t n = static_cast<std::size_t>(t.numel());
  std::vector<std::int64_t> safe(n);
  std::vector<double> w(n), kept(n);
  const std::int64_t* pt = t.data<std::int64_t>();
  const Tensor wc = weight.defined() ? weight.contiguous().to(DType::f64) : Tensor();
  for (std::size_t i = 0; i < n; ++i) {
    const bool ignored = pt[i] == ignore_index;
    safe[i] = ignored ? 0 : pt[i];
    kept[i] = ignored ? 0.0 : 1.0;
    w[i] = ignored ? 0.0 : (wc.defined() ? wc.data<double>()[pt[i]] : 1.0);
  }
  return {from_vector(w, t.shape(), dt), from_vector(kept, t.shape(), dt), from_vector(safe, t.shape())};
}

// -log_probs[n, target[n], ...]: the picked log-probability along the class axis.
Tensor picked_nll(const Tensor& log_probs, const Tensor& target, int cax) {
  return neg(squeeze(gather(log_probs, cax, unsqueeze(target, cax)), cax));
}

// sum / denominator for mean (the denominator a constant), sum, or the per-sample losses.
Tensor reduce_weighted(const Tensor& loss, Reduction r, const Tensor& denominator) {
  switch (r) {
    case Reduction::none: return loss;
    case Reduction::sum: return sum(loss);
    case Reduction::mean: break;
  }
  return div(sum(loss), denominator);
}

void check_reduction_options(const LossOptions& o, const char* op) {
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0))
    fail<ValueError>("{}: label_smoothing must be in [0, 1], got {}", op, o.label_smoothing);
}

void check_same(const Tensor& input, const Tensor& target, const char* op) {
  check_float(input, op, "input");
  if (target.dtype() != input.dtype())
    fail<DTypeError>("{}: target dtype must match the input's: {} vs {}", op, input.dtype(), target.dtype());
  if (target.shape() != input.shape())
    fail<ShapeError>("{}: target shape must match the input's: {} vs {}", op, input.shape(), target.shape());
}

}  // namespace

Tensor softmax(const Tensor& a, std::int64_t axis) {
  const int d = normalize_axis(axis, a.dim(), "softmax");
  const Axes ax = a.dim() ? Axes{d} : Axes{};
  Tensor out = softmax_forward<false>(a, d, "softmax");
  // dx = y * (g - sum_k g_k y_k)   (Jacobian diag(y) - y y^T applied to g)
  return record(
      "softmax", {a}, out,
      [ax](BackwardContext& ctx, const Tensor& g) -> Grads {
        Tensor y = ctx.output();
        return {mul(y, sub(g, sum(mul(g, y), ax, true)))};
      },
      SaveOutput::yes);
}

Tensor log_softmax(const Tensor& a, std::int64_t axis) {
  const int d = normalize_axis(axis, a.dim(), "log_softmax");
  const Axes ax = a.dim() ? Axes{d} : Axes{};
  Tensor out = softmax_forward<true>(a, d, "log_softmax");
  // y = x - logsumexp(x): dx = g - softmax(x) * sum_k g_k, softmax(x) = exp(y)
  return record(
      "log_softmax", {a}, out,
      [ax](BackwardContext& ctx, const Tensor& g) -> Grads {
        Tensor y = ctx.output();
        return {sub(g, mul(exp(y), sum(g, ax, true)))};
      },
      SaveOutput::yes);
}

// loss_n = -w_{y_n} log_probs[n, y_n, ...] (0 where y_n == ignore_index); mean divides by
// sum_n w_{y_n} over the non-ignored targets (PyTorch's nll_loss).
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const LossOptions& o) {
  const char* op = "nll_loss";
  if (o.label_smoothing != 0.0)
    fail<ValueError>("{}: label_smoothing applies to cross_entropy only, got {}", op, o.label_smoothing);
  const int cax = check_class_targets(log_probs, target, o.ignore_index, op);
  const Tensor w = check_weight(o.weight, log_probs, cax, op);
  const TargetWeights tw = target_weights(target, w, o.ignore_index, log_probs.dtype());
  return reduce_weighted(mul(picked_nll(log_probs, tw.safe, cax), tw.weight), o.reduction, sum(tw.weight));
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction r) {
  return nll_loss(log_probs, target, LossOptions{.reduction = r});
}

// cross_entropy = nll_loss(log_softmax(x, class axis)), plus label smoothing (the target
// distribution (1 - eps) one_hot + eps / C, Szegedy et al. 2016) and probability targets; the
// formulas are in ops.h. Follows PyTorch's cross_entropy_loss (aten/src/ATen/native/LossNLL.cpp).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const LossOptions& o) {
  const char* op = "cross_entropy";
  check_reduction_options(o, op);
  // As PyTorch: a target of the input's shape holds class probabilities ("soft" targets)
  if (target.shape() == logits.shape() && logits.dim() > 0) {
    check_float(logits, op, "input");
    if (!is_floating(target.dtype()))
      fail<DTypeError>("{}: a target of the input's shape {} holds class probabilities and must be float, got {}", op,
                       logits.shape(), target.dtype());
    if (target.dtype() != logits.dtype())
      fail<DTypeError>("{}: probability targets must have the input's dtype: {} vs {}", op, logits.dtype(),
                       target.dtype());
    if (o.ignore_index >= 0)
      fail<ValueError>("{}: ignore_index ({}) applies to class-index targets only, not to probabilities", op,
                       o.ignore_index);
    const int cax = logits.dim() == 1 ? 0 : 1;
    const std::int64_t C = logits.shape()[U(cax)];
    const Tensor w = check_weight(o.weight, logits, cax, op);
    Tensor t = target;
    if (o.label_smoothing > 0.0) t = add(mul(t, 1.0 - o.label_smoothing), o.label_smoothing / static_cast<double>(C));
    Tensor prod = mul(log_softmax(logits, cax), t);
    if (w.defined()) prod = mul(prod, weight_along_classes(w, cax, logits.dim()));
    Tensor loss = neg(sum(prod, {cax}));
    // mean: over the N * d1 * ... samples (the per-sample losses, also when C = 0, where
    // numel / C could not count them), whatever the weights
    return reduce_weighted(loss, o.reduction, full({}, static_cast<double>(loss.numel()), logits.dtype()));
  }
  const int cax = check_class_targets(logits, target, o.ignore_index, op);
  const Tensor w = check_weight(o.weight, logits, cax, op);
  const TargetWeights tw = target_weights(target, w, o.ignore_index, logits.dtype());
  const Tensor denominator = sum(tw.weight);
  Tensor log_p = log_softmax(logits, cax);
  Tensor loss = reduce_weighted(mul(picked_nll(log_p, tw.safe, cax), tw.weight), o.reduction, denominator);
  const std::int64_t C = logits.shape()[U(cax)];
  if (o.label_smoothing > 0.0 && C > 0) {  // C = 0: every smooth_n is an empty sum, 0 (not 0 * eps / 0)
    // smooth_n = -sum_c w_c log p_{n,c}, 0 for ignored targets; same reduction and denominator
    Tensor wl = w.defined() ? mul(log_p, weight_along_classes(w, cax, logits.dim())) : log_p;
    Tensor smooth = mul(neg(sum(wl, {cax})), tw.kept);
    loss = add(mul(loss, 1.0 - o.label_smoothing),
               mul(reduce_weighted(smooth, o.reduction, denominator), o.label_smoothing / static_cast<double>(C)));
  }
  return loss;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction r, double label_smoothing) {
  return cross_entropy(logits, target, LossOptions{.reduction = r, .label_smoothing = label_smoothing});
}

// (x - t)^2, elementwise, then reduced.
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r) {
  check_same(input, target, "mse_loss");
  Tensor d = sub(input, target);
  return reduce_loss(mul(d, d), r);
}

// -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], in the stable form
//   max(x, 0) - x t + log(1 + exp(-|x|))
// (no exp of a large positive number, no log of 0). Derivatives: d/dx = sigmoid(x) - t,
// d/dt = -x.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction r) {
  const char* op = "binary_cross_entropy_with_logits";
  check_same(logits, target, op);
  Tensor loss = empty(logits.shape(), logits.dtype());
  dispatch_float(logits.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    detail::binary_map<T>(logits, target, logits.shape(), loss.data<T>(), [](T x, T t) {
      return std::max(x, T(0)) - x * t + std::log1p(std::exp(-std::abs(x)));
    });
  });
  const bool target_grad = target.requires_grad();
  loss = record(op, {logits, target}, loss, [logits, target, target_grad](BackwardContext&, const Tensor& g) -> Grads {
    return {mul(g, sub(sigmoid(logits), target)), target_grad ? mul(g, neg(logits)) : Tensor()};
  });
  return reduce_loss(loss, r);
}

}  // namespace ng
