#include "layers/group_norm.h"

#include "layers/norm_util.h"

namespace ng::nn {

GroupNorm::GroupNorm(GroupNormOptions opt) : opt_(opt) {
  detail::check_positive(opt.num_groups(), "num_groups", "GroupNorm");
  detail::check_positive(opt.num_channels(), "num_channels", "GroupNorm");
  if (opt.num_channels() % opt.num_groups() != 0)
    fail<ValueError>("GroupNorm: num_channels must be divisible by num_groups: {} channels vs {} groups",
                     opt.num_channels(), opt.num_groups());
  detail::check_eps(opt.eps(), "GroupNorm");
  detail::check_param_dtype(opt.dtype(), "GroupNorm");
  const Shape C{opt.num_channels()};
  weight = register_parameter("weight", opt.affine() ? ones(C, opt.dtype()) : Tensor());
  bias = register_parameter("bias", opt.affine() ? zeros(C, opt.dtype()) : Tensor());
}

std::string GroupNorm::extra_repr() const {
  return fmt::format("{}, {}, eps={}, affine={}", opt_.num_groups(), opt_.num_channels(), detail::py_float(opt_.eps()),
                     detail::py_bool(opt_.affine()));
}

Tensor GroupNorm::forward(const Tensor& x) {
  if (x.dim() < 2) fail<ShapeError>("GroupNorm: expected an input of shape (N, C, *): got {}", x.shape());
  if (x.size(1) != opt_.num_channels())
    fail<ShapeError>("GroupNorm: expected {} channels (num_channels) in dim 1 of input of shape {}: expected {} vs actual {}",
                     opt_.num_channels(), x.shape(), opt_.num_channels(), x.size(1));
  return group_norm(x, opt_.num_groups(), weight, bias, opt_.eps());
}

InstanceNorm2d::InstanceNorm2d(InstanceNormOptions opt) : opt_(opt) {
  detail::check_positive(opt.num_features(), "num_features", "InstanceNorm2d");
  detail::check_eps(opt.eps(), "InstanceNorm2d");
  detail::check_param_dtype(opt.dtype(), "InstanceNorm2d");
  detail::check_momentum(opt.momentum(), "InstanceNorm2d");
  const Shape C{opt.num_features()};
  weight = register_parameter("weight", opt.affine() ? ones(C, opt.dtype()) : Tensor());
  bias = register_parameter("bias", opt.affine() ? zeros(C, opt.dtype()) : Tensor());
  if (opt.track_running_stats()) {
    running_mean = register_buffer("running_mean", zeros(C, opt.dtype()));
    running_var = register_buffer("running_var", ones(C, opt.dtype()));
    num_batches_tracked = register_buffer("num_batches_tracked", scalar(0, DType::i64));
  }
}

void InstanceNorm2d::upgrade_state_dict(const std::string& prefix, std::map<std::string, Tensor>& entries) const {
  if (num_batches_tracked.defined()) entries.try_emplace(prefix + "num_batches_tracked", scalar(0, DType::i64));
}

std::string InstanceNorm2d::extra_repr() const {
  return fmt::format("{}, eps={}, momentum={}, affine={}, track_running_stats={}", opt_.num_features(),
                     detail::py_float(opt_.eps()), detail::py_float(opt_.momentum()), detail::py_bool(opt_.affine()),
                     detail::py_bool(opt_.track_running_stats()));
}

Tensor InstanceNorm2d::forward(const Tensor& x) {
  if (x.dim() == 3) return squeeze(forward(unsqueeze(x, 0)), 0);  // unbatched (C, H, W)
  if (x.dim() != 4)
    fail<ShapeError>("InstanceNorm2d: expected a 4-d (N, C, H, W) or 3-d (C, H, W) input: got shape {}", x.shape());
  if (x.size(1) != opt_.num_features())
    fail<ShapeError>("InstanceNorm2d: expected {} channels (num_features) in dim 1 of input of shape {}: expected {} vs actual {}",
                     opt_.num_features(), x.shape(), opt_.num_features(), x.size(1));
  const bool use_input_stats = is_training() || !opt_.track_running_stats();
  return instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, opt_.momentum(), opt_.eps());
}

}  // namespace ng::nn
