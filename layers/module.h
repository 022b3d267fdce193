// Module: the base of every layer, with PyTorch's vocabulary. A module owns named
// parameters (tensors that require grad and that optimizers update), named buffers
// (state that is saved but not trained: running_mean, running_var, ...) and named child
// modules. Hierarchical names join with dots ("features.0.weight", "bn1.running_mean") and
// are the state_dict keys PyTorch uses for the same structure.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/random.h"

namespace ng::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// What load_state_dict did not load (PyTorch's IncompatibleKeys): with strict=false these
// are returned; with strict=true either list non-empty is an error.
struct IncompatibleKeys {
  std::vector<std::string> missing_keys;     // in the model, not in the state dict (left as they were)
  std::vector<std::string> unexpected_keys;  // in the state dict, not in the model (ignored)
  bool empty() const { return missing_keys.empty() && unexpected_keys.empty(); }
  std::string to_string() const;  // "<All keys matched successfully>" or both lists
};

// How load_state_dict matches keys. Prefixes change the state dict's keys before matching:
// strip_prefix is removed from every key that starts with it (other keys are kept, as
// torch.nn.modules.utils.consume_prefix_in_state_dict_if_present), then add_prefix is put
// in front of every key. {.strip_prefix = "module."} loads a DataParallel checkpoint;
// {.strip_prefix = "net.", .add_prefix = "body."} renames one submodule.
struct LoadOptions {
  bool strict = true;
  std::string strip_prefix{};
  std::string add_prefix{};
};

// The same key changes as free functions, for a state dict in hand.
NamedTensors strip_prefix(NamedTensors sd, std::string_view prefix);
NamedTensors add_prefix(NamedTensors sd, std::string_view prefix);

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The layer's computation. Modules with other signatures (recurrent ones) add overloads.
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }

  // PyTorch-style type name and the text inside the parentheses of the printed tree.
  virtual std::string type_name() const = 0;
  virtual std::string extra_repr() const { return {}; }

  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  // Puts m in the place of the child registered as `name` (same name; used by
  // dist::convert_sync_batchnorm). A module that also keeps its own pointer to that child
  // updates it in child_replaced (Sequential does); ValueError if there is no such child.
  void replace_child(const std::string& name, std::shared_ptr<Module> m);
  // Every module below (and including) this one, with its dotted name ("" for this one).
  std::vector<std::pair<std::string, Module*>> named_modules();

  // Parameters then buffers, in registration order, with dotted names (PyTorch's order).
  NamedTensors state_dict() const;
  // Copies values in with PyTorch's rules (layers/load_state_dict.cpp):
  //  - a floating or integer value converts to the model's dtype on copy (float64 into a
  //    float32 model rounds; a float into an int64 buffer must hold whole numbers);
  //  - a shape mismatch is always an error, naming every one;
  //  - strict: a missing or unexpected key is an error too; strict=false loads what
  //    matches and returns the missing and unexpected keys;
  //  - BatchNorm: a missing num_batches_tracked (older checkpoints) loads as 0.
  // Every problem is listed in one ValueError, with a hint when the mismatched keys differ
  // by a prefix. All values are checked and converted before any is copied: when the load
  // fails, the model is unchanged.
  IncompatibleKeys load_state_dict(const NamedTensors& sd, bool strict = true);
  IncompatibleKeys load_state_dict(const NamedTensors& sd, const LoadOptions& opt);

  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();
  std::int64_t num_parameters(bool only_trainable = false) const;
  // Converts parameters and buffers (in place: handles held elsewhere see the change).
  void to(DType d);

  // The printable tree, like PyTorch's repr (also: fmt::print("{}", module)).
  std::string repr(int indent = 0) const;

 protected:
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  virtual void child_replaced(const std::string& /*name*/, const std::shared_ptr<Module>& /*m*/) {}
  // Replace a registered parameter/buffer (e.g. set bias to none): same name, new tensor.
  void replace_tensor(const std::string& name, Tensor t);
  // Called by load_state_dict for every module before keys are matched, with the module's
  // key prefix ("bn1." or ""): a layer may add or rewrite entries of an older format here
  // (PyTorch's _load_from_state_dict). BatchNorm fills a missing num_batches_tracked.
  virtual void upgrade_state_dict(const std::string& prefix, std::map<std::string, Tensor>& entries) const;

 private:
  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

using ModulePtr = std::shared_ptr<Module>;

namespace detail {
// Layers take a dtype for their parameters (the `dtype` argument or option, as PyTorch's
// factory kwarg); trained parameters need a floating one.
inline void check_param_dtype(DType d, std::string_view layer) {
  if (!is_floating(d))
    fail<DTypeError>("{}: dtype must be float32 or float64 (its parameters are trained): got {}", layer, d);
}
}  // namespace detail

// Sequential: applies its children in order; children are named "0", "1", ... as in PyTorch.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<ModulePtr> layers);
  template <class... Ms>
  explicit Sequential(std::shared_ptr<Ms>... ms) : Sequential(std::vector<ModulePtr>{ms...}) {}
  void push_back(ModulePtr m);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  std::size_t size() const { return layers_.size(); }
  Module& operator[](std::size_t i) const { return *layers_.at(i); }

 protected:
  void child_replaced(const std::string& name, const std::shared_ptr<Module>& m) override;

 private:
  std::vector<ModulePtr> layers_;
};

// Module-level gradcheck: the output of m.forward(input) w.r.t. the input (if it requires
// grad) and every parameter. Buffers (running statistics) are snapshotted, reset before each
// evaluation so every perturbed forward sees the same state, and restored exactly at the end:
// a BatchNorm checked in training mode keeps its running statistics.
GradcheckReport gradcheck(Module& m, const Tensor& input, GradcheckOptions opt = {});

}  // namespace ng::nn

// For Module and every class derived from it (fmt::print("{}", net) with net a Sequential).
template <class M>
struct fmt::formatter<M, char, std::enable_if_t<std::is_base_of_v<ng::nn::Module, M>>>
    : fmt::formatter<std::string_view> {
  auto format(const ng::nn::Module& m, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(m.repr(), ctx);
  }
};
