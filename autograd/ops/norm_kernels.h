// The kernels behind ng::normalize (autograd/ops/norm.cpp), on raw contiguous arrays viewed as
// [A, R, G, K, E] (see NormSpec in norm.h). Internal: the op validates its arguments once, so
// these only assert. Read them in this order:
//
//   norm_plain.cpp    THE DEFINITION. Forward and backward in double, plain loops over
//                     (a, r, g, k, e), every term named as in docs/normalization.md section 3.
//                     Slow on purpose; the tests hold every fast kernel against it.
//   norm_moments.cpp  per statistic: mean and biased variance, one read of x (row layout).
//   norm_rows.cpp     the row layout: each statistic's elements are A runs of K * E contiguous
//                     values (LayerNorm, RMSNorm, GroupNorm, InstanceNorm, BatchNorm on maps).
//   norm_columns.cpp  the column layout: BatchNorm over (N, C) and (N, C, short L), where the
//                     statistics run across memory and x is read as an A x (G * E) matrix.
//
// Notation (shared by all kernels). s = r * G + g indexes the statistics; c = g * K + k the
// channels (weight and bias). For each s the n = A * K * E elements are the runs x[a, r, g, :, :].
//   mean, var    biased moments of the n elements (RMSNorm: mean = 0, var = mean of x^2)
//   rstd         1 / sqrt(var + eps), eps inside the root (as PyTorch)
//   xhat         (x - mean) * rstd                                   -- see xhat() below
//   y            xhat * weight[c] + bias[c]              (float32: affine_output() below)
//   dxhat        dy * weight[c]   (the gradient w.r.t. xhat)
//   dx           rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))   -- see dx() below
//   dweight[c]   sum of dy * xhat,  dbias[c] = sum of dy, over the elements of channel c
// m2 always means the sum of squared deviations from the mean (so var = m2 / n).
//
// Pieces for a distributed BatchNorm (statistics over the samples of every process):
//   moments(x, sp, mean, var) per process, with count sp.count(); Moments / merge (or
//   merge_parts) combine (n, mean, m2 = var * n) across processes without cancellation;
//   the forward then continues with the merged mean and var as given statistics
//   (row_forward with given_stats, or column_normalize). Backward: column_backward_sums, or
//   row_backward with dx = null (for BatchNorm, R = K = 1: dbias[s] = sum dy and dweight[s] =
//   sum dy * xhat), summed across processes; mean(dxhat) = weight * sum dy / N_total and
//   mean(dxhat * xhat) = weight * sum dy * xhat / N_total; then row_dx or column_dx.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "autograd/kernels.h"
#include "autograd/ops/norm.h"

