// Learning-rate schedules, as torch.optim.lr_scheduler: StepLR, MultiStepLR, ExponentialLR,
// CosineAnnealingLR, LinearLR (linear warmup), OneCycleLR, and SequentialLR to run one
// schedule after another (warmup, then cosine).
//
// Semantics (PyTorch's): constructing a schedule records each group's starting lr as
// "initial_lr" in the group (kept if a group already has one, so several schedules on one
// optimizer share it; these are the base_lrs) and applies epoch 0, i.e. sets each group's
// lr to the schedule's value at epoch 0. Each step() then advances last_epoch by one and
// sets lr = schedule(last_epoch). Call step() once per epoch after the optimizer's step()
// (OneCycleLR: once per batch). get_last_lr() returns the lrs last set.
//
// Every lr here is PyTorch's closed form of the schedule (its _get_closed_form_lr), a function
// of base_lr and last_epoch only. PyTorch's step() uses a recursive form instead; the two
// agree up to rounding unless the lr is changed by hand between steps.
//
//     ng::optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
//     auto warmup = std::make_shared<ng::optim::LinearLR>(opt, 0.1, 1.0, 5);
//     auto cosine = std::make_shared<ng::optim::CosineAnnealingLR>(opt, 95);
//     ng::optim::SequentialLR sched(opt, {warmup, cosine}, {5});
//     for (epoch ...) { train_one_epoch(); sched.step(); }
//
// A schedule refers to its optimizer, which must outlive it.
//
// ---- state_dict format ----
//   "last_epoch"  int64 0-d        "base_lrs"  float64 [groups]    "last_lr"  float64 [groups]
//   SequentialLR adds "schedulers.<k>.<key>" for each of its schedules.
// load_state_dict() restores these and also writes last_lr (and OneCycleLR's momentum) into
// the optimizer's groups, so it does not matter whether the optimizer's state is loaded
// before or after. The schedule's own settings (step_size, T_max, ...) are not stored: build
// the schedule with the same arguments, then load.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "optim/optimizer.h"

namespace ng::optim {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // last_epoch += 1, then set every group's lr to lr_at(group, last_epoch).
  void step();
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  std::int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  const std::string& name() const { return name_; }
  Optimizer& optimizer() const { return *opt_; }
  // The schedule's lr for param group `group` at `epoch` (closed form; no side effects).
  virtual double lr_at(std::size_t group, std::int64_t epoch) const = 0;

  virtual NamedTensors state_dict() const;
  virtual void load_state_dict(const NamedTensors& sd);

 protected:
  LRScheduler(Optimizer& opt, std::string name);
  // Applies epoch 0; every derived constructor calls it last (lr_at is virtual).
  void initial_step();
  // Anything else a step sets besides lr (OneCycleLR: momentum).
  virtual void on_step(std::int64_t /*epoch*/) {}

  Optimizer* opt_;
  std::string name_;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;
  std::int64_t last_epoch_ = -1;

 private:
  void apply_lrs(const std::vector<double>& lrs);
  friend class SequentialLR;
};

// lr = base_lr * gamma^floor(epoch / step_size)
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& opt, std::int64_t step_size, double gamma = 0.1);
  double lr_at(std::size_t group, std::int64_t epoch) const override;

 private:
  std::int64_t step_size_;
  double gamma_;
};

// lr = base_lr * gamma^(number of milestones <= epoch); a repeated milestone counts twice.
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& opt, std::vector<std::int64_t> milestones, double gamma = 0.1);
  double lr_at(std::size_t group, std::int64_t epoch) const override;

 private:
  std::vector<std::int64_t> milestones_;  // sorted
  double gamma_;
};

// lr = base_lr * gamma^epoch
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& opt, double gamma);
  double lr_at(std::size_t group, std::int64_t epoch) const override;

 private:
  double gamma_;
};

// lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2   (SGDR, Loshchilov &
// Hutter 2017, without restarts). Past T_max the cosine continues (it rises again), as PyTorch.
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& opt, std::int64_t T_max, double eta_min = 0.0);
  double lr_at(std::size_t group, std::int64_t epoch) const override;

 private:
  std::int64_t T_max_;
  double eta_min_;
};

