// Tests of the normalization op (autograd/ops/norm.cpp) and its functional API:
// forward values against hand-worked numbers and independent loops, fused backward ==
// composite-reference autograd == finite differences, double backward, running statistics,
// numerics (float32 vs float64, rows with mean 1e4) and every error case.
#include <cmath>
#include <limits>

#include "tests/helpers.h"

using namespace ng;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

using test::max_abs_diff;

// The fused op and its composite reference agree on the output and, for a random output
// gradient, on the gradient of every input (two independent autograd paths).
void check_fused_vs_reference(const Fn& fused, const Fn& ref, const std::vector<Tensor>& inputs, double tol = 1e-10) {
  const Tensor y = fused(inputs), y_ref = ref(inputs);
  CHECK(max_abs_diff(y, y_ref) < tol);
  const Tensor dy = test::rnd(y.shape(), 99, false);
  const auto g = ng::grad({y}, inputs, {dy});
  const auto g_ref = ng::grad({y_ref}, inputs, {dy});
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    INFO("input ", i);
    CHECK(max_abs_diff(g[i], g_ref[i]) < tol);
  }
}

Tensor param(std::int64_t C, std::uint64_t seed) { return test::rnd(Shape{C}, seed); }

}  // namespace

// ---- the layout table --------------------------------------------------------------------

TEST_CASE("norm spec: each layer is a choice of axes [A, R, G, K, E]") {
  const NormSpec bn = NormSpec::batch(2, 3, 25), ln = NormSpec::layer(6, 20), gn = NormSpec::group(2, 6, 25, 3),
                 in = NormSpec::instance(2, 3, 25), rms = NormSpec::rms(6, 20);
  CHECK(bn.num_stats() == 3);   // one per channel
  CHECK(bn.count() == 50);      // over N * L
  CHECK(ln.num_stats() == 6);   // one per row
  CHECK(ln.count() == 20);      // over D
  CHECK(ln.num_channels() == 20);
  CHECK(gn.num_stats() == 6);   // N * groups
  CHECK(gn.count() == 50);      // C/G * L
  CHECK(gn.num_channels() == 6);
  CHECK(in.num_stats() == 6);   // N * C
  CHECK(in.count() == 25);
  CHECK_FALSE(rms.subtract_mean);
}

// ---- forward values ----------------------------------------------------------------------

TEST_CASE("layer_norm: forward by hand") {
  // Row [1, 2, 3]: mean 2, biased variance 2/3. Row [0, 0, 3]: mean 1, variance 2.
  const double eps = 1e-5;
  Tensor x = tensor({1, 2, 3, 0, 0, 3}, {2, 3}, DType::f64);
  Tensor w = tensor({1, 2, -1}, {3}, DType::f64), b = tensor({0, 0.5, 1}, {3}, DType::f64);
  const double r0 = 1 / std::sqrt(2.0 / 3 + eps), r1 = 1 / std::sqrt(2.0 + eps);
  test::check_values(layer_norm(x, {3}, w, b, eps),
                     {-r0 * 1, 0 * 2 + 0.5, -r0 + 1, -r1 * 1, -r1 * 2 + 0.5, -2 * r1 + 1}, 1e-12);
  test::check_values(layer_norm(x, {3}), {-r0, 0, r0, -r1, -r1, 2 * r1}, 1e-6);
}

TEST_CASE("batch_norm: forward by hand, training and eval") {
  // (N=2, C=2): channel 0 holds {1, 3} (mean 2, var 1), channel 1 holds {10, 30} (mean 20, var 100).
  const double eps = 1e-5;
  Tensor x = tensor({1, 10, 3, 30}, {2, 2}, DType::f64);
  Tensor w = tensor({2, 1}, {2}, DType::f64), b = tensor({0, -1}, {2}, DType::f64);
  const double r0 = 1 / std::sqrt(1 + eps), r1 = 1 / std::sqrt(100 + eps);
  test::check_values(batch_norm(x, {}, {}, w, b, true), {-2 * r0, -10 * r1 - 1, 2 * r0, 10 * r1 - 1}, 1e-12);
  // Eval: given statistics mean (0, 10), var (4, 25).
  Tensor rm = tensor({0, 10}, {2}, DType::f64), rv = tensor({4, 25}, {2}, DType::f64);
  const double s0 = 1 / std::sqrt(4 + eps), s1 = 1 / std::sqrt(25 + eps);
  test::check_values(batch_norm(x, rm, rv, w, b, false), {2 * s0, 0 - 1, 6 * s0, 20 * s1 - 1}, 1e-12);
}

