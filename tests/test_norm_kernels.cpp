// The normalization kernels held against the plain kernel (autograd/ops/norm_plain.cpp), each on
// the case it specializes: the row layout (E == 1 rows, E > 1 runs, A > 1), the column layout
// (BatchNorm over (N, C) and short maps), and the moments with Chan's merge. float32 and float64,
// odd sizes, rows offset by 1e4 (float32 keeps full accuracy there), given statistics, with and
// without affine, at 1 and 2 threads (sizes above the parallel grain where the split matters).
// The plain kernel itself is checked against the composite reference (ng::reference) first.
#include <cmath>
#include <string>

#include "autograd/ops/norm_kernels.h"
#include "tests/helpers.h"

using namespace ng;
namespace nk = ng::norm_kernels;

namespace {

std::vector<double> random_values(std::int64_t n, std::uint64_t seed, double offset, double scale = 1.0) {
  Generator g(seed);
  std::vector<double> v = randn(Shape{n}, DType::f64, &g).to_vector();
  for (double& e : v) e = offset + scale * e;
  return v;
}

// max |a - b| / (1 + max |b|): the error relative to the size of the reference values.
double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0, m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(a[i] - b[i]));
    m = std::max(m, std::abs(b[i]));
  }
  return d / (1.0 + m);
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

struct Case {
  std::string name;
  NormSpec sp;
};

// Runs the fast kernels that ng::normalize would pick for sp (column or row layout) on T data and
// the plain kernel on the same values in double; compares statistics, y, dx, dweight and dbias.
template <class T>
void check_against_plain(const Case& c, double offset, bool affine, bool batch_stats) {
  const NormSpec& sp = c.sp;
  INFO(c.name, " offset ", offset, affine ? " affine" : " no affine", batch_stats ? " batch stats" : " given stats");
  const auto n = static_cast<std::size_t>(sp.numel()), S = static_cast<std::size_t>(sp.num_stats()),
             C = static_cast<std::size_t>(sp.num_channels());
  // The values as T, and exactly those values in double for the plain kernel.
  const std::vector<T> x = cast<T>(random_values(sp.numel(), 11, offset)), dy = cast<T>(random_values(sp.numel(), 12, 0.0));
  const std::vector<T> w = cast<T>(random_values(sp.num_channels(), 13, 1.0, 0.5)),
                       b = cast<T>(random_values(sp.num_channels(), 14, 0.0));
  const std::vector<double> xd = widen(x), dyd = widen(dy), wd = widen(w), bd = widen(b);
  const double eps = 1e-5;

  // Plain kernel: forward (its statistics are also the given ones), then backward.
  std::vector<double> mean_ref(S), var_ref(S), rstd_ref(S), y_ref(n);
  if (!batch_stats) {  // given statistics: near the batch's, but not equal
    for (std::size_t s = 0; s < S; ++s) {
      mean_ref[s] = offset + 0.1 * static_cast<double>(s % 3);
      var_ref[s] = 0.5 + 0.25 * static_cast<double>(s % 5);
    }
  }
  nk::plain_forward(xd.data(), sp, affine ? wd.data() : nullptr, affine ? bd.data() : nullptr, eps, batch_stats,
                    mean_ref.data(), var_ref.data(), rstd_ref.data(), y_ref.data());
  std::vector<double> dx_ref(n), dw_ref(C), db_ref(C);
  nk::plain_backward(xd.data(), dyd.data(), sp, mean_ref.data(), rstd_ref.data(), affine ? wd.data() : nullptr,
                     batch_stats, dx_ref.data(), dw_ref.data(), db_ref.data());

  // Fast kernels, as the op runs them.
  std::vector<double> mean(mean_ref), var(var_ref), rstd(S);
  if (batch_stats) std::fill(mean.begin(), mean.end(), -1.0), std::fill(var.begin(), var.end(), -1.0);
  std::vector<T> y(n);
  const T* wp = affine ? w.data() : nullptr;
  const T* bp = affine ? b.data() : nullptr;
  if (nk::uses_columns(sp)) {
    if (batch_stats) nk::column_moments(x.data(), sp, mean.data(), var.data());
    for (std::size_t s = 0; s < S; ++s) rstd[s] = 1.0 / std::sqrt(var[s] + eps);
    nk::column_normalize(x.data(), sp, mean.data(), rstd.data(), wp, bp, y.data());
  } else {
    nk::row_forward(x.data(), sp, wp, bp, eps, !batch_stats, mean.data(), var.data(), rstd.data(), y.data());
  }
  // float32: statistics summed in double lanes (from float deviations), y rounded about once
  // (norm_kernels.h, affine_output; tests/test_norm_accuracy.cpp measures it), the backward's
  // sums in float over chunks (~2e-6 of the sum of |terms|);
  // float64: rounding only, of values up to the offset (x - mean cancels its leading digits).
  const bool f32 = std::is_same_v<T, float>;
  const double f64_scale = 1.0 + offset / 100.0;
  const double tol_stats = f32 ? 1e-6 : 1e-12 * f64_scale, tol_y = f32 ? 1e-6 : 1e-12 * f64_scale,
               tol_grad = f32 ? 1e-4 : 1e-11 * f64_scale;
  std::vector<double> mean_dev(S), mean_ref_dev(S);  // the means measured from the offset (the spread is ~1)
  for (std::size_t s = 0; s < S; ++s) mean_dev[s] = mean[s] - offset, mean_ref_dev[s] = mean_ref[s] - offset;
  CHECK(rel_err(mean_dev, mean_ref_dev) < tol_stats);
  CHECK(rel_err(var, var_ref) < tol_stats);
  CHECK(rel_err(widen(y), y_ref) < tol_y);

  // Backward from the plain kernel's statistics, so that only the backward is compared.
  std::vector<T> dx(n);
  std::vector<double> dw(C, 0.0), db(C, 0.0);
  const auto backward = nk::uses_columns(sp) ? nk::column_backward<T> : nk::row_backward<T>;
  backward(x.data(), dy.data(), sp, mean_ref.data(), rstd_ref.data(), wp, batch_stats, dx.data(), dw.data(), db.data());
  CHECK(rel_err(widen(dx), dx_ref) < tol_grad);
  CHECK(rel_err(dw, dw_ref) < tol_grad);
  CHECK(rel_err(db, db_ref) < tol_grad);
}

