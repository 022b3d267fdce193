// Moments for the row layout: per statistic, the mean and the biased variance of its n elements
// (A runs of K * E contiguous values), reading x from memory once. This is the plain kernel's
// first two loops (norm_plain.cpp: mean = (1/n) sum x, var = (1/n) sum (x - mean)^2) for
// contiguous runs: chunks that fit in cache, each by a two-pass or a shifted-data formula, merged
// by Chan, Golub & LeVeque's formula (merge in norm_kernels.h). The column layout has its own
// (column_moments, norm_columns.cpp).
//
// Sources: Chan, Golub & LeVeque 1979 (merging moments), 1983 (shifted data).
#include <algorithm>
#include <cassert>
#include <cmath>

#include "autograd/ops/norm_kernels.h"

namespace ng::norm_kernels {

namespace {

// Elements per chunk: a chunk is summed in one go (in float for float32), then merged in double.
constexpr std::int64_t kChunk = 1024;

// A float sum written as one running sum is a chain of dependent additions, each waiting for
// the previous one, so even a vectorized loop runs at a fraction of the adders' rate. Chunks of
// at least kQuarters elements are therefore summed as four interleaved quarters x[i], x[i + q],
// x[i + 2q], x[i + 3q]: four independent vector accumulators (and partial sums a quarter as
// long, so less rounding). Shorter chunks use one loop: the setup would cost more.
constexpr std::int64_t kQuarters = 128;

// Moments of one contiguous chunk by the exact two-pass formula, in double. The chunk is
// still in cache for its second pass, so x is read from memory once. Without mean
// subtraction (RMSNorm) the mean is 0 and m2 is the sum of squares.
template <class T>
Moments chunk_moments(const T* x, std::int64_t n, bool subtract_mean) {
  double mean = 0.0;
  if (subtract_mean) {
#pragma omp simd reduction(+ : mean)
    for (std::int64_t i = 0; i < n; ++i) mean += static_cast<double>(x[i]);
    mean /= static_cast<double>(n);
  }
  double m2 = 0.0;
#pragma omp simd reduction(+ : m2)
  for (std::int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - mean;
    m2 += d * d;
  }
  return {static_cast<double>(n), mean, m2};
}

// Sums of d = x - centre and of d^2 over the n elements of x, as four interleaved quarters of q
// elements (see kQuarters; q = 0: one loop) and the rest.
inline void centred_sums(const float* x, std::int64_t n, std::int64_t q, float centre, float& sum_d, float& sum_d2) {
  if (q == 0) {  // a short chunk: 8 float lanes by hand (an omp simd reduction's setup and
                 // horizontal sums cost more than the few vectors of work)
    float lane_d[8] = {}, lane_d2[8] = {};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
#pragma omp simd
      for (std::int64_t j = 0; j < 8; ++j) {
        const float d = x[i + j] - centre;
        lane_d[j] += d;
        lane_d2[j] += d * d;
      }
    for (std::int64_t j = 0; i < n; ++i, ++j) {
      const float d = x[i] - centre;
      lane_d[j] += d;
      lane_d2[j] += d * d;
    }
    sum_d = ((lane_d[0] + lane_d[1]) + (lane_d[2] + lane_d[3])) + ((lane_d[4] + lane_d[5]) + (lane_d[6] + lane_d[7]));
    sum_d2 = ((lane_d2[0] + lane_d2[1]) + (lane_d2[2] + lane_d2[3])) + ((lane_d2[4] + lane_d2[5]) + (lane_d2[6] + lane_d2[7]));
    return;
  }
  float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;     // sums of d, one per quarter
  float sq0 = 0.0f, sq1 = 0.0f, sq2 = 0.0f, sq3 = 0.0f;  // sums of d^2
#pragma omp simd reduction(+ : d0, d1, d2, d3, sq0, sq1, sq2, sq3)
  for (std::int64_t i = 0; i < q; ++i) {
    const float u0 = x[i] - centre, u1 = x[i + q] - centre, u2 = x[i + 2 * q] - centre, u3 = x[i + 3 * q] - centre;
    d0 += u0;
    d1 += u1;
    d2 += u2;
    d3 += u3;
    sq0 += u0 * u0;
    sq1 += u1 * u1;
    sq2 += u2 * u2;
    sq3 += u3 * u3;
  }
#pragma omp simd reduction(+ : d0, sq0)
  for (std::int64_t i = 4 * q; i < n; ++i) {
    const float u = x[i] - centre;
    d0 += u;
    sq0 += u * u;
  }
  sum_d = (d0 + d1) + (d2 + d3);
  sum_d2 = (sq0 + sq1) + (sq2 + sq3);
}

// float32 chunks: the same moments with float lanes (twice as many per vector as double), in
// quarters (see kQuarters), by the shifted-data formula (Chan, Golub & LeVeque 1983): around
// any centre c, with d_i = x_i - c,
//   mean = c + sum(d) / n,   m2 = sum(d^2) - sum(d)^2 / n,   sum(d^2) = m2 + n (mean - c)^2.
// The subtraction cancels when c is far from the mean, so c must be near it: c is the mean of
// the first 16 elements (in float), and one pass over x gives both sums. If that centre turns
// out to be more than one standard deviation from the mean (n (mean - c)^2 > m2, i.e.
// 2 sum(d)^2 > n sum(d^2): sorted or trending data), a second pass repeats the sums around
// c + sum(d) / n. So sum(d^2) <= 2 m2 always: the cancellation costs at most a factor 2. The
// d_i are of the size of the deviations even for rows offset by 1e4: x_i - c is exact
// (Sterbenz) when x_i is within a factor 2 of c, and otherwise is rounded like a value of the
// size of the deviation. Float sums over one chunk of at most kChunk elements (kChunk / 32
// terms per accumulator lane) have relative error <= ~kChunk / 32 * 2^-24 ~ 2e-6 of sum |d|,
// sum d^2 (so m2 to ~4e-6); chunks merge in double. Invariant: x is read once (twice only for
// trending chunks, which are then in cache).
Moments chunk_moments_f32(const float* x, std::int64_t n, bool subtract_mean) {
  const std::int64_t q = n >= kQuarters ? n / 4 : 0;  // elements per quarter; 4q..n-1 are the rest
  float centre = 0.0f, sum_d = 0.0f, sum_d2 = 0.0f;
  if (subtract_mean) {
    const std::int64_t m = std::min<std::int64_t>(n, 16);
    for (std::int64_t i = 0; i < m; ++i) centre += x[i];
    centre /= static_cast<float>(m);
  }
  centred_sums(x, n, q, centre, sum_d, sum_d2);
  if (subtract_mean && 2.0f * sum_d * sum_d > static_cast<float>(n) * sum_d2) {  // centre more than one std off
    centre += sum_d / static_cast<float>(n);
    centred_sums(x, n, q, centre, sum_d, sum_d2);
  }
  // Squares of deviations beyond ~1e19 overflow float, below ~1e-19 they underflow: such
  // chunks (the 1e30 / 1e-30 tests) are summed in double instead.
  if (!(sum_d2 <= 1e30f && sum_d2 >= static_cast<float>(n) * 1e-30f)) return chunk_moments(x, n, subtract_mean);
  const double nd = static_cast<double>(n);
  if (!subtract_mean) return {nd, 0.0, static_cast<double>(sum_d2)};  // RMSNorm: m2 = sum x^2
  const double sd = static_cast<double>(sum_d);
  return {nd, static_cast<double>(centre) + sd / nd, std::max(static_cast<double>(sum_d2) - sd * sd / nd, 0.0)};
}

// Asks for the first 4 KB of p (no effect on results). The hardware prefetcher starts afresh at
// each 4 KB page, so with one run per statistic (A == 1) each run would start cold; the hint
// fetches the next run while this one is summed. (BatchNorm's runs are per image, A > 1, and
// long enough for the prefetcher; float32 rows are asked for by row_forward's write loop.)
template <class T>
inline void prefetch_run(const T* p, std::int64_t n) {
  constexpr std::int64_t kLine = 64 / static_cast<std::int64_t>(sizeof(T)), kMax = 4096 / static_cast<std::int64_t>(sizeof(T));
  for (std::int64_t i = 0; i < std::min(n, kMax); i += kLine) __builtin_prefetch(p + i);
}

}  // namespace

template <class T>
void moments_kernel(const T* x, const NormSpec& sp, std::int64_t s0, std::int64_t s1, double* mean, double* var) {
  assert(0 <= s0 && s0 <= s1 && s1 <= sp.num_stats());
  const std::int64_t run = sp.K * sp.E;
  const bool prefetch_runs = sp.A == 1 && !(std::is_same_v<T, float> && sp.E == 1);
  // The chunk function is chosen once, not per statistic.
  const auto chunk = [&](const T* p, std::int64_t len) {
    if constexpr (std::is_same_v<T, float>) return chunk_moments_f32(p, len, sp.subtract_mean);
    else return chunk_moments(p, len, sp.subtract_mean);
  };
  for (std::int64_t s = s0; s < s1; ++s) {
    if (prefetch_runs && s + 1 < sp.num_stats()) prefetch_run(x + run_offset(sp, 0, s + 1), run);
    Moments m;
    if (sp.A == 1 && run <= kChunk) {
      m = chunk(x + run_offset(sp, 0, s), run);  // one chunk: nothing to merge (short rows)
    } else {
      for (std::int64_t a = 0; a < sp.A; ++a) {
        const T* xr = x + run_offset(sp, a, s);
        for (std::int64_t i = 0; i < run; i += kChunk) merge(m, chunk(xr + i, std::min(kChunk, run - i)));
      }
    }
    mean[s] = m.mean;
    var[s] = std::max(m.m2 / m.n, 0.0);  // biased (divide by n, not n - 1); clamp: never negative
  }
}

template void moments_kernel<float>(const float*, const NormSpec&, std::int64_t, std::int64_t, double*, double*);
template void moments_kernel<double>(const double*, const NormSpec&, std::int64_t, std::int64_t, double*, double*);

}  // namespace ng::norm_kernels