TEST_CASE("group_norm, instance_norm and rms_norm: forward against independent loops") {
  const std::int64_t N = 2, C = 6, L = 5, G = 3;
  Tensor x = test::rnd({N, C, L}, 11, false), w = param(C, 12).detach(), b = param(C, 13).detach();
  const auto xv = x.to_vector(), wv = w.to_vector(), bv = b.to_vector();
  auto expect_grouped = [&](std::int64_t groups, bool affine) {
    const std::int64_t cg = C / groups;
    std::vector<double> out(xv.size());
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t g = 0; g < groups; ++g) {
        double s = 0, ss = 0;
        for (std::int64_t c = g * cg; c < (g + 1) * cg; ++c)
          for (std::int64_t l = 0; l < L; ++l) s += xv[static_cast<std::size_t>((n * C + c) * L + l)];
        const double mu = s / static_cast<double>(cg * L);
        for (std::int64_t c = g * cg; c < (g + 1) * cg; ++c)
          for (std::int64_t l = 0; l < L; ++l) {
            const double d = xv[static_cast<std::size_t>((n * C + c) * L + l)] - mu;
            ss += d * d;
          }
        const double r = 1 / std::sqrt(ss / static_cast<double>(cg * L) + 1e-5);
        for (std::int64_t c = g * cg; c < (g + 1) * cg; ++c)
          for (std::int64_t l = 0; l < L; ++l) {
            const auto i = static_cast<std::size_t>((n * C + c) * L + l);
            const auto cu = static_cast<std::size_t>(c);
            out[i] = (xv[i] - mu) * r * (affine ? wv[cu] : 1) + (affine ? bv[cu] : 0);
          }
      }
    return out;
  };
  test::check_values(group_norm(x, G, w, b), expect_grouped(G, true), 1e-12);
  test::check_values(instance_norm(x, {}, {}, w, b), expect_grouped(C, true), 1e-12);
  test::check_values(instance_norm(x), expect_grouped(C, false), 1e-12);
  // RMSNorm over the last dim: x / sqrt(mean(x^2) + eps) * w.
  Tensor x2 = test::rnd({4, 6}, 14, false);
  const auto v2 = x2.to_vector();
  std::vector<double> expect(v2.size());
  for (std::size_t r = 0; r < 4; ++r) {
    double ms = 0;
    for (std::size_t j = 0; j < 6; ++j) ms += v2[r * 6 + j] * v2[r * 6 + j] / 6;
    for (std::size_t j = 0; j < 6; ++j) expect[r * 6 + j] = v2[r * 6 + j] / std::sqrt(ms + 1e-6) * wv[j];
  }
  test::check_values(rms_norm(x2, {6}, w, 1e-6), expect, 1e-12);
}

TEST_CASE("rms_norm: default eps is the machine epsilon of the dtype") {
  // A zero row: y = 0 / sqrt(0 + eps) = 0 either way; a row of equal tiny values shows eps.
  Tensor x64 = full({1, 4}, 1e-8, DType::f64);
  const double e64 = std::numeric_limits<double>::epsilon();
  test::check_values(rms_norm(x64, {4}), std::vector<double>(4, 1e-8 / std::sqrt(1e-16 + e64)), 1e-12);
  Tensor x32 = full({1, 4}, 1e-4, DType::f32);
  const double e32 = std::numeric_limits<float>::epsilon();
  test::check_values(rms_norm(x32, {4}), std::vector<double>(4, 1e-4 / std::sqrt(1e-8 + e32)), 1e-5);
}

// ---- gradients: fused == composite reference == finite differences -----------------------

TEST_CASE("batch_norm: gradcheck and reference, training, every layout") {
  for (const Shape& s : {Shape{5, 3}, Shape{2, 3, 7}, Shape{2, 3, 5, 5}}) {
    INFO("shape ", s);
    Tensor x = test::rnd(s, 1), w = param(3, 2), b = param(3, 3);
    auto fused = [](const std::vector<Tensor>& v) { return batch_norm(v[0], {}, {}, v[1], v[2], true); };
    auto ref = [](const std::vector<Tensor>& v) { return reference::batch_norm(v[0], v[1], v[2]); };
    CHECK_GRADCHECK(gradcheck(fused, {x, w, b}));
    check_fused_vs_reference(fused, ref, {x, w, b});
    // Without affine.
    CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return batch_norm(v[0], {}, {}, {}, {}, true); }, {x}));
  }
}

TEST_CASE("batch_norm: gradcheck and reference, eval (given statistics)") {
  for (const Shape& s : {Shape{5, 3}, Shape{2, 3, 7}, Shape{2, 3, 5, 5}}) {
    INFO("shape ", s);
    Tensor x = test::rnd(s, 4), w = param(3, 5), b = param(3, 6);
    Tensor rm = test::rnd({3}, 7, false), rv = test::rnd_pos({3}, 8).detach();
    auto fused = [&](const std::vector<Tensor>& v) { return batch_norm(v[0], rm, rv, v[1], v[2], false); };
    auto ref = [&](const std::vector<Tensor>& v) { return reference::batch_norm_eval(v[0], rm, rv, v[1], v[2]); };
    CHECK_GRADCHECK(gradcheck(fused, {x, w, b}));
    check_fused_vs_reference(fused, ref, {x, w, b});
  }
}

