// float32 accuracy of the normalization outputs (training mode, random weight and bias): y in
// float32 against the same op in float64 on exactly the same float32 values, in units of the
// output scale (the root mean square of the float64 y). The floor is correct rounding,
// float(y_f64): the tests hold the error to a small margin above it, and below what PyTorch's
// float32 kernels measure on such inputs (bench/norm_accuracy.cpp with
// scripts/norm_accuracy_torch.py; the numbers are in docs/normalization.md, "float32 accuracy").
// Ordinary inputs N(0, 1) and inputs offset by 1e4, for every layout of the kernels.
#include <cmath>
#include <string>

#include "autograd/ops/norm_kernels.h"
#include "tests/helpers.h"

using namespace ng;

namespace {

struct Case {
  std::string name;
  std::string kind;  // batch_norm, layer_norm, group_norm, instance_norm, rms_norm
  Shape shape;
  std::int64_t param;   // weight and bias length (channels), or the normalized size D
  std::int64_t groups;  // group_norm only
  // PyTorch 1.13's float32 error (max, mean) on the same inputs, ordinary and offset by 1e4:
  // `norm_accuracy --small --dump DIR` and scripts/norm_accuracy_torch.py DIR.
  double torch_max, torch_mean, torch_offset_max, torch_offset_mean;
};

Tensor run(const Case& c, const Tensor& x, const Tensor& w, const Tensor& b) {
  if (c.kind == "batch_norm") return batch_norm(x, {}, {}, w, b, /*training=*/true);
  if (c.kind == "layer_norm") return layer_norm(x, Shape{c.param}, w, b);
  if (c.kind == "group_norm") return group_norm(x, c.groups, w, b);
  if (c.kind == "instance_norm") return instance_norm(x, {}, {}, w, b);
  return rms_norm(x, Shape{c.param}, w, 1e-5);
}

struct Accuracy {
  double max = 0, mean = 0;                  // |y_f32 - y_f64| / rms(y_f64)
  double rounded_max = 0, rounded_mean = 0;  // the same for float(y_f64): correct rounding
};

// x = float(offset + N(0, 1)), weight = float(1 + N(0, 1) / 4), bias = float(N(0, 1) / 2).
Accuracy measure(const Case& c, double offset, std::uint64_t seed) {
  Generator gen(seed);
  const Tensor x = add(randn(c.shape, DType::f64, &gen), offset).to(DType::f32);
  const Tensor w = add(mul(randn(Shape{c.param}, DType::f64, &gen), 0.25), 1.0).to(DType::f32);
  const Tensor b = mul(randn(Shape{c.param}, DType::f64, &gen), 0.5).to(DType::f32);
  const std::vector<double> y = run(c, x, w, b).to_vector();
  const Tensor ref_t = run(c, x.to(DType::f64), w.to(DType::f64), b.to(DType::f64));
  const std::vector<double> ref = ref_t.to_vector(), rounded = ref_t.to(DType::f32).to_vector();
  double ss = 0;
  for (double r : ref) ss += r * r;
  const double scale = std::sqrt(ss / static_cast<double>(ref.size()));
  Accuracy a;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double e = std::abs(y[i] - ref[i]) / scale, er = std::abs(rounded[i] - ref[i]) / scale;
    a.max = std::max(a.max, e);
    a.mean += e;
    a.rounded_max = std::max(a.rounded_max, er);
    a.rounded_mean += er;
  }
  a.mean /= static_cast<double>(ref.size());
  a.rounded_mean /= static_cast<double>(ref.size());
  return a;
}

