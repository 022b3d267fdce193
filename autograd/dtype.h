// Runtime dtypes and the one place where a runtime dtype becomes a compile-time scalar type.
// Kernels are templates on the scalar type T; ops call dispatch_float(dtype, lambda) once.
#pragma once
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "autograd/error.h"

namespace ng {

enum class DType : std::uint8_t { f32, f64, i64 };

constexpr std::string_view dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i64: return "int64";
  }
  return "?";
}
constexpr std::size_t dtype_size(DType d) { return d == DType::f32 ? 4 : 8; }
constexpr bool is_floating(DType d) { return d == DType::f32 || d == DType::f64; }

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<std::int64_t>() { return DType::i64; }

// Accumulator type for reductions: float32 sums accumulate in double.
template <class T> using acc_t = double;

// A double value stored as T. For int64 the value must lie in [-2^63, 2^63) (it is truncated
// towards 0, as C++ and PyTorch do): NaN, an infinity or 1e30 has no int64 value and the cast
// would be undefined behaviour, so it is a ValueError naming op (PyTorch: "value cannot be
// converted to type int64_t without overflow").
template <class T>
T value_as(double v, const char* op) {
  if constexpr (std::is_integral_v<T>) {
    if (!(v >= -0x1p63 && v < 0x1p63)) [[unlikely]]
      fail<ValueError>("{}: the value {} has no int64 value (NaN, infinite or beyond 2^63); use a float dtype or a "
                       "finite value in [-2^63, 2^63)",
                       op, v);
  }
  return static_cast<T>(v);
}

// Calls f(T{}) with T = float or double. Throws DTypeError (naming `op`) for int64.
template <class F>
decltype(auto) dispatch_float(DType d, std::string_view op, F&& f) {
  switch (d) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    default: break;
  }
  fail<DTypeError>("{}: expected a floating dtype (float32 or float64), got {}", op, dtype_name(d));
}
// Calls f(T{}) for every dtype, int64 included.
template <class F>
decltype(auto) dispatch_all(DType d, F&& f) {
  switch (d) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::i64: return f(std::int64_t{});
  }
  return f(double{});
}

}  // namespace ng

template <> struct fmt::formatter<ng::DType> : fmt::formatter<std::string_view> {
  auto format(ng::DType d, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(ng::dtype_name(d), ctx);
  }
};
