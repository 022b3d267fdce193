// What the API harness's files share (tests/fuzz/api_harness*.cpp; see api_harness.h for the
// contract): the input decoder Ctx, the result checks, the checkers that call an op and compare
// it with its reference form, and the op tables' type.
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
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "autograd/error.h"
#include "autograd/ops.h"
#include "autograd/random.h"
#include "autograd/tape.h"
#include "tests/fuzz/api_harness.h"

namespace ng::fuzz {

constexpr std::int64_t kMaxNumel = 256;  // elements of an input an op that computes may read
constexpr std::size_t kSlots = 4;
constexpr int kMaxCalls = 24;
constexpr std::int64_t kI64Max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kI64Min = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kHuge[] = {std::int64_t{1} << 31, std::int64_t{1} << 40, std::int64_t{1} << 62,
                                  3037000500LL, kI64Max, -1};

struct Skip {};  // an input too large to compute on: the call is skipped

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
    return v == kI64Min ? kI64Max : v < 0 ? -v : v;
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
    return randint(s, b & 1 ? -1 : 0, std::clamp<std::int64_t>(n, 0, kI64Max - 2) + (b & 2 ? 1 : 0) + 1, &gen_);
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


// ---- checks (api_harness.cpp) -------------------------------------------------------------

// Throws ApiViolation (what the harness reports as a broken contract).
[[noreturn]] void violation(const std::string& what);
// Shape valid, strides one per dim and non-negative, every addressable element inside the storage.
void check_tensor(const Tensor& t, const char* op);
// got and want equal elementwise within rtol/atol (NaN matches NaN, Inf matches the same Inf).
void check_agree(const Tensor& got, const Tensor& want, double rtol, double atol, const char* op, const char* ref);
// Are all elements finite, moderate and not tiny (so that a reference computed differently agrees)?
bool tame(const Tensor& t);
inline double rtol_of(DType d) { return d == DType::f64 ? 1e-9 : 2e-4; }
// The result's invariants, then the backward: first order, and second order under
// create_graph, each gradient of its input's shape and dtype. Keeps the result in a slot.
void finish(Ctx& c, const char* op, const Tensor& r, const std::vector<Tensor>& inputs);
inline Tensor contig(const Tensor& t) { return t.defined() ? t.detach().contiguous() : t; }

// ---- checkers: how each kind of op is called and what its result is compared with ---------

// f(a) vs f on a contiguous copy (same values; tolerance for different kernels on the paths).
void unary(Ctx& c, const char* op, const std::function<Tensor(const Tensor&)>& f);
// f(a, b) vs f on contiguous copies.
void binary(Ctx& c, const char* op, const std::function<Tensor(const Tensor&, const Tensor&)>& f);
// View ops: any size (they copy nothing); the result's values equal the op on a contiguous copy.
void view_op(Ctx& c, const char* op, const std::function<Tensor(const Tensor&)>& f);
// Reductions: vs the op on a contiguous copy, with a tolerance for a different summation order.
void reduction(Ctx& c, const char* op, const std::function<Tensor(const Tensor&, const Axes&, bool)>& f);
// A result compared with a reference computed another way (when the inputs are tame).
void with_reference(Ctx& c, const char* op, const Tensor& r, const std::vector<Tensor>& inputs,
                    const std::function<Tensor()>& reference, const char* ref);
// weight / bias of n elements: undefined, right size, or any tensor (often the wrong size).
Tensor param_like(Ctx& c, std::int64_t n, DType d);
// The last k dims of x (k clamped), for the norms.
Shape trailing(const Tensor& x, std::int64_t k);

// Layers: forward with decoded arguments, optionally in eval mode; the parameters count as
// inputs of the backward check.
template <class M>
void layer(Ctx& c, const char* op, std::shared_ptr<M> m, std::optional<Tensor> input = std::nullopt) {
  if (c.flag()) m->eval();
  const Tensor a = input ? *input : c.x();
  std::vector<Tensor> ins{a};
  for (const Tensor& p : m->parameters()) ins.push_back(p);
  finish(c, op, m->forward(a), ins);
}

// ---- op tables ------------------------------------------------------------------------------

// One entry per op or layer: a name and a function decoding its arguments from c and calling
// it through a checker (unary, binary, view_op, reduction, with_reference, layer, or finish).
using OpFn = void (*)(Ctx&);
struct Op {
  const char* name;
  OpFn run;
};
std::span<const Op> op_table();         // api_harness_ops.cpp: functional ops, modes
std::span<const Op> new_op_table();     // api_harness_ops2.cpp: attention, pad modes, loss options, in place, text
std::span<const Op> layer_table();      // api_harness_layers.cpp: nn:: layers

}  // namespace ng::fuzz
