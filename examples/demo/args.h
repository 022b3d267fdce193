// Command lines of the demos: --flag value / --flag=value / --switch (see Args).
#pragma once
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>

namespace demo {

// Options are declared with a default and a help line; parse() accepts "--name value",
// "--name=value" and, for switches, "--name". Unknown options and missing values throw
// std::invalid_argument with the usage text. given(name) says whether the user set it.
class Args {
 public:
  Args(std::string program, std::string description) : program_(std::move(program)), description_(std::move(description)) {}

  Args& option(const std::string& name, const std::string& default_value, const std::string& help) {
    specs_.push_back({name, default_value, help, false});
    values_[name] = default_value;
    return *this;
  }
  Args& flag(const std::string& name, const std::string& help) {
    specs_.push_back({name, "", help, true});
    values_[name] = "0";
    return *this;
  }

  // Returns false if --help was asked for (the usage has been printed).
  bool parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "-h" || a == "--help") {
        fmt::print("{}", usage());
        return false;
      }
      if (a.rfind("--", 0) != 0) throw std::invalid_argument(fmt::format("unexpected argument '{}'\n{}", a, usage()));
      std::string name = a.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      const Spec* s = find(name);
      if (!s) throw std::invalid_argument(fmt::format("unknown option '--{}'\n{}", name, usage()));
      if (s->is_flag) {
        value = has_value ? value : "1";
      } else if (!has_value) {
        if (i + 1 >= argc) throw std::invalid_argument(fmt::format("option '--{}' needs a value\n{}", name, usage()));
        value = argv[++i];
      }
      values_[name] = value;
      given_.insert(name);
    }
    return true;
  }

  std::string str(const std::string& name) const { return values_.at(name); }
  void set(const std::string& name, const std::string& value) { values_.at(name) = value; }
  bool on(const std::string& name) const { return values_.at(name) == "1" || values_.at(name) == "true"; }
  bool given(const std::string& name) const { return given_.count(name) != 0; }
  std::int64_t integer(const std::string& name) const {
    const std::string& v = values_.at(name);
    std::size_t used = 0;
    std::int64_t x = 0;
    try {
      x = std::stoll(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != v.size() || v.empty()) throw std::invalid_argument(fmt::format("--{}: expected an integer, got '{}'", name, v));
    return x;
  }
  double real(const std::string& name) const {
    const std::string& v = values_.at(name);
    std::size_t used = 0;
    double x = 0;
    try {
      x = std::stod(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != v.size() || v.empty()) throw std::invalid_argument(fmt::format("--{}: expected a number, got '{}'", name, v));
    return x;
  }

  std::string usage() const {
    std::string u = fmt::format("usage: {} [options]\n{}\n\noptions:\n", program_, description_);
    for (const Spec& s : specs_) {
      std::string left = s.is_flag ? "--" + s.name : fmt::format("--{} {}", s.name, s.default_value.empty() ? "X" : s.default_value);
      u += fmt::format("  {:<26} {}\n", left, s.help);
    }
    return u;
  }

 private:
  struct Spec {
    std::string name, default_value, help;
    bool is_flag;
  };
  const Spec* find(const std::string& name) const {
    for (const Spec& s : specs_)
      if (s.name == name) return &s;
    return nullptr;
  }
  std::string program_, description_;
  std::vector<Spec> specs_;
  std::map<std::string, std::string> values_;
  std::set<std::string> given_;
};

}  // namespace demo
