// SyncBatchNorm's op and module; the math is in the header. Kernels view x as (N, C, L)
// (L = product of the trailing sizes): channel c's values are the N runs x[n, c, :] of L
// contiguous elements. Accumulation is in double for float32 input, as in the norm core.
#include "dist/sync_batch_norm.h"

#include <cmath>
#include <vector>

#include "autograd/kernels.h"
#include "autograd/tape.h"
#include "dist/dist.h"
#include "layers/norm_util.h"

namespace ng::dist {

namespace {

struct Shape3 {
  std::int64_t N, C, L;
  bool big() const { return N * C * L > detail::kParallelGrain && C > 1; }
};

// Per channel: count, mean and m2 of this rank's values (two passes over each channel,
// exact; a channel with no values gets 0, 0, 0). out is [3, C]: counts, means, m2s.
template <class T>
void local_moments(const T* x, Shape3 s, double* out) {
  double* cnt = out;
  double* mean = out + s.C;
  double* m2 = out + 2 * s.C;
#pragma omp parallel for schedule(static) if (s.big())
  for (std::int64_t c = 0; c < s.C; ++c) {
    const double n = static_cast<double>(s.N * s.L);
    double sum = 0;
    for (std::int64_t a = 0; a < s.N; ++a) {
      const T* run = x + (a * s.C + c) * s.L;
      for (std::int64_t l = 0; l < s.L; ++l) sum += static_cast<double>(run[l]);
    }
    const double mu = n > 0 ? sum / n : 0.0;
    double ss = 0;
    for (std::int64_t a = 0; a < s.N; ++a) {
      const T* run = x + (a * s.C + c) * s.L;
      for (std::int64_t l = 0; l < s.L; ++l) {
        const double d = static_cast<double>(run[l]) - mu;
        ss += d * d;
      }
    }
    cnt[c] = n;
    mean[c] = mu;
    m2[c] = ss;
  }
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
  Shape3 s{x.size(0), x.size(1), 1};
  for (int i = 2; i < x.dim(); ++i) s.L *= x.size(i);
  check_vector(weight, "weight", s.C, d);
  check_vector(bias, "bias", s.C, d);
  if (running_mean.defined() != running_var.defined())
    fail<ValueError>("sync_batch_norm: give both running_mean and running_var, or neither");
  for (const Tensor* t : {&running_mean, &running_var})
    if (t->defined() && (t->numel() != s.C || !is_floating(t->dtype()) || !t->is_contiguous()))
      fail<ShapeError>("sync_batch_norm: running statistics must be contiguous floating tensors of C = {} elements: "
                       "got shape {} {}",
                       s.C, t->shape(), t->dtype());
  if (running_mean.defined() && !momentum && !num_batches_tracked.defined())
    fail<ValueError>("sync_batch_norm: momentum = None (cumulative average) needs num_batches_tracked");
  if (!(eps > 0)) fail<ValueError>("sync_batch_norm: eps must be > 0: got {}", eps);

  // Forward, 1: local moments, gathered from every rank, merged in rank order.
  const Tensor xc = x.detach().contiguous();
  Tensor local = empty({3, s.C}, DType::f64);
  dispatch_float(d, "sync_batch_norm", [&](auto tag) {
    using T = decltype(tag);
    local_moments<T>(xc.data<T>(), s, local.data<double>());
  });
  const Tensor all = group->all_gather(local);  // [R, 3, C]
  const double* g = all.data<double>();
  auto saved = std::make_shared<Saved>();
  saved->mean.assign(static_cast<std::size_t>(s.C), 0.0);
  saved->rstd.assign(static_cast<std::size_t>(s.C), 0.0);
  std::vector<double> m2(static_cast<std::size_t>(s.C), 0.0);
  double n_total = 0;
  for (std::int64_t c = 0; c < s.C; ++c) {
    double n = 0, mean = 0, acc = 0;
    for (int r = 0; r < group->size(); ++r) {
      const double* part = g + r * 3 * s.C;
      const double nb = part[c], mb = part[s.C + c], m2b = part[2 * s.C + c];
      if (nb == 0) continue;
      // Chan, Golub & LeVeque: delta = mean_b - mean_a; mean += delta nb / n; m2 += m2b + delta^2 na nb / n.
      const double nn = n + nb, delta = mb - mean;
      mean += delta * nb / nn;
      acc += m2b + delta * delta * n * nb / nn;
      n = nn;
    }
    const auto i = static_cast<std::size_t>(c);
    saved->mean[i] = mean;
    m2[i] = acc;
    saved->rstd[i] = 1.0 / std::sqrt(acc / std::max(n, 1.0) + eps);
    n_total = n;
  }
  if (n_total <= 1)
    fail<ValueError>("SyncBatchNorm: expected more than 1 value per channel when training: got {} over all {} ranks "
                     "(this rank's input has shape {}); use eval() (running statistics), or GroupNorm / LayerNorm",
                     n_total, group->size(), x.shape());
  saved->n = n_total;

  // Forward, 2: y = (x - mean) * rstd * weight + bias.
  Tensor y = empty(x.shape(), d);
  dispatch_float(d, "sync_batch_norm", [&](auto tag) {
    using T = decltype(tag);
    const T* px = xc.data<T>();
    T* py = y.data<T>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
#pragma omp parallel for schedule(static) if (s.big())
    for (std::int64_t c = 0; c < s.C; ++c) {
      const auto i = static_cast<std::size_t>(c);
      const double scale = saved->rstd[i] * (pw ? static_cast<double>(pw[c]) : 1.0);
      const double shift = (pb ? static_cast<double>(pb[c]) : 0.0) - saved->mean[i] * scale;
      for (std::int64_t a = 0; a < s.N; ++a) {
        const std::int64_t o = (a * s.C + c) * s.L;
        for (std::int64_t l = 0; l < s.L; ++l) py[o + l] = static_cast<T>(static_cast<double>(px[o + l]) * scale + shift);
      }
    }
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
      for (std::int64_t c = 0; c < s.C; ++c) {
        const auto i = static_cast<std::size_t>(c);
        rm[c] = static_cast<T>((1 - f) * static_cast<double>(rm[c]) + f * saved->mean[i]);
        rv[c] = static_cast<T>((1 - f) * static_cast<double>(rv[c]) + f * m2[i] / n_total * unbias);
      }
    });
  }

