#include "optim/sgd.h"

#include "autograd/kernels.h"

namespace ng::optim {

namespace {
Hyper to_hyper(const SGDOptions& o) {
  return {{"lr", o.lr},
          {"momentum", o.momentum},
          {"dampening", o.dampening},
          {"weight_decay", o.weight_decay},
          {"nesterov", o.nesterov ? 1.0 : 0.0}};
}
}  // namespace

SGD::SGD(std::vector<Tensor> params, SGDOptions options) : SGD(std::vector<ParamGroup>{ParamGroup(std::move(params))}, options) {}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions options)
    : Optimizer("SGD", std::move(groups), to_hyper(options), {"momentum_buffer"}) {
  check_all_groups();
}

void SGD::check_group(const ParamGroup& g, std::size_t index) const {
  const std::string w = who(index);
  require_nonneg(w, g, "lr");
  require_nonneg(w, g, "momentum");
  require_nonneg(w, g, "dampening");
  require_nonneg(w, g, "weight_decay");
  if (g.get("nesterov") != 0 && (g.get("momentum") <= 0 || g.get("dampening") != 0))
    fail<ValueError>("{}: nesterov momentum requires momentum > 0 and dampening 0, got momentum {} and dampening {}", w,
                     g.get("momentum"), g.get("dampening"));
}

void SGD::step() {
  for_each_update([&](ParamGroup& group, Tensor& p, const Tensor& grad, ParamState& st) {
    const double lr = group.get("lr"), momentum = group.get("momentum"), dampening = group.get("dampening"),
                 weight_decay = group.get("weight_decay");
    const bool nesterov = group.get("nesterov") != 0;
    const std::int64_t n = p.numel();
    dispatch_float(p.dtype(), "SGD", [&](auto tag) {
      using T = decltype(tag);
      T* w = p.data<T>();
      const T* g = grad.data<T>();
      const T lr_ = static_cast<T>(lr), wd = static_cast<T>(weight_decay);
      if (momentum == 0) {
        // p <- p - lr * (g + wd p)
        detail::parallel_for(n, n > detail::kParallelGrain, [&](std::int64_t i) {
          const T d = weight_decay != 0 ? g[i] + wd * w[i] : g[i];
          w[i] -= lr_ * d;
        });
        return;
      }
      const bool first = st.buffers.count("momentum_buffer") == 0;
      T* b = buffer(st, "momentum_buffer", p).template data<T>();
      const T mu = static_cast<T>(momentum), one_minus_damp = static_cast<T>(1.0 - dampening);
      detail::parallel_for(n, n > detail::kParallelGrain, [&](std::int64_t i) {
        T d = weight_decay != 0 ? g[i] + wd * w[i] : g[i];
        b[i] = first ? d : mu * b[i] + one_minus_damp * d;  // b <- mu b + (1 - dampening) d
        d = nesterov ? d + mu * b[i] : b[i];
        w[i] -= lr_ * d;
      });
    });
  });
}

}  // namespace ng::optim
