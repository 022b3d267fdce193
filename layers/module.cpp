#include "layers/module.h"

#include <algorithm>
#include <set>
#include <typeinfo>

#include <fmt/ranges.h>

#include "autograd/ops/pool.h"
#include "layers/activation.h"
#include "layers/pool.h"

namespace ng::nn {

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  for (auto& [n, p] : params_)
    if (n == name) fail<ValueError>("{}: parameter '{}' registered twice", type_name(), name);
  if (t.defined()) t.requires_grad_(requires_grad);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  for (auto& [n, b] : buffers_)
    if (n == name) fail<ValueError>("{}: buffer '{}' registered twice", type_name(), name);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  if (!m) fail<ValueError>("{}: child module '{}' is null", type_name(), name);
  children_.emplace_back(name, std::move(m));
}

void Module::replace_child(const std::string& name, std::shared_ptr<Module> m) {
  if (!m) fail<ValueError>("{}: replacement for child module '{}' is null", type_name(), name);
  for (auto& [n, c] : children_)
    if (n == name) {
      c = m;
      child_replaced(name, m);
      return;
    }
  fail<ValueError>("{}: no child module named '{}'", type_name(), name);
}

void Module::replace_tensor(const std::string& name, Tensor t) {
  for (auto* list : {&params_, &buffers_})
    for (auto& [n, v] : *list)
      if (n == name) {
        v = t;
        return;
      }
  fail<ValueError>("{}: no parameter or buffer named '{}'", type_name(), name);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  for (const auto& [n, p] : params_)
    if (p.defined()) out.emplace_back(n, p);
  if (recurse)
    for (const auto& [cn, c] : children_)
      for (auto& [n, p] : c->named_parameters(true)) out.emplace_back(cn + "." + n, p);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, p] : named_parameters(recurse)) out.push_back(p);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  for (const auto& [n, b] : buffers_)
    if (b.defined()) out.emplace_back(n, b);
  if (recurse)
    for (const auto& [cn, c] : children_)
      for (auto& [n, b] : c->named_buffers(true)) out.emplace_back(cn + "." + n, b);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, b] : named_buffers(recurse)) out.push_back(b);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [cn, c] : children_)
    for (auto& [n, m] : c->named_modules()) out.emplace_back(n.empty() ? cn : cn + "." + n, m);
  return out;
}

NamedTensors Module::state_dict() const {
  // PyTorch order: for each module (pre-order), its parameters then its buffers.
  NamedTensors out;
  for (const auto& [n, p] : params_)
    if (p.defined()) out.emplace_back(n, p);
  for (const auto& [n, b] : buffers_)
    if (b.defined()) out.emplace_back(n, b);
  for (const auto& [cn, c] : children_)
    for (auto& [n, t] : c->state_dict()) out.emplace_back(cn + "." + n, t);
  return out;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

void Module::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

std::int64_t Module::num_parameters(bool only_trainable) const {
  std::int64_t n = 0;
  for (auto& p : parameters())
    if (!only_trainable || p.requires_grad()) n += p.numel();
  return n;
}

void Module::to(DType d) {
  NoGradGuard ng;
  auto convert = [d](Tensor& t) {
    if (!t.defined() || t.dtype() == d || !is_floating(t.dtype())) return;
    Tensor c = t.detach().to(d);
    const bool rg = t.requires_grad();
    TensorImpl& impl = t.impl();
    impl.storage = c.impl().storage;
    impl.offset = 0;
    impl.strides = c.strides();
    impl.dtype = d;
    impl.grad.reset();
    impl.requires_grad = rg;
  };
  for (auto& [n, p] : params_) convert(p);
  for (auto& [n, b] : buffers_) convert(b);
  for (auto& [n, c] : children_) c->to(d);
}

std::string Module::repr(int indent) const {
  std::string s = type_name() + "(";
  if (children_.empty()) return s + extra_repr() + ")";
  const std::string pad(static_cast<std::size_t>(indent + 2), ' ');
  if (!extra_repr().empty()) s += "\n" + pad + extra_repr();
  for (const auto& [n, c] : children_) s += "\n" + pad + "(" + n + "): " + c->repr(indent + 2);
  return s + "\n" + std::string(static_cast<std::size_t>(indent), ' ') + ")";
}

Sequential::Sequential(std::vector<ModulePtr> layers) {
  for (auto& m : layers) push_back(std::move(m));
}

void Sequential::push_back(ModulePtr m) {
  add_child(std::to_string(layers_.size()), m);
  layers_.push_back(std::move(m));
}

void Sequential::child_replaced(const std::string& name, const std::shared_ptr<Module>& m) {
  layers_.at(std::stoul(name)) = m;  // children are named "0", "1", ... after their index
}

// A ReLU followed by a MaxPool2d runs as one op, relu_max_pool2d (autograd/ops/pool.h): the
// same values and gradients as the two in turn (ReLU and max commute), with one pass over the
// activations fewer in the forward and in the backward. Every other child runs on its own.
Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    if (i + 1 < layers_.size() && typeid(*layers_[i]) == typeid(ReLU) && typeid(*layers_[i + 1]) == typeid(MaxPool2d)) {
      const auto& pool = static_cast<const MaxPool2d&>(*layers_[i + 1]);
      h = relu_max_pool2d(h, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode);
      ++i;
      continue;
    }
    h = layers_[i]->forward(h);
  }
  return h;
}