  return record(
      "sync_batch_norm", {x, weight, bias}, y,
      [xc, weight, defined_b = bias.defined(), saved, s, group](BackwardContext& ctx, const Tensor& dy_in) -> Grads {
        if (ctx.create_graph())
          fail<AutogradError>("sync_batch_norm: double backward (create_graph) is not implemented for the "
                              "communicating op; with one process SyncBatchNorm is BatchNorm, which has it");
        const Tensor dy = dy_in.contiguous();
        const DType dt = xc.dtype();
        // Backward, 1: local sums per channel, then their sums over the ranks.
        Tensor sums = empty({2, s.C}, DType::f64);  // [sum dy ; sum dy * xhat]
        dispatch_float(dt, "sync_batch_norm", [&](auto tag) {
          using T = decltype(tag);
          const T* px = xc.data<T>();
          const T* pdy = dy.data<T>();
          double* sdy = sums.data<double>();
          double* sdyx = sdy + s.C;
#pragma omp parallel for schedule(static) if (s.big())
          for (std::int64_t c = 0; c < s.C; ++c) {
            const auto i = static_cast<std::size_t>(c);
            const double mu = saved->mean[i], rs = saved->rstd[i];
            double a1 = 0, a2 = 0;
            for (std::int64_t a = 0; a < s.N; ++a) {
              const std::int64_t o = (a * s.C + c) * s.L;
              for (std::int64_t l = 0; l < s.L; ++l) {
                const double gy = static_cast<double>(pdy[o + l]);
                a1 += gy;
                a2 += gy * (static_cast<double>(px[o + l]) - mu) * rs;
              }
            }
            sdy[c] = a1;
            sdyx[c] = a2;
          }
        });
        Tensor mine = sums.clone();  // the parameter gradients stay local
        group->all_reduce(sums, ReduceOp::sum);
        // Backward, 2: dx = weight * rstd / n * (n dy - SUM_dy - xhat SUM_dy_xhat).
        Tensor dx = empty(xc.shape(), dt);
        Tensor dw, db;
        dispatch_float(dt, "sync_batch_norm", [&](auto tag) {
          using T = decltype(tag);
          const T* px = xc.data<T>();
          const T* pdy = dy.data<T>();
          const T* pw = weight.defined() ? weight.data<T>() : nullptr;
          T* pdx = dx.data<T>();
          const double* S = sums.data<double>();
          const double n = saved->n;
#pragma omp parallel for schedule(static) if (s.big())
          for (std::int64_t c = 0; c < s.C; ++c) {
            const auto i = static_cast<std::size_t>(c);
            const double mu = saved->mean[i], rs = saved->rstd[i];
            const double k = (pw ? static_cast<double>(pw[c]) : 1.0) * rs / n;
            const double s_dy = S[c], s_dyx = S[s.C + c];
            for (std::int64_t a = 0; a < s.N; ++a) {
              const std::int64_t o = (a * s.C + c) * s.L;
              for (std::int64_t l = 0; l < s.L; ++l) {
                const double xhat = (static_cast<double>(px[o + l]) - mu) * rs;
                pdx[o + l] = static_cast<T>(k * (n * static_cast<double>(pdy[o + l]) - s_dy - xhat * s_dyx));
              }
            }
          }
          if (weight.defined()) {
            dw = empty({s.C}, dt);
            for (std::int64_t c = 0; c < s.C; ++c) dw.data<T>()[c] = static_cast<T>(mine.data<double>()[s.C + c]);
          }
          if (defined_b) {
            db = empty({s.C}, dt);
            for (std::int64_t c = 0; c < s.C; ++c) db.data<T>()[c] = static_cast<T>(mine.data<double>()[c]);
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
