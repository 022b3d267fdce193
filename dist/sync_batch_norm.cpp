// SyncBatchNorm's op and module; the math is in the header. The arithmetic is the norm core's
// (autograd/ops/norm_kernels.h) on BatchNorm's view NormSpec::batch(N, C, L): moments per
// process, Chan's merge across processes, the forward with the merged statistics given, the
// backward's two sums per channel, then dx from their global values. This file adds only the
// communication between those pieces.
#include "dist/sync_batch_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/ops/norm_kernels.h"
#include "autograd/tape.h"
#include "dist/dist.h"
#include "layers/norm_util.h"

namespace ng::dist {

namespace {

namespace nk = ng::norm_kernels;

// Per channel: count, mean and m2 of this rank's values into out = [3, C] (counts, means,
// m2s); a rank without values contributes 0, 0, 0.
template <class T>
void local_moments(const T* x, const NormSpec& sp, double* out) {
  const std::int64_t C = sp.num_stats();
  std::fill(out, out + 3 * C, 0.0);
  if (sp.count() == 0) return;
  double* mean = out + C;
  double* m2 = out + 2 * C;
  nk::moments(x, sp, mean, m2);  // m2 holds the biased variance ...
  const auto n = static_cast<double>(sp.count());
  for (std::int64_t c = 0; c < C; ++c) {
    out[c] = n;
    m2[c] *= n;  // ... and now m2 = var * n
  }
}

// y = (x - mean) * rstd * weight + bias with the given (merged) statistics.
template <class T>
void normalize_given(const T* x, const NormSpec& sp, const T* weight, const T* bias, double eps, double* mean,
                     double* var, double* rstd, T* y) {
  if (nk::uses_columns(sp)) {
    for (std::int64_t c = 0; c < sp.num_stats(); ++c) rstd[c] = 1.0 / std::sqrt(var[c] + eps);
    nk::column_normalize(x, sp, mean, rstd, weight, bias, y);
  } else {
    nk::row_forward(x, sp, weight, bias, eps, /*given_stats=*/true, mean, var, rstd, y);
  }
}

// Per channel: sums[c] = sum dy, sums[C + c] = sum dy * xhat over this rank's values.
template <class T>
void backward_sums(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd,
                   double* sums) {
  const std::int64_t C = sp.num_stats();
  std::fill(sums, sums + 2 * C, 0.0);
  if (sp.count() == 0) return;
  if (nk::uses_columns(sp)) nk::column_backward_sums(x, dy, sp, mean, rstd, sums, sums + C);
  else nk::row_backward<T>(x, dy, sp, mean, rstd, nullptr, true, nullptr, sums + C, sums);  // dweight, dbias sums
}

// What the backward needs besides x and weight: the global statistics.
struct Saved {
  std::vector<double> mean, rstd;
  double n = 0;
};

void check_vector(const Tensor& t, const char* what, std::int64_t C, DType d) {
  if (!t.defined()) return;
  if (t.numel() != C)
    fail<ShapeError>("sync_batch_norm: {} must have C = {} elements (one per channel): got shape {}", what, C,
                     t.shape());
  if (t.dtype() != d) fail<DTypeError>("sync_batch_norm: {} has dtype {}, the input {}", what, t.dtype(), d);
  if (!t.is_contiguous()) fail<ValueError>("sync_batch_norm: {} must be contiguous", what);
}

}  // namespace

Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, std::optional<double> momentum, double eps,
                       const Tensor& num_batches_tracked, const ProcessGroupPtr& group) {
  if (!group) fail<ValueError>("sync_batch_norm: the process group is null");
  if (x.dim() < 2) fail<ShapeError>("sync_batch_norm: expected an input (N, C, *) of at least 2 dims: got shape {}", x.shape());
  const DType d = x.dtype();
  if (!is_floating(d)) fail<DTypeError>("sync_batch_norm: expected a floating input (float32 or float64), got {}", d);
  const std::int64_t N = x.size(0), C = x.size(1);
  std::int64_t L = 1;
  for (int i = 2; i < x.dim(); ++i) L *= x.size(i);
  check_vector(weight, "weight", C, d);
  check_vector(bias, "bias", C, d);
  if (running_mean.defined() != running_var.defined())
    fail<ValueError>("sync_batch_norm: give both running_mean and running_var, or neither");
  for (const Tensor* t : {&running_mean, &running_var})
    if (t->defined() && (t->numel() != C || !is_floating(t->dtype()) || !t->is_contiguous()))
      fail<ShapeError>("sync_batch_norm: running statistics must be contiguous floating tensors of C = {} elements: "
                       "got shape {} {}",
                       C, t->shape(), t->dtype());
  if (running_mean.defined() && !momentum && !num_batches_tracked.defined())
    fail<ValueError>("sync_batch_norm: momentum = None (cumulative average) needs num_batches_tracked");
  if (!(eps >= 0)) fail<ValueError>("sync_batch_norm: eps must be >= 0 (it is added to the variance): got {}", eps);

  // Forward, 1: local moments, gathered from every rank, merged in rank order.
  const NormSpec sp = NormSpec::batch(N, C, L);
  const Tensor xc = x.detach().contiguous();
  Tensor local = empty({3, C}, DType::f64);
  dispatch_float(d, "sync_batch_norm", [&](auto tag) {
    using T = decltype(tag);
    local_moments<T>(xc.data<T>(), sp, local.data<double>());
  });
  const Tensor all = group->all_gather(local);  // [R, 3, C]
  const double* g = all.data<double>();
  auto saved = std::make_shared<Saved>();
  const auto Cs = static_cast<std::size_t>(C);
  saved->mean.assign(Cs, 0.0);
  saved->rstd.assign(Cs, 0.0);
  std::vector<double> m2(Cs, 0.0), var(Cs, 0.0);
  double n_total = 0;
  for (std::int64_t c = 0; c < C; ++c) {
    nk::Moments acc;
    for (int r = 0; r < group->size(); ++r) {
      const double* part = g + r * 3 * C;
      if (part[c] > 0) nk::merge(acc, {part[c], part[C + c], part[2 * C + c]});  // Chan, Golub & LeVeque
    }
    const auto i = static_cast<std::size_t>(c);
    saved->mean[i] = acc.mean;
    m2[i] = acc.m2;
    var[i] = acc.n > 0 ? acc.m2 / acc.n : 0.0;  // biased, for normalizing
    n_total = acc.n;
  }
  if (n_total <= 1)
    fail<ValueError>("SyncBatchNorm: expected more than 1 value per channel when training: got {} over all {} ranks "
                     "(this rank's input has shape {}); use eval() (running statistics), or GroupNorm / LayerNorm",
                     n_total, group->size(), x.shape());
  saved->n = n_total;

  // Forward, 2: y = (x - mean) * rstd * weight + bias with the merged statistics.
  Tensor y = empty(x.shape(), d);
  dispatch_float(d, "sync_batch_norm", [&](auto tag) {
    using T = decltype(tag);
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    if (sp.count() > 0)
      normalize_given<T>(xc.data<T>(), sp, pw, pb, eps, saved->mean.data(), var.data(), saved->rstd.data(),
                         y.data<T>());
    else
      for (std::size_t i = 0; i < Cs; ++i) saved->rstd[i] = 1.0 / std::sqrt(var[i] + eps);
  });

  // Running statistics: the same global numbers on every rank.
  if (running_mean.defined()) {
    NoGradGuard no_grad;
    double f = momentum.value_or(0.0);
    if (num_batches_tracked.defined()) {
      Tensor nbt = num_batches_tracked.detach();
      nbt.fill_(nbt.item() + 1);
      if (!momentum) f = 1.0 / nbt.item();
    }
    const double unbias = n_total / (n_total - 1);
    dispatch_float(running_mean.dtype(), "sync_batch_norm", [&](auto tag) {
      using T = decltype(tag);
      T* rm = running_mean.data<T>();
      T* rv = running_var.data<T>();
      for (std::int64_t c = 0; c < C; ++c) {
        const auto i = static_cast<std::size_t>(c);
        rm[c] = static_cast<T>((1 - f) * static_cast<double>(rm[c]) + f * saved->mean[i]);
        rv[c] = static_cast<T>((1 - f) * static_cast<double>(rv[c]) + f * m2[i] / n_total * unbias);
      }
    });
  }

  return record(
      "sync_batch_norm", {x, weight, bias}, y,
      [xc, weight, defined_b = bias.defined(), saved, sp, group](BackwardContext& ctx, const Tensor& dy_in) -> Grads {
        if (ctx.create_graph())
          fail<AutogradError>("sync_batch_norm: double backward (create_graph) is not implemented for the "
                              "communicating op; with one process SyncBatchNorm is BatchNorm, which has it");
        const Tensor dy = dy_in.contiguous();
        const DType dt = xc.dtype();
        const std::int64_t nc = sp.num_stats();  // channels
        const double* mean = saved->mean.data();
        const double* rstd = saved->rstd.data();
        // Backward, 1: this rank's sum dy and sum dy * xhat per channel, then their sums over the ranks.
        Tensor sums = empty({2, nc}, DType::f64);
        dispatch_float(dt, "sync_batch_norm", [&](auto tag) {
          using T = decltype(tag);
          backward_sums<T>(xc.data<T>(), dy.data<T>(), sp, mean, rstd, sums.data<double>());
        });
        Tensor mine = sums.clone();  // the parameter gradients stay local (DDP averages them)
        group->all_reduce(sums, ReduceOp::sum);
        // Backward, 2: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) with dxhat =
        // dy * weight and the global means: mean(dxhat) = weight * SUM dy / n, mean(dxhat * xhat)
        // = weight * SUM dy * xhat / n.
        Tensor dx = empty(xc.shape(), dt);
        Tensor dw, db;
        dispatch_float(dt, "sync_batch_norm", [&](auto tag) {
          using T = decltype(tag);
          const T* pw = weight.defined() ? weight.data<T>() : nullptr;
          const double* S = sums.data<double>();
          std::vector<double> mean_dxhat(static_cast<std::size_t>(nc)), mean_dxhat_xhat(mean_dxhat.size());
          for (std::int64_t c = 0; c < nc; ++c) {
            const double w = pw ? static_cast<double>(pw[c]) : 1.0;
            mean_dxhat[static_cast<std::size_t>(c)] = w * S[c] / saved->n;
            mean_dxhat_xhat[static_cast<std::size_t>(c)] = w * S[nc + c] / saved->n;
          }
          if (sp.count() > 0) {
            if (nk::uses_columns(sp))
              nk::column_dx(xc.data<T>(), dy.data<T>(), sp, mean, rstd, pw, mean_dxhat.data(), mean_dxhat_xhat.data(),
                            dx.data<T>());
            else
              nk::row_dx(xc.data<T>(), dy.data<T>(), sp, mean, rstd, pw, mean_dxhat.data(), mean_dxhat_xhat.data(),
                         dx.data<T>());
          }
          const double* own = mine.data<double>();
          if (weight.defined()) {
            dw = empty({nc}, dt);
            for (std::int64_t c = 0; c < nc; ++c) dw.data<T>()[c] = static_cast<T>(own[nc + c]);
          }
          if (defined_b) {
            db = empty({nc}, dt);
            for (std::int64_t c = 0; c < nc; ++c) db.data<T>()[c] = static_cast<T>(own[c]);
          }
        });
        return {dx, dw, db};
      });
}

