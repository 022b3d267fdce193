// The API fuzzer's harness: see api_harness.h for the contract it checks.
//
// Decoding. Every value comes from the next input byte (0 once the input is used up):
//   - tensors: rank 0-4, sizes mostly from {0, 1, 2, 3, 4, 5, 7}, sometimes huge (2^31, 2^40,
//     2^62, 3037000500, INT64_MAX) or negative; float32 / float64 / int64; values from a seeded
//     generator with NaN, +-Inf, 0 and 1e30 sprinkled in; made non-contiguous (a transposed
//     or strided view) or, for huge shapes, as an expanded view of one element (no memory);
//   - integer arguments (axes, sizes, strides, paddings, groups, ...) mostly in [-2, 7],
//     sometimes huge or INT64_MIN; real arguments (eps, p, slopes, ...) include 0, negative,
//     1e-12, NaN and +-Inf;
//   - switches: grad mode on/off, anomaly mode on/off, create_graph for the backward check.
// Tensors live in a few slots, so results feed later calls (views of views, ops on outputs).
//
// Work is bounded so that every input runs in milliseconds: ops that compute read inputs of
// at most kMaxNumel elements (a huge expanded view goes only to view ops), and allocations are
// capped by ng::set_allocation_limit (kFuzzAllocationLimit); sizes from the huge table give an
// output that either overflows int64 (ShapeError) or exceeds the limit (OutOfMemoryError).
//
// Adding an op: one line in kOps below (a name and a lambda calling it through a checker).
#include "tests/fuzz/api_harness.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "autograd/error.h"
#include "autograd/ops.h"
#include "autograd/random.h"
#include "autograd/tape.h"
#include "layers/activation.h"
#include "layers/batch_norm.h"
#include "layers/conv.h"
#include "layers/dropout.h"
#include "layers/embedding.h"
#include "layers/group_norm.h"
#include "layers/layer_norm.h"
#include "layers/linear.h"
#include "layers/pool.h"
#include "layers/recurrent.h"
#include "layers/rms_norm.h"

namespace ng::fuzz {
namespace {

constexpr std::int64_t kMaxNumel = 256;  // elements of an input an op that computes may read
constexpr std::size_t kSlots = 4;
constexpr int kMaxCalls = 24;
constexpr std::int64_t kI64Max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kI64Min = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kHuge[] = {std::int64_t{1} << 31, std::int64_t{1} << 40, std::int64_t{1} << 62,
                                  3037000500LL, kI64Max, -1};

struct Skip {};  // an input too large to compute on: the call is skipped

[[noreturn]] void violation(const std::string& what) { throw ApiViolation(what); }

class Ctx {
 public:
  Ctx(const std::uint8_t* d, std::size_t n) : data_(d), size_(n), gen_(0x5eed) {}

  bool exhausted() const { return pos_ >= size_; }
  std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  bool flag() { return byte() & 1; }

  // An integer argument: mostly small (negative included), sometimes huge.
  std::int64_t i() {
    const std::uint8_t b = byte();
    if (b < 224) return static_cast<std::int64_t>(b % 10) - 2;
    static constexpr std::int64_t big[] = {std::int64_t{1} << 31, std::int64_t{1} << 40, std::int64_t{1} << 62,
                                           kI64Max, kI64Min, -(std::int64_t{1} << 40), 3037000500LL, 100};
    return big[b % 8];
  }
  std::int64_t pos() {  // a positive argument as a layer size usually is (still sometimes 0 or huge)
    const std::int64_t v = i();
    return v < 0 ? -v : v;
  }
  double real() {
    static constexpr double vals[] = {0.0, 1.0, -1.0, 0.5, 2.0, 1e-12, 1e-5, 0.1, -0.3, 3.0, 1e30,
                                      std::numeric_limits<double>::quiet_NaN(),
                                      std::numeric_limits<double>::infinity(),
                                      -std::numeric_limits<double>::infinity(), 0.9, 1e-3};
    return vals[byte() % 16];
  }
  std::int64_t size() {
    const std::uint8_t b = byte();
    static constexpr std::int64_t small[] = {0, 1, 2, 3, 4, 5, 7, 1, 2, 3};
    return b < 240 ? small[b % 10] : kHuge[b % 6];
  }
  // A layer count: -1..2 (a huge count would only build layers until memory runs out).
  std::int64_t layers() { return byte() % 4 - 1; }
  Shape shape(int max_rank = 4) {
    Shape s;
    const int rank = byte() % (max_rank + 1);
    for (int k = 0; k < rank; ++k) s.push_back(size());
    return s;
  }
  std::vector<std::int64_t> axes() {
    std::vector<std::int64_t> a;
    const int n = byte() % 3;
    for (int k = 0; k < n; ++k) a.push_back(i());
    return a;
  }
  DType dtype() {
    const std::uint8_t b = byte() % 8;
    return b < 5 ? DType::f32 : b < 7 ? DType::f64 : DType::i64;
  }

