// The API fuzzer's harness: see api_harness.h for the contract it checks and
// api_harness_internal.h for how inputs are decoded. This file holds the checks and the
// checkers every op table uses, and the loop that runs an input; the tables themselves are in
// api_harness_ops.cpp (functional ops), api_harness_ops2.cpp (attention, pad modes, loss
// options, in-place updates, text data) and api_harness_layers.cpp (nn:: layers).
//
// Adding an op: one line in the table of its family.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "tests/fuzz/api_harness_internal.h"

namespace ng::fuzz {

void violation(const std::string& what) { throw ApiViolation(what); }

// ---- checks -------------------------------------------------------------------------------

// Shape valid, strides one per dim and non-negative, and every addressable element inside
// the storage (computed in 128 bits: the check must not overflow itself).
void check_tensor(const Tensor& t, const char* op) {
  if (!t.defined()) return;
  const Shape& s = t.shape();
  if (!shape_fits(s)) violation(fmt::format("{}: returned an invalid shape {}", op, s));
  if (t.strides().size() != s.size())
    violation(fmt::format("{}: {} strides for shape {}", op, t.strides().size(), s));
  if (t.numel() == 0) return;
  std::int64_t last = t.offset(), step = 0;
  for (std::size_t k = 0; k < s.size(); ++k) {
    if (t.strides()[k] < 0) violation(fmt::format("{}: negative stride in shape {}", op, s));
    if (__builtin_mul_overflow(s[k] - 1, t.strides()[k], &step) || __builtin_add_overflow(last, step, &last))
      violation(fmt::format("{}: the extent of a view of shape {} with strides [{}] overflows int64", op, s,
                            fmt::join(t.strides(), ", ")));
  }
  const auto elems = static_cast<std::int64_t>(t.impl().storage->nbytes / dtype_size(t.dtype()));
  if (t.offset() < 0 || last >= elems)
    violation(fmt::format("{}: view of shape {} (offset {}) reaches element {} of a storage of {}", op, s, t.offset(),
                          last, elems));
  if (t.numel() <= 4 * kMaxNumel) (void)t.to_vector();  // reads every element (ASan checks the reads)
}

// a and b equal elementwise within rtol/atol (NaN matches NaN, Inf matches the same Inf).
void check_agree(const Tensor& got, const Tensor& want, double rtol, double atol, const char* op, const char* ref) {
  if (got.shape() != want.shape() || got.dtype() != want.dtype())
    violation(fmt::format("{}: result {} {} differs from {}'s {} {}", op, got.shape(), got.dtype(), ref, want.shape(),
                          want.dtype()));
  if (got.numel() > 4 * kMaxNumel) return;
  const std::vector<double> a = got.to_vector(), b = want.to_vector();
  for (std::size_t k = 0; k < a.size(); ++k) {
    const bool same = (std::isnan(a[k]) && std::isnan(b[k])) || a[k] == b[k] ||
                      (std::isfinite(a[k]) && std::isfinite(b[k]) && std::abs(a[k] - b[k]) <= atol + rtol * std::abs(b[k]));
    if (!same)
      violation(fmt::format("{}: element {} is {} but {} gives {} (shape {}, {})", op, k, a[k], ref, b[k], got.shape(),
                            got.dtype()));
  }
}

// Are all elements finite and moderate (so that a reference computed differently agrees)?
bool tame(const Tensor& t) {
  if (!t.defined()) return true;
  if (t.numel() > 4 * kMaxNumel) return false;
  for (double v : t.to_vector())
    // moderate, and not tiny: 1e-30 squared underflows in a float32 reference (0, then x / 0)
    // while the fused kernels accumulate in double
    if (!std::isfinite(v) || std::abs(v) > 1e3 || (v != 0 && std::abs(v) < 1e-12)) return false;
  return true;
}


// The result's invariants, then the backward: first order, and second order under
// create_graph, each gradient of its input's shape and dtype. Keeps the result in a slot.
void finish(Ctx& c, const char* op, const Tensor& r, const std::vector<Tensor>& inputs) {
  check_tensor(r, op);
  c.keep(r);
  if (!r.defined() || !r.requires_grad() || r.is_leaf() || !grad_enabled() || r.numel() > kMaxNumel) return;
  std::vector<Tensor> leaves;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) leaves.push_back(t);
  if (leaves.empty()) return;  // the op's differentiable inputs are not all listed (e.g. a layer's submodules)
  const bool create_graph = c.flag();
  const std::vector<Tensor> g = grad({r}, leaves, {ones_like(r)}, {.retain_graph = true, .create_graph = create_graph}, true);
  Tensor second;
  for (std::size_t k = 0; k < g.size(); ++k) {
    if (!g[k].defined()) continue;
    if (g[k].shape() != leaves[k].shape() || g[k].dtype() != leaves[k].dtype())
      violation(fmt::format("{}: gradient {} {} for input {} {}", op, g[k].shape(), g[k].dtype(), leaves[k].shape(),
                            leaves[k].dtype()));
    check_tensor(g[k], op);
    if (create_graph && g[k].requires_grad()) second = second.defined() ? add(second, sum(mul(g[k], g[k]))) : sum(mul(g[k], g[k]));
  }
  if (second.defined() && c.flag()) {
    const std::vector<Tensor> gg = grad({second}, leaves, {}, {.retain_graph = true}, true);
    for (std::size_t k = 0; k < gg.size(); ++k)
      if (gg[k].defined() && gg[k].shape() != leaves[k].shape())
        violation(fmt::format("{}: second-order gradient {} for input {}", op, gg[k].shape(), leaves[k].shape()));
  }
}


