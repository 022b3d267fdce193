// io/float16.h: F16 and BF16 encoding (round to nearest, ties to even) and decoding, against
// exact values worked out by hand, and exhaustively against independent references: the
// compiler's _Float16 (IEEE binary16 arithmetic) for F16, and for BF16 the fact that a bfloat16
// is the upper half of a float32.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "autograd/random.h"
#include "io/float16.h"

using ng::io::bf16_to_float;
using ng::io::f16_to_float;
using ng::io::to_bf16;
using ng::io::to_f16;

namespace {
std::uint16_t bits_of(_Float16 h) {
  std::uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
_Float16 from_bits(std::uint16_t b) {
  _Float16 h;
  std::memcpy(&h, &b, 2);
  return h;
}
}  // namespace

TEST_CASE("float16: F16 exact values, ties to even, subnormals, overflow, inf and NaN") {
  CHECK(to_f16(1.0) == 0x3C00);
  CHECK(to_f16(-2.0) == 0xC000);
  CHECK(to_f16(0.0) == 0x0000);
  CHECK(to_f16(-0.0) == 0x8000);
  CHECK(to_f16(65504.0) == 0x7BFF);   // the largest finite F16
  CHECK(to_f16(65519.99) == 0x7BFF);  // below the midpoint to 2^16: rounds down
  CHECK(to_f16(65520.0) == 0x7C00);   // the midpoint: ties to even = 2^16, out of range: inf
  CHECK(to_f16(1e300) == 0x7C00);
  CHECK(to_f16(-1e300) == 0xFC00);
  CHECK(to_f16(INFINITY) == 0x7C00);
  CHECK(to_f16(-INFINITY) == 0xFC00);
  CHECK((to_f16(NAN) & 0x7C00) == 0x7C00);
  CHECK((to_f16(NAN) & 0x03FF) != 0);
  // ulp(1) = 2^-10: 1 + 2^-11 is a tie between 0x3C00 (even) and 0x3C01 -> 0x3C00;
  // 1 + 3*2^-11 ties between 0x3C01 and 0x3C02 (even) -> 0x3C02.
  CHECK(to_f16(1.0 + std::ldexp(1.0, -11)) == 0x3C00);
  CHECK(to_f16(1.0 + 3 * std::ldexp(1.0, -11)) == 0x3C02);
  CHECK(to_f16(1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40)) == 0x3C01);  // just above the tie
  // Subnormals: the smallest is 2^-24; 2^-25 is a tie between 0 and it -> 0 (even).
  CHECK(to_f16(std::ldexp(1.0, -24)) == 0x0001);
  CHECK(to_f16(std::ldexp(1.0, -25)) == 0x0000);
  CHECK(to_f16(std::ldexp(1.0, -25) * (1 + 1e-9)) == 0x0001);
  CHECK(to_f16(3 * std::ldexp(1.0, -25)) == 0x0002);                     // 1.5 ulp: ties to even 2
  CHECK(to_f16(std::ldexp(1.0, -14)) == 0x0400);                         // the smallest normal
  CHECK(to_f16(std::ldexp(1.0, -14) - std::ldexp(1.0, -25)) == 0x0400);  // rounds up into the normals
  CHECK(to_f16(-std::ldexp(1.0, -30)) == 0x8000);
  CHECK(to_f16(std::numeric_limits<double>::denorm_min()) == 0x0000);
  CHECK(to_f16(0.1) == 0x2E66);  // 0.1 = 0x2E66 (0.0999755859375)