TEST_CASE("layer_norm: gradcheck and reference over 1, 2 and 3 trailing dims, with and without affine") {
  Tensor x = test::rnd({2, 3, 4, 5}, 21);
  for (const Shape& ns : {Shape{5}, Shape{4, 5}, Shape{3, 4, 5}}) {
    INFO("normalized_shape ", ns);
    Generator gen(22);
    Tensor w = randn(ns, DType::f64, &gen).requires_grad_(), b = randn(ns, DType::f64, &gen).requires_grad_();
    auto fused = [ns](const std::vector<Tensor>& v) { return layer_norm(v[0], ns, v[1], v[2]); };
    auto ref = [ns](const std::vector<Tensor>& v) { return reference::layer_norm(v[0], ns, v[1], v[2]); };
    GradcheckOptions fast;
    fast.fast_mode_above = 60;  // the 120-element input: random projections keep the test fast
    CHECK_GRADCHECK(gradcheck(fused, {x, w, b}, fast));
    check_fused_vs_reference(fused, ref, {x, w, b});
    auto plain = [ns](const std::vector<Tensor>& v) { return layer_norm(v[0], ns); };
    auto plain_ref = [ns](const std::vector<Tensor>& v) { return reference::layer_norm(v[0], ns, {}, {}); };
    check_fused_vs_reference(plain, plain_ref, {x});
  }
  // Full Jacobian on a small odd input, without affine and with weight only.
  Tensor xs = test::rnd({3, 5}, 23), ws = param(5, 24);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return layer_norm(v[0], {5}); }, {xs}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return layer_norm(v[0], {5}, v[1]); }, {xs, ws}));
}

TEST_CASE("group_norm and instance_norm: gradcheck and reference") {
  Tensor x = test::rnd({2, 6, 5}, 31), w = param(6, 32), b = param(6, 33);
  for (std::int64_t G : {1, 2, 3, 6}) {
    INFO("groups ", G);
    auto fused = [G](const std::vector<Tensor>& v) { return group_norm(v[0], G, v[1], v[2]); };
    auto ref = [G](const std::vector<Tensor>& v) { return reference::group_norm(v[0], G, v[1], v[2]); };
    CHECK_GRADCHECK(gradcheck(fused, {x, w, b}));
    check_fused_vs_reference(fused, ref, {x, w, b});
  }
  Tensor x4 = test::rnd({2, 3, 5, 5}, 34), w3 = param(3, 35), b3 = param(3, 36);
  auto inorm = [](const std::vector<Tensor>& v) { return instance_norm(v[0], {}, {}, v[1], v[2]); };
  auto inorm_ref = [](const std::vector<Tensor>& v) { return reference::group_norm(v[0], 3, v[1], v[2]); };
  CHECK_GRADCHECK(gradcheck(inorm, {x4, w3, b3}));
  check_fused_vs_reference(inorm, inorm_ref, {x4, w3, b3});
  // Eval-style instance norm with given running statistics: the simple affine backward.
  Tensor rm = test::rnd({3}, 37, false), rv = test::rnd_pos({3}, 38).detach();
  CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& v) { return instance_norm(v[0], rm, rv, v[1], v[2], false); },
                            {x4, w3, b3}));
}

TEST_CASE("rms_norm: gradcheck and reference") {
  Tensor x = test::rnd({3, 5}, 41), w = param(5, 42);
  auto fused = [](const std::vector<Tensor>& v) { return rms_norm(v[0], {5}, v[1], 1e-6); };
  auto ref = [](const std::vector<Tensor>& v) { return reference::rms_norm(v[0], {5}, v[1], 1e-6); };
  CHECK_GRADCHECK(gradcheck(fused, {x, w}));
  check_fused_vs_reference(fused, ref, {x, w});
  Tensor x3 = test::rnd({2, 3, 4}, 43);
  auto two = [](const std::vector<Tensor>& v) { return rms_norm(v[0], {3, 4}, {}, 1e-6); };
  CHECK_GRADCHECK(gradcheck(two, {x3}));
  check_fused_vs_reference(two, [](const std::vector<Tensor>& v) { return reference::rms_norm(v[0], {3, 4}, {}, 1e-6); },
                           {x3});
}

TEST_CASE("norm: gradient of only some inputs, and a non-contiguous input") {
  Tensor x = test::rnd({5, 3}, 51), w = param(3, 52);
  Tensor b = test::rnd({3}, 53, false);  // bias does not require grad
  CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& v) { return batch_norm(v[0], {}, {}, v[1], b, true); }, {x, w}));
  Tensor xt = test::rnd({5, 3}, 54);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& v) { return layer_norm(transpose(v[0], 0, 1), {5}); }, {xt}));
}

