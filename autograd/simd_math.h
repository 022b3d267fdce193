// exp, sigmoid, tanh and erfc for float32 that the compiler can vectorize (internal; used by
// ops/elementwise.cpp and ops/rnn.cpp). libm's expf/tanhf are scalar calls, so a loop
// over a tensor that calls them runs one element at a time; these are branch-free
// arithmetic on one float (selects instead of branches, no table lookups, no calls), so
// `for (i) out[i] = exp_f32(in[i])` becomes 8-wide AVX code.
//
// float64 keeps std::exp / std::tanh (correctly rounded or within 1 ulp in glibc): the
// float64 gradchecks compare against finite differences at 1e-6 and need that accuracy;
// the overloads for double below simply forward to them.
//
// Error bounds (checked in tests/test_simd_math.cpp against std::exp / std::tanh in double,
// over a dense sweep of [-110, 110] and special values):
//   exp_f32      <= 2 ulp for results >= FLT_MIN (x >= -87.33); subnormal results
//                within one subnormal step (2^-149) of the true value; +inf above
//                88.7228 (x = +inf too), 0 below -103.98 (x = -inf too), NaN -> NaN.
//   sigmoid_f32  <= 3 ulp, exactly 1 for large x, 0 for x = -inf, NaN -> NaN.
//   tanh_f32     <= 3 ulp, odd (tanh(-x) = -tanh(x)), +-1 for large |x|, NaN -> NaN.
//   erfc_f32     <= 7 ulp over [-14, 14] for results >= FLT_MIN; 0 at +inf, 2 at -inf.
//   normal_cdf_f32  <= 8 ulp for results >= FLT_MIN; 0 at -inf, 1 at +inf, NaN -> NaN.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace ng::detail {

// c ? a : b with both already computed, as bit operations. GCC (under its default
// -ftrapping-math) will not turn `c ? a : b` into a vector blend when a or b is only needed
// in one arm, and then leaves the whole loop scalar; a mask select is plain integer logic.
inline float select(bool c, float a, float b) {
  const std::uint32_t m = 0u - static_cast<std::uint32_t>(c);  // all ones if c
  return std::bit_cast<float>((std::bit_cast<std::uint32_t>(a) & m) | (std::bit_cast<std::uint32_t>(b) & ~m));
}

// e^x = 2^n * e^r with n = round(x / ln 2) and r = x - n ln 2, |r| <= ln2 / 2 (Cody & Waite
// 1980: ln 2 split in a part with few mantissa bits, so n * ln2_hi is exact for |n| < 2^14,
// plus a small correction). e^r by its Taylor polynomial to degree 7: the truncation error
// r^8 / 8! <= 5.2e-9 at |r| = 0.347, about 0.1 ulp. 2^n is built in the exponent bits, in
// two halves 2^n1 * 2^n2 (n1 = floor(n / 2)) so that both factors stay normal numbers over
// the whole clamped range n in [-150, 128]: the result underflows gradually to subnormals
// and overflows to +inf with a single rounding, like std::exp.
//
// exp_finish(r, shifted) = 2^n e^r: n from the bits of `shifted` = x log2 e + 1.5 * 2^23,
// r = x - n ln 2 the reduced argument.
inline float exp_finish(float r, float shifted) {
  constexpr float kRound = 12582912.0f;
  // e^r = 1 + r + r^2/2! + ... + r^7/7!  (Horner)
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // n as an integer from the bits of `shifted` (unsigned arithmetic: no overflow UB even for NaN).
  const std::uint32_t ni = std::bit_cast<std::uint32_t>(shifted) - std::bit_cast<std::uint32_t>(kRound);
  const std::uint32_t n1 = static_cast<std::uint32_t>(static_cast<std::int32_t>(ni) >> 1);  // floor(n / 2)
  const std::uint32_t n2 = ni - n1;
  const float two_n1 = std::bit_cast<float>((n1 + 127u) << 23);
  const float two_n2 = std::bit_cast<float>((n2 + 127u) << 23);
  return p * two_n1 * two_n2;
}

inline float exp_f32(float x) {
  // Clamp to where the result is neither surely 0 nor surely inf. (NaN fails both
  // comparisons and stays NaN; it is passed through at the end.)
  float xc = select(x < -104.0f, -104.0f, x);
  xc = select(xc > 89.0f, 89.0f, xc);
  // n = round(x log2 e): adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits.
  constexpr float kRound = 12582912.0f;
  const float shifted = xc * 1.44269504088896341f + kRound;
  const float n = shifted - kRound;
  // r = x - n ln 2 in two steps (ln2_hi = 0.693359375 has 10 significant bits).
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
  return select(x != x, x, exp_finish(r, shifted));
}

// exp_sum_f32(x, lo) = e^(x + lo) for an argument held as a sum whose rounding to one float
// would cost accuracy (x large, lo a small correction, |lo| < 4): n is chosen from the
// rounded sum, and lo enters only the small reduced argument r = (x - n ln2) + lo.
inline float exp_sum_f32(float x, float lo) {
  const float xs = x + lo;
  float xc = select(xs < -104.0f, -104.0f, xs);  // clamped as exp_f32 (then lo is dropped)
  xc = select(xc > 89.0f, 89.0f, xc);
  const bool clamped = xc != xs;
  const float hi = select(clamped, xc, x);
  const float lo_used = select(clamped, 0.0f, lo);
  constexpr float kRound = 12582912.0f;
  const float shifted = xc * 1.44269504088896341f + kRound;
  const float n = shifted - kRound;
  const float r = ((hi - n * 0.693359375f) - n * -2.12194440e-4f) + lo_used;
  return select(xs != xs, xs, exp_finish(r, shifted));
}