namespace ng::norm_kernels {

// ---- the plain reference kernel (norm_plain.cpp) ------------------------------------------

// Forward over all statistics. With batch_stats, computes mean[s] and var[s] from x; otherwise
// reads them (given statistics, eval-mode BatchNorm). Writes rstd[s] and y. weight, bias may be
// null (no affine).
void plain_forward(const double* x, const NormSpec& sp, const double* weight, const double* bias, double eps,
                   bool batch_stats, double* mean, double* var, double* rstd, double* y);

// Backward from the saved mean[s] and rstd[s]. dx, dweight, dbias may each be null (not
// wanted); dweight and dbias are overwritten. batch_stats = false: the statistics are constants
// and dx = rstd * dxhat.
void plain_backward(const double* x, const double* dy, const NormSpec& sp, const double* mean, const double* rstd,
                    const double* weight, bool batch_stats, double* dx, double* dweight, double* dbias);

// ---- the one formula for xhat and for dx, shared by the fast kernels ----------------------

// xhat = (x - mean) * rstd  (float64, and the plain kernel).
inline double xhat(double x, double mean, double rstd) { return (x - mean) * rstd; }

// float32: the same in float arithmetic, with the statistics kept in double. mean_f =
// float(mean) alone would cost up to half an ulp of the mean (5e-4 for a mean of 1e4, i.e.
// 5e-4 * rstd in xhat), so the rounding is carried as a small float correction, already scaled:
//   rounding = float((mean - mean_f) * rstd),   xhat = (x - mean_f) * rstd_f - rounding
// (one subtraction and one multiply-add per element). x - mean_f is exact (Sterbenz's lemma)
// when x is within a factor 2 of mean_f, and otherwise is rounded to 2^-24 of |x - mean_f|, a
// value of the size of the deviation; rstd_f, rounding and the multiply-add add a rounding each:
//   |xhat_f - xhat| <= ~3 * 2^-24 * (|xhat| + |rounding|) + 2^-24 |xhat|  (about 2.4e-7 |xhat|),
// with |rounding| <= ulp(mean) / 2 * rstd, independent of the size of the mean: float32 rows
// offset by 1e4 keep full float accuracy. The column kernels use the same with per-column
// arrays (float64 columns: rounding = 0).
template <class T>
inline T xhat(T x, T mean_f, T rstd_f, T rounding) {
  return (x - mean_f) * rstd_f - rounding;
}
struct FloatCentre {
  float mean_f, rstd_f, rounding;
  FloatCentre(double mean, double rstd)
      : mean_f(static_cast<float>(mean)),
        rstd_f(static_cast<float>(rstd)),
        rounding(static_cast<float>((mean - static_cast<double>(static_cast<float>(mean))) * rstd)) {}
  float xhat(float x) const { return norm_kernels::xhat(x, mean_f, rstd_f, rounding); }
};

// ---- the float32 output, y = xhat * weight + bias with as few roundings as possible ------------
//
// The float32 forward does not round xhat and then xhat * weight + bias (three roundings of
// values of the size of y, plus those of rstd_f and x - mean_f). It writes
//   y = (x - centre) * scale + shift,   scale = rstd * weight,   shift = bias - (mean - centre) * scale
// (the same y for any centre) and evaluates it, with d = x - centre, as
//   y = fma(d, scale_hi, fma(d, scale_lo, shift)),   scale = scale_hi + scale_lo (two floats),
// so that y is rounded once, by the outer multiply-add. The centre makes d exact:
//   |mean| <= std: centre = 0, d = x;
//   otherwise centre = float(mean), and d = x - centre is exact (Sterbenz's lemma) for x within a
//   factor 2 of the centre: for every x when the spread is small against the mean (rows offset
//   by 1e4), so the digits of a large mean cancel exactly, as FloatCentre's do.
// scale_lo carries what float(scale) rounds away (scale to ~2^-48), and shift is rounded once:
//   |y_f - y| <= about ulp(y) / 2 + ulp(shift) / 2,
// plus 2^-24 |d * scale| where d is inexact (a mean of one to a few std). Correct rounding would
// be ulp(y) / 2 alone. Measured, and compared with PyTorch, in docs/normalization.md ("float32
// accuracy"); tests/test_norm_accuracy.cpp asserts it. Without a fused multiply-add in the
// instruction set (portable builds) each fma below is a multiply and an add: one more rounding.
// (So these depend on the flags a file is built with: only the kernel files, built with the
// library's, call them.)
inline float fused_multiply_add(float a, float b, float c) {
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}
// Whether the library's kernels were built with the instruction (tests choose their bounds).
bool has_fused_multiply_add();
inline float output_centre(double mean, double rstd) {
  return std::abs(mean) * rstd <= 1.0 ? 0.0f : static_cast<float>(mean);  // |mean| <= std (rstd = 1 / std)
}
inline float affine_output(float x, float centre, float scale_hi, float scale_lo, float shift) {
  const float d = x - centre;
  return fused_multiply_add(d, scale_hi, fused_multiply_add(d, scale_lo, shift));
}

// The constants of one statistic and one channel, from the double statistics (runs of one
// channel, E > 1, and the column kernels' per-column arrays).
struct FloatAffine {
  float centre, scale_hi, scale_lo, shift;
  FloatAffine(double mean, double rstd, double weight, double bias) : centre(output_centre(mean, rstd)) {
    const double scale = rstd * weight;
    scale_hi = static_cast<float>(scale);
    scale_lo = static_cast<float>(scale - static_cast<double>(scale_hi));
    shift = static_cast<float>(bias - (mean - static_cast<double>(centre)) * scale);
  }
  float y(float x) const { return affine_output(x, centre, scale_hi, scale_lo, shift); }
};

// Rows with a weight per element (LayerNorm, RMSNorm: E == 1): the constants per element, in
// float, from the row's rstd = rstd_hi + rstd_lo and mean_rstd = float((mean - centre) * rstd):
//   scale_hi = float(rstd_hi * w),  scale_lo = rstd_lo * w + (rstd_hi * w - scale_hi),
//   shift = bias - mean_rstd * w,
// where rstd_hi * w - scale_hi, the rounding error of the product, is exact as an fma
// (Dekker's two-product). Seven float operations per element, all vectorizable.
struct FloatRowAffine {
  float centre, rstd_hi, rstd_lo, mean_rstd;
  FloatRowAffine(double mean, double rstd)
      : centre(output_centre(mean, rstd)),
        rstd_hi(static_cast<float>(rstd)),
        rstd_lo(static_cast<float>(rstd - static_cast<double>(rstd_hi))),
        mean_rstd(static_cast<float>((mean - static_cast<double>(centre)) * rstd)) {}
  float y(float x, float weight, float bias) const {
    const float scale_hi = rstd_hi * weight;
    const float scale_lo = fused_multiply_add(rstd_lo, weight, fused_multiply_add(rstd_hi, weight, -scale_hi));
    return affine_output(x, centre, scale_hi, scale_lo, fused_multiply_add(-mean_rstd, weight, bias));
  }
};

// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)): "direct", "through the mean"
// and "through the variance" (docs/normalization.md, step 5). Given statistics: both means 0.
template <class T>
inline T dx(T rstd, T dxhat, T xhat, T mean_dxhat, T mean_dxhat_xhat) {
  return rstd * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
}

// ---- moments and Chan's merge (norm_moments.cpp) -------------------------------------------

// Count, mean and m2 (sum of squared deviations from the mean) of some elements.
struct Moments {
  double n = 0, mean = 0, m2 = 0;
};

// Moments of the union of two disjoint parts (Chan, Golub & LeVeque 1979):
//   delta = mean_b - mean_a,  mean = mean_a + delta * n_b / n,
//   m2 = m2_a + m2_b + delta^2 * n_a * n_b / n.
// Never subtracts two large numbers, so no cancellation when the mean is large. merge_parts is
// the same on loose numbers (the column kernels keep arrays of means and m2); it leaves the
// count to the caller. Also what merges moments across processes (SyncBatchNorm).
inline void merge_parts(double n_a, double& mean_a, double& m2_a, double n_b, double mean_b, double m2_b) {
  const double n = n_a + n_b;
  const double delta = mean_b - mean_a;
  mean_a += delta * n_b / n;
  m2_a += m2_b + delta * delta * n_a * n_b / n;
}
inline void merge(Moments& acc, const Moments& part) {
  merge_parts(acc.n, acc.mean, acc.m2, part.n, part.mean, part.m2);
  acc.n += part.n;
}

// Row layout: mean[s] and biased var[s] = m2 / n (RMSNorm: 0 and mean(x^2)) for statistics
// s0..s1-1, x read once. The plain kernel's moments loop, specialized to contiguous runs.
template <class T>
void moments_kernel(const T* x, const NormSpec& sp, std::int64_t s0, std::int64_t s1, double* mean, double* var);

// ---- the row layout (norm_rows.cpp) --------------------------------------------------------

// The whole forward: mean, var (unless given_stats), rstd and y for every statistic, in blocks
// of statistics that fit in L1 (moments, then normalize the block while x is in cache).
template <class T>
void row_forward(const T* x, const NormSpec& sp, const T* weight, const T* bias, double eps, bool given_stats,
                 double* mean, double* var, double* rstd, T* y);

// The backward: per statistic, pass 1 reduces sum(dxhat) and sum(dxhat * xhat) (and adds the
// parameter sums into dweight, dbias), pass 2 writes dx. Any of dx, dweight, dbias may be null.
template <class T>
void row_backward(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd,
                  const T* weight, bool batch_stats, T* dx, double* dweight, double* dbias);

// Pass 2 alone: dx from the two means per statistic (zero for given statistics), for callers
// that reduce the sums themselves (SyncBatchNorm: row_backward with dx = null gives, for
// BatchNorm's R = K = 1, dbias[s] = sum dy and dweight[s] = sum dy * xhat per statistic).
template <class T>
void row_dx(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd, const T* weight,
            const double* mean_dxhat, const double* mean_dxhat_xhat, T* dx);

// ---- the column layout (norm_columns.cpp) --------------------------------------------------

// Runs of at most this many elements per (a, statistic) take the column kernels (the per-run
// loops pay a run's bookkeeping every few elements; at E = 49 the two layouts are even).
inline constexpr std::int64_t kColumnMaxRun = 36;
inline bool uses_columns(const NormSpec& sp) { return sp.A > 1 && sp.R == 1 && sp.K == 1 && sp.E <= kColumnMaxRun; }

// mean[s] and biased var[s] of every statistic (the columns' moments merged by Chan's formula).
template <class T>
void column_moments(const T* x, const NormSpec& sp, double* mean, double* var);

// y = xhat * weight + bias.
template <class T>
void column_normalize(const T* x, const NormSpec& sp, const double* mean, const double* rstd, const T* weight,
                      const T* bias, T* y);

// Pass 1 of the backward: sum_dy[s] = sum of dy and sum_dy_xhat[s] = sum of dy * xhat over each
// statistic's elements (its channel: R = K = 1), in double. These are dbias and dweight, and
// (times weight[s]) sum(dxhat) and sum(dxhat * xhat): what SyncBatchNorm all-reduces.
template <class T>
void column_backward_sums(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd,
                          double* sum_dy, double* sum_dy_xhat);

// Pass 2: dx = rstd * (dxhat - mean_dxhat[s] - xhat * mean_dxhat_xhat[s]) from the two means
// per statistic (zero for given statistics).
template <class T>
void column_dx(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd, const T* weight,
               const double* mean_dxhat, const double* mean_dxhat_xhat, T* dx);

// Both passes, with the same arguments as row_backward.
template <class T>
void column_backward(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd,
                     const T* weight, bool batch_stats, T* dx, double* dweight, double* dbias);

// ---- the layout dispatch, used by the op -----------------------------------------------------

// mean[s] and biased var[s] of every statistic, whichever the layout.
template <class T>
void moments(const T* x, const NormSpec& sp, double* mean, double* var) {
  if (uses_columns(sp)) column_moments(x, sp, mean, var);
  else moments_kernel(x, sp, 0, sp.num_stats(), mean, var);
}

// ---- helpers shared by the fast kernels ------------------------------------------------------

// Offset of the run x[a, r, g, :, :] for statistic s = r * G + g:
//   ((a * R + r) * G + g) * K * E  =  (a * R * G + s) * K * E.
inline std::int64_t run_offset(const NormSpec& sp, std::int64_t a, std::int64_t s) {
  return (a * sp.num_stats() + s) * sp.K * sp.E;
}

// Split the statistics across threads only when there is enough work.
inline bool parallel(const NormSpec& sp) { return sp.numel() > detail::kParallelGrain && sp.num_stats() > 1; }

}  // namespace ng::norm_kernels
