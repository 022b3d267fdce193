#include "autograd/shape.h"

#include <algorithm>

namespace ng {

std::int64_t Shape::numel_overflow_() const {
  for (auto v : d_)
    if (v == 0) return 0;
  fail<ShapeError>("numel: shape {} has more elements than int64 can count (2^63 - 1)", *this);
}

std::int64_t checked_numel(const Shape& s, const char* op) {
  std::int64_t nonzero = 1;
  bool empty = false;
  for (auto v : s) {
    if (v < 0) fail<ShapeError>("{}: negative size in shape {}", op, s);
    if (v == 0) empty = true;
    else if (!size_mul(nonzero, v, nonzero))
      fail<ShapeError>("{}: shape {} is too large: the product of its {}sizes overflows int64 (2^63 - 1)", op, s,
                       empty || std::find(s.begin(), s.end(), 0) != s.end() ? "non-zero " : "");
  }
  return empty ? 0 : nonzero;
}

bool shape_fits(const Shape& s) {
  std::int64_t nonzero = 1;
  for (auto v : s)
    if (v < 0 || (v != 0 && !size_mul(nonzero, v, nonzero))) return false;
  return true;
}

Strides contiguous_strides(const Shape& s) {
  Strides st(s.size());
  std::int64_t acc = 1;
  for (int i = s.ndim() - 1; i >= 0; --i) {
    st[static_cast<std::size_t>(i)] = acc;
    acc *= s[static_cast<std::size_t>(i)];
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const std::size_t n = std::max(a.size(), b.size());
  std::vector<std::int64_t> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const std::int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      fail<ShapeError>("{}: shapes {} and {} cannot be broadcast: size {} vs {} at dim {}", op, a, b, da,
                       db, i);
    out[i] = da == 1 ? db : da;
  }
  Shape s(std::move(out));
  if (!shape_fits(s))  // [2^40, 1] and [1, 2^40] broadcast to 2^80 elements
    fail<ShapeError>("{}: shapes {} and {} broadcast to {}, whose product of sizes overflows int64 (2^63 - 1)", op, a,
                     b, s);
  return s;
}

int normalize_axis(std::int64_t axis, int ndim, const char* op) {
  const std::int64_t lo = -std::max(ndim, 1), hi = std::max(ndim, 1) - 1;
  if (axis < lo || axis > hi)
    fail<IndexError>("{}: axis {} out of range for a {}-d tensor (expected {} to {})", op, axis, ndim, lo,
                     hi);
  return static_cast<int>(axis < 0 ? axis + std::max(ndim, 1) : axis);
}

std::vector<int> normalize_axes(const std::vector<std::int64_t>& axes, int ndim, const char* op) {
  std::vector<int> out;
  if (axes.empty()) {
    for (int i = 0; i < ndim; ++i) out.push_back(i);
    return out;
  }
  for (auto a : axes) out.push_back(normalize_axis(a, ndim, op));
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    fail<ValueError>("{}: axis repeated in the axis list [{}]", op, fmt::join(axes, ", "));
  return out;
}

}  // namespace ng