TEST_CASE("norm: double backward (create_graph) through the fused ops") {
  // d/dx <grad_x <y, v>, u>: gradcheck of the first-order gradient function.
  Tensor x = test::rnd({3, 5}, 61), w = param(5, 62), b = param(5, 63);
  const Tensor v = test::rnd({3, 5}, 64, false);
  auto grad_of = [&](auto f) {
    return [f, v](const std::vector<Tensor>& in) {
      EnableGradGuard grad_mode;  // gradcheck evaluates fn without recording; this fn needs the tape
      const Tensor y = f(in);
      const auto g = ng::grad({y}, {in[0], in[1]}, {v}, {.retain_graph = true, .create_graph = true});
      return add(sum(mul(g[0], g[0])), sum(mul(g[1], g[1])));
    };
  };
  CHECK_GRADCHECK(gradcheck(grad_of([](const std::vector<Tensor>& in) { return layer_norm(in[0], {5}, in[1], in[2]); }),
                            {x, w, b}));
  CHECK_GRADCHECK(gradcheck(grad_of([](const std::vector<Tensor>& in) { return rms_norm(in[0], {5}, in[1], 1e-6); }),
                            {x, w}));
  Tensor xb = test::rnd({5, 3}, 65), wb = param(3, 66), bb = param(3, 67);
  const Tensor vb = test::rnd({5, 3}, 68, false);
  auto bn_grad = [&](const std::vector<Tensor>& in) {
    EnableGradGuard grad_mode;
    const Tensor y = batch_norm(in[0], {}, {}, in[1], in[2], true);
    const auto g = ng::grad({y}, {in[0], in[1]}, {vb}, {.retain_graph = true, .create_graph = true});
    return add(sum(mul(g[0], g[0])), sum(mul(g[1], g[1])));
  };
  CHECK_GRADCHECK(gradcheck(bn_grad, {xb, wb, bb}));
}

// ---- running statistics ------------------------------------------------------------------

namespace {
// Three batches (N=2, C=2). Channel 0: {1, 3}, {4, 8}, {5, 5}: means 2, 6, 5 and unbiased
// variances 2, 8, 0. Channel 1 is channel 0 plus 10 (same variances, means 12, 16, 15).
std::vector<Tensor> three_batches() {
  return {tensor({1, 11, 3, 13}, {2, 2}, DType::f64), tensor({4, 14, 8, 18}, {2, 2}, DType::f64),
          tensor({5, 15, 5, 15}, {2, 2}, DType::f64)};
}
}  // namespace

TEST_CASE("batch_norm: running statistics over 3 steps, momentum 0.1 and cumulative") {
  SUBCASE("momentum 0.1: running = 0.9 * running + 0.1 * batch (unbiased variance)") {
    Tensor rm = zeros({2}, DType::f64), rv = ones({2}, DType::f64), nbt = scalar(0, DType::i64);
    // mean: 0.9*0 + 0.1*2 = 0.2;  0.9*0.2 + 0.1*6 = 0.78;  0.9*0.78 + 0.1*5 = 1.202
    // var:  0.9*1 + 0.1*2 = 1.1;  0.9*1.1 + 0.1*8 = 1.79;  0.9*1.79 + 0.1*0 = 1.611
    const std::vector<double> m0{0.2, 0.78, 1.202}, v0{1.1, 1.79, 1.611};
    // channel 1 means: 0.1*12 = 1.2; 0.9*1.2 + 1.6 = 2.68; 0.9*2.68 + 1.5 = 3.912
    const std::vector<double> m1{1.2, 2.68, 3.912};
    auto xs = three_batches();
    for (std::size_t t = 0; t < 3; ++t) {
      batch_norm(xs[t], rm, rv, {}, {}, true, 0.1, 1e-5, nbt);
      test::check_values(rm, {m0[t], m1[t]}, 1e-12);
      test::check_values(rv, {v0[t], v0[t]}, 1e-12);
      CHECK(nbt.item() == static_cast<double>(t + 1));
    }
  }
  SUBCASE("momentum none: the plain average of the batch statistics") {
    Tensor rm = zeros({2}, DType::f64), rv = ones({2}, DType::f64), nbt = scalar(0, DType::i64);
    // mean: 2; (2+6)/2 = 4; (2+6+5)/3 = 13/3.   var: 2; (2+8)/2 = 5; (2+8+0)/3 = 10/3.
    const std::vector<double> m0{2, 4, 13.0 / 3}, v0{2, 5, 10.0 / 3};
    auto xs = three_batches();
    for (std::size_t t = 0; t < 3; ++t) {
      batch_norm(xs[t], rm, rv, {}, {}, true, std::nullopt, 1e-5, nbt);
      test::check_values(rm, {m0[t], m0[t] + 10}, 1e-12);
      test::check_values(rv, {v0[t], v0[t]}, 1e-12);
      CHECK(nbt.item() == static_cast<double>(t + 1));
    }
  }
}

TEST_CASE("batch_norm: float32 running statistics are updated in their own dtype") {
  Tensor rm = zeros({2}), rv = ones({2});
  batch_norm(three_batches()[0].to(DType::f32), rm, rv, {}, {}, true);
  test::check_values(rm, {0.2, 1.2}, 1e-6);
  test::check_values(rv, {1.1, 1.1}, 1e-6);
  CHECK(rm.dtype() == DType::f32);
}