// Linear warmup (or decay) of the lr's factor:
// lr = base_lr * (start_factor + (end_factor - start_factor) * min(epoch, total_iters) / total_iters)
// Errors: start_factor outside (0, 1], end_factor outside [0, 1], total_iters < 1.
class LinearLR : public LRScheduler {
 public:
  explicit LinearLR(Optimizer& opt, double start_factor = 1.0 / 3, double end_factor = 1.0, std::int64_t total_iters = 5);
  double lr_at(std::size_t group, std::int64_t epoch) const override;

 private:
  double start_factor_, end_factor_;
  std::int64_t total_iters_;
};

// The 1cycle policy (Smith & Topin 2018), stepped once per batch. With initial_lr =
// max_lr / div_factor and min_lr = initial_lr / final_div_factor, over total_steps steps:
//   two phases (default):  initial_lr -> max_lr  until step pct_start*total_steps - 1,
//                          max_lr -> min_lr      until step total_steps - 1;
//   three_phase:           initial_lr -> max_lr  until pct_start*total_steps - 1,
//                          max_lr -> initial_lr  until 2*pct_start*total_steps - 2,
//                          initial_lr -> min_lr  until total_steps - 1;
// each phase annealed from its start value a to its end value b at fraction x of the phase by
//   cos:    b + (a - b) * (1 + cos(pi x)) / 2        linear: a + (b - a) x.
// cycle_momentum moves momentum (or Adam's beta1) the opposite way, max_momentum ->
// base_momentum -> max_momentum. Stepping past total_steps throws ValueError.
struct OneCycleOptions {
  std::vector<double> max_lr;       // one for all groups, or one per group
  std::int64_t total_steps = 0;     // or epochs * steps_per_epoch if 0
  std::int64_t epochs = 0;
  std::int64_t steps_per_epoch = 0;
  double pct_start = 0.3;
  bool anneal_cos = true;           // false: linear annealing
  bool cycle_momentum = true;
  double base_momentum = 0.85;
  double max_momentum = 0.95;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  bool three_phase = false;
};

class OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(Optimizer& opt, OneCycleOptions options);
  double lr_at(std::size_t group, std::int64_t epoch) const override;
  // The momentum (or beta1) the schedule sets at `epoch`.
  double momentum_at(std::int64_t epoch) const;
  std::int64_t total_steps() const { return total_steps_; }

 protected:
  void on_step(std::int64_t epoch) override;

 private:
  struct Phase {
    double end_step;
    int start, end;  // 0 = initial_lr, 1 = max_lr, 2 = min_lr
    double start_momentum, end_momentum;
  };
  // Finds the phase of `epoch` and the fraction x of it done.
  const Phase& phase_at(std::int64_t epoch, double& x) const;
  double anneal(double a, double b, double x) const;

  OneCycleOptions o_;
  std::int64_t total_steps_;
  std::vector<double> max_lrs_, min_lrs_;  // initial_lr is base_lrs_
  std::vector<Phase> phases_;
  bool use_beta1_ = false;
};

// Runs schedulers[0] until epoch milestones[0], then schedulers[1] with its epoch counted
// from 0 again, and so on (torch.optim.lr_scheduler.SequentialLR). All schedules must be on
// this optimizer; milestones.size() == schedulers.size() - 1, increasing.
class SequentialLR : public LRScheduler {
 public:
  SequentialLR(Optimizer& opt, std::vector<std::shared_ptr<LRScheduler>> schedulers, std::vector<std::int64_t> milestones);
  double lr_at(std::size_t group, std::int64_t epoch) const override;
  NamedTensors state_dict() const override;
  void load_state_dict(const NamedTensors& sd) override;

 protected:
  void on_step(std::int64_t epoch) override;

 private:
  // The active schedule at `epoch` and its local epoch.
  std::size_t active(std::int64_t epoch, std::int64_t& local) const;
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<std::int64_t> milestones_;
};

}  // namespace ng::optim
