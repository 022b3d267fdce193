// The column layout: BatchNorm over (N, C) and (N, C, short L). There A = N, R = K = 1, G = C
// and each (a, statistic) run is E <= kColumnMaxRun elements, so statistic s is E columns of
// the A x W matrix x (W = G * E columns; statistic s owns columns s*E .. s*E+E-1, and with
// R = K = 1 statistic s is channel s). Memory runs across the statistics, not along them:
// per-statistic loops would take a few elements per step and stride by W. These kernels are the
// plain kernel's loops (norm_plain.cpp) turned the other way round: rows outside, a vector loop
// over all W columns inside, per-column values in arrays; the E columns of a statistic are
// combined at the end. Threads split the rows (contiguous memory), and the sums each thread
// makes over its rows are combined in thread order, so results depend on the thread count only.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "autograd/ops/norm_kernels.h"

namespace ng::norm_kernels {

namespace {

constexpr std::int64_t kColumnBlockBytes = 128 << 10;  // moments: rows per block, by their bytes

// Threads asked for by the column kernels; then, inside a parallel region, this thread's
// number and its share [a0, a1) of the rows 0..A-1: a static split over the threads the region
// really has (fewer than asked for inside another parallel region), the same on every call.
inline int column_threads(const NormSpec& sp) {
#ifdef _OPENMP
  if (parallel(sp)) return omp_get_max_threads();
#endif
  return 1;
}
inline int thread_rows(std::int64_t A, std::int64_t& a0, std::int64_t& a1) {
  int t = 0, nt = 1;
#ifdef _OPENMP
  t = omp_get_thread_num();
  nt = omp_get_num_threads();
#endif
  const std::int64_t per = (A + nt - 1) / nt;
  a0 = std::min(A, t * per);
  a1 = std::min(A, a0 + per);
  return t;
}

// The per-column constants, in T: xhat = (x - mean_f) * rstd_f - rounding (float32:
// FloatCentre's values, so columns offset by 1e4 keep their accuracy; float64: the statistics,
// rounding = 0), and the weight; column j belongs to statistic (and channel) j / E.
template <class T>
struct ColumnConstants {
  std::vector<T> mean_f, rstd_f, rounding, weight;
  ColumnConstants(const NormSpec& sp, const double* mean, const double* rstd, const T* w)
      : mean_f(static_cast<std::size_t>(sp.num_stats() * sp.E)), rstd_f(mean_f.size()), rounding(mean_f.size()),
        weight(mean_f.size()) {
    for (std::size_t j = 0; j < mean_f.size(); ++j) {
      const std::size_t s = j / static_cast<std::size_t>(sp.E);
      if constexpr (std::is_same_v<T, float>) {
        const FloatCentre fc(mean[s], rstd[s]);
        mean_f[j] = fc.mean_f;
        rstd_f[j] = fc.rstd_f;
        rounding[j] = fc.rounding;
      } else {
        mean_f[j] = mean[s];
        rstd_f[j] = rstd[s];
        rounding[j] = 0;
      }
      weight[j] = w ? w[s] : T(1);
    }
  }
};

}  // namespace

// First the moments of each column: each thread takes its rows in blocks that stay in cache, per
// block the exact two-pass formula in double, merged into the thread's running moments by Chan,
// Golub & LeVeque's formula (merge_parts), so x is read from memory once; then the threads'
// moments, merged the same way in thread order. Then the E columns of each statistic, all with
// A elements:  mean = average of the column means,
//              m2 = sum of column m2 + A * sum (column mean - mean)^2.
template <class T>
void column_moments(const T* x, const NormSpec& sp, double* mean, double* var) {
  assert(uses_columns(sp));
  const std::int64_t S = sp.num_stats(), W = S * sp.E;
  if (W == 0) return;  // no channels (a (N, 0, ...) input): no statistics, and no rows per block
  const int threads = column_threads(sp);
  const auto size = static_cast<std::size_t>(W);
  std::vector<double> part_mean(threads * size, 0.0), part_m2(threads * size, 0.0), part_n(static_cast<std::size_t>(threads), 0.0);
  // (n_a, col_mean, col_m2) += a part of n_b rows with means mean_b and m2 m2_b, column by column
  const auto merge_into = [W](double n_a, double* col_mean, double* col_m2, double n_b, const double* mean_b,
                              const double* m2_b) {
#pragma omp simd
    for (std::int64_t j = 0; j < W; ++j) merge_parts(n_a, col_mean[j], col_m2[j], n_b, mean_b[j], m2_b[j]);
  };
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::int64_t a0 = 0, a1 = 0;
    const int t = thread_rows(sp.A, a0, a1);
    // (bytes / sizeof(T)) / W: the same quotient, without the product W sizeof(T) (it overflows
    // for an empty batch with a huge extent)
    const std::int64_t rows = std::max<std::int64_t>(1, kColumnBlockBytes / static_cast<std::int64_t>(sizeof(T)) / W);
    std::vector<double> block_mean(size), block_m2(size);
    double* thread_mean = part_mean.data() + t * size;
    double* thread_m2 = part_m2.data() + t * size;
    double n = 0.0;
    for (std::int64_t b0 = a0; b0 < a1; b0 += rows) {
      const std::int64_t b1 = std::min(a1, b0 + rows);
      const double nb = static_cast<double>(b1 - b0);
      std::fill(block_mean.begin(), block_mean.end(), 0.0);
      std::fill(block_m2.begin(), block_m2.end(), 0.0);
      if (sp.subtract_mean) {
        for (std::int64_t a = b0; a < b1; ++a) {
          const T* xa = x + a * W;
#pragma omp simd
          for (std::int64_t j = 0; j < W; ++j) block_mean[j] += static_cast<double>(xa[j]);
        }
        for (auto& v : block_mean) v /= nb;
      }
      for (std::int64_t a = b0; a < b1; ++a) {
        const T* xa = x + a * W;
#pragma omp simd
        for (std::int64_t j = 0; j < W; ++j) {
          const double d = static_cast<double>(xa[j]) - block_mean[j];
          block_m2[j] += d * d;
        }
      }
      merge_into(n, thread_mean, thread_m2, nb, block_mean.data(), block_m2.data());  // from n = 0 (all zero): a copy
      n += nb;
    }
    part_n[static_cast<std::size_t>(t)] = n;
  }
  std::vector<double> col_mean(size, 0.0), col_m2(size, 0.0);
  double n = 0.0;
  for (int t = 0; t < threads; ++t) {
    const double nt = part_n[static_cast<std::size_t>(t)];
    if (nt == 0.0) continue;
    merge_into(n, col_mean.data(), col_m2.data(), nt, part_mean.data() + t * size, part_m2.data() + t * size);
    n += nt;
  }
  for (std::int64_t s = 0; s < S; ++s) {  // the E columns of statistic s
    const double* cm = col_mean.data() + s * sp.E;
    const double* c2 = col_m2.data() + s * sp.E;
    double mu = 0.0, m2 = 0.0;
    for (std::int64_t e = 0; e < sp.E; ++e) mu += cm[e];
    mu /= static_cast<double>(sp.E);
    for (std::int64_t e = 0; e < sp.E; ++e) m2 += c2[e] + n * (cm[e] - mu) * (cm[e] - mu);
    mean[s] = sp.subtract_mean ? mu : 0.0;
    var[s] = std::max(m2 / (n * static_cast<double>(sp.E)), 0.0);  // biased: m2 / (A * E)
  }
}

