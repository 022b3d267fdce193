#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace ng::optim {

// ---- LRScheduler --------------------------------------------------------------------------

LRScheduler::LRScheduler(Optimizer& opt, std::string name) : opt_(&opt), name_(std::move(name)) {
  for (ParamGroup& g : opt_->param_groups()) {
    if (!g.has("initial_lr")) g.set("initial_lr", g.lr());  // PyTorch's setdefault
    base_lrs_.push_back(g.get("initial_lr"));
  }
}

void LRScheduler::initial_step() { step(); }

void LRScheduler::step() {
  const std::size_t n_groups = opt_->param_groups().size();
  if (n_groups != base_lrs_.size())
    fail<ValueError>("{}: the optimizer's number of param groups changed since the schedule was made: {} vs {}", name_,
                     base_lrs_.size(), n_groups);
  const std::int64_t epoch = last_epoch_ + 1;
  std::vector<double> lrs(n_groups);
  for (std::size_t g = 0; g < n_groups; ++g) lrs[g] = lr_at(g, epoch);  // may throw: nothing changed yet
  last_epoch_ = epoch;
  apply_lrs(lrs);
  on_step(epoch);
}

void LRScheduler::apply_lrs(const std::vector<double>& lrs) {
  auto& groups = opt_->param_groups();
  for (std::size_t g = 0; g < groups.size() && g < lrs.size(); ++g) groups[g].set("lr", lrs[g]);
  last_lr_ = lrs;
}

NamedTensors LRScheduler::state_dict() const {
  const auto n = static_cast<std::int64_t>(base_lrs_.size());
  return {{"last_epoch", scalar(static_cast<double>(last_epoch_), DType::i64)},
          {"base_lrs", from_vector(base_lrs_, Shape{n}, DType::f64)},
          {"last_lr", from_vector(last_lr_, Shape{n}, DType::f64)}};
}

void LRScheduler::load_state_dict(const NamedTensors& sd) {
  const std::size_t n_groups = opt_->param_groups().size();
  std::int64_t epoch = 0;
  std::vector<double> base, last;
  bool has_epoch = false;
  for (const auto& [key, t] : sd) {
    if (!t.defined()) fail<ValueError>("{}: load_state_dict: key '{}' holds an undefined tensor", name_, key);
    if (key == "last_epoch") {
      if (t.numel() != 1) fail<ValueError>("{}: load_state_dict: 'last_epoch' must hold one value, got shape {}", name_, t.shape());
      epoch = static_cast<std::int64_t>(t.item());
      has_epoch = true;
    } else if (key == "base_lrs" || key == "last_lr") {
      if (t.numel() != static_cast<std::int64_t>(n_groups))
        fail<ValueError>("{}: load_state_dict: '{}' must hold one value per param group: {} vs {}", name_, key, n_groups,
                         t.numel());
      (key == "base_lrs" ? base : last) = t.to_vector();
    } else {
      fail<ValueError>("{}: load_state_dict: unexpected key '{}'", name_, key);
    }
  }
  if (!has_epoch || base.empty() || last.empty())
    fail<ValueError>("{}: load_state_dict: missing key '{}'", name_, !has_epoch ? "last_epoch" : base.empty() ? "base_lrs" : "last_lr");
  last_epoch_ = epoch;
  base_lrs_ = std::move(base);
  apply_lrs(last);
  if (last_epoch_ >= 0) on_step(last_epoch_);
}

// ---- closed-form schedules -----------------------------------------------------------------

StepLR::StepLR(Optimizer& opt, std::int64_t step_size, double gamma)
    : LRScheduler(opt, "StepLR"), step_size_(step_size), gamma_(gamma) {
  if (step_size < 1) fail<ValueError>("StepLR: step_size must be >= 1, got {}", step_size);
  initial_step();
}

