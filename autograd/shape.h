// Shapes and strides (row-major), broadcasting rules, and axis normalization.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <vector>

#include <fmt/format.h>

#include "autograd/error.h"
#include "autograd/small_vector.h"

namespace ng {

// Dims stored inside the Shape/Strides object; more than this many go to the heap. Every
// tensor has a shape and strides, so keeping them inline saves two allocations per tensor.
inline constexpr std::size_t kInlineDims = 6;

// A shape is a list of non-negative sizes; a 0-d tensor (a scalar) has the empty shape [].
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<std::int64_t> d) : d_(d) {}
  explicit Shape(const std::vector<std::int64_t>& d) : d_(d.begin(), d.end()) {}
  template <class It> Shape(It b, It e) : d_(b, e) {}

  std::size_t size() const { return d_.size(); }
  int ndim() const { return static_cast<int>(d_.size()); }
  std::int64_t operator[](std::size_t i) const { return d_[i]; }
  std::int64_t& operator[](std::size_t i) { return d_[i]; }
  std::int64_t back() const { return d_.back(); }
  const std::int64_t* begin() const { return d_.begin(); }
  const std::int64_t* end() const { return d_.end(); }
  void push_back(std::int64_t v) { d_.push_back(v); }
  void insert(std::size_t pos, std::int64_t v) { d_.insert(d_.begin() + pos, v); }
  void erase(std::size_t pos) { d_.erase(d_.begin() + pos); }
  std::vector<std::int64_t> vec() const { return {d_.begin(), d_.end()}; }
  bool operator==(const Shape& o) const = default;

  // Product of the sizes. Every Shape held by a tensor passed checked_numel() when the tensor
  // was made, so this cannot overflow for those; for any other shape an overflowing product is
  // a ShapeError here too (never signed overflow), and a zero size anywhere gives 0.
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto v : d_)
      if (__builtin_mul_overflow(n, v, &n)) [[unlikely]]
        return numel_overflow_();
    return n;
  }

 private:
  std::int64_t numel_overflow_() const;
  SmallVector<std::int64_t, kInlineDims> d_;
};

// Strides in elements, one per dim (inline like Shape, for the same reason).
using Strides = SmallVector<std::int64_t, kInlineDims>;

// ---- checked size arithmetic ------------------------------------------------------------
// A valid shape has sizes >= 0 and the product of its non-zero sizes fits int64. Then its
// element count, its row-major strides and every stride x size of it fit int64 too (a zero
// size makes numel 0, but [0, 2^62, 2^62] would still have a stride of 2^124). Shapes are
// checked here once, where tensors are made (empty, make_view) and where ops compute an
// output shape (broadcast, matmul, conv, pooling, cat, pad, expand, reshape), so that the
// kernels can do their index arithmetic in plain int64. Returns numel; otherwise throws
// ShapeError "<op>: shape [..] ...".
std::int64_t checked_numel(const Shape& s, const char* op);
// The same test without throwing: sizes >= 0 and the non-zero sizes' product fits int64.
bool shape_fits(const Shape& s);

// a + b and a * b for sizes, false if the result overflows int64 (callers throw a ShapeError
// naming the op and the shapes).
inline bool size_add(std::int64_t a, std::int64_t b, std::int64_t& out) { return !__builtin_add_overflow(a, b, &out); }
inline bool size_mul(std::int64_t a, std::int64_t b, std::int64_t& out) { return !__builtin_mul_overflow(a, b, &out); }

// Row-major (C-contiguous) strides of a shape, in elements.
Strides contiguous_strides(const Shape& s);

// NumPy broadcasting: align trailing dims; sizes must be equal or 1. Throws ShapeError naming op.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Normalize a possibly negative axis into [0, ndim). Throws IndexError naming op.
int normalize_axis(std::int64_t axis, int ndim, const char* op);

// Normalize a list of axes (empty list = all axes), sorted and unique.
std::vector<int> normalize_axes(const std::vector<std::int64_t>& axes, int ndim, const char* op);

}  // namespace ng

// fmt::print("{}", shape) prints [2, 3, 4].
template <> struct fmt::formatter<ng::Shape> {
  constexpr auto parse(format_parse_context& ctx) { return ctx.begin(); }
  auto format(const ng::Shape& s, format_context& ctx) const {
    return fmt::format_to(ctx.out(), "[{}]", fmt::join(s, ", "));
  }
};
