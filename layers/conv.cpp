#include "layers/conv.h"

#include <cmath>

#include "layers/init.h"
#include "layers/repr.h"

namespace ng::nn {

Conv2d::Conv2d(std::int64_t in, std::int64_t out, Size2 k, Size2 s, Conv2dPadding pad, Size2 d, std::int64_t g,
               bool has_bias, Generator* gen, DType dtype)
    : in_channels(in), out_channels(out), kernel_size(k), stride(s), padding(pad.size), dilation(d),
      padding_string(std::move(pad.mode)), groups(g) {
  const Size2 p = pad.size;
  if (!padding_string.empty() && padding_string != "same" && padding_string != "valid")
    fail<ValueError>("Conv2d: invalid padding string '{}', should be one of 'valid', 'same'", padding_string);
  if (padding_string == "same" && (s.h != 1 || s.w != 1))
    fail<ValueError>("Conv2d: padding='same' is not supported for strided convolutions (stride {})",
                     detail::py_tuple(s));
  if (in <= 0 || out <= 0)
    fail<ValueError>("Conv2d: channel counts must be positive, got in_channels={} out_channels={}", in, out);
  if (g <= 0) fail<ValueError>("Conv2d: groups must be positive, got {}", g);
  if (in % g != 0) fail<ValueError>("Conv2d: in_channels must be divisible by groups: {} vs groups={}", in, g);
  if (out % g != 0) fail<ValueError>("Conv2d: out_channels must be divisible by groups: {} vs groups={}", out, g);
  if (k.h <= 0 || k.w <= 0) fail<ValueError>("Conv2d: kernel_size must be positive, got {}", detail::py_tuple(k));
  if (s.h <= 0 || s.w <= 0) fail<ValueError>("Conv2d: stride must be positive, got {}", detail::py_tuple(s));
  if (p.h < 0 || p.w < 0) fail<ValueError>("Conv2d: padding must be non-negative, got {}", detail::py_tuple(p));
  if (d.h <= 0 || d.w <= 0) fail<ValueError>("Conv2d: dilation must be positive, got {}", detail::py_tuple(d));
  detail::check_param_dtype(dtype, "Conv2d");
  if (padding_string == "same") padding = Size2(d.h * (k.h - 1) / 2, d.w * (k.w - 1) / 2);  // the left parts
  weight = register_parameter("weight", empty({out, in / g, k.h, k.w}, dtype));
  if (has_bias) bias = register_parameter("bias", empty({out}, dtype));
  else register_parameter("bias", Tensor());
  reset_parameters(gen);
}

void Conv2d::reset_parameters(Generator* gen) {
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::fan_in, "leaky_relu", gen);
  if (bias.defined()) {
    const auto fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  if (x.dim() != 3 && x.dim() != 4)
    fail<ShapeError>("Conv2d({}): expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got {}", extra_repr(), x.shape());
  const bool unbatched = x.dim() == 3;
  const Tensor x4 = unbatched ? unsqueeze(x, 0) : x;
  if (x4.size(1) != in_channels)
    fail<ShapeError>("Conv2d({}): input {} has {} channels: expected {} vs actual {}", extra_repr(), x.shape(),
                     x4.size(1), in_channels, x4.size(1));
  // "same" with an odd total padding dilation * (k - 1): conv2d pads `padding` (the left part)
  // on both sides, and one more row / column of zeros goes at the bottom / right first.
  const std::int64_t extra_h = padding_string == "same" ? dilation.h * (kernel_size.h - 1) % 2 : 0;
  const std::int64_t extra_w = padding_string == "same" ? dilation.w * (kernel_size.w - 1) % 2 : 0;
  const Tensor xp = extra_h || extra_w ? pad(x4, {0, extra_w, 0, extra_h}) : x4;
  const Tensor y = conv2d(xp, weight, bias, stride, padding, dilation, groups);
  return unbatched ? squeeze(y, 0) : y;
}

std::string Conv2d::extra_repr() const {
  // PyTorch prints padding/dilation/groups/bias only when they differ from the defaults.
  std::string s = fmt::format("{}, {}, kernel_size={}, stride={}", in_channels, out_channels,
                              detail::py_tuple(kernel_size), detail::py_tuple(stride));
  if (!padding_string.empty()) s += ", padding=" + padding_string;
  else if (padding != Size2(0)) s += ", padding=" + detail::py_tuple(padding);
  if (dilation != Size2(1)) s += ", dilation=" + detail::py_tuple(dilation);
  if (groups != 1) s += fmt::format(", groups={}", groups);
  if (!bias.defined()) s += ", bias=False";
  return s;
}

}  // namespace ng::nn
