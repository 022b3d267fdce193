#include "optim/optimizer.h"

#include <algorithm>
#include <set>

namespace ng::optim {

double ParamGroup::get(const std::string& key) const {
  auto it = options.find(key);
  if (it == options.end()) fail<ValueError>("param group: no hyperparameter '{}'", key);
  return it->second;
}

std::vector<ParamGroup> split_decay(const NamedTensors& named_params, double weight_decay) {
  if (!(weight_decay >= 0)) fail<ValueError>("split_decay: weight_decay must be >= 0, got {}", weight_decay);
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  ParamGroup decay({}, {{"weight_decay", weight_decay}});
  ParamGroup no_decay({}, {{"weight_decay", 0.0}});
  for (const auto& [name, p] : named_params) {
    if (ends_with(name, "bias") || p.dim() <= 1)
      no_decay.params.push_back(p);
    else
      decay.params.push_back(p);
  }
  std::vector<ParamGroup> out;
  if (!decay.params.empty()) out.push_back(std::move(decay));
  if (!no_decay.params.empty()) out.push_back(std::move(no_decay));
  return out;
}

// ---- Optimizer ----------------------------------------------------------------------------

Optimizer::Optimizer(std::string name, std::vector<ParamGroup> groups, Hyper defaults,
                     std::vector<std::string> buffer_names)
    : name_(std::move(name)), defaults_(std::move(defaults)), buffer_names_(std::move(buffer_names)) {
  std::size_t total = 0;
  for (const auto& g : groups) total += g.params.size();
  if (total == 0) fail<ValueError>("{}: got an empty parameter list", name_);
  for (auto& g : groups) {
    check_params(g.params, groups_.size());
    for (const auto& [key, value] : defaults_) g.options.emplace(key, value);  // keeps overrides
    states_.emplace_back(g.params.size());
    groups_.push_back(std::move(g));
  }
}

void Optimizer::check_all_groups() const {
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) check_group(groups_[gi], gi);
}

void Optimizer::add_param_group(ParamGroup group) {
  const std::size_t gi = groups_.size();
  check_params(group.params, gi);
  for (const auto& [key, value] : defaults_) group.options.emplace(key, value);
  check_group(group, gi);
  states_.emplace_back(group.params.size());
  groups_.push_back(std::move(group));
}

std::string Optimizer::who(std::size_t group) const {
  if (groups_.size() <= 1 && group == 0) return name_;
  return fmt::format("{} (param group {})", name_, group);
}

void Optimizer::check_params(const std::vector<Tensor>& params, std::size_t group) const {
  std::set<const TensorImpl*> seen;
  for (const auto& g : groups_)
    for (const auto& p : g.params) seen.insert(&p.impl());
  for (std::size_t k = 0; k < params.size(); ++k) {
    const Tensor& p = params[k];
    if (!p.defined()) fail<ValueError>("{}: param group {}: parameter {} is undefined", name_, group, k);
    if (!p.is_leaf()) fail<ValueError>("{}: param group {}: parameter {} is not a leaf tensor (can't optimize it)", name_, group, k);
    if (!is_floating(p.dtype()))
      fail<DTypeError>("{}: param group {}: parameter {} must be float32 or float64, got {}", name_, group, k, p.dtype());
    if (!seen.insert(&p.impl()).second)
      fail<ValueError>("{}: param group {}: parameter {} appears more than once (in this or another group)", name_, group, k);
  }
}

void Optimizer::check_grad(const Tensor& p, const Tensor& grad, std::size_t group) const {
  if (grad.shape() != p.shape() || grad.dtype() != p.dtype())
    fail<ShapeError>("{}: gradient {} {} does not match parameter {} {}", who(group), grad.shape(), grad.dtype(), p.shape(),
                     p.dtype());
  if (!p.is_contiguous()) fail<ValueError>("{}: parameters must be contiguous, got shape {} with other strides", who(group), p.shape());
}

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

const ParamState& Optimizer::state(std::size_t group, std::size_t index) const {
  if (group >= states_.size() || index >= states_[group].size())
    fail<IndexError>("{}: state: no parameter {} in group {}", name_, index, group);
  return states_[group][index];
}

Tensor& Optimizer::buffer(ParamState& st, const std::string& key, const Tensor& p) {
  auto it = st.buffers.find(key);
  if (it == st.buffers.end()) it = st.buffers.emplace(key, zeros_like(p)).first;
  return it->second;
}

void require_nonneg(const std::string& who, const ParamGroup& g, const char* key) {
  const double v = g.get(key);
  if (!(v >= 0)) fail<ValueError>("{}: {} must be >= 0, got {}", who, key, v);
}

void require_in_unit(const std::string& who, const ParamGroup& g, const char* key) {
  const double v = g.get(key);
  if (!(v >= 0 && v < 1)) fail<ValueError>("{}: {} must be in [0, 1), got {}", who, key, v);
}