TEST_CASE("instance_norm: running statistics average the per-instance statistics over the batch") {
  // (N=2, C=1, L=2): instance 0 holds {1, 3} (mean 2, unbiased var 2), instance 1 {4, 8} (mean 6, var 8).
  Tensor x = tensor({1, 3, 4, 8}, {2, 1, 2}, DType::f64);
  Tensor rm = zeros({1}, DType::f64), rv = ones({1}, DType::f64);
  instance_norm(x, rm, rv, {}, {}, true, 0.1);
  test::check_values(rm, {0.1 * 4}, 1e-12);          // batch value: (2 + 6) / 2
  test::check_values(rv, {0.9 + 0.1 * 5}, 1e-12);    // batch value: (2 + 8) / 2
}

// ---- numerics ----------------------------------------------------------------------------

TEST_CASE("layer_norm: float32 rows with mean 1e4 match float64 to 1e-3") {
  // E[x^2] - E[x]^2 would lose all digits here in float32; the core merges two-pass chunk
  // moments in double.
  Generator gen(71);
  Tensor x64 = add(randn({4, 2000}, DType::f64, &gen), 1e4);
  Tensor x32 = x64.to(DType::f32);
  Tensor y32 = layer_norm(x32, {2000});
  Tensor y64 = layer_norm(x32.to(DType::f64), {2000});  // the same float32 values, in float64
  CHECK(max_abs_diff(y32, y64) < 1e-3);
  // And BatchNorm over the same data (statistics over the batch axis).
  Tensor z32 = batch_norm(x32.reshape({2000, 4}), {}, {}, {}, {}, true);
  Tensor z64 = batch_norm(x32.to(DType::f64).reshape({2000, 4}), {}, {}, {}, {}, true);
  CHECK(max_abs_diff(z32, z64) < 1e-3);
}

TEST_CASE("layer_norm: float32 rows whose first elements are far from the row mean match float64") {
  // The float32 moments sum around the mean of a chunk's first 16 elements and redo the sums
  // around the computed mean when that centre is more than one standard deviation off. Three
  // rows that take the second pass: a ramp 1e4 + i (centre 1e4 + 7.5, mean 1e4 + 511.5, std
  // ~296), the same ramp descending, and 16 outliers of 1e3 first followed by noise around 0;
  // and one row that does not (noise around 1e4).
  const std::int64_t D = 1024;
  std::vector<double> v(static_cast<std::size_t>(4 * D));
  Generator gen(73);
  const Tensor noise = randn({D}, DType::f64, &gen);
  for (std::int64_t i = 0; i < D; ++i) {
    const auto u = static_cast<std::size_t>(i);
    v[u] = 1e4 + static_cast<double>(i);
    v[static_cast<std::size_t>(D) + u] = 1e4 + static_cast<double>(D - 1 - i);
    v[static_cast<std::size_t>(2 * D) + u] = i < 16 ? 1e3 : noise.data<double>()[u];
    v[static_cast<std::size_t>(3 * D) + u] = 1e4 + noise.data<double>()[u];
  }
  const Tensor x32 = from_vector(v, {4, D}, DType::f32);
  const Tensor y32 = layer_norm(x32, {D}).to(DType::f64), y64 = layer_norm(x32.to(DType::f64), {D});
  for (std::int64_t r = 0; r < 4; ++r) {
    INFO("row " << r);
    // |y| <= ~8 (the outliers): float rounding only (measured: at most 5e-7). Summed around
    // the first centre only, the outlier row's sum of squares is 60x its m2 and y is off by 3e-5.
    CHECK(max_abs_diff(slice(y32, 0, r, r + 1), slice(y64, 0, r, r + 1)) < 2e-6);
  }
}

