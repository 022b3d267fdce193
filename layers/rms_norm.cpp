#include "layers/rms_norm.h"

#include "layers/norm_util.h"

namespace ng::nn {

RMSNorm::RMSNorm(RMSNormOptions opt) : opt_(std::move(opt)) {
  if (opt_.normalized_shape().ndim() == 0) fail<ValueError>("RMSNorm: normalized_shape must have at least one dim");
  for (auto d : opt_.normalized_shape()) detail::check_positive(d, "every size in normalized_shape", "RMSNorm");
  if (opt_.eps()) detail::check_eps(*opt_.eps(), "RMSNorm");
  detail::check_param_dtype(opt_.dtype(), "RMSNorm");
  weight = register_parameter("weight", opt_.elementwise_affine() ? ones(opt_.normalized_shape(), opt_.dtype()) : Tensor());
}

std::string RMSNorm::extra_repr() const {
  return fmt::format("{}, eps={}, elementwise_affine={}", detail::py_tuple(opt_.normalized_shape()),
                     detail::py_float(opt_.eps()), detail::py_bool(opt_.elementwise_affine()));
}

Tensor RMSNorm::forward(const Tensor& x) {
  // The functional op checks the input against normalized_shape (validation happens once).
  const Shape& ns = opt_.normalized_shape();
  return rms_norm(x, ns, weight, opt_.eps());
}

}  // namespace ng::nn