template <class T>
void check_cases(const std::vector<Case>& cases, bool expect_columns) {
  for (int threads : {1, 2}) {
    const test::OmpThreads scope(threads);
    INFO(threads, " threads");
    for (const Case& c : cases) {
      REQUIRE(nk::uses_columns(c.sp) == expect_columns);
      for (double offset : {0.0, 1e4})
        for (bool affine : {true, false})
          for (bool batch_stats : {true, false}) check_against_plain<T>(c, offset, affine, batch_stats);
    }
  }
}

// E == 1 rows (LayerNorm, RMSNorm), one of them longer than a moments chunk (1024), and one
// large enough to be split across threads.
const std::vector<Case> kRowCases = {
    {"layer_norm (5, 7)", NormSpec::layer(5, 7)},
    {"layer_norm (3, 1031)", NormSpec::layer(3, 1031)},
    {"rms_norm (5, 37)", NormSpec::rms(5, 37)},
    {"layer_norm (37, 1001), parallel", NormSpec::layer(37, 1001)},
    {"group_norm (3, 6, 5), 2 groups", NormSpec::group(3, 6, 5, 2)},
    {"instance_norm (3, 5, 13)", NormSpec::instance(3, 5, 13)},
    {"batch_norm (3, 5, 49): runs longer than the column limit", NormSpec::batch(3, 5, 49)},
    {"group_norm (5, 6, 1301), parallel", NormSpec::group(5, 6, 1301, 3)},
    {"batch_norm (4, 3, 3001), parallel", NormSpec::batch(4, 3, 3001)},
};
const std::vector<Case> kColumnCases = {
    {"batch_norm (7, 5)", NormSpec::batch(7, 5, 1)},
    {"batch_norm (11, 3, 6)", NormSpec::batch(11, 3, 6)},
    {"batch_norm (9, 4, 36): the longest column run", NormSpec::batch(9, 4, 36)},
    {"batch_norm (1001, 37), parallel", NormSpec::batch(1001, 37, 1)},
};

}  // namespace