TEST_CASE("batch_norm on (N, C) and short maps: the column kernels equal LayerNorm of the transpose, forward and backward") {
  // BatchNorm over an (N, C) input normalizes each column over the batch; LayerNorm of the
  // (C, N) transpose normalizes each row: the same numbers (biased variance, eps inside the
  // sqrt), computed by the other kernels. (100, 1024) takes several row blocks in the column
  // moments (merged by Chan's formula); (3, 37) is small and odd.
  for (const auto& [N, C] : {std::pair<std::int64_t, std::int64_t>{100, 1024}, {3, 37}, {64, 128}}) {
    CAPTURE(N);
    CAPTURE(C);
    Generator gen(91);
    const Tensor x = add(mul(randn({N, C}, DType::f64, &gen), 3.0), 2.0).requires_grad_();
    const Tensor w = randn({C}, DType::f64, &gen).requires_grad_(), b = randn({C}, DType::f64, &gen).requires_grad_();
    const Tensor r = randn({N, C}, DType::f64, &gen);
    const Tensor y = batch_norm(x, {}, {}, w, b, true);
    const Tensor yref = add(mul(transpose(layer_norm(transpose(x, 0, 1), {N}), 0, 1), w), b);
    CHECK(max_abs_diff(y, yref) < 1e-12);
    const auto g = ng::grad({sum(mul(y, r))}, {x, w, b});
    const auto gref = ng::grad({sum(mul(yref, r))}, {x, w, b});
    for (std::size_t i = 0; i < 3; ++i) CHECK(max_abs_diff(g[i], gref[i]) < 1e-10);
    // eval mode: running statistics instead
    const Tensor rm = randn({C}, DType::f64, &gen), u = randn({C}, DType::f64, &gen), rv = add(mul(u, u), 0.5);
    const Tensor ye = batch_norm(x, rm, rv, w, b, false);
    const Tensor yeref = add(mul(div(sub(x, rm), sqrt(add(rv, 1e-5))), w), b);
    CHECK(max_abs_diff(ye, yeref) < 1e-12);
  }
  // (N, C, H, W) with short maps (E = H * W up to kColumnMaxRun = 36) take the column kernels
  // too: compare with LayerNorm over each channel's N * H * W values, gathered by a permute.
  for (const auto& shape : {Shape{30, 6, 2, 2}, Shape{20, 5, 6, 6}, Shape{4, 3, 1, 5}}) {
    CAPTURE(shape);
    const std::int64_t N = shape[0], C = shape[1], H = shape[2], W = shape[3];
    Generator gen(93);
    const Tensor x = add(mul(randn(shape, DType::f64, &gen), 2.0), -1.0).requires_grad_();
    const Tensor w = randn({C}, DType::f64, &gen).requires_grad_(), b = randn({C}, DType::f64, &gen).requires_grad_();
    const Tensor r = randn(shape, DType::f64, &gen);
    const Tensor y = batch_norm(x, {}, {}, w, b, true);
    const Tensor per_channel = reshape(permute(x, {1, 0, 2, 3}), {C, N * H * W});
    const Tensor yhat = permute(reshape(layer_norm(per_channel, {N * H * W}), {C, N, H, W}), {1, 0, 2, 3});
    const Tensor yref = add(mul(yhat, reshape(w, {1, C, 1, 1})), reshape(b, {1, C, 1, 1}));
    CHECK(max_abs_diff(y, yref) < 1e-12);
    const auto g = ng::grad({sum(mul(y, r))}, {x, w, b});
    const auto gref = ng::grad({sum(mul(yref, r))}, {x, w, b});
    for (std::size_t i = 0; i < 3; ++i) CHECK(max_abs_diff(g[i], gref[i]) < 1e-10);
  }
  // float32 columns with mean 1e4 against the same values in float64
  Generator gen(92);
  const Tensor x32 = add(randn({200, 40}, DType::f64, &gen), 1e4).to(DType::f32);
  const Tensor dy = randn({200, 40}, DType::f64, &gen);
  auto run = [&](DType dt) {
    const Tensor x = x32.to(dt).requires_grad_(), w = ones({40}, dt).requires_grad_();
    const Tensor y = batch_norm(x, {}, {}, w, {}, true);
    const auto g = ng::grad({y}, {x, w}, {dy.to(dt)});
    return std::vector<Tensor>{y.to(DType::f64), g[0].to(DType::f64), g[1].to(DType::f64)};
  };
  const auto r32 = run(DType::f32), r64 = run(DType::f64);
  CHECK(max_abs_diff(r32[0], r64[0]) < 1e-5);
  CHECK(max_abs_diff(r32[1], r64[1]) < 1e-4);
  CHECK(max_abs_diff(r32[2], r64[2]) < 1e-3);
}

TEST_CASE("batch_norm on (N, C) inside a parallel region: all rows are used") {
  // The column kernels split the rows over the threads their parallel region really has. Called
  // from inside another parallel region, that region has one thread, not the two asked for.
  const test::OmpThreads threads(2);
  Generator gen(94);
  const Tensor x = randn({256, 256}, DType::f64, &gen).requires_grad_();  // large enough to go parallel
  const Tensor r = randn({256, 256}, DType::f64, &gen);
  const Tensor y = batch_norm(x, {}, {}, {}, {}, true);
  const Tensor gx = ng::grad({sum(mul(y, r))}, {x})[0];
  Tensor y_in, gx_in;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    {
      y_in = batch_norm(x, {}, {}, {}, {}, true);
      gx_in = ng::grad({sum(mul(y_in, r))}, {x})[0];
    }
  }
  CHECK(max_abs_diff(y_in, y) < 1e-12);
  CHECK(max_abs_diff(gx_in, gx) < 1e-10);
}