// Every layout of the fast kernels: row runs (E > 1: BatchNorm on maps, GroupNorm,
// InstanceNorm), columns (BatchNorm on (N, C) and short maps), rows with a weight per element
// (LayerNorm, RMSNorm; one longer than a moments chunk).
const std::vector<Case> kCases = {
    {"batch_norm2d (16, 32, 14, 14)", "batch_norm", Shape{16, 32, 14, 14}, 32, 0, 4.79e-7, 3.19e-8, 7.60e-4, 2.57e-4},
    {"batch_norm2d (32, 16, 4, 4), columns", "batch_norm", Shape{32, 16, 4, 4}, 16, 0, 4.15e-7, 3.19e-8, 7.23e-4, 2.86e-4},
    {"batch_norm1d (128, 64), columns", "batch_norm", Shape{128, 64}, 64, 0, 7.18e-7, 5.54e-8, 4.03e-3, 1.21e-3},
    {"layer_norm (256, 1024)", "layer_norm", Shape{256, 1024}, 1024, 0, 6.61e-7, 3.55e-8, 2.46e-3, 4.45e-4},
    {"layer_norm (64, 1500)", "layer_norm", Shape{64, 1500}, 1500, 0, 9.91e-7, 4.04e-8, 2.25e-3, 4.20e-4},
    {"layer_norm (64, 37)", "layer_norm", Shape{64, 37}, 37, 0, 3.73e-7, 3.56e-8, 3.16e-3, 4.65e-4},
    {"group_norm (8, 32, 14, 14), 8 groups", "group_norm", Shape{8, 32, 14, 14}, 32, 8, 5.22e-7, 3.75e-8, 1.89e-3, 4.60e-4},
    {"instance_norm (4, 16, 28, 28)", "instance_norm", Shape{4, 16, 28, 28}, 16, 0, 4.92e-7, 3.34e-8, 8.87e-4, 2.98e-4},
    {"rms_norm (256, 1024)", "rms_norm", Shape{256, 1024}, 1024, 0, 7.50e-7, 3.65e-8, 3.24e-7, 4.58e-8},
};

}  // namespace

// With a fused multiply-add (norm_kernels.h, affine_output) y is rounded once, and the error is
// correct rounding's plus the rounding of the statistics, which come from float sums of the
// deviations in chunks (norm_moments.cpp), of the shift, and of d = x - centre where it is
// inexact. On ordinary inputs that is a few units of 2^-24 and a mean error within 1.8 times
// correct rounding's; offset by 1e4, the rows' float sums leave up to ~15 units (LayerNorm,
// GroupNorm and InstanceNorm rows; BatchNorm's runs stay near the floor). Both below PyTorch's
// error on the same inputs. Without a fused multiply-add (portable builds, e.g. the asan preset)
// each multiply-add rounds twice and the products are rounded at full size: on ordinary inputs
// the error grows to several times correct rounding's (LayerNorm rows up to ~18 units, more than
// PyTorch's FMA kernels), so there only the offset inputs of the mean-subtracting norms are
// compared with PyTorch (by orders of magnitude).
TEST_CASE("norm accuracy: float32 outputs within a few units of 2^-24 of correctly rounded, and below PyTorch's error") {
  const test::OmpThreads one(1);
  const bool fma = norm_kernels::has_fused_multiply_add();
  const double u = std::ldexp(1.0, -24);
  std::uint64_t seed = 1;  // the seeds of norm_accuracy --small
  for (const double offset : {0.0, 1e4}) {
    const bool ordinary = offset == 0.0;
    const double max_margin = (ordinary ? (fma ? 5 : 24) : (fma ? 16 : 32)) * u;
    const double mean_factor = ordinary ? (fma ? 1.8 : 4.0) : (fma ? 5.0 : 7.0);
    for (const Case& c : kCases) {
      const Accuracy a = measure(c, offset, seed++);
      INFO(c.name, ", offset ", offset, ": max ", a.max, " mean ", a.mean, " (correctly rounded: max ", a.rounded_max,
           " mean ", a.rounded_mean, "), fused multiply-add ", fma);
      CHECK(a.max >= a.rounded_max);  // nothing beats correct rounding: the measurement is sound
      CHECK(a.max <= a.rounded_max + max_margin);
      CHECK(a.mean <= mean_factor * a.rounded_mean);
      if (fma || (!ordinary && c.kind != "rms_norm")) {  // RMSNorm subtracts no mean: an offset is ordinary there
        CHECK(a.max < (ordinary ? c.torch_max : c.torch_offset_max));
        CHECK(a.mean < (ordinary ? c.torch_mean : c.torch_offset_mean));
      }
    }
  }
}
