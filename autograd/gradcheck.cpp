#include "autograd/gradcheck.h"

#include <cmath>
#include <cstring>

#include "autograd/ops.h"
#include "autograd/random.h"
#include "autograd/tape.h"

namespace ng {

namespace {

std::vector<std::int64_t> unravel(std::int64_t flat, const Shape& s) {
  std::vector<std::int64_t> idx(s.size());
  for (int d = s.ndim() - 1; d >= 0; --d) {
    const auto du = static_cast<std::size_t>(d);
    idx[du] = s[du] ? flat % s[du] : 0;
    flat = s[du] ? flat / s[du] : 0;
  }
  return idx;
}


Tensor eval_nograd(const GradcheckFn& fn, const std::vector<Tensor>& xs) {
  NoGradGuard ng;
  return fn(xs).detach();
}

std::vector<double> values(const Tensor& t) { return t.to_vector(); }

struct Comparer {
  const GradcheckOptions& opt;
  GradcheckInputReport& rep;
  double worst_ratio = -1;
  void operator()(double a, double n, std::int64_t in_flat, std::int64_t out_flat, const Shape& in_s,
                  const Shape& out_s) {
    const double abs_err = std::abs(a - n);
    const double rel_err = abs_err / std::max(std::abs(n), 1e-300);
    rep.max_abs_error = std::max(rep.max_abs_error, abs_err);
    if (n != 0) rep.max_rel_error = std::max(rep.max_rel_error, rel_err);
    const double ratio = abs_err / (opt.atol + opt.rtol * std::abs(n));
    if (!(ratio <= 1.0)) rep.passed = false;  // NaN fails too
    if (ratio > worst_ratio || std::isnan(ratio)) {
      worst_ratio = std::isnan(ratio) ? INFINITY : ratio;
      rep.analytic = a;
      rep.numeric = n;
      if (in_flat >= 0) rep.worst_input_index = unravel(in_flat, in_s);
      if (out_flat >= 0) rep.worst_output_index = unravel(out_flat, out_s);
    }
  }
};

// "input 2", or the caller's name for it.
std::string input_label(const GradcheckOptions& opt, std::size_t i) {
  if (i < opt.input_names.size() && !opt.input_names[i].empty()) return opt.input_names[i];
  return fmt::format("input {}", i);
}

}  // namespace

std::string GradcheckReport::to_string() const {
  std::string s = fmt::format("{} {} (eps={:g}, atol={:g}, rtol={:g})\n", order == 2 ? "gradgradcheck" : "gradcheck",
                              passed ? "PASSED" : "FAILED", options.eps, options.atol, options.rtol);
  if (order == 2)
    s += fmt::format("  outputs: the first derivatives d<v, fn>/d in (v random, seed {}), differentiated again\n",
                     options.seed);
  if (!error.empty()) s += fmt::format("  error: {}\n", error);
  for (const auto& w : warnings) s += fmt::format("  warning: {}\n", w);
  for (const auto& r : inputs) {
    const std::string label = r.name.empty() ? fmt::format("input {}", r.input) : r.name;
    if (!r.checked) {
      s += fmt::format("  {} {}: not checked (does not require grad)\n", label, r.shape);
      continue;
    }
    s += fmt::format("  {} {}: {}{} max_abs_err={:.3g} max_rel_err={:.3g}", label, r.shape,
                     r.passed ? "ok" : "MISMATCH", r.fast ? " (fast mode, v^T J u)" : "", r.max_abs_error,
                     r.max_rel_error);
    if (!r.fast && !r.worst_input_index.empty() && !r.worst_output_name.empty())
      s += fmt::format("\n    worst: d {} / d {}[{}]: analytic {:.10g} vs numeric {:.10g}", r.worst_output_name,
                       r.name.empty() ? fmt::format("in{}", r.input) : r.name, fmt::join(r.worst_input_index, ", "), r.analytic, r.numeric);
    else if (!r.fast && !r.worst_input_index.empty())
      s += fmt::format("\n    worst: d out[{}] / d {}[{}]: analytic {:.10g} vs numeric {:.10g}",
                       fmt::join(r.worst_output_index, ", "), r.name.empty() ? std::string("in") : r.name,
                       fmt::join(r.worst_input_index, ", "), r.analytic, r.numeric);
    else if (!r.fast && r.worst_output_index.empty() && !r.worst_input_index.empty())
      s += fmt::format("\n    worst: in[{}]: analytic {:.10g} vs numeric {:.10g}", fmt::join(r.worst_input_index, ", "),
                       r.analytic, r.numeric);
    else
      s += fmt::format("\n    analytic {:.10g} vs numeric {:.10g}", r.analytic, r.numeric);
    s += "\n";
  }
  return s;
}

namespace {

// The whole check, without raising. constant_output_ok: an output that does not require grad
// is accepted and its analytic Jacobian is zero (gradgradcheck: the first derivative of a
// function linear in its inputs is a constant, whose derivative the numeric side must find 0).
GradcheckReport check_jacobians(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& opt,
                                bool constant_output_ok) {
  GradcheckReport rep;
  rep.options = opt;
  auto finish = [](GradcheckReport r) { return r; };
  auto refuse = [&](std::string why) {
    rep.passed = false;
    rep.error = std::move(why);
    return finish(rep);
  };

  // -- validate the inputs ------------------------------------------------------------------
  bool any = false;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    any = true;
    const std::string label = input_label(opt, i);
    if (!x.is_leaf()) return refuse(fmt::format("{} is not a leaf tensor (made by '{}'); pass leaves", label, x.grad_fn()->op));
    if (!x.is_contiguous()) return refuse(fmt::format("{} {} is not contiguous", label, x.shape()));
    if (x.dtype() == DType::f32) {
      if (!opt.allow_float32)
        return refuse(fmt::format(
            "{} is float32. Central differences need float64: with eps={:g} a float32 perturbation is at "
            "the rounding level of float32 (~1e-7 relative), so the numeric derivative has almost no correct "
            "digits. Convert the inputs with .to(DType::f64), or set allow_float32 and loosen eps/atol/rtol.",
            label, opt.eps));
      rep.warnings.push_back(fmt::format("{} is float32: expect large finite-difference errors", label));
    }
  }
  if (!any) return refuse("no input requires grad: nothing to check");

