// Optimizer: the base of SGD, Adam, AdamW and RMSprop (PyTorch's torch.optim semantics).
//
// An optimizer holds parameter groups. A group is a list of parameters plus its own
// hyperparameters ("lr", "weight_decay", "momentum", ...), stored by PyTorch's names in a
// flat map of doubles (booleans as 0/1, Adam's betas as "beta1"/"beta2"). A key a group
// does not set takes the optimizer's default, so
//
//     ng::optim::SGD opt(ng::optim::split_decay(model.named_parameters(), 5e-4),
//                        {.lr = 0.1, .momentum = 0.9});
//
// trains with weight decay 5e-4 on weight matrices/kernels and none on biases and
// normalization scales/shifts (see split_decay below). Schedules change a group's "lr".
//
// step() updates every parameter that has a gradient, in place on its storage, under
// NoGradGuard; a parameter whose grad is undefined is skipped (as PyTorch). zero_grad()
// sets the gradients to none (PyTorch's default set_to_none=True).
//
// Per-parameter state (momentum buffers, Adam moments, step counts) is created on the
// parameter's first update, as tensors of the parameter's shape and dtype.
//
// ---- state_dict format (flat, every value a tensor: a checkpoint stores it as is) ----
// Parameters are numbered 0, 1, 2, ... in group order (group 0's parameters first), as in
// PyTorch's optimizer.state_dict(). Keys:
//   "state.<i>.step"             int64 0-d   updates applied to parameter i (Adam, AdamW,
//                                            RMSprop; absent for SGD, which counts none)
//   "state.<i>.<buffer>"         tensor with parameter i's shape and dtype:
//                                  SGD      momentum_buffer
//                                  Adam(W)  exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad)
//                                  RMSprop  square_avg, momentum_buffer, grad_avg (centered)
//   "param_groups.<g>.params"    int64 [n_g]  the indices i of group g's parameters
//   "param_groups.<g>.<key>"     float64 0-d  every hyperparameter of group g (lr, ...),
//                                             including keys schedules add (initial_lr, ...)
// A parameter that never had a gradient has no "state.<i>" entries. state_dict() returns
// copies. load_state_dict() checks the group count and sizes, the keys and the shapes, then
// replaces hyperparameters and state (values cast to each parameter's dtype); on any error
// it throws ValueError and leaves the optimizer unchanged. Loaded into a fresh optimizer
// over the same parameters, training continues bit-exactly as if never interrupted.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tape.h"
#include "autograd/tensor.h"

namespace ng::optim {

// The same type as ng::nn::NamedTensors (module.named_parameters(), state dicts).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
// Hyperparameters by name.
using Hyper = std::map<std::string, double>;

struct ParamGroup {
  std::vector<Tensor> params;
  Hyper options;  // overrides; once in an optimizer, every hyperparameter of the group

  ParamGroup() = default;
  ParamGroup(std::vector<Tensor> p, Hyper o = {}) : params(std::move(p)), options(std::move(o)) {}
  // The value of `key`; ValueError if the group has none.
  double get(const std::string& key) const;
  bool has(const std::string& key) const { return options.count(key) != 0; }
  ParamGroup& set(const std::string& key, double value) {
    options[key] = value;
    return *this;
  }
  double lr() const { return get("lr"); }
};

// The usual split for weight decay, as one call: group 0 holds the parameters that decay
// (weight_decay = `weight_decay`), group 1 those that do not (weight_decay = 0): every
// parameter whose name ends in "bias" or that has at most one dimension -- biases and the
// scales/shifts of BatchNorm, LayerNorm, GroupNorm, RMSNorm. An empty group is left out.
//     ng::optim::AdamW opt(ng::optim::split_decay(model.named_parameters(), 0.05), {.lr = 1e-3});
std::vector<ParamGroup> split_decay(const NamedTensors& named_params, double weight_decay);

// Per-parameter optimizer state.
struct ParamState {
  std::int64_t step = 0;                 // updates applied so far
  std::map<std::string, Tensor> buffers;  // exp_avg, momentum_buffer, ...
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient.
  virtual void step() = 0;
  // Sets every parameter's gradient to none.
  void zero_grad();

  const std::string& name() const { return name_; }  // "SGD", "Adam", ...
  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  // Adds a group (missing hyperparameters take the defaults); validated like the first ones.
  void add_param_group(ParamGroup group);
  // The hyperparameters a group gets when it does not set them.
  const Hyper& defaults() const { return defaults_; }
  // State of parameter `index` of group `group` (empty before its first update).
  const ParamState& state(std::size_t group, std::size_t index) const;

  NamedTensors state_dict() const;
  void load_state_dict(const NamedTensors& sd);

 protected:
  // buffer_names: the per-parameter state tensors this optimizer may keep (for loading).
  Optimizer(std::string name, std::vector<ParamGroup> groups, Hyper defaults, std::vector<std::string> buffer_names);
  // Throws ValueError naming the optimizer (and the group) for a bad hyperparameter.
  virtual void check_group(const ParamGroup& g, std::size_t index) const = 0;
  // Derived constructors call this last (check_group is virtual).
  void check_all_groups() const;
  // "SGD" or "SGD (param group 1)" for messages.
  std::string who(std::size_t group) const;
  // Calls f(group, param, grad, state) for every parameter with a gradient, under
  // NoGradGuard; grad is contiguous and matches the parameter's shape and dtype.
  template <class F>
  void for_each_update(F&& f) {
    NoGradGuard no_grad;
    for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
      ParamGroup& g = groups_[gi];
      for (std::size_t k = 0; k < g.params.size(); ++k) {
        Tensor& p = g.params[k];
        Tensor grad = p.grad();
        if (!grad.defined()) continue;
        check_grad(p, grad, gi);
        f(g, p, grad.contiguous(), states_[gi][k]);
      }
    }
  }
  // A state buffer: the existing one, or a new zero tensor shaped like p.
  static Tensor& buffer(ParamState& st, const std::string& key, const Tensor& p);

 private:
  void check_grad(const Tensor& p, const Tensor& grad, std::size_t group) const;
  void check_params(const std::vector<Tensor>& params, std::size_t group) const;

  std::string name_;
  Hyper defaults_;
  std::vector<std::string> buffer_names_;
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<ParamState>> states_;  // [group][index]
};

// Shared validation helpers for hyperparameter checks: throw ValueError("<who>: <key> must
// be <rule>, got <value>").
void require_nonneg(const std::string& who, const ParamGroup& g, const char* key);
void require_in_unit(const std::string& who, const ParamGroup& g, const char* key);  // [0, 1)

}  // namespace ng::optim