  CHECK(f16_to_float(0x3C00) == 1.0f);
  CHECK(f16_to_float(0x7BFF) == 65504.0f);
  CHECK(f16_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(f16_to_float(0x03FF) == 1023 * std::ldexp(1.0f, -24));
  CHECK(f16_to_float(0x2E66) == 0.0999755859375f);
  CHECK(std::signbit(f16_to_float(0x8000)));
  CHECK(f16_to_float(0xFC00) == -INFINITY);
  CHECK(std::isnan(f16_to_float(0x7E00)));
  CHECK(std::isnan(f16_to_float(0xFC01)));
}

TEST_CASE("float16: F16 agrees with the compiler's binary16 on every pattern and on random doubles") {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto h = static_cast<std::uint16_t>(b);
    const float ref = static_cast<float>(from_bits(h));
    const float got = f16_to_float(h);
    if (std::isnan(ref)) {
      REQUIRE(std::isnan(got));
      continue;
    }
    REQUIRE(std::bit_cast<std::uint32_t>(got) == std::bit_cast<std::uint32_t>(ref));
    REQUIRE(to_f16(got) == h);  // every value encodes back to itself
    // The midpoints to the next pattern up are the ties: compare with the compiler there too.
    if ((b & 0x7FFF) < 0x7BFF) {
      const double next = f16_to_float(static_cast<std::uint16_t>(b + 1));
      const double mid = (static_cast<double>(got) + next) / 2;
      REQUIRE(to_f16(mid) == bits_of(static_cast<_Float16>(mid)));
    }
  }
  ng::Generator g(17);
  for (int i = 0; i < 20000; ++i) {
    // Magnitudes from 2^-30 to 2^17: subnormals, normals and overflow.
    const double x =
        (g.uniform() < 0.5 ? -1 : 1) * std::ldexp(1 + g.uniform(), static_cast<int>(g.uniform() * 47) - 30);
    REQUIRE(to_f16(x) == bits_of(static_cast<_Float16>(x)));
  }
}

TEST_CASE("float16: BF16 exact values and every pattern (a bfloat16 is the top half of a float)") {
  CHECK(to_bf16(1.0) == 0x3F80);
  CHECK(to_bf16(-2.0) == 0xC000);
  CHECK(to_bf16(1.0 + std::ldexp(1.0, -8)) == 0x3F80);      // tie -> even
  CHECK(to_bf16(1.0 + 3 * std::ldexp(1.0, -8)) == 0x3F82);  // tie -> even
  CHECK(to_bf16(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30)) == 0x3F81);
  CHECK(to_bf16(std::ldexp(1.0, -133)) == 0x0001);  // the smallest subnormal
  CHECK(to_bf16(std::ldexp(1.0, -134)) == 0x0000);  // tie -> 0
  CHECK(to_bf16(3.3895313892515355e38) == 0x7F7F);  // the largest finite
  CHECK(to_bf16(1e39) == 0x7F80);
  CHECK(to_bf16(-INFINITY) == 0xFF80);
  CHECK((to_bf16(NAN) & 0x7F80) == 0x7F80);
  CHECK((to_bf16(NAN) & 0x007F) != 0);
  CHECK(bf16_to_float(0x3F80) == 1.0f);
  CHECK(bf16_to_float(0x7F7F) == 3.3895313892515355e38f);

  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto h = static_cast<std::uint16_t>(b);
    const float ref = std::bit_cast<float>(b << 16);
    const float got = bf16_to_float(h);
    if (std::isnan(ref)) {
      REQUIRE(std::isnan(got));
      continue;
    }
    REQUIRE(std::bit_cast<std::uint32_t>(got) == b << 16);
    REQUIRE(to_bf16(got) == h);
  }
  // Random floats against the integer formula for round-to-nearest-even on the float's bits:
  // add 0x7FFF plus the lowest kept bit, then drop the low 16 bits.
  ng::Generator g(23);
  for (int i = 0; i < 100000; ++i) {
    auto u = static_cast<std::uint32_t>(g.uniform() * 4294967296.0);
    if ((u & 0x7F800000) == 0x7F800000) continue;  // inf and NaN
    const std::uint32_t rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16;
    REQUIRE(to_bf16(std::bit_cast<float>(u)) == rounded);
  }
}
