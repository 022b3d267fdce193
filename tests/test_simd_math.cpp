// autograd/simd_math.h: the vectorizable float32 exp, sigmoid and tanh against std::exp /
// std::tanh evaluated in double, in units in the last place (ulp) of the float result, over
// a dense sweep of [-110, 110] plus special values; and the ops that use them.
#include <cfloat>
#include <cmath>
#include <limits>

#include "autograd/simd_math.h"
#include "tests/helpers.h"

using namespace ng;

namespace {

// |got - ref| in ulps of the float nearest to ref (subnormal results: in units of 2^-149).
double ulp_error(float got, double ref) {
  const float r = static_cast<float>(ref);
  const float a = std::fabs(r);
  const double ulp = a < FLT_MIN ? std::numeric_limits<float>::denorm_min()
                                 : static_cast<double>(std::nextafter(a, INFINITY) - a);
  return std::fabs(static_cast<double>(got) - ref) / ulp;
}

struct Worst {
  double err = 0;
  float at = 0;
  void update(double e, float x) {
    if (e > err) err = e, at = x;
  }
};

}  // namespace

TEST_CASE("simd_math: exp_f32, sigmoid_f32 and tanh_f32 are within 2, 3 and 3 ulp over [-110, 110]") {
  Worst e_exp, e_exp_sub, e_sig, e_tanh;
  const int steps = 1 << 21;
  for (int k = 0; k <= steps; ++k) {
    const float x = static_cast<float>(-110.0 + 220.0 * k / steps);
    const double xd = x;
    const double ref = std::exp(xd);
    if (ref < FLT_MIN) e_exp_sub.update(ulp_error(detail::exp_f32(x), ref), x);
    else if (ref <= FLT_MAX) e_exp.update(ulp_error(detail::exp_f32(x), ref), x);
    e_sig.update(ulp_error(detail::sigmoid_f32(x), 1.0 / (1.0 + std::exp(-xd))), x);
    e_tanh.update(ulp_error(detail::tanh_f32(x), std::tanh(xd)), x);
  }
  // Small arguments, where tanh uses its series and exp is near 1.
  for (int k = -2000; k <= 2000; ++k) {
    const float x = static_cast<float>(k) * 1e-3f;
    e_exp.update(ulp_error(detail::exp_f32(x), std::exp(static_cast<double>(x))), x);
    e_tanh.update(ulp_error(detail::tanh_f32(x), std::tanh(static_cast<double>(x))), x);
    const float tiny = static_cast<float>(k) * 1e-30f;
    e_tanh.update(ulp_error(detail::tanh_f32(tiny), std::tanh(static_cast<double>(tiny))), tiny);
  }
  INFO("exp worst ", e_exp.err, " ulp at ", e_exp.at, "; subnormal results ", e_exp_sub.err, " at ", e_exp_sub.at,
       "; sigmoid ", e_sig.err, " at ", e_sig.at, "; tanh ", e_tanh.err, " at ", e_tanh.at);
  CHECK(e_exp.err <= 2.0);
  CHECK(e_exp_sub.err <= 1.0);
  CHECK(e_sig.err <= 3.0);
  CHECK(e_tanh.err <= 3.0);
}

TEST_CASE("simd_math: infinities, NaN, overflow and underflow as std::exp / std::tanh") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(detail::exp_f32(inf) == inf);
  CHECK(detail::exp_f32(-inf) == 0.0f);
  CHECK(std::isnan(detail::exp_f32(nan)));
  CHECK(detail::exp_f32(88.73f) == inf);  // e^88.7228 is the largest float
  CHECK(detail::exp_f32(1000.0f) == inf);
  CHECK(std::isfinite(detail::exp_f32(88.72f)));
  CHECK(detail::exp_f32(-104.0f) == 0.0f);
  CHECK(detail::exp_f32(-1000.0f) == 0.0f);
  CHECK(detail::exp_f32(-103.0f) > 0.0f);  // subnormal, not flushed
  CHECK(detail::exp_f32(0.0f) == 1.0f);
  CHECK(detail::sigmoid_f32(inf) == 1.0f);
  CHECK(detail::sigmoid_f32(-inf) == 0.0f);
  CHECK(detail::sigmoid_f32(50.0f) == 1.0f);
  CHECK(detail::sigmoid_f32(0.0f) == 0.5f);
  CHECK(std::isnan(detail::sigmoid_f32(nan)));
  CHECK(detail::tanh_f32(inf) == 1.0f);
  CHECK(detail::tanh_f32(-inf) == -1.0f);
  CHECK(detail::tanh_f32(20.0f) == 1.0f);
  CHECK(std::isnan(detail::tanh_f32(nan)));
  CHECK(std::signbit(detail::tanh_f32(-0.0f)));
  for (float x : {0.1f, 0.49f, 0.5f, 0.51f, 3.0f}) CHECK(detail::tanh_f32(-x) == -detail::tanh_f32(x));
}

TEST_CASE("simd_math: exp, sigmoid and tanh ops use it for float32 and std:: for float64") {
  const Tensor x64 = arange(-30.0, 30.5, 1.0, DType::f64);
  const auto v = x64.to_vector();
  const auto e64 = exp(x64).to_vector(), s64 = sigmoid(x64).to_vector(), t64 = tanh(x64).to_vector();
  const auto e32 = exp(x64.to(DType::f32)).to_vector(), t32 = tanh(x64.to(DType::f32)).to_vector();
  for (std::size_t i = 0; i < v.size(); ++i) {
    CHECK(e64[i] == std::exp(v[i]));  // exactly the library function
    CHECK(t64[i] == std::tanh(v[i]));
    CHECK(s64[i] == doctest::Approx(1.0 / (1.0 + std::exp(-v[i]))).epsilon(1e-15));
    CHECK(e32[i] == doctest::Approx(std::exp(v[i])).epsilon(3e-7));
    CHECK(t32[i] == doctest::Approx(std::tanh(v[i])).epsilon(3e-7));
  }
}

TEST_CASE("simd_math: erfc_f32 within 7 ulp over [-14, 14], normal_cdf_f32 within 8 ulp where Phi >= FLT_MIN") {
  Worst e_erfc, e_cdf;
  const int steps = 1 << 21;
  for (int k = 0; k <= steps; ++k) {
    const float x = static_cast<float>(-14.0 + 28.0 * k / steps);
    const double xd = x;
    const double erfc = std::erfc(xd), cdf = 0.5 * std::erfc(-xd / std::sqrt(2.0));
    if (erfc >= FLT_MIN) e_erfc.update(ulp_error(detail::erfc_f32(x), erfc), x);
    if (cdf >= FLT_MIN) e_cdf.update(ulp_error(detail::normal_cdf_f32(x), cdf), x);
  }
  INFO("erfc worst ", e_erfc.err, " ulp at ", e_erfc.at, "; normal cdf ", e_cdf.err, " at ", e_cdf.at);
  CHECK(e_erfc.err <= 7.0);
  CHECK(e_cdf.err <= 8.0);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(detail::erfc_f32(0.0f) == doctest::Approx(1.0).epsilon(2e-7));
  CHECK(detail::erfc_f32(inf) == 0.0f);
  CHECK(detail::erfc_f32(-inf) == 2.0f);
  CHECK(detail::normal_cdf_f32(inf) == 1.0f);
  CHECK(detail::normal_cdf_f32(-inf) == 0.0f);
  CHECK(detail::normal_cdf_f32(-20.0f) == 0.0f);  // 2.8e-89 underflows
  CHECK(std::isnan(detail::erfc_f32(nan)));
  CHECK(std::isnan(detail::normal_cdf_f32(nan)));
}
