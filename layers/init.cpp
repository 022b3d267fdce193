#include "layers/init.h"

#include <cmath>
#include <string>

#include "autograd/tape.h"

namespace ng::nn::init {

double calculate_gain(std::string_view nl, double param) {
  if (nl == "linear" || nl == "identity" || nl == "sigmoid" || nl.starts_with("conv")) return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nl == "selu") return 0.75;
  fail<ValueError>("calculate_gain: unsupported nonlinearity '{}'", std::string(nl));
}

std::pair<std::int64_t, std::int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  if (t.dim() < 2)
    fail<ShapeError>("init: fan in and fan out need a tensor with at least 2 dims, got {}", t.shape());
  std::int64_t receptive = 1;
  for (int d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

namespace {
// Overwrite t's values with src's (same shape), outside autograd.
Tensor& assign(Tensor& t, const Tensor& src) {
  NoGradGuard ng;
  t.copy_(src);
  return t;
}
std::int64_t fan(const Tensor& t, FanMode mode) {
  const auto [in, out] = calculate_fan_in_and_fan_out(t);
  return mode == FanMode::fan_in ? in : out;
}
}  // namespace

Tensor& uniform_(Tensor& t, double lo, double hi, Generator* gen) {
  return assign(t, uniform(t.shape(), lo, hi, t.dtype(), gen));
}
Tensor& normal_(Tensor& t, double mean, double stddev, Generator* gen) {
  return assign(t, normal(t.shape(), mean, stddev, t.dtype(), gen));
}
Tensor& constant_(Tensor& t, double value) {
  NoGradGuard ng;
  return t.fill_(value);
}
Tensor& zeros_(Tensor& t) { return constant_(t, 0.0); }
Tensor& ones_(Tensor& t) { return constant_(t, 1.0); }

Tensor& kaiming_uniform_(Tensor& t, double a, FanMode mode, std::string_view nonlinearity, Generator* gen) {
  const std::int64_t f = fan(t, mode);
  if (f == 0) return t;  // PyTorch warns and leaves a zero-element tensor alone
  const double bound = calculate_gain(nonlinearity, a) * std::sqrt(3.0 / static_cast<double>(f));
  return uniform_(t, -bound, bound, gen);
}
Tensor& kaiming_normal_(Tensor& t, double a, FanMode mode, std::string_view nonlinearity, Generator* gen) {
  const std::int64_t f = fan(t, mode);
  if (f == 0) return t;
  return normal_(t, 0.0, calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(f)), gen);
}
Tensor& xavier_uniform_(Tensor& t, double gain, Generator* gen) {
  const auto [in, out] = calculate_fan_in_and_fan_out(t);
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(in + out));
  return uniform_(t, -bound, bound, gen);
}
Tensor& xavier_normal_(Tensor& t, double gain, Generator* gen) {
  const auto [in, out] = calculate_fan_in_and_fan_out(t);
  return normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(in + out)), gen);
}

}  // namespace ng::nn::init