  // A new tensor, decoded from the input (see the file comment).
  Tensor make() {
    const Shape s = shape();
    const DType d = dtype();
    const std::uint8_t mode = byte();
    const bool grad = is_floating(d) && (mode & 1);
    if (!shape_fits(s) || s.numel() > kMaxNumel) {
      // huge: allocate (ShapeError / OutOfMemoryError unless it is empty) or expand one element
      Tensor t;
      if (mode & 2) {
        t = zeros(s, d);
      } else {
        Shape ones;
        for (std::size_t k = 0; k < s.size(); ++k) ones.push_back(1);
        t = full(ones, 0.5, d).expand(s);
      }
      if (grad) t = t.detach().requires_grad_();
      return t;
    }
    // values: normal(0, 1) (int64: -3..6), with special values sprinkled in
    Tensor base = d == DType::i64 ? randint(s, -3, 7, &gen_) : randn(s, d, &gen_);
    if (is_floating(d) && (mode & 4) && base.numel() > 0) {
      static constexpr double special[] = {std::numeric_limits<double>::quiet_NaN(),
                                           std::numeric_limits<double>::infinity(),
                                           -std::numeric_limits<double>::infinity(), 0.0, 1e30, -1e-30};
      std::vector<double> v = base.to_vector();
      for (int n = 1 + byte() % 3; n > 0; --n) v[byte() % v.size()] = special[byte() % 6];
      base = from_vector(v, s, d);
    }
    // layout: contiguous, a transposed view of a contiguous tensor, or every other element
    const int layout = (mode >> 3) % 3;
    if (layout == 1 && s.ndim() >= 2) {
      base = base.transpose(0, -1).contiguous().detach();  // data in transposed order
      if (grad) base.requires_grad_();
      return base.transpose(0, -1);  // the asked-for shape, non-contiguous
    }
    if (layout == 2 && s.ndim() >= 1) {
      Tensor wide = cat({base, base}, -1).detach();
      if (grad) wide.requires_grad_();
      return slice(wide, -1, 0, kI64Max, 2);  // the asked-for shape, stride 2 in the last dim
    }
    if (grad) base.requires_grad_();
    return base;
  }

  // A tensor from a slot or a new one; any size (for view ops).
  Tensor any() {
    const std::uint8_t b = byte();
    if (b % 3 == 0 || !slots_[b % kSlots].defined()) return make();
    return slots_[b % kSlots];
  }
  // A tensor an op may compute on: at most kMaxNumel elements.
  Tensor x() {
    Tensor t = any();
    if (t.numel() > kMaxNumel) throw Skip{};
    return t;
  }
  // A floating tensor (int64 ones are cast, a common mistake that must work or be refused).
  Tensor xf() {
    Tensor t = x();
    return is_floating(t.dtype()) ? t : t.to(DType::f32);
  }
  // An int64 index/target tensor with values in [-1, n] (mostly valid, sometimes out of range).
  Tensor index(const Shape& s, std::int64_t n) {
    if (!shape_fits(s) || s.numel() > kMaxNumel) throw Skip{};
    const std::uint8_t b = byte();
    return randint(s, b & 1 ? -1 : 0, std::max<std::int64_t>(n, 0) + (b & 2 ? 1 : 0) + 1, &gen_);
  }

