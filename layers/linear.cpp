#include "layers/linear.h"

#include <cmath>

#include "layers/init.h"
#include "layers/repr.h"

namespace ng::nn {

Linear::Linear(std::int64_t in, std::int64_t out, bool has_bias, Generator* gen, DType dtype)
    : in_features(in), out_features(out) {
  if (in < 0 || out < 0) fail<ValueError>("Linear: feature counts must be non-negative, got in={} out={}", in, out);
  detail::check_param_dtype(dtype, "Linear");
  weight = register_parameter("weight", empty({out, in}, dtype));
  if (has_bias) bias = register_parameter("bias", empty({out}, dtype));
  else register_parameter("bias", Tensor());
  reset_parameters(gen);
}

void Linear::reset_parameters(Generator* gen) {
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::fan_in, "leaky_relu", gen);
  if (bias.defined()) {
    const double bound = in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Tensor& x) {
  if (x.dim() == 0 || x.size(-1) != in_features)
    fail<ShapeError>("Linear({}): input {} has {} features: expected {} vs actual {}", extra_repr(), x.shape(),
                     x.dim() ? x.size(-1) : 0, in_features, x.dim() ? x.size(-1) : 0);
  return linear(x, weight, bias);
}

std::string Linear::extra_repr() const {
  return fmt::format("in_features={}, out_features={}, bias={}", in_features, out_features,
                     detail::py_bool(bias.defined()));
}

}  // namespace ng::nn
