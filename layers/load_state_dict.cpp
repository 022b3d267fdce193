// Module::load_state_dict with PyTorch's rules (module.h), in two phases:
//   1. match: change the keys (prefixes), let each layer upgrade old formats, pair each
//      model key with its entry, check shapes, convert values to the model's dtype into
//      temporaries. Every problem is collected; any problem throws one ValueError here.
//   2. commit: copy the temporaries into the model. Nothing in this phase can fail (the
//      destinations are contiguous and of the temporaries' shape and dtype), so a load
//      either changes everything it loads or nothing.
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "layers/module.h"

namespace ng::nn {

std::string IncompatibleKeys::to_string() const {
  if (empty()) return "<All keys matched successfully>";
  return fmt::format("IncompatibleKeys(missing_keys=[{}], unexpected_keys=[{}])", fmt::join(missing_keys, ", "),
                     fmt::join(unexpected_keys, ", "));
}

NamedTensors strip_prefix(NamedTensors sd, std::string_view prefix) {
  if (!prefix.empty())
    for (auto& [k, t] : sd)
      if (k.starts_with(prefix)) k.erase(0, prefix.size());
  return sd;
}

NamedTensors add_prefix(NamedTensors sd, std::string_view prefix) {
  for (auto& [k, t] : sd) k.insert(0, prefix);
  return sd;
}

void Module::upgrade_state_dict(const std::string&, std::map<std::string, Tensor>&) const {}

namespace {

std::string quoted_list(const std::vector<std::string>& keys) {
  std::string s;
  for (const auto& k : keys) s += (s.empty() ? "'" : ", '") + k + "'";
  return s;
}

// The longest prefix ending in '.' shared by all keys ("" if none).
std::string common_dotted_prefix(const std::vector<std::string>& keys) {
  if (keys.empty()) return {};
  std::string p = keys[0];
  for (const auto& k : keys) {
    std::size_t n = 0;
    while (n < p.size() && n < k.size() && p[n] == k[n]) ++n;
    p.resize(n);
  }
  const auto dot = p.rfind('.');
  return dot == std::string::npos ? std::string() : p.substr(0, dot + 1);
}

// The first dotted component ("net.") shared by the most keys.
std::string most_common_head(const std::vector<std::string>& keys) {
  std::map<std::string, int> count;
  for (const auto& k : keys)
    if (const auto dot = k.find('.'); dot != std::string::npos) ++count[k.substr(0, dot + 1)];
  std::string best;
  int n = 0;
  for (const auto& [h, c] : count)
    if (c > n) best = h, n = c;
  return best;
}

// When unexpected keys become the model's keys (of the same shape) after replacing one prefix
// by another, says which LoadOptions would do it. Tries the common and most frequent prefixes
// of the unexpected keys (to strip) and of the missing ones (to add).
std::string prefix_hint(const std::vector<std::string>& missing, const std::vector<std::string>& unexpected,
                        const std::map<std::string, Tensor>& entries,
                        const std::map<std::string, Shape>& model_shapes) {
  if (unexpected.empty()) return {};
  auto fits = [&](const std::string& from, const std::string& to) {
    const auto m = model_shapes.find(to);
    return m != model_shapes.end() && entries.at(from).shape() == m->second;
  };
  std::set<std::string> strips{"", common_dotted_prefix(unexpected), most_common_head(unexpected)};
  std::set<std::string> adds{"", common_dotted_prefix(missing), most_common_head(missing)};
  std::size_t best = 0;
  std::string best_strip, best_add;
  for (const auto& s : strips)
    for (const auto& a : adds) {
      if (s.empty() && a.empty()) continue;
      std::size_t n = 0;
      for (const auto& k : unexpected)
        if (k.starts_with(s) && fits(k, a + k.substr(s.size()))) ++n;
      if (n > best || (n == best && n > 0 && s.size() + a.size() < best_strip.size() + best_add.size()))
        best = n, best_strip = s, best_add = a;
    }
  if (best == 0) return {};
  std::string what, opts;
  if (!best_strip.empty() && !best_add.empty()) {
    what = fmt::format("with '{}' replaced by '{}'", best_strip, best_add);
    opts = fmt::format(".strip_prefix = \"{}\", .add_prefix = \"{}\"", best_strip, best_add);
  } else if (!best_strip.empty()) {
    what = fmt::format("without the prefix '{}'", best_strip);
    opts = fmt::format(".strip_prefix = \"{}\"", best_strip);
  } else {
    what = fmt::format("with the prefix '{}' added", best_add);
    opts = fmt::format(".add_prefix = \"{}\"", best_add);
  }
  return fmt::format(
      "hint: {} of the {} unexpected keys are the model's keys {}: load with "
      "LoadOptions{{{}}} (or nn::strip_prefix / nn::add_prefix on the state dict)",
      best, unexpected.size(), what, opts);
}

// `src` as a contiguous tensor of dtype `to`, detached; "" or the reason it cannot be.
// Floating and integer values convert as Tensor::to does (PyTorch's copy_); into an integer
// dtype only whole numbers are accepted (a float64 num_batches_tracked of 12.0 is fine).
std::string convert(const Tensor& src, DType to, Tensor& out) {
  Tensor s = src.detach();
  if (is_floating(s.dtype()) && !is_floating(to)) {
    const auto v = s.to_vector();
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!(std::trunc(v[i]) == v[i] && std::abs(v[i]) < 9.2e18))  // NaN and inf fail too
        return fmt::format("{} value {} (element {}) is not a whole number for the model's {}", s.dtype(), v[i], i, to);
  }
  out = s.to(to).contiguous().clone().detach();  // a copy of its own, never aliasing the source
  return {};
}

}  // namespace