  Generator& gen() { return gen_; }
  void keep(const Tensor& t) {
    if (t.defined()) slots_[byte() % kSlots] = t;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_, pos_ = 0;
  Generator gen_;
  Tensor slots_[kSlots];
};

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
    if (!std::isfinite(v) || std::abs(v) > 1e3) return false;
  return true;
}

double rtol_of(DType d) { return d == DType::f64 ? 1e-9 : 2e-4; }

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

Tensor contig(const Tensor& t) { return t.defined() ? t.detach().contiguous() : t; }

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

// Layers: construct with decoded arguments, forward, optionally in eval mode.
template <class M>
void layer(Ctx& c, const char* op, std::shared_ptr<M> m, std::optional<Tensor> input = std::nullopt) {
  if (c.flag()) m->eval();
  const Tensor a = input ? *input : c.x();
  std::vector<Tensor> ins{a};
  for (const Tensor& p : m->parameters()) ins.push_back(p);
  finish(c, op, m->forward(a), ins);
}

using OpFn = void (*)(Ctx&);
struct Op {
  const char* name;
  OpFn run;
};

// One line per op or layer. The lambda decodes the op's arguments from c and calls it through
// a checker (unary, binary, view_op, reduction, with_reference, layer, or finish).
const Op kOps[] = {
    // ---- factories (shape checks, allocation limit)
    {"zeros", [](Ctx& c) { const Shape s = c.shape(); finish(c, "zeros", zeros(s, c.dtype()), {}); }},
    {"full", [](Ctx& c) { const Shape s = c.shape(); const double v = c.real(); finish(c, "full", full(s, v, c.dtype()), {}); }},
    {"randn", [](Ctx& c) { const Shape s = c.shape(); finish(c, "randn", randn(s, c.dtype(), &c.gen()), {}); }},
    {"randint", [](Ctx& c) { const Shape s = c.shape(); const std::int64_t lo = c.i(), hi = c.i(); finish(c, "randint", randint(s, lo, hi, &c.gen()), {}); }},
    {"arange", [](Ctx& c) { const double a = c.real() * 3, b = c.real() * 7, st = c.real(); finish(c, "arange", arange(a, b, st, c.dtype()), {}); }},
    {"from_vector", [](Ctx& c) { const std::vector<double> v(static_cast<std::size_t>(c.byte() % 9), 1.5); finish(c, "from_vector", from_vector(v, c.shape()), {}); }},
    {"make", [](Ctx& c) { finish(c, "make", c.make(), {}); }},
    // ---- elementwise
    {"add", [](Ctx& c) { binary(c, "add", [](const Tensor& a, const Tensor& b) { return add(a, b); }); }},
    {"sub", [](Ctx& c) { binary(c, "sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }); }},
    {"mul", [](Ctx& c) { binary(c, "mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }); }},
    {"div", [](Ctx& c) { binary(c, "div", [](const Tensor& a, const Tensor& b) { return div(a, b); }); }},
    {"pow_t", [](Ctx& c) { binary(c, "pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }); }},
    {"maximum", [](Ctx& c) { binary(c, "maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }); }},
    {"minimum", [](Ctx& c) { binary(c, "minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }); }},
    {"gt", [](Ctx& c) { binary(c, "gt", [](const Tensor& a, const Tensor& b) { return gt(a, b); }); }},
    {"eq", [](Ctx& c) { binary(c, "eq", [](const Tensor& a, const Tensor& b) { return eq(a, b); }); }},
    {"where", [](Ctx& c) { const Tensor k = c.x(); binary(c, "where", [k](const Tensor& a, const Tensor& b) { return where(k, a, b); }); }},
    {"add_scalar", [](Ctx& c) { const double s = c.real(); unary(c, "add_scalar", [s](const Tensor& a) { return add(a, s); }); }},
    {"mul_scalar", [](Ctx& c) { const double s = c.real(); unary(c, "mul_scalar", [s](const Tensor& a) { return mul(a, s); }); }},
    {"rdiv", [](Ctx& c) { const double s = c.real(); unary(c, "rdiv", [s](const Tensor& a) { return rdiv(s, a); }); }},
    {"pow", [](Ctx& c) { const double p = c.real(); unary(c, "pow", [p](const Tensor& a) { return pow(a, p); }); }},
    {"neg", [](Ctx& c) { unary(c, "neg", [](const Tensor& a) { return neg(a); }); }},
    {"exp", [](Ctx& c) { unary(c, "exp", [](const Tensor& a) { return exp(a); }); }},
    {"log", [](Ctx& c) { unary(c, "log", [](const Tensor& a) { return log(a); }); }},
    {"sqrt", [](Ctx& c) { unary(c, "sqrt", [](const Tensor& a) { return sqrt(a); }); }},
    {"rsqrt", [](Ctx& c) { unary(c, "rsqrt", [](const Tensor& a) { return rsqrt(a); }); }},
    {"abs", [](Ctx& c) { unary(c, "abs", [](const Tensor& a) { return abs(a); }); }},
    {"clamp", [](Ctx& c) { const double lo = c.real(), hi = c.real(); const bool l = c.flag(), h = c.flag(); unary(c, "clamp", [=](const Tensor& a) { return clamp(a, l ? std::optional(lo) : std::nullopt, h ? std::optional(hi) : std::nullopt); }); }},
    {"relu", [](Ctx& c) { unary(c, "relu", [](const Tensor& a) { return relu(a); }); }},
    {"leaky_relu", [](Ctx& c) { const double s = c.real(); unary(c, "leaky_relu", [s](const Tensor& a) { return leaky_relu(a, s); }); }},
    {"sigmoid", [](Ctx& c) { unary(c, "sigmoid", [](const Tensor& a) { return sigmoid(a); }); }},
    {"tanh", [](Ctx& c) { unary(c, "tanh", [](const Tensor& a) { return tanh(a); }); }},
    {"gelu", [](Ctx& c) { unary(c, "gelu", [](const Tensor& a) { return gelu(a); }); }},
    {"softplus", [](Ctx& c) { const double b = c.real(), t = c.real(); unary(c, "softplus", [b, t](const Tensor& a) { return softplus(a, b, t); }); }},
    {"cast", [](Ctx& c) { const DType d = c.dtype(); unary(c, "cast", [d](const Tensor& a) { return a.to(d); }); }},
    // ---- reductions
    {"sum", [](Ctx& c) { reduction(c, "sum", [](const Tensor& a, const Axes& ax, bool k) { return sum(a, ax, k); }); }},
    {"mean", [](Ctx& c) { reduction(c, "mean", [](const Tensor& a, const Axes& ax, bool k) { return mean(a, ax, k); }); }},
    {"var", [](Ctx& c) { const std::int64_t corr = c.i(); reduction(c, "var", [corr](const Tensor& a, const Axes& ax, bool k) { return var(a, ax, corr, k); }); }},
    {"std", [](Ctx& c) { reduction(c, "std", [](const Tensor& a, const Axes& ax, bool k) { return ng::std(a, ax, 1, k); }); }},
    {"max", [](Ctx& c) { reduction(c, "max", [](const Tensor& a, const Axes& ax, bool k) { return max(a, ax, k); }); }},
    {"min", [](Ctx& c) { reduction(c, "min", [](const Tensor& a, const Axes& ax, bool k) { return min(a, ax, k); }); }},
    {"logsumexp", [](Ctx& c) { reduction(c, "logsumexp", [](const Tensor& a, const Axes& ax, bool k) { return logsumexp(a, ax, k); }); }},
    {"argmax", [](Ctx& c) { const std::int64_t ax = c.i(); unary(c, "argmax", [ax](const Tensor& a) { return argmax(a, ax, false); }); }},
    {"sum_to", [](Ctx& c) { const Shape s = c.shape(); unary(c, "sum_to", [s](const Tensor& a) { return sum_to(a, s); }); }},
    {"mean_ref", [](Ctx& c) { const Tensor a = c.xf(); with_reference(c, "mean", mean(a), {a}, [a] { return mul(sum(a), 1.0 / static_cast<double>(std::max<std::int64_t>(a.numel(), 1))); }, "sum / n"); }},
    {"var_ref", [](Ctx& c) { const Tensor a = c.xf(); with_reference(c, "var", var(a, {}, 0), {a}, [a] { return mean(pow(sub(a, mean(a)), 2.0)); }, "mean((x - mean)^2)"); }},
    // ---- views and shape ops (any size: they copy nothing unless they must)
    {"reshape", [](Ctx& c) { const Shape s = c.shape(); view_op(c, "reshape", [s](const Tensor& a) { return reshape(a, s); }); }},
    {"view", [](Ctx& c) { const Shape s = c.shape(); view_op(c, "view", [s](const Tensor& a) { return view(a.is_contiguous() ? a : a.contiguous(), s); }); }},
    {"flatten", [](Ctx& c) { const std::int64_t s = c.i(), e = c.i(); view_op(c, "flatten", [s, e](const Tensor& a) { return flatten(a, s, e); }); }},
    {"squeeze", [](Ctx& c) { const std::int64_t d = c.i(); view_op(c, "squeeze", [d](const Tensor& a) { return squeeze(a, d); }); }},
    {"unsqueeze", [](Ctx& c) { const std::int64_t d = c.i(); view_op(c, "unsqueeze", [d](const Tensor& a) { return unsqueeze(a, d); }); }},
    {"transpose", [](Ctx& c) { const std::int64_t d0 = c.i(), d1 = c.i(); view_op(c, "transpose", [d0, d1](const Tensor& a) { return transpose(a, d0, d1); }); }},
    {"permute", [](Ctx& c) { std::vector<std::int64_t> o; for (int k = c.byte() % 5; k > 0; --k) o.push_back(c.i()); view_op(c, "permute", [o](const Tensor& a) { return permute(a, o); }); }},
    {"expand", [](Ctx& c) { const Shape s = c.shape(); view_op(c, "expand", [s](const Tensor& a) { return expand(a, s); }); }},
    {"slice", [](Ctx& c) { const std::int64_t d = c.i(), s = c.i(), e = c.i(), st = c.i(); view_op(c, "slice", [=](const Tensor& a) { return slice(a, d, s, e, st); }); }},
    {"select", [](Ctx& c) { const std::int64_t d = c.i(), k = c.i(); view_op(c, "select", [d, k](const Tensor& a) { return select(a, d, k); }); }},
    {"contiguous", [](Ctx& c) { view_op(c, "contiguous", [](const Tensor& a) { return a.contiguous(); }); }},
    {"clone", [](Ctx& c) { unary(c, "clone", [](const Tensor& a) { return a.clone(); }); }},
    {"cat", [](Ctx& c) { const Tensor a = c.x(), b = c.x(); const std::int64_t d = c.i(); finish(c, "cat", cat({a, b}, d), {a, b}); }},
    {"cat_views", [](Ctx& c) { const Tensor a = c.any(), b = c.any(); const std::int64_t d = c.i(); finish(c, "cat", cat({a, b}, d), {a, b}); }},
    {"stack", [](Ctx& c) { const Tensor a = c.x(), b = c.x(); const std::int64_t d = c.i(); finish(c, "stack", stack({a, b}, d), {a, b}); }},
    {"split", [](Ctx& c) { const Tensor a = c.any(); const std::int64_t s = c.i(), d = c.i(); for (const Tensor& p : split(a, s, d)) check_tensor(p, "split"); }},
    {"split_sizes", [](Ctx& c) { const Tensor a = c.any(); const std::vector<std::int64_t> s{c.i(), c.i()}; const std::int64_t d = c.i(); for (const Tensor& p : split(a, s, d)) check_tensor(p, "split"); }},
    {"chunk", [](Ctx& c) { const Tensor a = c.any(); const std::int64_t n = c.i(), d = c.i(); for (const Tensor& p : chunk(a, n, d)) check_tensor(p, "chunk"); }},
    {"pad", [](Ctx& c) { std::vector<std::int64_t> w; for (int k = c.byte() % 4; k > 0; --k) { w.push_back(c.i()); w.push_back(c.i()); } const double v = c.real(); unary(c, "pad", [w, v](const Tensor& a) { return pad(a, w, PadMode::constant, v); }); }},
    {"index_select", [](Ctx& c) { const Tensor a = c.x(); const std::int64_t d = c.i(); const Shape ks{c.size()}; const Tensor k = c.index(ks, a.dim() ? a.size(std::clamp<std::int64_t>(d, -a.dim(), a.dim() - 1)) : 1); finish(c, "index_select", index_select(a, d, k), {a}); }},
    {"gather", [](Ctx& c) { const Tensor a = c.x(); const std::int64_t d = c.i(); const Tensor k = c.index(a.shape(), a.dim() ? a.size(std::clamp<std::int64_t>(d, -a.dim(), a.dim() - 1)) : 1); finish(c, "gather", gather(a, d, k), {a}); }},
    {"index_add", [](Ctx& c) { const Tensor s = c.x(); const Shape sh = c.shape(); const Tensor k = c.index(Shape{s.dim() ? s.size(0) : 0}, sh.ndim() ? sh[0] : 1); finish(c, "index_add", index_add(sh, 0, k, s), {s}); }},
    {"scatter_add", [](Ctx& c) { const Tensor s = c.x(); const Shape sh = c.shape(); const Tensor k = c.index(s.shape(), sh.ndim() ? sh[0] : 1); finish(c, "scatter_add", scatter_add(sh, 0, k, s), {s}); }},
    {"slice_backward", [](Ctx& c) { const Tensor s = c.x(); const Shape sh = c.shape(); const std::int64_t d = c.i(), a = c.i(), e = c.i(), st = c.i(); finish(c, "slice_backward", slice_backward(s, sh, d, a, e, st), {s}); }},
    // ---- linear algebra
    {"matmul", [](Ctx& c) { binary(c, "matmul", [](const Tensor& a, const Tensor& b) { return matmul(a, b); }); }},
    {"matmul_ref", [](Ctx& c) { const Tensor a = c.xf(), b = c.xf(); with_reference(c, "matmul", matmul(a, b), {a, b}, [a, b] { return a.dim() == 2 && b.dim() == 2 ? sum(mul(unsqueeze(a, -1), unsqueeze(b, 0)), {1}) : matmul(contig(a), contig(b)); }, "sum(a[:, :, None] * b[None], 1)"); }},
    {"linear", [](Ctx& c) { const Tensor x = c.xf(), w = c.xf(), b = c.flag() ? c.xf() : Tensor(); with_reference(c, "linear", linear(x, w, b), {x, w, b}, [x, w, b] { const Tensor y = matmul(x, transpose(w, 0, 1)); return b.defined() ? add(y, b) : y; }, "x W^T + b"); }},
    // ---- losses
    {"softmax", [](Ctx& c) { const Tensor a = c.xf(); const std::int64_t d = c.i(); with_reference(c, "softmax", softmax(a, d), {a}, [a, d] { return exp(sub(a, logsumexp(a, {d}, true))); }, "exp(x - logsumexp(x))"); }},
    {"log_softmax", [](Ctx& c) { const Tensor a = c.xf(); const std::int64_t d = c.i(); with_reference(c, "log_softmax", log_softmax(a, d), {a}, [a, d] { return sub(a, logsumexp(a, {d}, true)); }, "x - logsumexp(x)"); }},
    {"cross_entropy", [](Ctx& c) { const Tensor a = c.xf(); const Tensor t = c.index(a.dim() >= 1 ? Shape{a.size(0)} : Shape{}, a.dim() >= 2 ? a.size(1) : 1); const auto r = static_cast<Reduction>(c.byte() % 3); const double ls = c.real(); finish(c, "cross_entropy", cross_entropy(a, t, r, ls), {a}); }},
    {"nll_loss", [](Ctx& c) { const Tensor a = c.xf(); const Tensor t = c.index(a.dim() >= 1 ? Shape{a.size(0)} : Shape{}, a.dim() >= 2 ? a.size(1) : 1); finish(c, "nll_loss", nll_loss(a, t, static_cast<Reduction>(c.byte() % 3)), {a}); }},
    {"mse_loss", [](Ctx& c) { const Tensor a = c.x(), b = c.x(); finish(c, "mse_loss", mse_loss(a, b, static_cast<Reduction>(c.byte() % 3)), {a, b}); }},
    {"bce_logits", [](Ctx& c) { const Tensor a = c.x(), b = c.x(); finish(c, "binary_cross_entropy_with_logits", binary_cross_entropy_with_logits(a, b, static_cast<Reduction>(c.byte() % 3)), {a, b}); }},
    // ---- convolution and pooling
    {"conv2d", [](Ctx& c) { const Tensor x = c.xf(), w = c.xf(), b = c.flag() ? c.xf() : Tensor(); const Size2 s{c.i(), c.i()}, p{c.i(), c.i()}, d{c.i(), c.i()}; finish(c, "conv2d", conv2d(x, w, b, s, p, d, c.i()), {x, w, b}); }},
    {"max_pool2d", [](Ctx& c) { const Size2 k{c.i(), c.i()}, p{c.i(), c.i()}, d{c.i(), c.i()}; const std::optional<Size2> s = c.flag() ? std::optional(Size2{c.i(), c.i()}) : std::nullopt; const bool cm = c.flag(); unary(c, "max_pool2d", [=](const Tensor& x) { return max_pool2d(x, k, s, p, d, cm); }); }},
    {"avg_pool2d", [](Ctx& c) { const Size2 k{c.i(), c.i()}, p{c.i(), c.i()}; const std::optional<Size2> s = c.flag() ? std::optional(Size2{c.i(), c.i()}) : std::nullopt; const bool cm = c.flag(), inc = c.flag(); unary(c, "avg_pool2d", [=](const Tensor& x) { return avg_pool2d(x, k, s, p, cm, inc); }); }},
    {"adaptive_avg_pool2d", [](Ctx& c) { const Size2 o{c.i(), c.i()}; unary(c, "adaptive_avg_pool2d", [o](const Tensor& x) { return adaptive_avg_pool2d(x, o); }); }},
    // ---- normalization: the fused core against ng::reference
    {"layer_norm", [](Ctx& c) { const Tensor x = c.xf(); const Shape ns = trailing(x, c.byte() % 3); const Tensor w = param_like(c, ns.numel(), x.dtype()), b = param_like(c, ns.numel(), x.dtype()); const double eps = c.real(); with_reference(c, "layer_norm", layer_norm(x, ns, w.defined() ? w.reshape(ns) : w, b.defined() ? b.reshape(ns) : b, eps), {x, w, b}, [=] { return reference::layer_norm(x, ns, w.defined() ? w.reshape(ns) : w, b.defined() ? b.reshape(ns) : b, eps); }, "reference::layer_norm"); }},
    {"rms_norm", [](Ctx& c) { const Tensor x = c.xf(); const Shape ns = trailing(x, c.byte() % 3); const Tensor w = param_like(c, ns.numel(), x.dtype()); const double eps = c.real(); with_reference(c, "rms_norm", rms_norm(x, ns, w.defined() ? w.reshape(ns) : w, eps), {x, w}, [=] { return reference::rms_norm(x, ns, w.defined() ? w.reshape(ns) : w, eps); }, "reference::rms_norm"); }},
    {"group_norm", [](Ctx& c) { const Tensor x = c.xf(); const std::int64_t g = c.i(), ch = x.dim() >= 2 ? x.size(1) : 0; const Tensor w = param_like(c, ch, x.dtype()), b = param_like(c, ch, x.dtype()); const double eps = c.real(); with_reference(c, "group_norm", group_norm(x, g, w, b, eps), {x, w, b}, [=] { return reference::group_norm(x, g, w, b, eps); }, "reference::group_norm"); }},
    {"batch_norm_train", [](Ctx& c) { const Tensor x = c.xf(); const std::int64_t ch = x.dim() >= 2 ? x.size(1) : 0; const Tensor w = param_like(c, ch, x.dtype()), b = param_like(c, ch, x.dtype()); const double eps = c.real(); Tensor rm = c.flag() ? zeros(Shape{ch}, x.dtype()) : Tensor(), rv = rm.defined() ? ones(Shape{ch}, x.dtype()) : Tensor(); with_reference(c, "batch_norm", batch_norm(x, rm, rv, w, b, true, c.real(), eps), {x, w, b}, [=] { return reference::batch_norm(x, w, b, eps); }, "reference::batch_norm"); }},
    {"batch_norm_eval", [](Ctx& c) { const Tensor x = c.xf(); const std::int64_t ch = x.dim() >= 2 ? x.size(1) : 0; const Tensor m = param_like(c, ch, x.dtype()), v = param_like(c, ch, x.dtype()); const Tensor vv = v.defined() ? abs(v.detach()) : v; const double eps = c.real(); with_reference(c, "batch_norm", batch_norm(x, m.defined() ? m.detach() : m, vv, {}, {}, false, 0.1, eps), {x}, [=] { return reference::batch_norm_eval(x, m.detach(), vv, {}, {}, eps); }, "reference::batch_norm_eval"); }},
    {"instance_norm", [](Ctx& c) { const Tensor x = c.xf(); const double eps = c.real(); finish(c, "instance_norm", instance_norm(x, {}, {}, {}, {}, true, 0.1, eps), {x}); }},
    // ---- layers
    {"Linear", [](Ctx& c) { layer(c, "Linear", std::shared_ptr<nn::Linear>(new nn::Linear{c.pos(), c.pos(), c.flag(), &c.gen(), c.dtype()})); }},
    {"Conv2d", [](Ctx& c) { const std::int64_t i = c.pos(), o = c.pos(); const Size2 k{c.i(), c.i()}, s(c.i()), p(c.i()), d(c.i()); layer(c, "Conv2d", std::shared_ptr<nn::Conv2d>(new nn::Conv2d{i, o, k, s, p, d, c.i(), c.flag(), &c.gen(), c.dtype()})); }},
    {"BatchNorm1d", [](Ctx& c) { layer(c, "BatchNorm1d", std::make_shared<nn::BatchNorm1d>(nn::BatchNormOptions(c.pos()).eps(c.real()).momentum(c.real()).affine(c.flag()).track_running_stats(c.flag()))); }},
    {"BatchNorm2d", [](Ctx& c) { layer(c, "BatchNorm2d", std::make_shared<nn::BatchNorm2d>(nn::BatchNormOptions(c.pos()).eps(c.real()).momentum(c.flag() ? std::optional<double>() : std::optional(c.real())))); }},
    {"LayerNorm", [](Ctx& c) { layer(c, "LayerNorm", std::make_shared<nn::LayerNorm>(nn::LayerNormOptions(c.shape(2)).eps(c.real()).elementwise_affine(c.flag()).bias(c.flag()))); }},
    {"GroupNorm", [](Ctx& c) { layer(c, "GroupNorm", std::make_shared<nn::GroupNorm>(nn::GroupNormOptions{c.i(), c.pos()}.eps(c.real()).affine(c.flag()))); }},
    {"InstanceNorm2d", [](Ctx& c) { layer(c, "InstanceNorm2d", std::make_shared<nn::InstanceNorm2d>(nn::InstanceNormOptions(c.pos()).eps(c.real()).momentum(c.real()).affine(c.flag()).track_running_stats(c.flag()))); }},
    {"RMSNorm", [](Ctx& c) { layer(c, "RMSNorm", std::make_shared<nn::RMSNorm>(nn::RMSNormOptions(c.shape(2)).eps(c.flag() ? std::optional(c.real()) : std::nullopt))); }},
    {"Embedding", [](Ctx& c) { const std::int64_t n = c.pos(), dim = c.pos(); const std::optional<std::int64_t> pad = c.flag() ? std::optional(c.i()) : std::nullopt; auto m = std::make_shared<nn::Embedding>(n, dim, pad, &c.gen()); layer(c, "Embedding", m, c.index(c.shape(2), n)); }},
    {"Dropout", [](Ctx& c) { layer(c, "Dropout", std::make_shared<nn::Dropout>(c.real(), &c.gen())); }},
    {"MaxPool2d", [](Ctx& c) { layer(c, "MaxPool2d", std::shared_ptr<nn::MaxPool2d>(new nn::MaxPool2d{Size2(c.i()), std::nullopt, Size2(c.i())})); }},
    {"AvgPool2d", [](Ctx& c) { layer(c, "AvgPool2d", std::shared_ptr<nn::AvgPool2d>(new nn::AvgPool2d{Size2(c.i()), std::optional(Size2(c.i())), Size2(c.i())})); }},
    {"AdaptiveAvgPool2d", [](Ctx& c) { layer(c, "AdaptiveAvgPool2d", std::make_shared<nn::AdaptiveAvgPool2d>(Size2{c.i(), c.i()})); }},
    {"LeakyReLU", [](Ctx& c) { layer(c, "LeakyReLU", std::make_shared<nn::LeakyReLU>(c.real())); }},
    {"GELU", [](Ctx& c) { layer(c, "GELU", std::make_shared<nn::GELU>()); }},
    {"RNN", [](Ctx& c) { nn::RNNOptions o; o.num_layers = c.layers(); o.batch_first = c.flag(); o.dropout = c.real(); o.gen = &c.gen(); o.dtype = c.dtype(); layer(c, "RNN", std::shared_ptr<nn::RNN>(new nn::RNN{c.pos(), c.pos(), o, c.flag() ? "tanh" : c.flag() ? "relu" : "sigmoid"})); }},
    {"LSTM", [](Ctx& c) { nn::RNNOptions o; o.num_layers = c.layers(); o.bias = c.flag(); o.gen = &c.gen(); o.dtype = c.dtype(); layer(c, "LSTM", std::shared_ptr<nn::LSTM>(new nn::LSTM{c.pos(), c.pos(), o})); }},
    {"GRU", [](Ctx& c) { nn::RNNOptions o; o.num_layers = c.layers(); o.batch_first = c.flag(); o.gen = &c.gen(); o.dtype = c.dtype(); layer(c, "GRU", std::shared_ptr<nn::GRU>(new nn::GRU{c.pos(), c.pos(), o})); }},
    {"LayerNormLSTM", [](Ctx& c) { nn::RNNOptions o; o.gen = &c.gen(); o.dtype = c.dtype(); layer(c, "LayerNormLSTM", std::shared_ptr<nn::LayerNormLSTM>(new nn::LayerNormLSTM{c.pos(), c.pos(), o, c.real()})); }},
    {"LSTMCell", [](Ctx& c) { layer(c, "LSTMCell", std::shared_ptr<nn::LSTMCell>(new nn::LSTMCell{c.pos(), c.pos(), c.flag(), &c.gen(), c.dtype()})); }},
    {"GRUCell", [](Ctx& c) { layer(c, "GRUCell", std::shared_ptr<nn::GRUCell>(new nn::GRUCell{c.pos(), c.pos(), c.flag(), &c.gen(), c.dtype()})); }},
    {"RNNCell", [](Ctx& c) { layer(c, "RNNCell", std::shared_ptr<nn::RNNCell>(new nn::RNNCell{c.pos(), c.pos(), c.flag(), c.flag() ? "tanh" : c.flag() ? "relu" : "gelu", &c.gen(), c.dtype()})); }},
    // ---- modes
    {"grad_mode", [](Ctx& c) { set_grad_enabled(c.flag()); }},
    {"anomaly_mode", [](Ctx& c) { set_detect_anomaly(c.flag()); }},
    {"backward", [](Ctx& c) { const Tensor a = c.x(); if (a.requires_grad() && a.numel() == 1) { const bool retain = c.flag(); a.backward({}, retain, c.flag()); } else if (a.requires_grad()) { const bool retain = c.flag(); a.backward(ones_like(a), retain, c.flag()); } }},
};

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
  for (const Op& op : kOps) names.emplace_back(op.name);
  return names;
}

void run_api_input(const std::uint8_t* data, std::size_t size) {
  const StateGuard state;
  Ctx c(data, size);
  constexpr std::size_t n_ops = sizeof(kOps) / sizeof(kOps[0]);
  static const bool trace = std::getenv("NG_FUZZ_TRACE") != nullptr;  // print each call (to debug an input)
  for (int call = 0; call < kMaxCalls && !c.exhausted(); ++call) {
    const Op& op = kOps[c.byte() % n_ops];
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