TEST_CASE("batch_norm and group_norm: float32 maps with mean 1e4 match float64, forward and backward") {
  // The E > 1 layout (runs of H * W elements per channel) in float lanes: xhat must not lose
  // the digits of a large mean (see FloatCentre in norm_kernels.h).
  Generator gen(72);
  const Tensor x32 = add(randn({4, 4, 9, 9}, DType::f64, &gen), 1e4).to(DType::f32);
  const Tensor dy = randn({4, 4, 9, 9}, DType::f64, &gen);
  const Tensor w = tensor({0.5, -1.5, 2.0, 1.0}, {4}, DType::f64), b = tensor({0.1, 0.2, -0.3, 0.0}, {4}, DType::f64);
  auto run = [&](DType dt, bool group) {
    const Tensor x = x32.to(dt).requires_grad_(), wd = w.to(dt).requires_grad_(), bd = b.to(dt).requires_grad_();
    const Tensor y = group ? group_norm(x, 2, wd, bd) : batch_norm(x, {}, {}, wd, bd, true);
    const auto g = ng::grad({y}, {x, wd, bd}, {dy.to(dt)});
    return std::vector<Tensor>{y.to(DType::f64), g[0].to(DType::f64), g[1].to(DType::f64), g[2].to(DType::f64)};
  };
  for (const bool group : {false, true}) {
    INFO((group ? "group_norm" : "batch_norm"));
    const auto r32 = run(DType::f32, group), r64 = run(DType::f64, group);
    CHECK(max_abs_diff(r32[0], r64[0]) < 1e-5);  // |y| ~ 3: a few float ulps, not 1e4 * 2^-24 = 6e-4
    CHECK(max_abs_diff(r32[1], r64[1]) < 1e-4);
    CHECK(max_abs_diff(r32[2], r64[2]) < 1e-3);  // sums over 162 (BatchNorm: 324) elements
    CHECK(max_abs_diff(r32[3], r64[3]) < 1e-3);
  }
}

TEST_CASE("norm: float32 agrees with float64 within 1e-5 (forward) and 1e-4 (backward)") {
  Tensor x = test::rnd({2, 3, 5, 5}, 81), w = param(3, 82), b = param(3, 83);
  Tensor x32 = x.detach().to(DType::f32).requires_grad_(), w32 = w.detach().to(DType::f32).requires_grad_(),
         b32 = b.detach().to(DType::f32).requires_grad_();
  const Tensor dy = test::rnd({2, 3, 5, 5}, 84, false);
  auto run = [&](const Tensor& xi, const Tensor& wi, const Tensor& bi) {
    const Tensor y = batch_norm(xi, {}, {}, wi, bi, true);
    const auto g = ng::grad({y}, {xi, wi, bi}, {dy.to(xi.dtype())});
    return std::vector<Tensor>{y, g[0], g[1], g[2]};
  };
  const auto r64 = run(x, w, b), r32 = run(x32, w32, b32);
  CHECK(max_abs_diff(r32[0], r64[0]) < 1e-5);
  for (std::size_t i = 1; i < 4; ++i) CHECK(max_abs_diff(r32[i], r64[i]) < 1e-4);
}

TEST_CASE("norm: large inputs take the parallel path and agree with the reference") {
  Tensor x = test::rnd({8, 16, 32, 32}, 91), w = param(16, 92), b = param(16, 93);
  check_fused_vs_reference([](const std::vector<Tensor>& v) { return batch_norm(v[0], {}, {}, v[1], v[2], true); },
                           [](const std::vector<Tensor>& v) { return reference::batch_norm(v[0], v[1], v[2]); }, {x, w, b},
                           1e-9);
  Tensor wl = param(1024, 94), bl = param(1024, 95);
  check_fused_vs_reference(
      [](const std::vector<Tensor>& v) { return layer_norm(v[0], {32, 32}, v[1].reshape({32, 32}), v[2].reshape({32, 32})); },
      [](const std::vector<Tensor>& v) { return reference::layer_norm(v[0], {32, 32}, v[1].reshape({32, 32}), v[2].reshape({32, 32})); },
      {x, wl, bl}, 1e-9);
}

// ---- errors ------------------------------------------------------------------------------

