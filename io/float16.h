// The two 16-bit floating formats of checkpoint files, converted exactly by bit arithmetic:
//   F16  (IEEE 754 binary16):  1 sign, 5 exponent (bias 15),  10 fraction bits
//   BF16 (bfloat16):           1 sign, 8 exponent (bias 127),  7 fraction bits
// A finite nonzero value with biased exponent field e and fraction f is
//   (1 + f / 2^M) * 2^(e - bias)     for 1 <= e < 2^E - 1  (normal)
//   (f / 2^M) * 2^(1 - bias)          for e = 0             (subnormal, and +-0)
// and e = 2^E - 1 holds inf (f = 0) and NaN (f != 0).
//
// Decoding is exact (every F16 and BF16 value is a float). Encoding rounds a double to the
// nearest representable value, ties to the even fraction (IEEE's default rounding), directly
// from the double: rounding to float first and then to 16 bits could round twice. Values too
// large round to inf as IEEE prescribes (callers that must not lose them check for it), values
// too small to subnormals or +-0; NaN stays NaN (quiet, sign kept).
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace ng::io {

namespace detail {

// A 16-bit float with E exponent bits and M fraction bits: the bits nearest to x.
template <int E, int M>
std::uint16_t encode_float16(double x) {
  static_assert(1 + E + M == 16);
  const auto bits = std::bit_cast<std::uint64_t>(x);
  const auto sign = static_cast<std::uint16_t>((bits >> 63) << 15);
  const std::uint32_t exp_all = (1u << E) - 1;  // the inf/NaN exponent field
  const std::uint64_t dexp = (bits >> 52) & 0x7FF, dfrac = bits & ((std::uint64_t{1} << 52) - 1);
  if (dexp == 0x7FF)  // inf, or NaN made quiet (top fraction bit set)
    return static_cast<std::uint16_t>(sign | (exp_all << M) | (dfrac ? 1u << (M - 1) : 0u));
  constexpr int bias = (1 << (E - 1)) - 1;
  // |x| = sig * 2^(e - 52): sig has its leading 1 at bit 52 for a normal double.
  const int e = dexp ? static_cast<int>(dexp) - 1023 : -1022;
  const std::uint64_t sig = dexp ? (dfrac | std::uint64_t{1} << 52) : dfrac;
  // Write |x| = q * 2^(te - M), te = the exponent of the result's grid (never below the
  // subnormal exponent 1 - bias), and round q to an integer, ties to even.
  const int te = std::max(e, 1 - bias);
  const int shift = 52 - M + (te - e);  // > 0: the target has fewer fraction bits
  std::uint64_t q = 0;
  if (shift < 64) {
    q = sig >> shift;
    const std::uint64_t rest = sig & ((std::uint64_t{1} << shift) - 1), half = std::uint64_t{1} << (shift - 1);
    if (rest > half || (rest == half && (q & 1))) ++q;
  }  // else |x| < 2^-64 of the smallest subnormal: rounds to 0
  // Normal: q in [2^M, 2^(M+1)], its leading 1 adds one to the exponent field (te + bias - 1);
  // subnormal: te = 1 - bias, the field is 0 and q <= 2^M. A carry out of the fraction (q =
  // 2^(M+1), or q = 2^M from a subnormal) correctly moves to the next binade.
  const std::uint64_t mag = (static_cast<std::uint64_t>(te + bias - 1) << M) + q;
  if (mag >= (std::uint64_t{exp_all} << M)) return static_cast<std::uint16_t>(sign | (exp_all << M));  // overflow: inf
  return static_cast<std::uint16_t>(sign | mag);
}

template <int E, int M>
float decode_float16(std::uint16_t h) {
  constexpr int bias = (1 << (E - 1)) - 1;
  const std::uint32_t exp_all = (1u << E) - 1;
  const bool neg = (h >> 15) != 0;
  const std::uint32_t e = (h >> M) & exp_all, f = h & ((1u << M) - 1);
  float v;
  if (e == exp_all)
    v = f ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else if (e == 0)
    v = std::ldexp(static_cast<float>(f), 1 - bias - M);
  else
    v = std::ldexp(static_cast<float>(f | (1u << M)), static_cast<int>(e) - bias - M);
  return neg ? -v : v;
}

}  // namespace detail

inline std::uint16_t to_f16(double x) {
  return detail::encode_float16<5, 10>(x);
}
inline std::uint16_t to_bf16(double x) {
  return detail::encode_float16<8, 7>(x);
}
inline float f16_to_float(std::uint16_t h) {
  return detail::decode_float16<5, 10>(h);
}
inline float bf16_to_float(std::uint16_t h) {
  return detail::decode_float16<8, 7>(h);
}

}  // namespace ng::io
