// Elementwise ops with broadcasting. Each op: forward kernel, then its backward right below.
// Backward functions are written with tensor ops (so they can be recorded for second-order
// gradients); sum_to() undoes broadcasting: d(a op b)/da summed over the broadcast dims.
#include <algorithm>
#include <cmath>
#include <numbers>

#include "autograd/kernels.h"
#include "autograd/simd_math.h"
#include "autograd/ops.h"

namespace ng {

namespace {

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  if (a.dtype() != b.dtype())
    fail<DTypeError>("{}: dtypes differ: {} vs {} (convert one with .to())", op, a.dtype(), b.dtype());
}

// out = f(a, b) elementwise with broadcasting, in a's (floating) dtype.
template <class F>
Tensor binary_forward(const Tensor& a, const Tensor& b, const char* op, F f) {
  check_same_dtype(a, b, op);
  const Shape s = a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = empty(s, a.dtype());
  dispatch_float(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    detail::binary_map<T>(a, b, s, out.data<T>(), [&](T x, T y) { return static_cast<T>(f(x, y)); });
  });
  return out;
}

// out = f(a) elementwise.
template <class F>
Tensor unary_forward(const Tensor& a, const char* op, F f) {
  Tensor out = empty(a.shape(), a.dtype());
  dispatch_float(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    detail::unary_map<T>(a, out.data<T>(), [&](T x) { return static_cast<T>(f(x)); });
  });
  return out;
}

}  // namespace