nn::ModulePtr convert_sync_batchnorm(nn::ModulePtr module, ProcessGroupPtr process_group) {
  if (!module) fail<ValueError>("convert_sync_batchnorm: the module is null");
  if (auto* bn = dynamic_cast<nn::BatchNormBase*>(module.get()); bn && !dynamic_cast<nn::SyncBatchNorm*>(bn))
    return nn::SyncBatchNorm::from_batch_norm(*bn, process_group);
  for (auto& [name, child] : module->named_children()) {
    nn::ModulePtr converted = convert_sync_batchnorm(child, process_group);
    if (converted != child) module->replace_child(name, converted);
  }
  return module;
}

}  // namespace ng::dist

namespace ng::nn {

SyncBatchNorm::SyncBatchNorm(BatchNormOptions opt, dist::ProcessGroupPtr process_group)
    : BatchNormBase(opt, "SyncBatchNorm"), group_(std::move(process_group)) {}

std::shared_ptr<SyncBatchNorm> SyncBatchNorm::from_batch_norm(const BatchNormBase& bn,
                                                              dist::ProcessGroupPtr process_group) {
  auto m = std::make_shared<SyncBatchNorm>(bn.options(), std::move(process_group));
  // Share bn's tensors: the same parameters (an optimizer holding them keeps working) and buffers.
  for (const char* name : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}) {
    const std::string n = name;
    const Tensor t = n == "weight" ? bn.weight
                     : n == "bias" ? bn.bias
                     : n == "running_mean" ? bn.running_mean
                     : n == "running_var" ? bn.running_var
                                          : bn.num_batches_tracked;
    if (!t.defined()) continue;
    m->replace_tensor(n, t);
  }
  m->weight = bn.weight;
  m->bias = bn.bias;
  m->running_mean = bn.running_mean;
  m->running_var = bn.running_var;
  m->num_batches_tracked = bn.num_batches_tracked;
  m->train(bn.is_training());
  return m;
}

dist::ProcessGroupPtr SyncBatchNorm::process_group() const { return dist::group_or_world(group_); }

const char* SyncBatchNorm::check_rank(const Tensor& x) const {
  if (x.dim() < 2) fail<ShapeError>("SyncBatchNorm: expected an input (N, C, *) of at least 2 dims: got shape {}", x.shape());
  return x.dim() == 2 ? "N" : "N*prod(spatial)";
}

Tensor SyncBatchNorm::forward(const Tensor& x) {
  const dist::ProcessGroupPtr group = process_group();
  const bool use_batch_stats = is_training() || !options().track_running_stats();
  // As PyTorch: communicate only in training mode, with more than one process.
  if (!use_batch_stats || !is_training() || !group || group->size() == 1) return BatchNormBase::forward(x);
  check_rank(x);
  if (x.size(1) != options().num_features())
    fail<ShapeError>("SyncBatchNorm: expected {} channels (num_features) in dim 1 of input of shape {}: expected {} vs "
                     "actual {}",
                     options().num_features(), x.shape(), options().num_features(), x.size(1));
  return dist::sync_batch_norm(x, running_mean, running_var, weight, bias, options().momentum(), options().eps(),
                               num_batches_tracked, group);
}

}  // namespace ng::nn