// ---- state_dict ---------------------------------------------------------------------------

NamedTensors Optimizer::state_dict() const {
  NoGradGuard no_grad;
  NamedTensors out;
  std::int64_t i = 0;
  for (const auto& group_states : states_)
    for (const ParamState& st : group_states) {
      if (st.step > 0) out.emplace_back(fmt::format("state.{}.step", i), scalar(static_cast<double>(st.step), DType::i64));
      for (const auto& [key, t] : st.buffers) out.emplace_back(fmt::format("state.{}.{}", i, key), t.detach().clone());
      ++i;
    }
  i = 0;
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    std::vector<std::int64_t> index;
    for (std::size_t k = 0; k < groups_[gi].params.size(); ++k) index.push_back(i++);
    const auto n = static_cast<std::int64_t>(index.size());
    out.emplace_back(fmt::format("param_groups.{}.params", gi), from_vector(index, Shape{n}));
    for (const auto& [key, v] : groups_[gi].options)
      out.emplace_back(fmt::format("param_groups.{}.{}", gi, key), scalar(v, DType::f64));
  }
  return out;
}

namespace {
std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}
}  // namespace

void Optimizer::load_state_dict(const NamedTensors& sd) {
  NoGradGuard no_grad;
  const std::string who = name_ + ": load_state_dict";
  // Flat parameter index i -> (group, index in group).
  std::vector<std::pair<std::size_t, std::size_t>> where;
  for (std::size_t gi = 0; gi < groups_.size(); ++gi)
    for (std::size_t k = 0; k < groups_[gi].params.size(); ++k) where.emplace_back(gi, k);

  auto parse_index = [&](const std::string& s, const std::string& key) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
      fail<ValueError>("{}: unexpected key '{}'", who, key);
    return static_cast<std::size_t>(std::stoull(s));
  };
  std::vector<Hyper> hyper(groups_.size());
  std::vector<bool> has_params(groups_.size(), false);
  std::vector<ParamState> states(where.size());

  for (const auto& [key, t] : sd) {
    const auto parts = split_key(key);
    if (parts.size() != 3 || (parts[0] != "state" && parts[0] != "param_groups"))
      fail<ValueError>("{}: unexpected key '{}'", who, key);
    if (!t.defined()) fail<ValueError>("{}: key '{}' holds an undefined tensor", who, key);
    const std::size_t idx = parse_index(parts[1], key);
    const std::string& field = parts[2];
    if (parts[0] == "state") {
      if (idx >= where.size())
        fail<ValueError>("{}: key '{}' names parameter {}, but the optimizer has {} parameters", who, key, idx, where.size());
      const Tensor& p = groups_[where[idx].first].params[where[idx].second];
      if (field == "step") {
        if (t.numel() != 1) fail<ValueError>("{}: '{}' must hold one value, got shape {}", who, key, t.shape());
        states[idx].step = static_cast<std::int64_t>(t.item());
        continue;
      }
      if (std::find(buffer_names_.begin(), buffer_names_.end(), field) == buffer_names_.end())
        fail<ValueError>("{}: unexpected key '{}' ({} keeps no state named '{}')", who, key, name_, field);
      if (t.shape() != p.shape())
        fail<ValueError>("{}: '{}' does not match its parameter's shape: {} vs {}", who, key, p.shape(), t.shape());
      states[idx].buffers[field] = t.detach().to(p.dtype()).clone();
    } else {
      if (idx >= groups_.size())
        fail<ValueError>("{}: key '{}' names param group {}, but the optimizer has {} groups", who, key, idx, groups_.size());
      if (field == "params") {
        if (t.numel() != static_cast<std::int64_t>(groups_[idx].params.size()))
          fail<ValueError>("{}: param group {} has a different number of parameters: {} vs {} saved", who, idx,
                           groups_[idx].params.size(), t.numel());
        has_params[idx] = true;
      } else {
        if (t.numel() != 1) fail<ValueError>("{}: '{}' must hold one value, got shape {}", who, key, t.shape());
        hyper[idx][field] = t.item();
      }
    }
  }
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    if (!has_params[gi])
      fail<ValueError>("{}: missing key 'param_groups.{}.params' (the saved state has fewer param groups)", who, gi);
    for (const auto& [key, v] : defaults_)
      if (hyper[gi].count(key) == 0) fail<ValueError>("{}: missing key 'param_groups.{}.{}'", who, gi, key);
    check_group(ParamGroup(groups_[gi].params, hyper[gi]), gi);
  }
  // Everything checked: commit.
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) groups_[gi].options = std::move(hyper[gi]);
  for (std::size_t i = 0; i < where.size(); ++i) states_[where[i].first][where[i].second] = std::move(states[i]);
}

}  // namespace ng::optim
