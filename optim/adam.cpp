#include "optim/adam.h"

#include <algorithm>
#include <cmath>

#include "autograd/kernels.h"

namespace ng::optim {

namespace {
template <class O>
Hyper to_hyper(const O& o) {
  return {{"lr", o.lr},
          {"beta1", o.betas.first},
          {"beta2", o.betas.second},
          {"eps", o.eps},
          {"weight_decay", o.weight_decay},
          {"amsgrad", o.amsgrad ? 1.0 : 0.0}};
}
const std::vector<std::string> kAdamBuffers = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};

enum class Decay { none, l2, decoupled };

// One parameter's update: its values w, gradient g, moments m and v, and vmax (amsgrad).
template <class T>
struct Update {
  T* w;
  const T* g;
  T* m;
  T* v;
  T* vmax;
  T b1, b2, one_b1, one_b2, e, wd, decay, alpha, c2;
};

// The update of elements [lo, hi). The options are template parameters, so each variant is a
// loop without branches that the compiler vectorizes (square root and divisions included,
// see CMakeLists.txt for -fno-math-errno): the scalar loop spent ~17 cycles per element.
template <class T, Decay kDecay, bool kAmsgrad>
void update_range(const Update<T>& u, std::int64_t lo, std::int64_t hi) {
  T* w = u.w;
  const T* g = u.g;
  T* m = u.m;
  T* v = u.v;
  T* vmax = u.vmax;
#pragma omp simd
  for (std::int64_t i = lo; i < hi; ++i) {
    if constexpr (kDecay == Decay::decoupled) w[i] *= u.decay;  // p <- (1 - lr wd) p
    T d = g[i];
    if constexpr (kDecay == Decay::l2) d += u.wd * w[i];        // g <- g + wd p
    m[i] = u.b1 * m[i] + u.one_b1 * d;                          // m <- beta1 m + (1 - beta1) g
    v[i] = u.b2 * v[i] + u.one_b2 * d * d;                      // v <- beta2 v + (1 - beta2) g^2
    T vhat = v[i];
    if constexpr (kAmsgrad) vhat = vmax[i] = std::max(vmax[i], v[i]);
    const T denom = std::sqrt(vhat) / u.c2 + u.e;               // sqrt(v / (1 - beta2^t)) + eps
    w[i] -= u.alpha * (m[i] / denom);                           // p <- p - lr / (1 - beta1^t) * m / denom
  }
}

template <class T, Decay kDecay>
void update_range(const Update<T>& u, bool amsgrad, std::int64_t lo, std::int64_t hi) {
  if (amsgrad)
    update_range<T, kDecay, true>(u, lo, hi);
  else
    update_range<T, kDecay, false>(u, lo, hi);
}

template <class T>
void update_range(const Update<T>& u, Decay decay, bool amsgrad, std::int64_t lo, std::int64_t hi) {
  switch (decay) {
    case Decay::none: update_range<T, Decay::none>(u, amsgrad, lo, hi); break;
    case Decay::l2: update_range<T, Decay::l2>(u, amsgrad, lo, hi); break;
    case Decay::decoupled: update_range<T, Decay::decoupled>(u, amsgrad, lo, hi); break;
  }
}

}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamOptions options)
    : Adam(std::vector<ParamGroup>{ParamGroup(std::move(params))}, options) {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions options) : Adam("Adam", std::move(groups), to_hyper(options), false) {}

Adam::Adam(const char* name, std::vector<ParamGroup> groups, Hyper defaults, bool decoupled)
    : Optimizer(name, std::move(groups), std::move(defaults), kAdamBuffers), decoupled_(decoupled) {
  check_all_groups();
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options)
    : AdamW(std::vector<ParamGroup>{ParamGroup(std::move(params))}, options) {}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options)
    : Adam("AdamW", std::move(groups), to_hyper(options), true) {}

void Adam::check_group(const ParamGroup& g, std::size_t index) const {
  const std::string w = who(index);
  require_nonneg(w, g, "lr");
  require_nonneg(w, g, "eps");
  require_in_unit(w, g, "beta1");
  require_in_unit(w, g, "beta2");
  require_nonneg(w, g, "weight_decay");
}

void Adam::step() {
  for_each_update([&](ParamGroup& group, Tensor& p, const Tensor& grad, ParamState& st) {
    const double lr = group.get("lr"), beta1 = group.get("beta1"), beta2 = group.get("beta2"), eps = group.get("eps"),
                 weight_decay = group.get("weight_decay");
    const bool amsgrad = group.get("amsgrad") != 0;
    const std::int64_t t = ++st.step;
    // Bias corrections of the zero-initialized moments.
    const double bias1 = 1.0 - std::pow(beta1, static_cast<double>(t));
    const double bias2 = 1.0 - std::pow(beta2, static_cast<double>(t));
    const double step_size = lr / bias1, bias2_sqrt = std::sqrt(bias2);
    const std::int64_t n = p.numel();
    dispatch_float(p.dtype(), name().c_str(), [&](auto tag) {
      using T = decltype(tag);
      const Update<T> u{p.data<T>(),
                        grad.data<T>(),
                        buffer(st, "exp_avg", p).template data<T>(),
                        buffer(st, "exp_avg_sq", p).template data<T>(),
                        amsgrad ? buffer(st, "max_exp_avg_sq", p).template data<T>() : nullptr,
                        static_cast<T>(beta1),
                        static_cast<T>(beta2),
                        static_cast<T>(1.0 - beta1),
                        static_cast<T>(1.0 - beta2),
                        static_cast<T>(eps),
                        static_cast<T>(weight_decay),
                        static_cast<T>(1.0 - lr * weight_decay),
                        static_cast<T>(step_size),
                        static_cast<T>(bias2_sqrt)};
      const Decay decay = weight_decay == 0 ? Decay::none : (decoupled_ ? Decay::decoupled : Decay::l2);
      // in blocks of kBlock elements, split across threads when there are many
      constexpr std::int64_t kBlock = 4096;
      detail::parallel_for((n + kBlock - 1) / kBlock, n > detail::kParallelGrain, [&](std::int64_t k) {
        update_range(u, decay, amsgrad, k * kBlock, std::min(n, (k + 1) * kBlock));
      });
    });
  });
}

}  // namespace ng::optim
