#include "layers/layer_norm.h"

#include "layers/norm_util.h"

namespace ng::nn {

LayerNorm::LayerNorm(LayerNormOptions opt) : opt_(std::move(opt)) {
  if (opt_.normalized_shape().ndim() == 0) fail<ValueError>("LayerNorm: normalized_shape must have at least one dim");
  for (auto d : opt_.normalized_shape()) detail::check_positive(d, "every size in normalized_shape", "LayerNorm");
  detail::check_eps(opt_.eps(), "LayerNorm");
  detail::check_param_dtype(opt_.dtype(), "LayerNorm");
  const bool affine = opt_.elementwise_affine();
  weight = register_parameter("weight", affine ? ones(opt_.normalized_shape(), opt_.dtype()) : Tensor());
  bias = register_parameter("bias", affine && opt_.bias() ? zeros(opt_.normalized_shape(), opt_.dtype()) : Tensor());
}

std::string LayerNorm::extra_repr() const {
  return fmt::format("{}, eps={}, elementwise_affine={}", detail::py_tuple(opt_.normalized_shape()),
                     detail::py_float(opt_.eps()), detail::py_bool(opt_.elementwise_affine()));
}

Tensor LayerNorm::forward(const Tensor& x) {
  // The functional op checks the input against normalized_shape (validation happens once).
  const Shape& ns = opt_.normalized_shape();
  return layer_norm(x, ns, weight, bias, opt_.eps());
}

}  // namespace ng::nn