IncompatibleKeys Module::load_state_dict(const NamedTensors& sd, bool strict) {
  return load_state_dict(sd, LoadOptions{.strict = strict});
}

IncompatibleKeys Module::load_state_dict(const NamedTensors& sd, const LoadOptions& opt) {
  std::vector<std::string> problems;
  // -- the state dict's keys after the prefix changes; duplicates are an error --------------
  std::map<std::string, Tensor> entries;
  std::vector<std::string> order;  // the state dict's order, for the unexpected keys
  for (const auto& [k0, t] : add_prefix(strip_prefix(sd, opt.strip_prefix), opt.add_prefix)) {
    if (!t.defined())
      problems.push_back(fmt::format("'{}' is an undefined tensor", k0));
    else if (!entries.emplace(k0, t).second)
      problems.push_back(fmt::format("duplicate key '{}'", k0));
    else
      order.push_back(k0);
  }
  for (const auto& [prefix, m] : named_modules()) {
    const std::size_t before = entries.size();
    m->upgrade_state_dict(prefix.empty() ? prefix : prefix + ".", entries);
    if (entries.size() != before)
      for (const auto& [k, t] : entries)
        if (std::find(order.begin(), order.end(), k) == order.end()) order.push_back(k);
  }

  // -- match, check shapes, convert ------------------------------------------------------------
  IncompatibleKeys keys;
  std::vector<std::pair<Tensor, Tensor>> commits;  // (model tensor, converted value)
  std::set<std::string> used;
  std::map<std::string, Shape> model_shapes;
  for (const auto& [name, dst] : state_dict()) {
    model_shapes.emplace(name, dst.shape());
    const auto it = entries.find(name);
    if (it == entries.end()) {
      keys.missing_keys.push_back(name);
      continue;
    }
    used.insert(name);
    const Tensor& src = it->second;
    if (src.shape() != dst.shape()) {
      problems.push_back(fmt::format("shape mismatch for '{}': {} in the state dict vs {} in the model", name,
                                     src.shape(), dst.shape()));
      continue;
    }
    if (!dst.is_contiguous()) {
      problems.push_back(fmt::format("'{}': the model's tensor is not contiguous and cannot be loaded in place", name));
      continue;
    }
    Tensor value;
    if (const std::string why = convert(src, dst.dtype(), value); !why.empty()) {
      problems.push_back(fmt::format("'{}': {}", name, why));
      continue;
    }
    commits.emplace_back(dst, std::move(value));
  }
  for (const auto& k : order)
    if (!used.count(k)) keys.unexpected_keys.push_back(k);

  if (opt.strict) {
    if (!keys.missing_keys.empty())
      problems.push_back(
          fmt::format("missing keys ({}): {}", keys.missing_keys.size(), quoted_list(keys.missing_keys)));
    if (!keys.unexpected_keys.empty())
      problems.push_back(
          fmt::format("unexpected keys ({}): {}", keys.unexpected_keys.size(), quoted_list(keys.unexpected_keys)));
  }
  if (!problems.empty()) {
    if (const std::string hint = prefix_hint(keys.missing_keys, keys.unexpected_keys, entries, model_shapes);
        !hint.empty())
      problems.push_back(hint);
    if (opt.strict && !keys.empty())
      problems.push_back(
          "(strict=false loads the keys that match and returns the missing and unexpected ones; "
          "shape mismatches are errors either way)");
    fail<ValueError>("{}.load_state_dict: the state dict does not fit the model; nothing was loaded:\n  {}",
                     type_name(), fmt::join(problems, "\n  "));
  }

  // -- commit ---------------------------------------------------------------------------------
  NoGradGuard no_grad;
  for (auto& [dst, value] : commits) {
    Tensor d = dst;
    d.copy_(value);
  }
  return keys;
}

}  // namespace ng::nn