TEST_CASE("norm kernels: the plain kernel equals the composite reference, forward and backward") {
  // x (3, 4, 5): BatchNorm (statistics per channel) and LayerNorm over the last two dims.
  const Tensor x = test::rnd(Shape{3, 4, 5}, 1), dy = test::rnd(Shape{3, 4, 5}, 2, false);
  const Tensor w4 = test::rnd(Shape{4}, 3), b4 = test::rnd(Shape{4}, 4);
  const Tensor w20 = test::rnd(Shape{4, 5}, 5), b20 = test::rnd(Shape{4, 5}, 6);
  struct Layer {
    NormSpec sp;
    Tensor w, b, y_ref;
  };
  for (Layer l : {Layer{NormSpec::batch(3, 4, 5), w4, b4, reference::batch_norm(x, w4, b4, 1e-5)},
                  Layer{NormSpec::layer(3, 20), w20, b20, reference::layer_norm(x, Shape{4, 5}, w20, b20, 1e-5)}}) {
    const auto S = static_cast<std::size_t>(l.sp.num_stats());
    std::vector<double> mean(S), var(S), rstd(S), y(static_cast<std::size_t>(x.numel()));
    const auto xv = x.to_vector(), dyv = dy.to_vector(), wv = l.w.to_vector(), bv = l.b.to_vector();
    nk::plain_forward(xv.data(), l.sp, wv.data(), bv.data(), 1e-5, true, mean.data(), var.data(), rstd.data(), y.data());
    CHECK(rel_err(y, l.y_ref.to_vector()) < 1e-12);
    std::vector<double> dx(y.size()), dw(wv.size()), db(bv.size());
    nk::plain_backward(xv.data(), dyv.data(), l.sp, mean.data(), rstd.data(), wv.data(), true, dx.data(), dw.data(),
                       db.data());
    const auto g = ng::grad({l.y_ref}, {x, l.w, l.b}, {dy});
    CHECK(rel_err(dx, g[0].to_vector()) < 1e-12);
    CHECK(rel_err(dw, g[1].to_vector()) < 1e-12);
    CHECK(rel_err(db, g[2].to_vector()) < 1e-12);
  }
}

TEST_CASE("norm kernels: the plain kernel by hand, RMSNorm and given statistics") {
  // One row [1, 2, 4] with RMSNorm: mean(x^2) = 7, y = x / sqrt(7 + eps).
  const double x[3] = {1, 2, 4}, dy[3] = {1, 0, 0};
  double mean = -1, var = -1, rstd = 0, y[3];
  nk::plain_forward(x, NormSpec::rms(1, 3), nullptr, nullptr, 0.0, true, &mean, &var, &rstd, y);
  CHECK(mean == 0.0);
  CHECK(var == doctest::Approx(7.0));
  CHECK(y[2] == doctest::Approx(4.0 / std::sqrt(7.0)));
  // Given statistics: dx = rstd * dxhat, no correction terms.
  const NormSpec bn = NormSpec::batch(3, 1, 1);
  mean = 1.0, var = 3.0;
  nk::plain_forward(x, bn, nullptr, nullptr, 1.0, false, &mean, &var, &rstd, y);
  CHECK(rstd == doctest::Approx(0.5));
  double dx[3], dw = 0, db = 0;
  const double w = 3.0;
  nk::plain_backward(x, dy, bn, &mean, &rstd, &w, false, dx, &dw, &db);
  CHECK(dx[0] == doctest::Approx(1.5));
  CHECK(dx[1] == 0.0);
  CHECK(dw == doctest::Approx(0.0));  // xhat[0] = (1 - 1) * 0.5
  CHECK(db == doctest::Approx(1.0));
}

TEST_CASE_TEMPLATE("norm kernels: the row layout equals the plain kernel", T, float, double) {
  check_cases<T>(kRowCases, false);
}

TEST_CASE_TEMPLATE("norm kernels: the column layout equals the plain kernel", T, float, double) {
  check_cases<T>(kColumnCases, true);
}

TEST_CASE_TEMPLATE("norm kernels: moments of every layout equal the plain kernel's, 1 and 2 threads", T, float, double) {
  for (int threads : {1, 2}) {
    const test::OmpThreads scope(threads);
    for (const auto* cases : {&kRowCases, &kColumnCases})
      for (const Case& c : *cases) {
        INFO(c.name, ", ", threads, " threads");
        const auto S = static_cast<std::size_t>(c.sp.num_stats());
        const std::vector<T> x = cast<T>(random_values(c.sp.numel(), 21, 1e4, 2.0));
        const std::vector<double> xd = widen(x);
        std::vector<double> mean(S), var(S), mean_ref(S), var_ref(S), rstd(S), y(xd.size());
        nk::moments(x.data(), c.sp, mean.data(), var.data());
        nk::plain_forward(xd.data(), c.sp, nullptr, nullptr, 0.0, true, mean_ref.data(), var_ref.data(), rstd.data(),
                          y.data());
        // float32: float sums over chunks, ~4e-6 of the spread (2); float64: rounding of 1e4.
        const bool f32 = std::is_same_v<T, float>;
        for (std::size_t s = 0; s < S; ++s) {
          CHECK(std::abs(mean[s] - mean_ref[s]) <= (f32 ? 2e-5 : 1e-14 * mean_ref[s]));
          CHECK(std::abs(var[s] - var_ref[s]) < (f32 ? 1e-5 : 1e-10) * var_ref[s]);
        }
      }
  }
}