namespace {
// Why a module's check cannot run in float32, naming the fix for what was passed: the
// module's parameters (net->to(DType::f64)) and/or the input (input.to(DType::f64)).
std::string float32_refusal(const Module& m, const Tensor& input, const GradcheckOptions& opt) {
  std::vector<std::string> f32;
  for (const auto& [name, p] : m.named_parameters())
    if (p.dtype() == DType::f32) f32.push_back("'" + name + "'");
  const bool input_f32 = input.defined() && input.dtype() == DType::f32;
  if (f32.empty() && !input_f32) return {};
  std::string params;
  if (!f32.empty()) {
    const std::size_t shown = std::min<std::size_t>(f32.size(), 4);
    params = fmt::format("{}{}", fmt::join(f32.begin(), f32.begin() + static_cast<std::ptrdiff_t>(shown), ", "),
                         f32.size() > shown ? fmt::format(" and {} more", f32.size() - shown) : std::string());
  }
  const std::string what = !f32.empty() && input_f32 ? fmt::format("the {}'s parameters ({}) and the input are float32", m.type_name(), params)
                           : !f32.empty()            ? fmt::format("the {}'s parameters {} are float32", m.type_name(), params)
                                                     : std::string("the input is float32");
  const std::string fix = !f32.empty() && input_f32 ? "net->to(DType::f64) and pass input.to(DType::f64)"
                          : !f32.empty()            ? "net->to(DType::f64) (the module in place)"
                                                    : "pass input.to(DType::f64)";
  return fmt::format("{}. Central differences need float64: with eps={:g} a float32 perturbation is at the rounding "
                     "level of float32 (~1e-7 relative). Fix: {}; or set allow_float32 and loosen eps/atol/rtol.",
                     what, opt.eps, fix);
}
}  // namespace

GradcheckReport gradcheck(Module& m, const Tensor& input, GradcheckOptions opt) {
  if (!opt.allow_float32)
    if (std::string why = float32_refusal(m, input, opt); !why.empty()) {
      GradcheckReport r;
      r.passed = false;
      r.error = std::move(why);
      r.options = opt;
      if (opt.raise) throw GradcheckError("gradcheck failed:\n" + r.to_string(), r);
      return r;
    }
  // Reports name the parameters by their state_dict keys.
  const NamedTensors params = m.named_parameters();
  if (opt.input_names.empty()) {
    opt.input_names.push_back("input");
    for (const auto& [name, p] : params) opt.input_names.push_back(name);
  }
  auto bufs = m.buffers();
  std::vector<Tensor> saved;
  for (auto& b : bufs) saved.push_back(b.detach().clone());
  auto restore = [&] {
    NoGradGuard ng;
    for (std::size_t i = 0; i < bufs.size(); ++i) bufs[i].copy_(saved[i]);
  };
  std::vector<Tensor> inputs{input};
  for (const auto& [name, p] : params) inputs.push_back(p);
  GradcheckReport r;
  try {
    r = ng::gradcheck(
        [&](const std::vector<Tensor>& xs) {
          restore();
          return m.forward(xs[0]);
        },
        inputs, opt);
  } catch (...) {
    restore();
    throw;
  }
  restore();
  return r;
}

}  // namespace ng::nn
