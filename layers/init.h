// Parameter initializers with torch.nn.init's names, formulas and defaults. Each fills a
// tensor in place (no autograd) from `gen`, or the calling thread's default generator.
//
//   gain(nonlinearity, a): linear/conv/sigmoid 1, tanh 5/3, relu sqrt(2),
//                          leaky_relu sqrt(2 / (1 + a^2)), selu 3/4
//   fan_in  = size(1) * receptive field,  fan_out = size(0) * receptive field
//             (receptive field = product of the dims after the first two)
//   kaiming_uniform_: U(-b, b), b = gain * sqrt(3 / fan)        (He et al. 2015)
//   kaiming_normal_:  N(0, std^2), std = gain / sqrt(fan)
//   xavier_uniform_:  U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))   (Glorot & Bengio 2010)
//   xavier_normal_:   N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))
// Linear and Conv2d default to kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
#pragma once
#include <cstdint>
#include <string_view>
#include <utility>

#include "autograd/random.h"
#include "autograd/tensor.h"

namespace ng::nn::init {

enum class FanMode { fan_in, fan_out };

double calculate_gain(std::string_view nonlinearity, double param = 0.01);
// (fan_in, fan_out) of a weight with at least 2 dims.
std::pair<std::int64_t, std::int64_t> calculate_fan_in_and_fan_out(const Tensor& t);

Tensor& uniform_(Tensor& t, double lo = 0.0, double hi = 1.0, Generator* gen = nullptr);
Tensor& normal_(Tensor& t, double mean = 0.0, double stddev = 1.0, Generator* gen = nullptr);
Tensor& constant_(Tensor& t, double value);
Tensor& zeros_(Tensor& t);
Tensor& ones_(Tensor& t);
Tensor& kaiming_uniform_(Tensor& t, double a = 0.0, FanMode mode = FanMode::fan_in,
                         std::string_view nonlinearity = "leaky_relu", Generator* gen = nullptr);
Tensor& kaiming_normal_(Tensor& t, double a = 0.0, FanMode mode = FanMode::fan_in,
                        std::string_view nonlinearity = "leaky_relu", Generator* gen = nullptr);
Tensor& xavier_uniform_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
Tensor& xavier_normal_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);

}  // namespace ng::nn::init