TEST_CASE("batch_norm: errors") {
  Tensor x = test::rnd({4, 3, 5}, 101, false);
  CHECK_THROWS_WITH_AS(batch_norm(test::rnd({1, 3}, 1, false), {}, {}, {}, {}, true),
                       doctest::Contains("more than 1 value per channel"), ValueError);
  CHECK_THROWS_WITH_AS(batch_norm(test::rnd({1, 3}, 1, false), {}, {}, {}, {}, true), doctest::Contains("eval mode"),
                       ValueError);
  CHECK_THROWS_WITH_AS(batch_norm(test::rnd({3}, 1, false), {}, {}, {}, {}, true),
                       doctest::Contains("batch_norm: expected an input of shape (N, C)"), ShapeError);
  CHECK_THROWS_WITH_AS(batch_norm(x, {}, {}, ones({4}, DType::f64), {}, true),
                       doctest::Contains("batch_norm: weight must have shape [3] (one value per channel): expected [3] vs actual [4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(batch_norm(x, {}, {}, {}, {}, true, 0.1, -1.0), doctest::Contains("batch_norm: eps must be >= 0"),
                       ValueError);
  CHECK_THROWS_WITH_AS(batch_norm(x, {}, {}, {}, {}, true, 1.5),
                       doctest::Contains("batch_norm: momentum must be in [0, 1] (the new batch's weight in running "
                                         "stats): got 1.5"),
                       ValueError);
  CHECK_THROWS_WITH_AS(batch_norm(x, {}, {}, {}, {}, false), doctest::Contains("running_mean and running_var are required"),
                       ValueError);
  CHECK_THROWS_WITH_AS(batch_norm(x, zeros({3}, DType::f64), ones({3}, DType::f64), {}, {}, true, std::nullopt),
                       doctest::Contains("needs num_batches_tracked"), ValueError);
  CHECK_THROWS_WITH_AS(batch_norm(x, {}, {}, ones({3}), {}, true), doctest::Contains("weight has dtype float32"), DTypeError);
  CHECK_THROWS_AS(batch_norm(randint({4, 3}, 0, 5), {}, {}, {}, {}, true), DTypeError);
}

TEST_CASE("layer_norm, group_norm, instance_norm, rms_norm: errors") {
  Tensor x = test::rnd({2, 6, 5}, 102, false);
  CHECK_THROWS_WITH_AS(layer_norm(x, {6}), doctest::Contains("layer_norm: normalized_shape must equal the trailing dims "
                                                             "of the input: expected [*, 6] vs input [2, 6, 5]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(layer_norm(x, {2, 6, 5, 1}), doctest::Contains("layer_norm"), ShapeError);
  CHECK_THROWS_WITH_AS(layer_norm(x, {5}, ones({6}, DType::f64)),
                       doctest::Contains("layer_norm: weight must have the normalized shape: expected [5] vs actual [6]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(layer_norm(x, {5}, {}, {}, -1.0), doctest::Contains("layer_norm: eps must be >= 0"), ValueError);
  CHECK_THROWS_WITH_AS(group_norm(x, 4), doctest::Contains("group_norm: the number of channels must be divisible by "
                                                           "num_groups: 6 channels vs 4 groups"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(group_norm(x, 0), doctest::Contains("group_norm: num_groups must be positive"), ValueError);
  CHECK_THROWS_WITH_AS(group_norm(test::rnd({6}, 1, false), 2), doctest::Contains("group_norm: expected an input of shape (N, C, *)"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(instance_norm(test::rnd({2, 3, 1}, 1, false)),
                       doctest::Contains("instance_norm: expected more than 1 spatial element"), ValueError);
  CHECK_THROWS_WITH_AS(instance_norm(x, {}, {}, {}, {}, false),
                       doctest::Contains("instance_norm: running_mean and running_var are required"), ValueError);
  CHECK_THROWS_WITH_AS(rms_norm(x, {6}), doctest::Contains("rms_norm: normalized_shape must equal the trailing dims"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(rms_norm(x, {5}, {}, -1e-3), doctest::Contains("rms_norm: eps must be >= 0"), ValueError);
  CHECK_THROWS_WITH_AS(normalize(x, NormSpec::layer(7, 5), {}, {}, 1e-5, "my_norm"),
                       doctest::Contains("my_norm: input of shape [2, 6, 5] does not fit"), ShapeError);
}

TEST_CASE("normalize: the core op checks what the functional API knows by construction") {
  const Tensor x = test::rnd({2, 3, 4}, 1, false);
  const NormSpec spec = NormSpec::layer(6, 4);
  CHECK_THROWS_WITH_AS(normalize(x, NormSpec::layer(5, 4), {}, {}, 1e-5, "my_norm"),
                       doctest::Contains("my_norm: input of shape [2, 3, 4] does not fit the normalization layout [A=1, R=5"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(normalize(x, spec, test::rnd({3}, 2), {}, 1e-5, "my_norm"),
                       doctest::Contains("my_norm: weight must have 4 elements: expected 4 vs actual 3"), ShapeError);
  CHECK_THROWS_WITH_AS(normalize(x, spec, {}, test::rnd({5}, 3), 1e-5, "my_norm"),
                       doctest::Contains("my_norm: bias must have 4 elements"), ShapeError);
  CHECK_THROWS_WITH_AS(normalize(x, spec, {}, {}, -1.0, "my_norm"), doctest::Contains("my_norm: eps must be"), ValueError);
  CHECK_THROWS_WITH_AS(normalize(x, spec, ones({4}), {}, 1e-5, "my_norm"), doctest::Contains("my_norm: weight has dtype float32"),
                       DTypeError);
  CHECK_THROWS_WITH_AS(normalize(zeros({4, 0}, DType::f64), NormSpec::layer(4, 0), {}, {}, 1e-5, "my_norm"),
                       doctest::Contains("my_norm: no elements to compute statistics over"), ValueError);
  CHECK_THROWS_WITH_AS(normalize_with_stats(x, spec, zeros({5}, DType::f64), zeros({6}, DType::f64), {}, {}, 1e-5, "my_norm"),
                       doctest::Contains("my_norm: given statistics must have 6 elements: expected [6] vs actual [5]"),
                       ShapeError);
  // Valid: the same numbers as layer_norm.
  CHECK(max_abs_diff(normalize(x, spec, {}, {}, 1e-5, "my_norm"), layer_norm(x, Shape{4})) == 0.0);
}
