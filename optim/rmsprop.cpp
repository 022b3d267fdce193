#include "optim/rmsprop.h"

#include <cmath>

#include "autograd/kernels.h"

namespace ng::optim {

namespace {
Hyper to_hyper(const RMSpropOptions& o) {
  return {{"lr", o.lr},
          {"alpha", o.alpha},
          {"eps", o.eps},
          {"weight_decay", o.weight_decay},
          {"momentum", o.momentum},
          {"centered", o.centered ? 1.0 : 0.0}};
}
}  // namespace

RMSprop::RMSprop(std::vector<Tensor> params, RMSpropOptions options)
    : RMSprop(std::vector<ParamGroup>{ParamGroup(std::move(params))}, options) {}

RMSprop::RMSprop(std::vector<ParamGroup> groups, RMSpropOptions options)
    : Optimizer("RMSprop", std::move(groups), to_hyper(options), {"square_avg", "momentum_buffer", "grad_avg"}) {
  check_all_groups();
}

void RMSprop::check_group(const ParamGroup& g, std::size_t index) const {
  const std::string w = who(index);
  require_nonneg(w, g, "lr");
  require_nonneg(w, g, "alpha");
  require_nonneg(w, g, "eps");
  require_nonneg(w, g, "momentum");
  require_nonneg(w, g, "weight_decay");
}

void RMSprop::step() {
  for_each_update([&](ParamGroup& group, Tensor& p, const Tensor& grad, ParamState& st) {
    const double lr = group.get("lr"), alpha = group.get("alpha"), eps = group.get("eps"),
                 weight_decay = group.get("weight_decay"), momentum = group.get("momentum");
    const bool centered = group.get("centered") != 0;
    ++st.step;
    const std::int64_t n = p.numel();
    dispatch_float(p.dtype(), "RMSprop", [&](auto tag) {
      using T = decltype(tag);
      T* w = p.data<T>();
      const T* g = grad.data<T>();
      T* s = buffer(st, "square_avg", p).template data<T>();
      T* a = centered ? buffer(st, "grad_avg", p).template data<T>() : nullptr;
      T* b = momentum > 0 ? buffer(st, "momentum_buffer", p).template data<T>() : nullptr;
      const T al = static_cast<T>(alpha), one_al = static_cast<T>(1.0 - alpha), e = static_cast<T>(eps),
              wd = static_cast<T>(weight_decay), mu = static_cast<T>(momentum), lr_ = static_cast<T>(lr);
      detail::parallel_for(n, n > detail::kParallelGrain, [&](std::int64_t i) {
        const T d = weight_decay != 0 ? g[i] + wd * w[i] : g[i];  // g <- g + wd p
        s[i] = al * s[i] + one_al * d * d;                        // s <- alpha s + (1 - alpha) g^2
        T r;
        if (a) {
          a[i] = al * a[i] + one_al * d;                          // a <- alpha a + (1 - alpha) g
          r = std::sqrt(s[i] - a[i] * a[i]) + e;                  // sqrt(s - a^2) + eps
        } else {
          r = std::sqrt(s[i]) + e;
        }
        if (b) {
          b[i] = mu * b[i] + d / r;                               // b <- mu b + g / r
          w[i] -= lr_ * b[i];
        } else {
          w[i] -= lr_ * (d / r);
        }
      });
    });
  });
}

}  // namespace ng::optim
