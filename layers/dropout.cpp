#include "layers/dropout.h"

#include "layers/repr.h"

namespace ng::F {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  if (!(p >= 0.0 && p <= 1.0)) fail<ValueError>("dropout: probability has to be between 0 and 1, but got {}", p);
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);  // keeps the graph (zero gradient), like PyTorch
  // mask[i] = 1 / (1 - p) with probability 1 - p, else 0 (a constant: the gradient is g * mask)
  Generator& g = gen ? *gen : default_generator();
  Tensor mask = empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    T* m = mask.data<T>();
    const T keep_scale = static_cast<T>(1.0 / (1.0 - p));
    const std::int64_t n = mask.numel();
    for (std::int64_t i = 0; i < n; ++i) m[i] = g.uniform() < p ? T(0) : keep_scale;
  });
  return mul(x, mask);
}

}  // namespace ng::F

namespace ng::nn {

Dropout::Dropout(double prob, Generator* gen) : p(prob), gen_(gen) {
  if (!(p >= 0.0 && p <= 1.0)) fail<ValueError>("Dropout: probability has to be between 0 and 1, but got {}", p);
}

std::string Dropout::extra_repr() const { return fmt::format("p={}, inplace=False", detail::py_float(p)); }

}  // namespace ng::nn
