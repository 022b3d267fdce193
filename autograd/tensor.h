// Tensor: an n-dimensional, row-major array with a runtime dtype, whose storage is shared
// between handles (copying a Tensor copies a handle, like torch.Tensor in Python).
//
//   Storage  -- one aligned buffer, shared by views (reshape, transpose, expand, slices)
//   TensorImpl -- shape, strides, offset into the storage, dtype, and the autograd fields:
//                 requires_grad, grad (for leaves), grad_fn (the tape node that made it)
//   Tensor   -- a shared handle to a TensorImpl; an undefined Tensor has no impl.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "autograd/dtype.h"
#include "autograd/error.h"
#include "autograd/shape.h"

namespace ng {

class Generator;
struct Node;

struct Storage {
  explicit Storage(std::size_t nbytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data = nullptr;
  std::size_t nbytes = 0;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  std::int64_t offset = 0;  // in elements
  Shape shape;
  Strides strides;  // in elements; 0 for broadcast (expanded) dims
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient (leaves; also non-leaves on request)
  std::shared_ptr<Node> grad_fn;     // node on the tape that produced this tensor (non-leaves)
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // -- metadata -------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Strides& strides() const { return impl().strides; }
  int dim() const { return impl().shape.ndim(); }
  std::int64_t size(std::int64_t axis) const;  // negative axes count from the end
  std::int64_t numel() const { return impl().shape.numel(); }
  DType dtype() const { return impl().dtype; }
  bool is_contiguous() const;
  std::int64_t offset() const { return impl().offset; }

  // Raw element pointer (first element of this view). T must match dtype().
  template <class T> T* data() const {
    check_dtype_(dtype_of<T>());
    return static_cast<T*>(impl().storage->data) + impl().offset;
  }
  // Value of a one-element tensor, converted to double (like torch's item()).
  double item() const;
  template <class T> T item() const { return static_cast<T>(item()); }
  // Element at a multi-index (slow; for tests and printing).
  double at(const std::vector<std::int64_t>& index) const;
  // All elements in row-major order, converted to double (for tests and printing).
  std::vector<double> to_vector() const;

  // -- autograd --------------------------------------------------------------------------
  bool requires_grad() const { return impl().requires_grad; }
  // Marks a leaf as needing gradients; returns *this (like torch's requires_grad_()).
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const { return Tensor(impl().grad); }
  void set_grad(const Tensor& g);
  void zero_grad() { impl().grad.reset(); }  // set_to_none, as PyTorch does by default
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  // Backpropagate from this tensor. A scalar may omit grad (it is 1). See autograd/tape.h.
  void backward(const Tensor& grad = {}, bool retain_graph = false, bool create_graph = false) const;

  // -- conversions -----------------------------------------------------------------------
  Tensor detach() const;      // same storage, no history, requires_grad false
  Tensor clone() const;       // new contiguous storage; differentiable
  Tensor contiguous() const;  // *this if already contiguous, else a differentiable copy
  Tensor to(DType d) const;   // *this if same dtype, else a differentiable cast

  // -- methods that forward to the functional ops in autograd/ops.h ----------------------
  Tensor reshape(const Shape& s) const;
  Tensor view(const Shape& s) const;
  Tensor flatten(std::int64_t start = 0, std::int64_t end = -1) const;
  Tensor transpose(std::int64_t a, std::int64_t b) const;
  Tensor t() const;  // transpose of a 2-d tensor
  Tensor permute(const std::vector<std::int64_t>& order) const;
  Tensor unsqueeze(std::int64_t axis) const;
  Tensor squeeze(std::int64_t axis) const;
  Tensor expand(const Shape& s) const;
  Tensor sum(const std::vector<std::int64_t>& axes = {}, bool keepdim = false) const;
  Tensor mean(const std::vector<std::int64_t>& axes = {}, bool keepdim = false) const;
  Tensor pow(double p) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor abs() const;
  Tensor matmul(const Tensor& o) const;

  // -- in-place updates for optimizers and initializers (no autograd; refuse on non-leaves
  //    that require grad while recording) -----------------------------------------------
  Tensor& fill_(double v);
  Tensor& copy_(const Tensor& src);  // same shape and dtype
  Tensor& add_(const Tensor& o, double alpha = 1.0);
  Tensor& mul_(double s);
  Tensor& mul_(const Tensor& o);  // o broadcast to this shape, same dtype

  // Inline (every op calls it several times); the error path stays out of line.
  TensorImpl& impl() const {
    if (!impl_) [[unlikely]] fail_undefined_();
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  void check_dtype_(DType d) const;
  [[noreturn]] static void fail_undefined_();
  std::shared_ptr<TensorImpl> impl_;
};

// -- allocation limit --------------------------------------------------------------------
// A tensor whose data would take more than allocation_limit() bytes is refused with
// OutOfMemoryError before the allocator is asked. The default, 2^47 bytes (128 TiB), is more
// than a 64-bit machine maps, so only a wrong shape reaches it; tests and the API fuzzer lower
// it (process-wide) to keep "huge" shapes from allocating. A request under the limit that
// the allocator cannot serve is an OutOfMemoryError too.
std::uint64_t allocation_limit();
void set_allocation_limit(std::uint64_t bytes);
// numel(s) x bytes per element, or ShapeError (numel overflows, see checked_numel) /
// OutOfMemoryError (above the limit) naming op and s. For ops' scratch buffers too.
std::size_t checked_nbytes(const Shape& s, std::size_t elem_size, const char* op);

// -- factories (float32 by default, like PyTorch) --------------------------------------
Tensor empty(const Shape& s, DType d = DType::f32);
Tensor zeros(const Shape& s, DType d = DType::f32);
Tensor ones(const Shape& s, DType d = DType::f32);
Tensor full(const Shape& s, double value, DType d = DType::f32);
Tensor scalar(double value, DType d = DType::f32);  // a 0-d tensor
Tensor arange(double start, double end, double step = 1.0, DType d = DType::f32);
Tensor arange(std::int64_t n, DType d = DType::f32);
Tensor from_vector(const std::vector<double>& values, const Shape& s, DType d = DType::f32);
Tensor from_vector(const std::vector<float>& values, const Shape& s);
Tensor from_vector(const std::vector<std::int64_t>& values, const Shape& s);
Tensor tensor(std::initializer_list<double> values, const Shape& s, DType d = DType::f32);
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
// Random factories draw from `gen`, or the calling thread's default generator (random.h).
Tensor rand(const Shape& s, DType d = DType::f32, Generator* gen = nullptr);   // U[0, 1)
Tensor randn(const Shape& s, DType d = DType::f32, Generator* gen = nullptr);  // N(0, 1)
Tensor uniform(const Shape& s, double lo, double hi, DType d = DType::f32, Generator* gen = nullptr);
Tensor normal(const Shape& s, double mean, double stddev, DType d = DType::f32, Generator* gen = nullptr);
Tensor randint(const Shape& s, std::int64_t lo, std::int64_t hi, Generator* gen = nullptr);  // int64

// A view onto t's storage with a new shape/strides/offset (no autograd; used by view ops).
Tensor make_view(const Tensor& t, const Shape& s, const Strides& st, std::int64_t offset);

}  // namespace ng

// fmt::print("{}", t): PyTorch-like repr. "{:s}" prints only the summary line.
template <> struct fmt::formatter<ng::Tensor> {
  bool summary_only = false;
  constexpr auto parse(format_parse_context& ctx) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it == 's') {
      summary_only = true;
      ++it;
    }
    return it;
  }
  format_context::iterator format(const ng::Tensor& t, format_context& ctx) const;
};
