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
// gradgradcheck (below) checks second derivatives the same way.
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
  // Names of the inputs in reports and errors ("input 2" when empty or missing); the
  // module-level check (layers/module.h) names the parameters by their state_dict keys.
  std::vector<std::string> input_names{};
};

struct GradcheckInputReport {
  std::size_t input = 0;  // position in the inputs list
  std::string name;       // "input 0", or its name from GradcheckOptions::input_names ("0.weight")
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
  // gradgradcheck: the worst output element named by its first derivative, "(d<v,fn>/d in1)[2, 0]".
  std::string worst_output_name;
};

struct GradcheckReport {
  bool passed = true;
  std::string error;  // why the check could not run or failed before comparing (if any)
  std::vector<std::string> warnings;
  std::vector<GradcheckInputReport> inputs;
  GradcheckOptions options;
  int order = 1;  // 2: made by gradgradcheck (the outputs checked are first derivatives)
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

// gradgradcheck: second derivatives against finite differences of first derivatives (like
// torch.autograd.gradgradcheck). With a random output gradient v (drawn from opt.seed) it defines
//     g(inputs) = concat_i flatten( d<v, fn(inputs)>/d inputs[i] )   over the inputs requiring grad,
// computed by ng::grad with create_graph, and checks g as gradcheck checks fn: the analytic
// Jacobian of g comes from backpropagating through the recorded backward (double backward),
// the numeric one from central differences of g. The options mean what they mean for
// gradcheck. A backward that computes a derivative value outside the tape (a raw kernel, a
// detached tensor) has a right first derivative and a wrong second one: this check reports it.
// A function linear in its inputs has a constant first derivative; its analytic second
// derivative is then zero, and the numeric one must agree.
GradcheckReport gradgradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions opt = {});

}  // namespace ng

template <> struct fmt::formatter<ng::GradcheckReport> : fmt::formatter<std::string_view> {
  auto format(const ng::GradcheckReport& r, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(r.to_string(), ctx);
  }
};