TEST_CASE("norm kernels: Chan's merge of two parts equals the moments of the whole") {
  // Parts {1, 2, 3} (mean 2, m2 2) and {10, 14} (mean 12, m2 8): the whole has mean 30 / 5 = 6
  // and m2 = sum (x - 6)^2 = 25 + 16 + 9 + 16 + 64 = 130.
  nk::Moments a{3, 2, 2};
  nk::merge(a, nk::Moments{2, 12, 8});
  CHECK(a.n == 5);
  CHECK(a.mean == doctest::Approx(6.0));
  CHECK(a.m2 == doctest::Approx(130.0));
  // Large means do not cancel: the same parts offset by 1e9.
  nk::Moments big{3, 2 + 1e9, 2};
  nk::merge(big, nk::Moments{2, 12 + 1e9, 8});
  CHECK(big.m2 == doctest::Approx(130.0).epsilon(1e-9));
}

TEST_CASE("norm kernels: row_dx and column_dx from the means equal the fused backward") {
  for (const NormSpec& sp : {NormSpec::batch(5, 3, 7 * 7), NormSpec::batch(7, 3, 2)}) {
    const auto n = static_cast<std::size_t>(sp.numel()), S = static_cast<std::size_t>(sp.num_stats());
    const std::vector<double> x = random_values(sp.numel(), 31, 0.5), dy = random_values(sp.numel(), 32, 0.0);
    const std::vector<double> w = random_values(sp.num_channels(), 33, 1.0);
    std::vector<double> mean(S), var(S), rstd(S), y(n), dx_ref(n), sum_dy(S), sum_dy_xhat(S);
    nk::plain_forward(x.data(), sp, w.data(), nullptr, 1e-5, true, mean.data(), var.data(), rstd.data(), y.data());
    std::vector<double> dw(S), db(S);
    nk::plain_backward(x.data(), dy.data(), sp, mean.data(), rstd.data(), w.data(), true, dx_ref.data(), dw.data(), db.data());
    // The pieces SyncBatchNorm uses: the per-statistic sums (here local), then dx from the means.
    if (nk::uses_columns(sp)) {
      nk::column_backward_sums(x.data(), dy.data(), sp, mean.data(), rstd.data(), sum_dy.data(), sum_dy_xhat.data());
    } else {
      nk::row_backward(x.data(), dy.data(), sp, mean.data(), rstd.data(), w.data(), true, static_cast<double*>(nullptr),
                       sum_dy_xhat.data(), sum_dy.data());
    }
    CHECK(rel_err(sum_dy, db) < 1e-12);
    CHECK(rel_err(sum_dy_xhat, dw) < 1e-12);
    const double count = static_cast<double>(sp.count());
    std::vector<double> mean_dxhat(S), mean_dxhat_xhat(S), dx(n);
    for (std::size_t s = 0; s < S; ++s) {
      mean_dxhat[s] = w[s] * sum_dy[s] / count;
      mean_dxhat_xhat[s] = w[s] * sum_dy_xhat[s] / count;
    }
    const auto dx_pass = nk::uses_columns(sp) ? nk::column_dx<double> : nk::row_dx<double>;
    dx_pass(x.data(), dy.data(), sp, mean.data(), rstd.data(), w.data(), mean_dxhat.data(), mean_dxhat_xhat.data(), dx.data());
    CHECK(rel_err(dx, dx_ref) < 1e-12);
  }
}

TEST_CASE("norm kernels: ng::normalize picks the column layout for BatchNorm on (N, C) and maps up to 36 elements") {
  CHECK(nk::uses_columns(NormSpec::batch(8, 4, 1)));    // BatchNorm1d on (N, C)
  CHECK(nk::uses_columns(NormSpec::batch(8, 4, 36)));   // BatchNorm2d on 6x6 maps
  CHECK_FALSE(nk::uses_columns(NormSpec::batch(8, 4, 49)));  // 7x7: the row layout
  CHECK_FALSE(nk::uses_columns(NormSpec::batch(1, 4, 9)));   // one sample: each statistic is one run
  CHECK_FALSE(nk::uses_columns(NormSpec::layer(8, 4)));
  CHECK_FALSE(nk::uses_columns(NormSpec::group(8, 4, 9, 2)));
}