// y = xhat * weight + bias, rows split across threads. float32: y rounded once, from per-column
// FloatAffine constants (norm_kernels.h).
template <class T>
void column_normalize(const T* x, const NormSpec& sp, const double* mean, const double* rstd, const T* weight,
                      const T* bias, T* y) {
  assert(uses_columns(sp));
  const std::int64_t W = sp.num_stats() * sp.E;
  if constexpr (std::is_same_v<T, float>) {
    const auto size = static_cast<std::size_t>(W);
    std::vector<float> centre(size), scale_hi(size), scale_lo(size), shift(size);
    for (std::size_t j = 0; j < size; ++j) {
      const std::size_t s = j / static_cast<std::size_t>(sp.E);
      const FloatAffine affine(mean[s], rstd[s], weight ? static_cast<double>(weight[s]) : 1.0,
                               bias ? static_cast<double>(bias[s]) : 0.0);
      centre[j] = affine.centre, scale_hi[j] = affine.scale_hi, scale_lo[j] = affine.scale_lo, shift[j] = affine.shift;
    }
    const float *c = centre.data(), *sh = scale_hi.data(), *sl = scale_lo.data(), *t = shift.data();
    const int threads = column_threads(sp);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (std::int64_t a = 0; a < sp.A; ++a) {
      const float* xa = x + a * W;
      float* ya = y + a * W;
#pragma omp simd
      for (std::int64_t j = 0; j < W; ++j) ya[j] = affine_output(xa[j], c[j], sh[j], sl[j], t[j]);
    }
    return;
  }
  const ColumnConstants<T> consts(sp, mean, rstd, weight);
  std::vector<T> bias_col(static_cast<std::size_t>(W), T(0));
  for (std::int64_t j = 0; bias && j < W; ++j) bias_col[static_cast<std::size_t>(j)] = bias[j / sp.E];
  const T *mu = consts.mean_f.data(), *r = consts.rstd_f.data(), *rounding = consts.rounding.data(),
          *w = consts.weight.data(), *b = bias_col.data();
  const int threads = column_threads(sp);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t a = 0; a < sp.A; ++a) {
    const T* xa = x + a * W;
    T* ya = y + a * W;
#pragma omp simd
    for (std::int64_t j = 0; j < W; ++j) ya[j] = xhat(xa[j], mu[j], r[j], rounding[j]) * w[j] + b[j];
  }
}