// sigmoid(x) = 1 / (1 + e^-x), evaluated with e = e^-|x| <= 1 only (never e^large):
//   x >= 0: 1 / (1 + e),   x < 0: e / (1 + e).
inline float sigmoid_f32(float x) {
  const float e = exp_f32(-std::fabs(x));
  const float s = 1.0f / (1.0f + e);
  return select(x >= 0.0f, s, e * s);
}

// tanh(x) = sign(x) (1 - e) / (1 + e) with e = e^(-2|x|), for |x| >= 0.5 (there e <= 0.37,
// so 1 - e does not cancel). Below 0.5 the odd Taylor series
//   tanh x = x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 - 1382x^11/155925
//            + 21844x^13/6081075 - 929569x^15/638512875 + 6404582x^17/10854718875
// whose first omitted term (x^19) is < 5e-10 at |x| = 0.5, 0.02 ulp of tanh(0.5).
inline float tanh_f32(float x) {
  const float ax = std::fabs(x);
  const float e = exp_f32(-2.0f * ax);
  const float t_big = (1.0f - e) / (1.0f + e);
  const float x2 = x * x;
  float q = 6404582.0f / 10854718875.0f;
  q = q * x2 - 929569.0f / 638512875.0f;
  q = q * x2 + 21844.0f / 6081075.0f;
  q = q * x2 - 1382.0f / 155925.0f;
  q = q * x2 + 62.0f / 2835.0f;
  q = q * x2 - 17.0f / 315.0f;
  q = q * x2 + 2.0f / 15.0f;
  q = q * x2 - 1.0f / 3.0f;
  const float t_small = ax + ax * (x2 * q);
  const float t = select(ax < 0.5f, t_small, t_big);
  return std::copysign(t, x);  // odd; NaN stays NaN
}

// erfc(x) by the Chebyshev fit of Press et al., Numerical Recipes in C, 2nd ed. (1992),
// section 6.2: for z = |x| >= 0 and t = 1 / (1 + z/2),
//   erfc(z) = t exp(-z^2 - 1.26551223 + t (1.00002368 + t (0.37409196 + ... + t 0.17087277)))
// with a relative error below 1.2e-7 for every z >= 0 (in exact arithmetic); erfc(-z) =
// 2 - erfc(z). z^2 is large where erfc is small (z^2 = 87 at erfc = 1e-39), and a float
// exponent -z^2 + poly(t) rounded as a whole would carry an absolute error of ulp(z^2)/2,
// which exp turns into a relative one (18 ulp at z = 4). So z^2 = s a^2 is formed from a
// split a = ah + al, ah = a with its low 12 mantissa bits cleared (Dekker 1971): s ah^2 is
// exact in float for s a power of two, and
//   erfc(z) = t exp(-s ah^2 + [poly(t) - s (2 ah + al) al])
// with the exponent held as that sum (exp_sum_f32): no rounding of the whole.
// erfc_nr(z, a, s): erfc(z) for z = sqrt(s) a >= 0 (s = 1 for erfc, 1/2 for the normal CDF).
inline float erfc_nr(float z, float a, float s) {
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float ah = std::bit_cast<float>(std::bit_cast<std::uint32_t>(a) & 0xFFFFF000u);
  const float al = a - ah;                                                        // exact
  return t * exp_sum_f32(-(s * (ah * ah)), p - s * ((ah + ah + al) * al));  // NaN stays NaN
}

inline float erfc_f32(float x) {
  const float z = select(std::fabs(x) > 30.0f, 30.0f, std::fabs(x));  // erfc(30) is 0 in float; keeps NaN
  const float r = erfc_nr(z, z, 1.0f);                                   // erfc(|x|)
  return select(x < 0.0f, 2.0f - r, r);
}

// The standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2, accurate relative to Phi itself on
// both tails (unlike (1 + erf(x / sqrt 2)) / 2, which cancels for x << 0). The exponent is
// formed from x itself (s = 1/2), not from the rounded x / sqrt 2.
inline float normal_cdf_f32(float x) {
  const float a = select(std::fabs(x) > 30.0f, 30.0f, std::fabs(x));  // Phi(-30) is 0 in float; keeps NaN
  const float r = erfc_nr(a * 0.707106781186547524f, a, 0.5f);  // erfc(|x| / sqrt 2)
  return 0.5f * select(x > 0.0f, 2.0f - r, r);
}

// float64: the exact library functions (see the top of the file).
inline float exp_of(float x) {
  return exp_f32(x);
}
inline double exp_of(double x) {
  return std::exp(x);
}
inline float sigmoid_of(float x) {
  return sigmoid_f32(x);
}
inline double sigmoid_of(double x) {
  // numerically stable on both sides: never exp of a large positive number
  const double e = std::exp(-std::fabs(x));
  return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}
inline float tanh_of(float x) {
  return tanh_f32(x);
}
inline double tanh_of(double x) {
  return std::tanh(x);
}
inline float normal_cdf_of(float x) {
  return normal_cdf_f32(x);
}
inline double normal_cdf_of(double x) {
  return 0.5 * std::erfc(x * -0.707106781186547524);
}

}  // namespace ng::detail