double StepLR::lr_at(std::size_t group, std::int64_t epoch) const {
  // base_lr * gamma^floor(epoch / step_size)
  return base_lrs_[group] * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

MultiStepLR::MultiStepLR(Optimizer& opt, std::vector<std::int64_t> milestones, double gamma)
    : LRScheduler(opt, "MultiStepLR"), milestones_(std::move(milestones)), gamma_(gamma) {
  std::sort(milestones_.begin(), milestones_.end());
  initial_step();
}

double MultiStepLR::lr_at(std::size_t group, std::int64_t epoch) const {
  // base_lr * gamma^(milestones passed), PyTorch's bisect_right
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin();
  return base_lrs_[group] * std::pow(gamma_, static_cast<double>(passed));
}

ExponentialLR::ExponentialLR(Optimizer& opt, double gamma) : LRScheduler(opt, "ExponentialLR"), gamma_(gamma) {
  initial_step();
}

double ExponentialLR::lr_at(std::size_t group, std::int64_t epoch) const {
  return base_lrs_[group] * std::pow(gamma_, static_cast<double>(epoch));  // base_lr * gamma^epoch
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& opt, std::int64_t T_max, double eta_min)
    : LRScheduler(opt, "CosineAnnealingLR"), T_max_(T_max), eta_min_(eta_min) {
  if (T_max < 1) fail<ValueError>("CosineAnnealingLR: T_max must be >= 1, got {}", T_max);
  initial_step();
}

double CosineAnnealingLR::lr_at(std::size_t group, std::int64_t epoch) const {
  // eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2
  const double c = std::cos(std::numbers::pi * static_cast<double>(epoch) / static_cast<double>(T_max_));
  return eta_min_ + (base_lrs_[group] - eta_min_) * (1.0 + c) / 2.0;
}

LinearLR::LinearLR(Optimizer& opt, double start_factor, double end_factor, std::int64_t total_iters)
    : LRScheduler(opt, "LinearLR"), start_factor_(start_factor), end_factor_(end_factor), total_iters_(total_iters) {
  if (!(start_factor > 0 && start_factor <= 1))
    fail<ValueError>("LinearLR: start_factor must be in (0, 1], got {}", start_factor);
  if (!(end_factor >= 0 && end_factor <= 1)) fail<ValueError>("LinearLR: end_factor must be in [0, 1], got {}", end_factor);
  if (total_iters < 1) fail<ValueError>("LinearLR: total_iters must be >= 1, got {}", total_iters);
  initial_step();
}

double LinearLR::lr_at(std::size_t group, std::int64_t epoch) const {
  // base_lr (start + (end - start) min(epoch, total_iters) / total_iters)
  const double frac = static_cast<double>(std::min(epoch, total_iters_)) / static_cast<double>(total_iters_);
  return base_lrs_[group] * (start_factor_ + (end_factor_ - start_factor_) * frac);
}

// ---- OneCycleLR ---------------------------------------------------------------------------

OneCycleLR::OneCycleLR(Optimizer& opt, OneCycleOptions options) : LRScheduler(opt, "OneCycleLR"), o_(std::move(options)) {
  if (o_.total_steps > 0) {
    total_steps_ = o_.total_steps;
  } else if (o_.total_steps == 0 && o_.epochs > 0 && o_.steps_per_epoch > 0) {
    total_steps_ = o_.epochs * o_.steps_per_epoch;
  } else {
    fail<ValueError>("OneCycleLR: total_steps must be > 0 (or epochs and steps_per_epoch both > 0), got total_steps {}, "
                     "epochs {}, steps_per_epoch {}",
                     o_.total_steps, o_.epochs, o_.steps_per_epoch);
  }
  if (!(o_.pct_start >= 0 && o_.pct_start <= 1)) fail<ValueError>("OneCycleLR: pct_start must be in [0, 1], got {}", o_.pct_start);
  if (!(o_.div_factor > 0)) fail<ValueError>("OneCycleLR: div_factor must be > 0, got {}", o_.div_factor);
  if (!(o_.final_div_factor > 0)) fail<ValueError>("OneCycleLR: final_div_factor must be > 0, got {}", o_.final_div_factor);
  auto& groups = opt_->param_groups();
  if (o_.max_lr.size() != 1 && o_.max_lr.size() != groups.size())
    fail<ValueError>("OneCycleLR: max_lr needs one value or one per param group: {} vs {}", groups.size(), o_.max_lr.size());
  if (o_.cycle_momentum) {
    use_beta1_ = opt_->defaults().count("beta1") != 0;
    if (!use_beta1_ && opt_->defaults().count("momentum") == 0)
      fail<ValueError>("OneCycleLR: cycle_momentum needs an optimizer with momentum or beta1, {} has neither", opt_->name());
  }
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const double max_lr = o_.max_lr.size() == 1 ? o_.max_lr[0] : o_.max_lr[g];
    if (!(max_lr >= 0)) fail<ValueError>("OneCycleLR: max_lr must be >= 0, got {}", max_lr);
    max_lrs_.push_back(max_lr);
    base_lrs_[g] = max_lr / o_.div_factor;                    // initial_lr
    min_lrs_.push_back(base_lrs_[g] / o_.final_div_factor);  // min_lr
    groups[g].set("initial_lr", base_lrs_[g]).set("max_lr", max_lr).set("min_lr", min_lrs_[g]);
  }
  const double up_end = o_.pct_start * static_cast<double>(total_steps_) - 1.0;
  const double last = static_cast<double>(total_steps_) - 1.0;
  const double mmax = o_.max_momentum, mbase = o_.base_momentum;
  if (o_.three_phase) {
    phases_ = {{up_end, 0, 1, mmax, mbase},
               {2.0 * o_.pct_start * static_cast<double>(total_steps_) - 2.0, 1, 0, mbase, mmax},
               {last, 0, 2, mmax, mmax}};
  } else {
    phases_ = {{up_end, 0, 1, mmax, mbase}, {last, 1, 2, mbase, mmax}};
  }
  initial_step();
}

double OneCycleLR::anneal(double a, double b, double x) const {
  if (o_.anneal_cos) return b + (a - b) / 2.0 * (std::cos(std::numbers::pi * x) + 1.0);  // cos from a to b
  return (b - a) * x + a;                                                                   // linear from a to b
}