  // -- run fn once with the tape on ---------------------------------------------------------
  std::vector<std::vector<double>> before;
  for (const auto& x : inputs) before.push_back(x.defined() ? values(x) : std::vector<double>{});
  Tensor y;
  try {
    y = fn(inputs);
  } catch (const Error& e) {
    return refuse(fmt::format("fn threw: {}", e.what()));
  }
  if (!y.defined()) return refuse("fn returned an undefined tensor");
  if (!is_floating(y.dtype())) return refuse(fmt::format("fn returned a {} tensor", y.dtype()));
  for (std::size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && values(inputs[i]) != before[i])
      return refuse(fmt::format("fn modified {} in place; gradcheck needs a pure function", input_label(opt, i)));
  if (!y.requires_grad() && !constant_output_ok)
    return refuse("the output does not require grad: fn is not differentiable in its inputs");
  if (opt.check_determinism) {
    const auto y1 = values(eval_nograd(fn, inputs)), y2 = values(eval_nograd(fn, inputs)), y0 = values(y);
    if (y1 != y2 || y1 != y0)
      return refuse("fn is not deterministic: two calls with the same inputs gave different outputs "
                    "(a module in training mode with dropout? set check_determinism=false if intended)");
  }
  const Shape out_shape = y.shape();
  const std::int64_t m = y.numel();
  Generator gen(opt.seed);

