// gradcheck: compare the tape's analytic gradients with central finite differences.
//
//   auto report = ng::gradcheck([](const std::vector<Tensor>& x) { return ng::tanh(x[0]); }, {x});
//   fmt::print("{}", report);          // per input: max abs/rel error, worst element
//   CHECK_MESSAGE(report.passed, report);   // from doctest: the report lands in the output
//
// Full mode builds both Jacobians: the analytic one row by row through vector-Jacobian
// products (ng::grad with one-hot output gradients), the numeric one column by column,
//   J[:, j] ~ (f(x + eps e_j) - f(x - eps e_j)) / (2 eps).
// Fast mode compares one random projection v^T J u per input instead: one backward and two
// forwards per input, for inputs too large for the full Jacobian. Random (not all-ones)
// projections matter: sum(layer_norm(x)) has zero gradient, which would hide any bug.
// An element passes when |analytic - numeric| <= atol + rtol * |numeric| (as torch.allclose).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace ng {

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step (PyTorch's default)
  double atol = 1e-5;  // PyTorch's defaults
  double rtol = 1e-3;
  bool fast_mode = false;           // random projections instead of full Jacobians
  std::int64_t fast_mode_above = 0;  // >0: use fast mode automatically when an input has more elements
  bool raise = false;               // throw GradcheckError (with the report) instead of returning
  bool allow_float32 = false;       // float32 inputs are refused unless this is set
  bool check_determinism = true;    // fn(x) twice must give the same output
  std::uint64_t seed = 0;           // for fast mode's random projections
};

struct GradcheckInputReport {
  std::size_t input = 0;  // position in the inputs list
  Shape shape;
  bool checked = false;  // false: the input does not require grad
  bool passed = true;
  bool fast = false;     // checked with a random projection
  double max_abs_error = 0;
  double max_rel_error = 0;
  // The worst element (largest |a - n| / (atol + rtol |n|)):
  std::vector<std::int64_t> worst_input_index;   // index into the input (full mode)
  std::vector<std::int64_t> worst_output_index;  // index into the output (full mode)
  double analytic = 0;
  double numeric = 0;
};

struct GradcheckReport {
  bool passed = true;
  std::string error;  // why the check could not run or failed before comparing (if any)
  std::vector<std::string> warnings;
  std::vector<GradcheckInputReport> inputs;
  GradcheckOptions options;
  explicit operator bool() const { return passed; }
  std::string to_string() const;
};

struct GradcheckError : Error {
  GradcheckError(const std::string& msg, GradcheckReport r) : Error(msg), report(std::move(r)) {}
  GradcheckReport report;
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks d fn(inputs) / d inputs[i] for every input that requires grad. Inputs are perturbed
// in place (and restored bit-exactly), so fn may also close over tensors it reads directly
// (a module's parameters, for the module-level check in layers/module.h).
GradcheckReport gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions opt = {});

}  // namespace ng

template <> struct fmt::formatter<ng::GradcheckReport> : fmt::formatter<std::string_view> {
  auto format(const ng::GradcheckReport& r, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(r.to_string(), ctx);
  }
};