const OneCycleLR::Phase& OneCycleLR::phase_at(std::int64_t epoch, double& x) const {
  if (epoch > total_steps_)
    fail<ValueError>("OneCycleLR: tried to step {} times, but total_steps is {}", epoch, total_steps_);
  const auto e = static_cast<double>(epoch);
  double start = 0.0;
  for (std::size_t i = 0; i < phases_.size(); ++i) {
    const Phase& ph = phases_[i];
    if (e <= ph.end_step || i + 1 == phases_.size()) {
      x = ph.end_step == start ? 1.0 : (e - start) / (ph.end_step - start);
      return ph;
    }
    start = ph.end_step;
  }
  return phases_.back();  // not reached
}

double OneCycleLR::lr_at(std::size_t group, std::int64_t epoch) const {
  double x = 0.0;
  const Phase& ph = phase_at(epoch, x);
  auto value = [&](int which) { return which == 0 ? base_lrs_[group] : which == 1 ? max_lrs_[group] : min_lrs_[group]; };
  return anneal(value(ph.start), value(ph.end), x);
}

double OneCycleLR::momentum_at(std::int64_t epoch) const {
  double x = 0.0;
  const Phase& ph = phase_at(epoch, x);
  return anneal(ph.start_momentum, ph.end_momentum, x);
}

void OneCycleLR::on_step(std::int64_t epoch) {
  if (!o_.cycle_momentum) return;
  const double m = momentum_at(epoch);
  for (ParamGroup& g : opt_->param_groups()) g.set(use_beta1_ ? "beta1" : "momentum", m);
}

// ---- SequentialLR -------------------------------------------------------------------------

SequentialLR::SequentialLR(Optimizer& opt, std::vector<std::shared_ptr<LRScheduler>> schedulers,
                           std::vector<std::int64_t> milestones)
    : LRScheduler(opt, "SequentialLR"), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
  if (schedulers_.empty()) fail<ValueError>("SequentialLR: needs at least one schedule");
  if (milestones_.size() + 1 != schedulers_.size())
    fail<ValueError>("SequentialLR: needs one milestone fewer than schedules: {} vs {} milestones for {} schedules",
                     schedulers_.size() - 1, milestones_.size(), schedulers_.size());
  for (std::size_t k = 0; k < schedulers_.size(); ++k) {
    if (!schedulers_[k]) fail<ValueError>("SequentialLR: schedule {} is null", k);
    if (&schedulers_[k]->optimizer() != &opt)
      fail<ValueError>("SequentialLR: schedule {} ({}) belongs to a different optimizer", k, schedulers_[k]->name());
  }
  for (std::size_t k = 0; k < milestones_.size(); ++k)
    if (milestones_[k] < 1 || (k > 0 && milestones_[k] <= milestones_[k - 1]))
      fail<ValueError>("SequentialLR: milestones must be positive and increasing, got {} at position {}", milestones_[k], k);
  initial_step();
}

std::size_t SequentialLR::active(std::int64_t epoch, std::int64_t& local) const {
  const auto k = static_cast<std::size_t>(std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin());
  local = k == 0 ? epoch : epoch - milestones_[k - 1];  // each schedule restarts from its epoch 0
  return k;
}

double SequentialLR::lr_at(std::size_t group, std::int64_t epoch) const {
  std::int64_t local = 0;
  const std::size_t k = active(epoch, local);
  return schedulers_[k]->lr_at(group, local);
}

void SequentialLR::on_step(std::int64_t epoch) {
  std::int64_t local = 0;
  const std::size_t k = active(epoch, local);
  schedulers_[k]->on_step(local);
}

NamedTensors SequentialLR::state_dict() const {
  NamedTensors out = LRScheduler::state_dict();
  for (std::size_t k = 0; k < schedulers_.size(); ++k)
    for (auto& [key, t] : schedulers_[k]->state_dict()) out.emplace_back(fmt::format("schedulers.{}.{}", k, key), t);
  return out;
}

void SequentialLR::load_state_dict(const NamedTensors& sd) {
  NamedTensors own;
  std::vector<NamedTensors> child(schedulers_.size());
  for (const auto& [key, t] : sd) {
    if (key.rfind("schedulers.", 0) != 0) {
      own.emplace_back(key, t);
      continue;
    }
    const std::size_t dot = key.find('.', 11);
    const std::string index = key.substr(11, dot == std::string::npos ? std::string::npos : dot - 11);
    if (dot == std::string::npos || index.empty() || index.find_first_not_of("0123456789") != std::string::npos ||
        std::stoull(index) >= schedulers_.size())
      fail<ValueError>("SequentialLR: load_state_dict: unexpected key '{}'", key);
    child[std::stoull(index)].emplace_back(key.substr(dot + 1), t);
  }
  for (std::size_t k = 0; k < schedulers_.size(); ++k) schedulers_[k]->load_state_dict(child[k]);
  LRScheduler::load_state_dict(own);  // last: its lrs are the ones that stay in the optimizer
}

}  // namespace ng::optim
