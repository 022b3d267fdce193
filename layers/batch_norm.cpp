#include "layers/batch_norm.h"

#include "layers/norm_util.h"

namespace ng::nn {

BatchNormBase::BatchNormBase(BatchNormOptions opt, const char* name) : opt_(opt) {
  detail::check_positive(opt.num_features(), "num_features", name);
  detail::check_eps(opt.eps(), name);
  detail::check_param_dtype(opt.dtype(), name);
  detail::check_momentum(opt.momentum(), name);
  const Shape C{opt.num_features()};
  if (opt.affine()) {
    weight = register_parameter("weight", ones(C, opt.dtype()));
    bias = register_parameter("bias", zeros(C, opt.dtype()));
  } else {
    register_parameter("weight", Tensor());  // registered as None, as PyTorch
    register_parameter("bias", Tensor());
  }
  if (opt.track_running_stats()) {
    running_mean = register_buffer("running_mean", zeros(C, opt.dtype()));
    running_var = register_buffer("running_var", ones(C, opt.dtype()));
    num_batches_tracked = register_buffer("num_batches_tracked", scalar(0, DType::i64));
  }
}

void BatchNormBase::upgrade_state_dict(const std::string& prefix, std::map<std::string, Tensor>& entries) const {
  if (num_batches_tracked.defined()) entries.try_emplace(prefix + "num_batches_tracked", scalar(0, DType::i64));
}

void BatchNormBase::reset_running_stats() {
  if (!opt_.track_running_stats()) return;
  NoGradGuard no_grad;
  running_mean.fill_(0.0);
  running_var.fill_(1.0);
  num_batches_tracked.fill_(0.0);
}

void BatchNormBase::reset_parameters() {
  reset_running_stats();
  if (!opt_.affine()) return;
  NoGradGuard no_grad;
  weight.fill_(1.0);
  bias.fill_(0.0);
}

std::string BatchNormBase::extra_repr() const {
  return fmt::format("{}, eps={}, momentum={}, affine={}, track_running_stats={}", opt_.num_features(),
                     detail::py_float(opt_.eps()), detail::py_float(opt_.momentum()), detail::py_bool(opt_.affine()),
                     detail::py_bool(opt_.track_running_stats()));
}

Tensor BatchNormBase::forward(const Tensor& x) {
  const char* per_channel = check_rank(x);
  const std::int64_t C = x.size(1);
  if (C != opt_.num_features())
    fail<ShapeError>("{}: expected {} channels (num_features) in dim 1 of input of shape {}: expected {} vs actual {}",
                     type_name(), opt_.num_features(), x.shape(), opt_.num_features(), C);
  // Batch statistics in training mode, and always when there are no running statistics.
  const bool use_batch_stats = is_training() || !opt_.track_running_stats();
  if (use_batch_stats && x.numel() == C)
    fail<ValueError>(
        "{}: expected more than 1 value per channel when training: got input of shape {} ({} = 1). The variance of one "
        "value is 0, so the output would not depend on the input; use eval() (running statistics), or GroupNorm / "
        "LayerNorm, which do not normalize over the batch",
        type_name(), x.shape(), per_channel);
  const bool update = is_training() && opt_.track_running_stats();
  if (use_batch_stats && !update)  // batch statistics, nothing to update
    return batch_norm(x, Tensor(), Tensor(), weight, bias, true, opt_.momentum(), opt_.eps());
  return batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats, opt_.momentum(), opt_.eps(),
                    num_batches_tracked);
}

const char* BatchNorm1d::check_rank(const Tensor& x) const {
  if (x.dim() != 2 && x.dim() != 3)
    fail<ShapeError>("BatchNorm1d: expected a 2-d (N, C) or 3-d (N, C, L) input: got shape {}", x.shape());
  return x.dim() == 2 ? "N" : "N*L";
}

const char* BatchNorm2d::check_rank(const Tensor& x) const {
  if (x.dim() != 4) fail<ShapeError>("BatchNorm2d: expected a 4-d (N, C, H, W) input: got shape {}", x.shape());
  return "N*H*W";
}

}  // namespace ng::nn
