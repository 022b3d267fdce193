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
      T* w = p.data<T>();
      const T* g = grad.data<T>();
      T* m = buffer(st, "exp_avg", p).template data<T>();
      T* v = buffer(st, "exp_avg_sq", p).template data<T>();
      T* vmax = amsgrad ? buffer(st, "max_exp_avg_sq", p).template data<T>() : nullptr;
      const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2), one_b1 = static_cast<T>(1.0 - beta1),
              one_b2 = static_cast<T>(1.0 - beta2), e = static_cast<T>(eps), wd = static_cast<T>(weight_decay),
              decay = static_cast<T>(1.0 - lr * weight_decay), alpha = static_cast<T>(step_size),
              c2 = static_cast<T>(bias2_sqrt);
      const bool l2 = !decoupled_ && weight_decay != 0, decoupled = decoupled_ && weight_decay != 0;
      detail::parallel_for(n, n > detail::kParallelGrain, [&](std::int64_t i) {
        if (decoupled) w[i] *= decay;                  // p <- (1 - lr wd) p
        const T d = l2 ? g[i] + wd * w[i] : g[i];      // g <- g + wd p
        m[i] = b1 * m[i] + one_b1 * d;                 // m <- beta1 m + (1 - beta1) g
        v[i] = b2 * v[i] + one_b2 * d * d;             // v <- beta2 v + (1 - beta2) g^2
        T vhat = v[i];
        if (vmax) vhat = vmax[i] = std::max(vmax[i], v[i]);
        const T denom = std::sqrt(vhat) / c2 + e;      // sqrt(v / (1 - beta2^t)) + eps
        w[i] -= alpha * (m[i] / denom);                // p <- p - lr / (1 - beta1^t) * m / denom
      });
    });
  });
}

}  // namespace ng::optim