  for (std::size_t i = 0; i < inputs.size(); ++i) {
    GradcheckInputReport r;
    r.input = i;
    if (i < opt.input_names.size()) r.name = opt.input_names[i];
    if (!inputs[i].defined()) {
      rep.inputs.push_back(r);
      continue;
    }
    const Tensor& x = inputs[i];
    r.shape = x.shape();
    if (!x.requires_grad()) {
      rep.inputs.push_back(r);
      continue;
    }
    r.checked = true;
    const std::int64_t n = x.numel();
    r.fast = opt.fast_mode || (opt.fast_mode_above > 0 && n > opt.fast_mode_above);
    Comparer cmp{opt, r};
    // Perturb x in place; run f; restore the exact bits.
    auto perturbed = [&](const std::function<void(double*)>& change) {
      const DType dt = x.dtype();
      std::vector<unsigned char> saved(static_cast<std::size_t>(n) * dtype_size(dt));
      void* p = static_cast<unsigned char*>(x.impl().storage->data) + x.offset() * static_cast<std::int64_t>(dtype_size(dt));
      std::memcpy(saved.data(), p, saved.size());
      std::vector<double> v = values(x);
      change(v.data());
      if (dt == DType::f64) std::memcpy(p, v.data(), saved.size());
      else
        for (std::int64_t k = 0; k < n; ++k) static_cast<float*>(p)[k] = static_cast<float>(v[static_cast<std::size_t>(k)]);
      // Read the output before restoring x: a view output (slice, transpose) aliases x.
      std::vector<double> out;
      try {
        out = values(eval_nograd(fn, inputs));
      } catch (...) {
        std::memcpy(p, saved.data(), saved.size());
        throw;
      }
      std::memcpy(p, saved.data(), saved.size());
      return out;
    };

    if (r.fast) {
      // v^T J u: analytic = <grad(y; v), u>; numeric = <v, (f(x+eps u) - f(x-eps u)) / 2eps>
      Tensor v = randn(out_shape, y.dtype(), &gen);
      std::vector<double> u(static_cast<std::size_t>(n));
      for (auto& e : u) e = gen.normal();
      Tensor g = y.requires_grad() ? grad({y}, {x}, {v}, BackwardOptions{true, false}, true)[0] : Tensor();
      double analytic = 0;
      if (g.defined()) {
        auto gv = values(g);
        for (std::int64_t k = 0; k < n; ++k) analytic += gv[static_cast<std::size_t>(k)] * u[static_cast<std::size_t>(k)];
      }
      auto yp = perturbed([&](double* d) { for (std::int64_t k = 0; k < n; ++k) d[k] += opt.eps * u[static_cast<std::size_t>(k)]; });
      auto ym = perturbed([&](double* d) { for (std::int64_t k = 0; k < n; ++k) d[k] -= opt.eps * u[static_cast<std::size_t>(k)]; });
      auto vv = values(v);
      double numeric = 0;
      for (std::int64_t o = 0; o < m; ++o)
        numeric += vv[static_cast<std::size_t>(o)] * (yp[static_cast<std::size_t>(o)] - ym[static_cast<std::size_t>(o)]) / (2 * opt.eps);
      cmp(analytic, numeric, -1, -1, x.shape(), out_shape);
      rep.passed = rep.passed && r.passed;
      rep.inputs.push_back(r);
      continue;
    }

    // Numeric Jacobian, column j = d y / d x_j  (m x n, row-major by output).
    std::vector<double> num(static_cast<std::size_t>(m * n));
    for (std::int64_t j = 0; j < n; ++j) {
      auto yp = perturbed([&](double* d) { d[j] += opt.eps; });
      auto ym = perturbed([&](double* d) { d[j] -= opt.eps; });
      for (std::int64_t o = 0; o < m; ++o)
        num[static_cast<std::size_t>(o * n + j)] = (yp[static_cast<std::size_t>(o)] - ym[static_cast<std::size_t>(o)]) / (2 * opt.eps);
    }
    // Analytic Jacobian, row o = grad of y[o] (a one-hot output gradient).
    for (std::int64_t o = 0; o < m; ++o) {
      Tensor e = zeros(out_shape, y.dtype());
      if (y.dtype() == DType::f64) e.data<double>()[o] = 1.0;
      else e.data<float>()[o] = 1.0f;
      Tensor g = y.requires_grad() ? grad({y}, {x}, {e}, BackwardOptions{true, false}, true)[0] : Tensor();
      std::vector<double> gv = g.defined() ? values(g) : std::vector<double>(static_cast<std::size_t>(n), 0.0);
      for (std::int64_t j = 0; j < n; ++j) cmp(gv[static_cast<std::size_t>(j)], num[static_cast<std::size_t>(o * n + j)], j, o, x.shape(), out_shape);
    }
    rep.passed = rep.passed && r.passed;
    rep.inputs.push_back(r);
  }
  return finish(rep);
}

}  // namespace