// Sums dy and dy * xhat down each column (in double; each thread over its rows, the threads'
// sums added in thread order), then over each statistic's E columns.
template <class T>
void column_backward_sums(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd,
                          double* sum_dy, double* sum_dy_xhat) {
  assert(uses_columns(sp));
  const std::int64_t S = sp.num_stats(), W = S * sp.E;
  const auto size = static_cast<std::size_t>(W);
  const int threads = column_threads(sp);
  const ColumnConstants<T> consts(sp, mean, rstd, nullptr);
  const T *mu = consts.mean_f.data(), *r = consts.rstd_f.data(), *rounding = consts.rounding.data();
  std::vector<double> part(2 * threads * size, 0.0);  // per thread: column sums of dy, then of dy * xhat
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::int64_t a0 = 0, a1 = 0;
    const int t = thread_rows(sp.A, a0, a1);
    double* col_dy = part.data() + 2 * t * size;
    double* col_dy_xhat = col_dy + size;
    for (std::int64_t a = a0; a < a1; ++a) {
      const T* xa = x + a * W;
      const T* dya = dy + a * W;
#pragma omp simd
      for (std::int64_t j = 0; j < W; ++j) {
        const T xh = xhat(xa[j], mu[j], r[j], rounding[j]);
        col_dy[j] += static_cast<double>(dya[j]);
        col_dy_xhat[j] += static_cast<double>(dya[j] * xh);
      }
    }
  }
  for (int t = 1; t < threads; ++t)
    for (std::size_t j = 0; j < 2 * size; ++j) part[j] += part[2 * static_cast<std::size_t>(t) * size + j];
  for (std::int64_t s = 0; s < S; ++s) {
    sum_dy[s] = sum_dy_xhat[s] = 0.0;
    for (std::int64_t e = 0; e < sp.E; ++e) {
      sum_dy[s] += part[static_cast<std::size_t>(s * sp.E + e)];
      sum_dy_xhat[s] += part[size + static_cast<std::size_t>(s * sp.E + e)];
    }
  }
}

// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), rows split across threads.
template <class T>
void column_dx(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd, const T* weight,
               const double* mean_dxhat, const double* mean_dxhat_xhat, T* dx) {
  assert(uses_columns(sp));
  const std::int64_t W = sp.num_stats() * sp.E;
  const auto size = static_cast<std::size_t>(W);
  const int threads = column_threads(sp);
  const ColumnConstants<T> consts(sp, mean, rstd, weight);
  const T *mu = consts.mean_f.data(), *r = consts.rstd_f.data(), *rounding = consts.rounding.data(),
          *w = consts.weight.data();
  std::vector<T> col_mean_dxhat(size), col_mean_dxhat_xhat(size);  // per column, in T
  for (std::size_t j = 0; j < size; ++j) {
    const std::size_t s = j / static_cast<std::size_t>(sp.E);
    col_mean_dxhat[j] = static_cast<T>(mean_dxhat[s]);
    col_mean_dxhat_xhat[j] = static_cast<T>(mean_dxhat_xhat[s]);
  }
  const T *m_dxhat = col_mean_dxhat.data(), *m_dxhat_xhat = col_mean_dxhat_xhat.data();
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t a = 0; a < sp.A; ++a) {
    const T* xa = x + a * W;
    const T* dya = dy + a * W;
    T* dxa = dx + a * W;
#pragma omp simd
    for (std::int64_t j = 0; j < W; ++j)
      dxa[j] = norm_kernels::dx(r[j], dya[j] * w[j], xhat(xa[j], mu[j], r[j], rounding[j]), m_dxhat[j], m_dxhat_xhat[j]);
  }
}

// Per statistic: mean(dxhat) = weight * mean(dy), mean(dxhat * xhat) = weight * mean(dy * xhat).
template <class T>
void column_backward(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd,
                     const T* weight, bool batch_stats, T* dx, double* dweight, double* dbias) {
  const std::int64_t S = sp.num_stats();
  const auto size = static_cast<std::size_t>(S);
  const double n = static_cast<double>(sp.count());
  std::vector<double> sum_dy(size), sum_dy_xhat(size), mean_dxhat(size), mean_dxhat_xhat(size);
  column_backward_sums(x, dy, sp, mean, rstd, sum_dy.data(), sum_dy_xhat.data());
  for (std::int64_t s = 0; s < S; ++s) {
    const auto si = static_cast<std::size_t>(s);
    if (dweight) dweight[s] += sum_dy_xhat[si];
    if (dbias) dbias[s] += sum_dy[si];
    const double w = weight ? static_cast<double>(weight[s]) : 1.0;
    mean_dxhat[si] = batch_stats && sp.subtract_mean ? w * sum_dy[si] / n : 0.0;
    mean_dxhat_xhat[si] = batch_stats ? w * sum_dy_xhat[si] / n : 0.0;
  }
  if (dx) column_dx(x, dy, sp, mean, rstd, weight, mean_dxhat.data(), mean_dxhat_xhat.data(), dx);
}

#define NG_NORM_COLUMNS(T)                                                                                            \
  template void column_moments<T>(const T*, const NormSpec&, double*, double*);                                       \
  template void column_normalize<T>(const T*, const NormSpec&, const double*, const double*, const T*, const T*, T*); \
  template void column_backward_sums<T>(const T*, const T*, const NormSpec&, const double*, const double*, double*,   \
                                        double*);                                                                     \
  template void column_dx<T>(const T*, const T*, const NormSpec&, const double*, const double*, const T*,             \
                             const double*, const double*, T*);                                                       \
  template void column_backward<T>(const T*, const T*, const NormSpec&, const double*, const double*, const T*, bool,  \
                                   T*, double*, double*);
NG_NORM_COLUMNS(float)
NG_NORM_COLUMNS(double)
#undef NG_NORM_COLUMNS

}  // namespace ng::norm_kernels