// ---- arithmetic -------------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(a, b, "add", [](auto x, auto y) { return x + y; });
  // d(a+b)/da = 1, d(a+b)/db = 1 (input shapes from the node: nothing captured, no allocation)
  return record("add", {a, b}, out, [](BackwardContext& ctx, const Tensor& g) -> Grads {
    return {sum_to(g, ctx.input_shape(0)), sum_to(g, ctx.input_shape(1))};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(a, b, "sub", [](auto x, auto y) { return x - y; });
  // d(a-b)/da = 1, d(a-b)/db = -1
  return record("sub", {a, b}, out, [](BackwardContext& ctx, const Tensor& g) -> Grads {
    return {sum_to(g, ctx.input_shape(0)), sum_to(neg(g), ctx.input_shape(1))};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(a, b, "mul", [](auto x, auto y) { return x * y; });
  // d(ab)/da = b, d(ab)/db = a
  return record("mul", {a, b}, out, [a, b](BackwardContext&, const Tensor& g) -> Grads {
    return {a.requires_grad() ? sum_to(mul(g, b), a.shape()) : Tensor(),
            b.requires_grad() ? sum_to(mul(g, a), b.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(a, b, "div", [](auto x, auto y) { return x / y; });
  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
  return record("div", {a, b}, out, [a, b](BackwardContext&, const Tensor& g) -> Grads {
    return {a.requires_grad() ? sum_to(div(g, b), a.shape()) : Tensor(),
            b.requires_grad() ? sum_to(neg(div(mul(g, a), mul(b, b))), b.shape()) : Tensor()};
  });
}

Tensor add(const Tensor& a, double s) {
  Tensor out = unary_forward(a, "add", [s](auto x) { return x + s; });
  return record("add_scalar", {a}, out, [](BackwardContext&, const Tensor& g) -> Grads { return {g}; });
}

Tensor mul(const Tensor& a, double s) {
  Tensor out = unary_forward(a, "mul", [s](auto x) { return x * s; });
  // d(s a)/da = s
  return record("mul_scalar", {a}, out, [s](BackwardContext&, const Tensor& g) -> Grads { return {mul(g, s)}; });
}

Tensor rsub(double s, const Tensor& a) {
  Tensor out = unary_forward(a, "rsub", [s](auto x) { return s - x; });
  return record("rsub_scalar", {a}, out, [](BackwardContext&, const Tensor& g) -> Grads { return {neg(g)}; });
}

Tensor rdiv(double s, const Tensor& a) {
  Tensor out = unary_forward(a, "rdiv", [s](auto x) { return s / x; });
  // d(s/a)/da = -s/a^2
  return record("rdiv_scalar", {a}, out, [a, s](BackwardContext&, const Tensor& g) -> Grads {
    return {mul(div(g, mul(a, a)), -s)};
  });
}

Tensor neg(const Tensor& a) {
  Tensor out = unary_forward(a, "neg", [](auto x) { return -x; });
  return record("neg", {a}, out, [](BackwardContext&, const Tensor& g) -> Grads { return {neg(g)}; });
}

Tensor pow(const Tensor& a, double p) {
  Tensor out = unary_forward(a, "pow", [p](auto x) { return std::pow(x, static_cast<decltype(x)>(p)); });
  // d(a^p)/da = p a^(p-1)
  return record("pow_scalar", {a}, out, [a, p](BackwardContext&, const Tensor& g) -> Grads {
    if (p == 0.0) return {zeros_like(g)};
    if (p == 1.0) return {g};
    if (p == 2.0) return {mul(g, mul(a, 2.0))};
    return {mul(g, mul(pow(a, p - 1.0), p))};
  });
}

Tensor pow(const Tensor& a, const Tensor& p) {
  Tensor out = binary_forward(a, p, "pow", [](auto x, auto y) { return std::pow(x, y); });
  // d(a^p)/da = p a^(p-1);  d(a^p)/dp = a^p log(a)   (only where a > 0; 0 where a^p == 0)
  return record(
      "pow", {a, p}, out,
      [a, p](BackwardContext& ctx, const Tensor& g) -> Grads {
        Tensor ga, gp;
        if (a.requires_grad()) ga = sum_to(mul(g, mul(p, pow(a, sub(p, ones_like(p))))), a.shape());
        if (p.requires_grad()) {
          Tensor y = ctx.output();
          // log(a) is only used where a > 0; elsewhere the gradient is defined as 0.
          Tensor pos = gt(a, zeros_like(a));
          Tensor safe_log = log(where(pos, a, ones_like(a)));
          gp = sum_to(mul(g, mul(y, safe_log)), p.shape());
        }
        return {ga, gp};
      },
      SaveOutput::yes);
}

// ---- unary math -------------------------------------------------------------------------

Tensor exp(const Tensor& a) {
  // float32 vectorized, <= 2 ulp (autograd/simd_math.h); float64 std::exp
  Tensor out = unary_forward(a, "exp", [](auto x) { return detail::exp_of(x); });
  // d exp(a)/da = exp(a), i.e. the output itself
  return record(
      "exp", {a}, out, [](BackwardContext& ctx, const Tensor& g) -> Grads { return {mul(g, ctx.output())}; },
      SaveOutput::yes);
}

Tensor log(const Tensor& a) {
  Tensor out = unary_forward(a, "log", [](auto x) { return std::log(x); });
  // d log(a)/da = 1/a
  return record("log", {a}, out, [a](BackwardContext&, const Tensor& g) -> Grads { return {div(g, a)}; });
}

Tensor sqrt(const Tensor& a) {
  Tensor out = unary_forward(a, "sqrt", [](auto x) { return std::sqrt(x); });
  // d sqrt(a)/da = 1 / (2 sqrt(a))
  return record(
      "sqrt", {a}, out,
      [](BackwardContext& ctx, const Tensor& g) -> Grads { return {div(g, mul(ctx.output(), 2.0))}; },
      SaveOutput::yes);
}

Tensor rsqrt(const Tensor& a) {
  Tensor out = unary_forward(a, "rsqrt", [](auto x) { return 1 / std::sqrt(x); });
  // d a^(-1/2)/da = -1/2 a^(-3/2) = -1/2 y^3
  return record(
      "rsqrt", {a}, out,
      [](BackwardContext& ctx, const Tensor& g) -> Grads {
        Tensor y = ctx.output();
        return {mul(mul(g, mul(y, mul(y, y))), -0.5)};
      },
      SaveOutput::yes);
}

Tensor abs(const Tensor& a) {
  Tensor out = unary_forward(a, "abs", [](auto x) { return std::abs(x); });
  // d|a|/da = sign(a)  (0 at 0, as PyTorch)
  return record("abs", {a}, out, [a](BackwardContext&, const Tensor& g) -> Grads {
    Tensor sign = unary_forward(a.detach(), "abs", [](auto x) { return (x > 0) - (x < 0); });
    return {mul(g, sign)};
  });
}

Tensor clamp(const Tensor& a, std::optional<double> lo, std::optional<double> hi) {
  if (lo && hi && *lo > *hi) fail<ValueError>("clamp: min {} is greater than max {}", *lo, *hi);
  const double l = lo.value_or(-INFINITY), h = hi.value_or(INFINITY);
  Tensor out = unary_forward(a, "clamp", [l, h](auto x) {
    using T = decltype(x);
    return x < static_cast<T>(l) ? static_cast<T>(l) : (x > static_cast<T>(h) ? static_cast<T>(h) : x);
  });
  // gradient passes where lo <= a <= hi (inclusive, as PyTorch), 0 where clamped
  return record("clamp", {a}, out, [a, l, h](BackwardContext&, const Tensor& g) -> Grads {
    Tensor inside = unary_forward(a.detach(), "clamp", [l, h](auto x) { return x >= l && x <= h ? 1 : 0; });
    return {mul(g, inside)};
  });
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(a, b, "maximum", [](auto x, auto y) { return x >= y ? x : y; });
  // the gradient goes to the larger input; ties split it half and half (as PyTorch)
  return record("maximum", {a, b}, out, [a, b](BackwardContext&, const Tensor& g) -> Grads {
    Tensor wa = binary_forward(a.detach(), b.detach(), "maximum",
                               [](auto x, auto y) { return x > y ? 1.0 : (x == y ? 0.5 : 0.0); });
    return {sum_to(mul(g, wa), a.shape()), sum_to(mul(g, rsub(1.0, wa)), b.shape())};
  });
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(a, b, "minimum", [](auto x, auto y) { return x <= y ? x : y; });
  return record("minimum", {a, b}, out, [a, b](BackwardContext&, const Tensor& g) -> Grads {
    Tensor wa = binary_forward(a.detach(), b.detach(), "minimum",
                               [](auto x, auto y) { return x < y ? 1.0 : (x == y ? 0.5 : 0.0); });
    return {sum_to(mul(g, wa), a.shape()), sum_to(mul(g, rsub(1.0, wa)), b.shape())};
  });
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_dtype(a, b, "where");
  const Shape s = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  // Selection mask in a's dtype (1 where cond != 0), broadcast to s.
  Tensor m = empty(cond.shape(), a.dtype());
  dispatch_all(cond.dtype(), [&](auto tc) {
    using C = decltype(tc);
    dispatch_float(a.dtype(), "where", [&](auto ta) {
      using T = decltype(ta);
      detail::unary_map<C>(cond, m.data<T>(), [](C c) { return c != C(0) ? T(1) : T(0); });
    });
  });
  Tensor out = empty(s, a.dtype());
  dispatch_float(a.dtype(), "where", [&](auto tag) {
    using T = decltype(tag);
    const Strides sm = detail::broadcast_strides(m, s), sa = detail::broadcast_strides(a, s),
                  sb = detail::broadcast_strides(b, s);
    const T* pm = m.data<T>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.data<T>();
    const std::int64_t lm = s.ndim() ? sm.back() : 0, la = s.ndim() ? sa.back() : 0, lb = s.ndim() ? sb.back() : 0;
    detail::for_each_row<3>(s, {&sm, &sa, &sb}, [&](std::int64_t n, const std::array<std::int64_t, 3>& off, std::int64_t o) {
      for (std::int64_t i = 0; i < n; ++i)
        po[o + i] = pm[off[0] + i * lm] != T(0) ? pa[off[1] + i * la] : pb[off[2] + i * lb];
    });
  });
  // gradient flows to a where cond holds, to b elsewhere
  return record("where", {a, b}, out, [m, sa = a.shape(), sb = b.shape()](BackwardContext&, const Tensor& g) -> Grads {
    return {sum_to(mul(g, m), sa), sum_to(mul(g, rsub(1.0, m)), sb)};
  });
}

// ---- activations ------------------------------------------------------------------------

Tensor relu(const Tensor& a) {
  // max(x, 0) with NaN kept (as PyTorch: relu(NaN) = NaN); -0 gives +0
  Tensor out = unary_forward(a, "relu", [](auto x) { return (x > 0) | (x != x) ? x : decltype(x)(0); });
  // d relu(a)/da = 1 where the output is not <= 0 (0 at 0, and g passes at NaN, as PyTorch's
  // threshold_backward)
  return record(
      "relu", {a}, out,
      [](BackwardContext& ctx, const Tensor& g) -> Grads {
        const Tensor y = ctx.output().detach();
        // First order: one pass, dx = g where y is not <= 0, else 0 (no mask tensor). Under
        // create_graph the same product is recorded (linear in g, the mask a constant).
        if (!ctx.create_graph())
          return {binary_forward(g, y, "relu", [](auto gi, auto yi) { return !(yi <= 0) ? gi : decltype(gi)(0); })};
        Tensor on = unary_forward(y, "relu", [](auto x) { return !(x <= 0) ? 1 : 0; });
        return {mul(g, on)};
      },
      SaveOutput::yes);
}

Tensor leaky_relu(const Tensor& a, double slope) {
  Tensor out = unary_forward(a, "leaky_relu", [slope](auto x) { return x > 0 ? x : x * static_cast<decltype(x)>(slope); });
  // derivative 1 where a > 0, negative_slope elsewhere
  return record("leaky_relu", {a}, out, [a, slope](BackwardContext&, const Tensor& g) -> Grads {
    Tensor d = unary_forward(a.detach(), "leaky_relu", [slope](auto x) { return x > 0 ? 1.0 : slope; });
    return {mul(g, d)};
  });
}

Tensor sigmoid(const Tensor& a) {
  // 1 / (1 + e^-x), stable on both sides (never e^large); float32 vectorized, <= 3 ulp
  // (autograd/simd_math.h), float64 through std::exp.
  Tensor out = unary_forward(a, "sigmoid", [](auto x) { return detail::sigmoid_of(x); });
  // d sigmoid(a)/da = y (1 - y)
  return record(
      "sigmoid", {a}, out,
      [](BackwardContext& ctx, const Tensor& g) -> Grads {
        Tensor y = ctx.output();
        return {mul(g, mul(y, rsub(1.0, y)))};
      },
      SaveOutput::yes);
}

Tensor tanh(const Tensor& a) {
  // float32 vectorized, <= 3 ulp (autograd/simd_math.h); float64 std::tanh
  Tensor out = unary_forward(a, "tanh", [](auto x) { return detail::tanh_of(x); });
  // d tanh(a)/da = 1 - y^2
  return record(
      "tanh", {a}, out,
      [](BackwardContext& ctx, const Tensor& g) -> Grads {
        Tensor y = ctx.output();
        return {mul(g, rsub(1.0, mul(y, y)))};
      },
      SaveOutput::yes);
}

Tensor gelu(const Tensor& a) {
  // gelu(x) = x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2   (Hendrycks & Gimpel 2016, exact form);
  // float32 vectorized, <= 8 ulp (autograd/simd_math.h), float64 through std::erfc
  // d gelu/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
  const double k = 1.0 / std::sqrt(2.0 * std::numbers::pi);
  if (!(grad_enabled() && a.requires_grad()))
    return unary_forward(a, "gelu", [](auto x) { return x * detail::normal_cdf_of(x); });
  // With a gradient to come, the forward pass, which has Phi(x) at hand, also stores the
  // derivative dgelu (one more activation-sized tensor): the first-order backward is then
  // g * dgelu, instead of evaluating erfc and exp again.
  const Tensor ac = a.detach().contiguous();
  Tensor out = empty(a.shape(), a.dtype()), dgelu = empty(a.shape(), a.dtype());
  dispatch_float(a.dtype(), "gelu", [&](auto tag) {
    using T = decltype(tag);
    const T* px = ac.data<T>();
    T *py = out.data<T>(), *pd = dgelu.data<T>();
    constexpr std::int64_t kChunk = 4096;
    const std::int64_t n = ac.numel(), chunks = (n + kChunk - 1) / kChunk;
    detail::parallel_for(chunks, n > detail::kParallelGrain, [&](std::int64_t c) {
      const std::int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
      for (std::int64_t i = lo; i < hi; ++i) {
        const T x = px[i], Phi = detail::normal_cdf_of(x);
        py[i] = x * Phi;
        pd[i] = Phi + x * detail::exp_of(x * x * T(-0.5)) * static_cast<T>(k);
      }
    });
  });
  return record("gelu", {a}, out, [a, dgelu, k](BackwardContext& ctx, const Tensor& g) -> Grads {
    if (!ctx.create_graph()) return {mul(g, dgelu)};  // first order
    // Under create_graph, the same formula in differentiable ops.
    Tensor phi = mul(exp(mul(mul(a, a), -0.5)), k);
    // Phi is recorded with dPhi/dx = phi, so that the second derivative (2 phi(x) - x^2 phi(x))
    // comes out right.
    Tensor Phi = record("gelu_cdf", {a}, unary_forward(a, "gelu", [](auto x) { return detail::normal_cdf_of(x); }),
                        [phi](BackwardContext&, const Tensor& gp) -> Grads { return {mul(gp, phi)}; });
    return {mul(g, add(Phi, mul(a, phi)))};
  });
}

Tensor softplus(const Tensor& a, double beta, double threshold) {
  if (beta <= 0) fail<ValueError>("softplus: beta must be positive, got {}", beta);
  // softplus(x) = log(1 + exp(beta x)) / beta; linear (x) where beta x > threshold, as PyTorch
  Tensor out = unary_forward(a, "softplus", [beta, threshold](auto x) {
    using T = decltype(x);
    const T bx = x * static_cast<T>(beta);
    return bx > static_cast<T>(threshold) ? x : std::log1p(std::exp(bx)) / static_cast<T>(beta);
  });
  // derivative sigmoid(beta x) (1 above the threshold)
  return record("softplus", {a}, out, [a, beta, threshold](BackwardContext&, const Tensor& g) -> Grads {
    Tensor bx = mul(a, beta);
    Tensor lin = unary_forward(bx.detach(), "softplus", [threshold](auto x) { return x > threshold ? 1 : 0; });
    return {mul(g, where(lin, ones_like(a), sigmoid(bx)))};
  });
}

// ---- comparisons (no gradient) ----------------------------------------------------------
Tensor gt(const Tensor& a, const Tensor& b) {
  return binary_forward(a.detach(), b.detach(), "gt", [](auto x, auto y) { return x > y ? 1 : 0; });
}
Tensor lt(const Tensor& a, const Tensor& b) {
  return binary_forward(a.detach(), b.detach(), "lt", [](auto x, auto y) { return x < y ? 1 : 0; });
}
Tensor eq(const Tensor& a, const Tensor& b) {
  return binary_forward(a.detach(), b.detach(), "eq", [](auto x, auto y) { return x == y ? 1 : 0; });
}

// ---- operators --------------------------------------------------------------------------
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double s) { return add(a, s); }
Tensor operator+(double s, const Tensor& a) { return add(a, s); }
Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
Tensor operator-(double s, const Tensor& a) { return rsub(s, a); }
Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
Tensor operator/(double s, const Tensor& a) { return rdiv(s, a); }

}  // namespace ng