// ---- checkers: how each kind of op is called and what its result is compared with ---------

// f(a) vs f on a contiguous copy (same values; tolerance for different kernels on the paths).
void unary(Ctx& c, const char* op, const std::function<Tensor(const Tensor&)>& f) {
  const Tensor a = c.x();
  const Tensor r = f(a);
  {
    NoGradGuard no_grad;
    check_agree(r.detach(), f(contig(a)), rtol_of(r.dtype()), 0, op, "the op on a contiguous copy");
  }
  finish(c, op, r, {a});
}

void binary(Ctx& c, const char* op, const std::function<Tensor(const Tensor&, const Tensor&)>& f) {
  const Tensor a = c.x(), b = c.byte() % 4 == 0 ? a : c.x();
  const Tensor r = f(a, b);
  {
    NoGradGuard no_grad;
    check_agree(r.detach(), f(contig(a), contig(b)), rtol_of(r.dtype()), 0, op, "the op on contiguous copies");
  }
  finish(c, op, r, {a, b});
}

// View ops: any size (they copy nothing); the result's values equal the op on a contiguous copy.
void view_op(Ctx& c, const char* op, const std::function<Tensor(const Tensor&)>& f) {
  const Tensor a = c.any();
  const Tensor r = f(a);
  if (a.numel() <= kMaxNumel) {
    NoGradGuard no_grad;
    check_agree(r.detach(), f(contig(a)), 0, 0, op, "the op on a contiguous copy");
  }
  finish(c, op, r, {a});
}

// Reductions: vs the op on a contiguous copy, with a tolerance for a different summation order.
void reduction(Ctx& c, const char* op, const std::function<Tensor(const Tensor&, const Axes&, bool)>& f) {
  const Tensor a = c.x();
  const Axes ax = c.axes();
  const bool keepdim = c.flag();
  const Tensor r = f(a, ax, keepdim);
  if (tame(a)) {
    NoGradGuard no_grad;
    check_agree(r.detach(), f(contig(a), ax, keepdim), rtol_of(r.dtype()), rtol_of(r.dtype()) * 1e3, op,
                "the op on a contiguous copy");
  }
  finish(c, op, r, {a});
}

// A result compared with a reference computed another way (when the inputs are tame).
void with_reference(Ctx& c, const char* op, const Tensor& r, const std::vector<Tensor>& inputs,
                    const std::function<Tensor()>& reference, const char* ref) {
  bool ok = r.defined() && is_floating(r.dtype());
  for (const Tensor& t : inputs) ok = ok && tame(t);
  if (ok) {
    NoGradGuard no_grad;
    const Tensor want = reference();
    const double tol = r.dtype() == DType::f64 ? 1e-8 : 2e-3;
    check_agree(r.detach(), want.detach(), tol, tol, op, ref);
  }
  finish(c, op, r, inputs);
}

Tensor param_like(Ctx& c, std::int64_t n, DType d) {  // weight / bias: defined or not, right size or not
  const std::uint8_t b = c.byte() % 4;
  if (b == 0) return {};
  Tensor t = b == 3 ? c.x() : randn(Shape{n}, d, &c.gen());
  if (is_floating(t.dtype()) && t.is_leaf() && (b & 1)) t = t.detach().requires_grad_();
  return t;
}

Shape trailing(const Tensor& x, std::int64_t k) {  // the last k dims of x (k clamped), for the norms
  const int n = static_cast<int>(std::clamp<std::int64_t>(k, 0, x.dim()));
  return Shape(x.shape().end() - n, x.shape().end());
}


// The tables in the order an input's op byte indexes them. An input's meaning depends on this
// order and on the count: after adding ops, re-merge the corpus (MERGE=1 scripts/fuzz.sh api).
const std::vector<Op>& all_ops() {
  static const std::vector<Op> ops = [] {
    std::vector<Op> v;
    for (const auto& table : {op_table(), layer_table(), new_op_table()}) v.insert(v.end(), table.begin(), table.end());
    return v;
  }();
  return ops;
}

namespace {

// Restores the process-wide and thread-wide state an input may change.
struct StateGuard {
  std::uint64_t limit = allocation_limit();
  bool grad = grad_enabled(), anomaly = detect_anomaly_enabled();
  StateGuard() { set_allocation_limit(kFuzzAllocationLimit); }
  ~StateGuard() {
    set_allocation_limit(limit);
    set_grad_enabled(grad);
    set_detect_anomaly(anomaly);
  }
};

}  // namespace

std::vector<std::string> api_op_names() {
  std::vector<std::string> names;
  for (const Op& op : all_ops()) names.emplace_back(op.name);
  return names;
}

void run_api_input(const std::uint8_t* data, std::size_t size) {
  const StateGuard state;
  Ctx c(data, size);
  const std::vector<Op>& ops = all_ops();
  static const bool trace = std::getenv("NG_FUZZ_TRACE") != nullptr;  // print each call (to debug an input)
  for (int call = 0; call < kMaxCalls && !c.exhausted(); ++call) {
    const Op& op = ops[c.byte() % ops.size()];
    if (trace) std::fprintf(stderr, "api_fuzz: call %d: %s\n", call, op.name);
    try {
      op.run(c);
    } catch (const Skip&) {
    } catch (const ng::Error& e) {  // the contract: bad arguments are an ng::Error subclass
      if (trace) std::fprintf(stderr, "api_fuzz:   -> %s\n", e.what());
    } catch (const ApiViolation&) {
      throw;
    } catch (const std::exception& e) {
      violation(fmt::format("{}: threw an exception that is not an ng::Error: {}", op.name, e.what()));
    }
  }
}

}  // namespace ng::fuzz

