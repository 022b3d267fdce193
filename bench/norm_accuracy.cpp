// float32 accuracy of the normalization outputs (training mode, with weight and bias): for each
// layer, y = norm(x) in float32 is compared with the same op in float64 on exactly the same
// (float32) values of x, weight and bias. Errors are |y_f32 - y_f64| in units of the output
// scale, the root mean square of y_f64; "rounded" is the error of float(y_f64), the floor any
// float32 result has (correct rounding).
//
//   norm_accuracy                 prints max and mean error per layer, ordinary inputs N(0, 1)
//                                 and inputs offset by 1e4 (1e4 + N(0, 1))
//   norm_accuracy --unit-affine   the same with weight = 1 and bias = 0 (PyTorch's initial values)
//   norm_accuracy --small         the smaller cases of tests/test_norm_accuracy.cpp, same inputs
//   norm_accuracy --dump DIR      also writes each case (x, weight, bias, y) to DIR/<case>.safetensors
//                                 for scripts/norm_accuracy_torch.py, which measures PyTorch on the
//                                 same inputs with the same metric
//
// Deterministic (seeded inputs, one thread), so the numbers can be quoted (docs/normalization.md,
// "float32 accuracy"); tests/test_norm_accuracy.cpp asserts bounds on smaller shapes.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <omp.h>

#include "autograd/ops.h"
#include "autograd/random.h"
#include "io/safetensors.h"

using namespace ng;

namespace {

struct Case {
  std::string name;     // also the file name of the dump
  std::string kind;     // batch_norm, layer_norm, group_norm, instance_norm, rms_norm
  Shape shape;          // of x
  std::int64_t param;   // channels (weight and bias length), or the normalized size D
  std::int64_t groups;  // group_norm only
};

// The op of a case on x, weight, bias in their dtype: training-mode statistics, eps = 1e-5.
Tensor run(const Case& c, const Tensor& x, const Tensor& w, const Tensor& b) {
  if (c.kind == "batch_norm") return batch_norm(x, {}, {}, w, b, /*training=*/true);
  if (c.kind == "layer_norm") return layer_norm(x, Shape{c.param}, w, b);
  if (c.kind == "group_norm") return group_norm(x, c.groups, w, b);
  if (c.kind == "instance_norm") return instance_norm(x, {}, {}, w, b);
  return rms_norm(x, Shape{c.param}, w, 1e-5);  // rms_norm: no bias
}

struct Errors {
  double max = 0, mean = 0;
};

// |y - ref| / rms(ref): max and mean over the elements.
Errors errors(const std::vector<double>& y, const std::vector<double>& ref) {
  double ss = 0;
  for (double r : ref) ss += r * r;
  const double scale = std::sqrt(ss / static_cast<double>(ref.size()));
  Errors e;
  for (std::size_t i = 0; i < y.size(); ++i) {
    const double d = std::abs(y[i] - ref[i]) / scale;
    e.max = std::max(e.max, d);
    e.mean += d;
  }
  e.mean /= static_cast<double>(y.size());
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dump;
  bool unit_affine = false, small = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--dump") == 0 && i + 1 < argc) dump = argv[++i];
    else if (std::strcmp(argv[i], "--unit-affine") == 0) unit_affine = true;
    else if (std::strcmp(argv[i], "--small") == 0) small = true;
    else {
      std::fprintf(stderr, "usage: %s [--small] [--unit-affine] [--dump DIR]\n", argv[0]);
      return 2;
    }
  }
  omp_set_num_threads(1);
  // --small: the cases of tests/test_norm_accuracy.cpp, with its seeds (keep the two in step), so
  // that PyTorch can be measured on the inputs the test asserts on.
  const std::vector<Case> small_cases = {
      {"batch_norm2d_16x32x14x14", "batch_norm", Shape{16, 32, 14, 14}, 32, 0},
      {"batch_norm2d_32x16x4x4", "batch_norm", Shape{32, 16, 4, 4}, 16, 0},
      {"batch_norm1d_128x64", "batch_norm", Shape{128, 64}, 64, 0},
      {"layer_norm_256x1024", "layer_norm", Shape{256, 1024}, 1024, 0},
      {"layer_norm_64x1500", "layer_norm", Shape{64, 1500}, 1500, 0},
      {"layer_norm_64x37", "layer_norm", Shape{64, 37}, 37, 0},
      {"group_norm_8x32x14x14_g8", "group_norm", Shape{8, 32, 14, 14}, 32, 8},
      {"instance_norm_4x16x28x28", "instance_norm", Shape{4, 16, 28, 28}, 16, 0},
      {"rms_norm_256x1024", "rms_norm", Shape{256, 1024}, 1024, 0},
  };
  const std::vector<Case> bench_cases = {
      {"batch_norm2d_32x64x14x14", "batch_norm", Shape{32, 64, 14, 14}, 64, 0},
      {"batch_norm2d_64x32x4x4", "batch_norm", Shape{64, 32, 4, 4}, 32, 0},  // the column kernels
      {"batch_norm1d_256x512", "batch_norm", Shape{256, 512}, 512, 0},
      {"layer_norm_4096x1024", "layer_norm", Shape{4096, 1024}, 1024, 0},
      {"layer_norm_64x37", "layer_norm", Shape{64, 37}, 37, 0},
      {"group_norm_16x64x28x28_g32", "group_norm", Shape{16, 64, 28, 28}, 64, 32},
      {"instance_norm_8x32x28x28", "instance_norm", Shape{8, 32, 28, 28}, 32, 0},
      {"rms_norm_4096x1024", "rms_norm", Shape{4096, 1024}, 1024, 0},
  };
  const std::vector<Case>& cases = small ? small_cases : bench_cases;
  std::printf("%-28s %-8s %11s %11s %11s %11s\n", "case", "offset", "max", "mean", "rounded max", "rounded mean");
  std::uint64_t seed = 1;
  for (const double offset : {0.0, 1e4}) {
    for (const Case& c : cases) {
      Generator gen(seed++);
      // x = float(offset + N(0, 1)); weight = float(1 + N(0, 1) / 4), bias = float(N(0, 1) / 2), or
      // (--unit-affine) PyTorch's initial weight = 1, bias = 0.
      const Tensor x = add(randn(c.shape, DType::f64, &gen), offset).to(DType::f32);
      Tensor w = add(mul(randn(Shape{c.param}, DType::f64, &gen), 0.25), 1.0).to(DType::f32);
      Tensor b = mul(randn(Shape{c.param}, DType::f64, &gen), 0.5).to(DType::f32);
      if (unit_affine) w = ones(Shape{c.param}), b = zeros(Shape{c.param});
      const Tensor y = run(c, x, w, b);
      const Tensor ref = run(c, x.to(DType::f64), w.to(DType::f64), b.to(DType::f64));
      const std::vector<double> yv = y.to_vector(), refv = ref.to_vector();
      const std::vector<double> rounded = ref.to(DType::f32).to_vector();
      const Errors e = errors(yv, refv), floor = errors(rounded, refv);
      std::printf("%-28s %-8g %11.3g %11.3g %11.3g %11.3g\n", c.name.c_str(), offset, e.max, e.mean, floor.max,
                  floor.mean);
      if (!dump.empty()) {
        const std::string file = dump + "/" + c.name + (offset == 0.0 ? "" : "_offset") + ".safetensors";
        io::save_safetensors(file, {{"x", x}, {"weight", w}, {"bias", b}, {"y", y}},
                             {{"kind", c.kind}, {"groups", std::to_string(c.groups)}, {"offset", std::to_string(offset)}});
      }
    }
  }
  return 0;
}