GradcheckReport gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions opt) {
  GradcheckReport rep = check_jacobians(fn, inputs, opt, false);
  if (opt.raise && !rep.passed) throw GradcheckError("gradcheck failed:\n" + rep.to_string(), rep);
  return rep;
}

// g(inputs) = the first derivatives of <v, fn(inputs)>, flattened and concatenated, checked
// with the first-order machinery. Its analytic Jacobian is the double backward (the tape
// differentiating the recorded backward), its numeric one central differences of g.
GradcheckReport gradgradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions opt) {
  GradcheckReport rep;
  rep.options = opt;
  rep.order = 2;
  auto finish = [&](GradcheckReport r) {
    r.order = 2;
    if (opt.raise && !r.passed) throw GradcheckError("gradgradcheck failed:\n" + r.to_string(), r);
    return r;
  };
  auto refuse = [&](std::string why) {
    rep.passed = false;
    rep.error = std::move(why);
    return finish(rep);
  };

  // The inputs g differentiates with respect to (and whose first derivatives it returns).
  std::vector<std::size_t> wrt;
  for (std::size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && inputs[i].requires_grad()) wrt.push_back(i);
  if (wrt.empty()) return refuse("no input requires grad: nothing to check");

  // One forward to learn the output's shape, for the random output gradient v.
  Tensor y0;
  try {
    EnableGradGuard on;
    y0 = fn(inputs);
  } catch (const Error& e) {
    return refuse(fmt::format("fn threw: {}", e.what()));
  }
  if (!y0.defined()) return refuse("fn returned an undefined tensor");
  if (!is_floating(y0.dtype())) return refuse(fmt::format("fn returned a {} tensor", y0.dtype()));
  if (!y0.requires_grad()) return refuse("the output does not require grad: fn is not differentiable in its inputs");
  Generator gen(opt.seed ^ 0x9e3779b97f4a7c15ULL);  // not the stream gradcheck's fast mode draws from
  const Tensor v = randn(y0.shape(), y0.dtype(), &gen);
  y0 = Tensor();

  // g(xs): grad mode on even when gradcheck evaluates g under NoGradGuard (finite differences):
  // the inner grad needs the forward recorded. create_graph records the backward itself.
  const GradcheckFn g = [&fn, &wrt, &v](const std::vector<Tensor>& xs) -> Tensor {
    EnableGradGuard on;
    Tensor y = fn(xs);
    std::vector<Tensor> at;
    for (std::size_t i : wrt) at.push_back(xs[i]);
    std::vector<Tensor> gs = grad({y}, at, {v}, BackwardOptions{.retain_graph = true, .create_graph = true}, true);
    std::vector<Tensor> flat;
    for (std::size_t k = 0; k < wrt.size(); ++k)  // an unused input has first derivative 0
      flat.push_back(gs[k].defined() ? reshape(gs[k], Shape{-1}) : zeros(Shape{xs[wrt[k]].numel()}, y.dtype()));
    return cat(flat, 0);
  };
  GradcheckOptions inner = opt;
  inner.raise = false;
  rep = check_jacobians(g, inputs, inner, true);
  rep.options = opt;

  // Name the worst output element by the first derivative it belongs to: (d/d in1)[2, 0].
  for (auto& r : rep.inputs) {
    if (!r.checked || r.fast || r.worst_output_index.size() != 1) continue;
    std::int64_t flat = r.worst_output_index[0];
    for (std::size_t k = 0; k < wrt.size(); ++k) {
      const Tensor& xk = inputs[wrt[k]];
      if (flat < xk.numel()) {
        const std::string in = wrt[k] < opt.input_names.size() && !opt.input_names[wrt[k]].empty()
                                   ? opt.input_names[wrt[k]]
                                   : fmt::format("in{}", wrt[k]);
        r.worst_output_name = fmt::format("(d<v,fn>/d {})[{}]", in, fmt::join(unravel(flat, xk.shape()), ", "));
        break;
      }
      flat -= xk.numel();
    }
  }
  return finish(rep);
}

}  // namespace ng
