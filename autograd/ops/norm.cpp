// The one normalization core. BatchNorm, LayerNorm, GroupNorm, InstanceNorm and RMSNorm are
// the same computation on the same five-axis view [A, R, G, K, E] of the input (see the table
// in norm.h); a NormSpec says which sizes are 1. Three kernels do all the work:
//
//   moments_kernel    per statistic s: mean and biased variance   (1 pass over x)
//   normalize_kernel  y = (x - mean) * rstd * weight + bias         (1 pass over x)
//   backward_kernel   two reductions per statistic, then dx         (2 passes over x, dy)
//
// Notation. s = r * G + g indexes the statistics; for each s the elements are the runs
// x[a, r, g, :, :] (K * E contiguous values, a = 0..A-1), of n = A * K * E elements in all.
// Channel c = g * K + k indexes weight and bias. xhat = (x - mean) * rstd, where
// rstd = 1 / sqrt(var + eps) with eps INSIDE the square root (as PyTorch).
//
// Sources: Ioffe & Szegedy 2015 (BatchNorm, Alg. 1 and 2); Ba, Kiros & Hinton 2016
// (LayerNorm); Wu & He 2018 (GroupNorm); Ulyanov, Vedaldi & Lempitsky 2016 (InstanceNorm);
// Zhang & Sennrich 2019 (RMSNorm); Chan, Golub & LeVeque 1979 (merging moments).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "autograd/kernels.h"
#include "autograd/ops.h"

namespace ng {

namespace {

// Offset of the run x[a, r, g, :, :] for statistic s = r * G + g:
//   ((a * R + r) * G + g) * K * E  =  (a * R * G + s) * K * E.
inline std::int64_t run_offset(const NormSpec& sp, std::int64_t a, std::int64_t s) {
  return (a * sp.num_stats() + s) * sp.K * sp.E;
}

// Split the statistics across threads only when there is enough work.
inline bool parallel(const NormSpec& sp) { return sp.numel() > detail::kParallelGrain && sp.num_stats() > 1; }

// Calls f(a, b) with a, b as std::true_type / std::false_type, so that the loops below test
// these flags (weight given? bias given?) at compile time. A load like `weight ? weight[c] : 1`
// behind a run-time test of the pointer keeps GCC from vectorizing a loop (it may not load
// where the source does not), and the scalar loop was several times slower.
template <class F>
void with_flags(bool a, bool b, F&& f) {
  if (a && b) f(std::true_type{}, std::true_type{});
  else if (a) f(std::true_type{}, std::false_type{});
  else if (b) f(std::false_type{}, std::true_type{});
  else f(std::false_type{}, std::false_type{});
}

// ---- moments -----------------------------------------------------------------------------

// Count, mean and m2 = sum of squared deviations from the mean of some elements.
struct Moments {
  double n = 0, mean = 0, m2 = 0;
};

// Moments of the union of two disjoint parts (Chan, Golub & LeVeque 1979):
//   delta = mean_b - mean_a,  mean = mean_a + delta * n_b / n,
//   m2 = m2_a + m2_b + delta^2 * n_a * n_b / n.
// Never subtracts two large numbers, so no cancellation when the mean is large.
// (merge_parts: the same on loose numbers, so that loops over columns can use it too.)
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

// A float sum written as one running sum is a chain of dependent additions, each waiting 3-4
// cycles for the previous one, so even a vectorized loop runs at a fraction of the adders'
// rate. Chunks of at least kQuarters elements are therefore summed as four interleaved quarters
// x[i], x[i + q], x[i + 2q], x[i + 3q]: four independent vector accumulators (and partial sums
// a quarter as long, so less rounding). Shorter chunks use one loop: the setup would cost more.
constexpr std::int64_t kQuarters = 128;

// Moments of one contiguous chunk by the exact two-pass formula, in double. The chunk is
// still in cache for its second pass, so x is read from memory once. Without mean
// subtraction (RMSNorm) the "mean" is 0 and m2 is the sum of squares.
template <class T>
Moments chunk_moments(const T* x, std::int64_t n, bool subtract_mean) {
  double mu = 0.0;
  if (subtract_mean) {
#pragma omp simd reduction(+ : mu)
    for (std::int64_t i = 0; i < n; ++i) mu += static_cast<double>(x[i]);
    mu /= static_cast<double>(n);
  }
  double m2 = 0.0;
#pragma omp simd reduction(+ : m2)
  for (std::int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - mu;
    m2 += d * d;
  }
  return {static_cast<double>(n), mu, m2};
}

// Sums of d = x - c and of d^2 over the n elements of x, as four interleaved quarters of q
// elements (see kQuarters; q = 0: one loop) and the rest.
inline void centred_sums(const float* x, std::int64_t n, std::int64_t q, float c, float& sum_d, float& sum_d2) {
  if (q == 0) {  // a short chunk: 8 float lanes by hand (an omp simd reduction's setup and
                 // horizontal sums cost more than the few vectors of work)
    float ld[8] = {}, le[8] = {};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
#pragma omp simd
      for (std::int64_t j = 0; j < 8; ++j) {
        const float u = x[i + j] - c;
        ld[j] += u;
        le[j] += u * u;
      }
    for (std::int64_t j = 0; i < n; ++i, ++j) {
      const float u = x[i] - c;
      ld[j] += u;
      le[j] += u * u;
    }
    sum_d = ((ld[0] + ld[1]) + (ld[2] + ld[3])) + ((ld[4] + ld[5]) + (ld[6] + ld[7]));
    sum_d2 = ((le[0] + le[1]) + (le[2] + le[3])) + ((le[4] + le[5]) + (le[6] + le[7]));
    return;
  }
  float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
  float e0 = 0.0f, e1 = 0.0f, e2 = 0.0f, e3 = 0.0f;
#pragma omp simd reduction(+ : d0, d1, d2, d3, e0, e1, e2, e3)
  for (std::int64_t i = 0; i < q; ++i) {
    const float u0 = x[i] - c, u1 = x[i + q] - c, u2 = x[i + 2 * q] - c, u3 = x[i + 3 * q] - c;
    d0 += u0;
    d1 += u1;
    d2 += u2;
    d3 += u3;
    e0 += u0 * u0;
    e1 += u1 * u1;
    e2 += u2 * u2;
    e3 += u3 * u3;
  }
#pragma omp simd reduction(+ : d0, e0)
  for (std::int64_t i = 4 * q; i < n; ++i) {
    const float u = x[i] - c;
    d0 += u;
    e0 += u * u;
  }
  sum_d = (d0 + d1) + (d2 + d3);
  sum_d2 = (e0 + e1) + (e2 + e3);
}

// float32 chunks: the same moments with float lanes (8 per AVX2 vector instead of 4), in
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
// sum d^2 (so m2 to ~4e-6); chunks merge in double. One pass instead of two (a centre pass,
// then the sums) took the LayerNorm (4096, 1024) forward at 1 thread from 2.8 to 2.5 ms (best
// of 6 alternating runs), and from 23 to 20 us on (64, 1024) rows, which sit in L2.
Moments chunk_moments_f32(const float* x, std::int64_t n, bool subtract_mean) {
  const std::int64_t q = n >= kQuarters ? n / 4 : 0;  // elements per quarter; 4q..n-1 are the rest
  float c = 0.0f, sum_d = 0.0f, sum_d2 = 0.0f;
  if (subtract_mean) {
    const std::int64_t m = std::min<std::int64_t>(n, 16);
    for (std::int64_t i = 0; i < m; ++i) c += x[i];
    c /= static_cast<float>(m);
  }
  centred_sums(x, n, q, c, sum_d, sum_d2);
  if (subtract_mean && 2.0f * sum_d * sum_d > static_cast<float>(n) * sum_d2) {  // c more than one std from the mean
    c += sum_d / static_cast<float>(n);
    centred_sums(x, n, q, c, sum_d, sum_d2);
  }
  // Squares of deviations beyond ~1e19 overflow float, below ~1e-19 they underflow: such
  // chunks (the 1e30 / 1e-30 tests) are summed in double instead.
  if (!(sum_d2 <= 1e30f && sum_d2 >= static_cast<float>(n) * 1e-30f)) return chunk_moments(x, n, subtract_mean);
  const double nd = static_cast<double>(n);
  if (!subtract_mean) return {nd, 0.0, static_cast<double>(sum_d2)};  // RMSNorm: m2 = sum x^2
  const double sd = static_cast<double>(sum_d);
  return {nd, static_cast<double>(c) + sd / nd, std::max(static_cast<double>(sum_d2) - sd * sd / nd, 0.0)};
}

// ---- memory traffic ------------------------------------------------------------------------
//
// Each statistic's data is read in one phase (moments; backward pass 1) and written in the
// next (normalize; backward pass 2, which re-reads the row from L1). Left alone, one core's
// memory traffic alternates between reading and writing, and each row starts cold: the
// hardware prefetcher starts afresh at each 4 KB page, and a LayerNorm row is often about one
// page. Prefetch hints (no effect on results) overlap the phases:
//  - float32 rows (E == 1, the LayerNorm / RMSNorm layout): the write phase asks for the lines
//    of the rows processed next (forward: the next block's x and y; backward: the next row's
//    x and dy), one line per 16 elements written, so they arrive while this row is written.
//    Backward pass 1 also asks for ownership of each dx line as it reads the matching x and
//    dy lines: the read-for-ownership that a store needs then runs during the reads.
//    In standalone loops on (4096, 1024) at 1 thread, in alternation with the previous code:
//    forward 2.7-3.0 -> 2.4-2.5 ms (a copy of the same bytes: 2.1-2.3 ms), backward 4.5-5.0
//    -> 3.5-3.6 ms (a triad of the same bytes: 2.7-2.9 ms); on (1792, 512), whose data sit in
//    L3, forward 0.31 -> 0.29 ms and backward unchanged.
//  - other layouts with one run per statistic (A == 1): moments_kernel asks for the first 4 KB
//    of the next run (BatchNorm's runs are per image, A > 1, and long enough for the prefetcher).
template <class T>
inline void prefetch(const T* p, std::int64_t n) {
  constexpr std::int64_t kLine = 64 / static_cast<std::int64_t>(sizeof(T)), kMax = 4096 / static_cast<std::int64_t>(sizeof(T));
  for (std::int64_t i = 0; i < std::min(n, kMax); i += kLine) __builtin_prefetch(p + i);
}
constexpr std::int64_t kFloatsPerLine = 16;  // float32 rows: elements per 64-byte line, one hint each

constexpr std::int64_t kChunk = 1024;
constexpr std::int64_t kRowChunk = 256;   // backward, float32 rows: elements per float row sum
constexpr int kFlushRows = 64;            // backward, float32 rows: rows per float parameter sum
constexpr std::int64_t kBlockBytes = 16 << 10;  // forward: statistics per block, by their bytes

// mean[s] and biased var[s] = m2 / n  (RMSNorm: 0 and mean(x^2)), for statistics s0..s1-1.
template <class T>
void moments_kernel(const T* x, const NormSpec& sp, std::int64_t s0, std::int64_t s1, double* mean, double* var) {
  const std::int64_t run = sp.K * sp.E;
  // One run per statistic: ask for the next one ("Memory traffic"); float32 rows are asked for
  // by normalize_kernel instead.
  const bool prefetch_runs = sp.A == 1 && !(std::is_same_v<T, float> && sp.E == 1);
  const auto chunk = [&](const T* p, std::int64_t len) {
    if constexpr (std::is_same_v<T, float>) return chunk_moments_f32(p, len, sp.subtract_mean);
    else return chunk_moments(p, len, sp.subtract_mean);
  };
  for (std::int64_t s = s0; s < s1; ++s) {
    if (prefetch_runs && s + 1 < sp.num_stats()) prefetch(x + run_offset(sp, 0, s + 1), run);
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

// ---- normalize ---------------------------------------------------------------------------

// xhat = (x - mean) * rstd for float32 x in float arithmetic, with the statistics kept in
// double. mu_f = float(mean) alone would cost up to half an ulp of the mean (5e-4 for a mean
// of 1e4, i.e. 5e-4 * rstd in xhat), so the rounding is carried as a small float correction,
// already scaled:
//   shift = float((mean - mu_f) * rstd),   xhat = (x - mu_f) * rstd_f - shift
// (one subtraction and one multiply-add per element). x - mu_f is exact (Sterbenz's lemma)
// when x is within a factor 2 of mu_f, and otherwise is rounded to 2^-24 of |x - mu_f|, a value
// of the size of the deviation; rstd_f, shift and the multiply-add add a rounding each. So
//   |xhat_f - xhat| <= ~3 * 2^-24 * (|xhat| + |shift|) + 2^-24 |xhat|  (about 2.4e-7 |xhat|),
// with |shift| <= ulp(mean) / 2 * rstd, independent of the size of the mean: float32 rows
// offset by 1e4 keep full float accuracy. (The earlier form ((x - mu_f) - corr) * rstd_f had
// the same bound and one operation more per element; measured, the saving is small: LayerNorm
// forward + backward on (64, 1024) rows in L2, best of 6 alternating runs, 52.3 -> 51.5 us.)
struct FloatCentre {
  float mu_f, rstd_f, shift;
  FloatCentre(double mean, double rstd)
      : mu_f(static_cast<float>(mean)),
        rstd_f(static_cast<float>(rstd)),
        shift(static_cast<float>((mean - static_cast<double>(static_cast<float>(mean))) * rstd)) {}
  float xhat(float x) const { return (x - mu_f) * rstd_f - shift; }
};

// y = (x - mean) * rstd * weight[c] + bias[c]. Along a run of E elements of one channel c,
// that is y = x * scale + shift with scale = rstd * weight[c], shift = bias[c] - mean * scale.
// float64 in double; float32 in float lanes (see FloatCentre), with the statistics in double.
template <class T>
void normalize_kernel(const T* x, const NormSpec& sp, std::int64_t s0, std::int64_t s1, const double* mean,
                      const double* rstd, const T* weight, const T* bias, T* y, std::int64_t ahead) {
  for (std::int64_t s = s0; s < s1; ++s) {
    const std::int64_t g = s % sp.G;
    for (std::int64_t a = 0; a < sp.A; ++a) {
      const std::int64_t base = run_offset(sp, a, s);
      if (sp.E == 1) {  // LayerNorm / RMSNorm layout: a new channel at every element (same formula, SIMD over k)
        const T* xr = x + base;
        T* yr = y + base;
        const double mu = mean[s], r = rstd[s];
        if constexpr (std::is_same_v<T, float>) {  // float32: float lanes, see FloatCentre
          const FloatCentre fc(mu, r);
          // x and y of the row `ahead` statistics on (the next block's), while this row is
          // written ("Memory traffic" above).
          const bool pf = sp.A == 1 && s + ahead < sp.num_stats();
          const T* x_pf = x + run_offset(sp, 0, pf ? s + ahead : s);
          T* y_pf = y + run_offset(sp, 0, pf ? s + ahead : s);
          with_flags(weight != nullptr, bias != nullptr, [&](auto has_w, auto has_b) {
            const auto term = [&](std::int64_t k) {
              const std::int64_t c = g * sp.K + k;
              yr[k] = fc.xhat(xr[k]) * (has_w ? weight[c] : 1.0f) + (has_b ? bias[c] : 0.0f);
            };
            std::int64_t k = 0;
            for (; k + kFloatsPerLine <= sp.K; k += kFloatsPerLine) {
              if (pf) {
                __builtin_prefetch(x_pf + k);
                __builtin_prefetch(y_pf + k, 1);
              }
#pragma omp simd
              for (std::int64_t j = 0; j < kFloatsPerLine; ++j) term(k + j);
            }
            for (; k < sp.K; ++k) term(k);
          });
          continue;
        }
        with_flags(weight != nullptr, bias != nullptr, [&](auto has_w, auto has_b) {
#pragma omp simd
          for (std::int64_t k = 0; k < sp.K; ++k) {
            const std::int64_t c = g * sp.K + k;
            const double xhat = (static_cast<double>(xr[k]) - mu) * r;
            yr[k] = static_cast<T>(xhat * (has_w ? static_cast<double>(weight[c]) : 1.0) + (has_b ? static_cast<double>(bias[c]) : 0.0));
          }
        });
        continue;
      }
      for (std::int64_t k = 0; k < sp.K; ++k) {
        const std::int64_t c = g * sp.K + k;
        if constexpr (std::is_same_v<T, float>) {  // float lanes: xhat * weight[c] = FloatCentre with rstd * weight[c]
          const FloatCentre fc(mean[s], rstd[s] * (weight ? static_cast<double>(weight[c]) : 1.0));
          const float shift = bias ? bias[c] : 0.0f;
          const float* xe = x + base + k * sp.E;
          float* ye = y + base + k * sp.E;
#pragma omp simd
          for (std::int64_t e = 0; e < sp.E; ++e) ye[e] = fc.xhat(xe[e]) + shift;
          continue;
        }
        const double scale = rstd[s] * (weight ? static_cast<double>(weight[c]) : 1.0);
        const double shift = (bias ? static_cast<double>(bias[c]) : 0.0) - mean[s] * scale;
        const T* xe = x + base + k * sp.E;
        T* ye = y + base + k * sp.E;
#pragma omp simd
        for (std::int64_t e = 0; e < sp.E; ++e) ye[e] = static_cast<T>(static_cast<double>(xe[e]) * scale + shift);
      }
    }
  }
}

// ---- backward ----------------------------------------------------------------------------
//
// With dyhat = dy * weight (the gradient w.r.t. xhat) and n elements per statistic, the
// gradient of y = xhat * weight + bias with xhat = (x - mean) * rstd is
//
//   dx = rstd * (dyhat - mean(dyhat) - xhat * mean(dyhat * xhat))
//
// Derivation (Ioffe & Szegedy 2015, Sec. 3; in the compact form of e.g. llm.c):
//   d xhat_j / d x_i = rstd * (delta_ij - 1/n - xhat_i * xhat_j / n), because
//   d mean / d x_i = 1/n and d rstd / d x_i = -rstd^3 (x_i - mean) / n = -rstd^2 xhat_i / n.
//   Contracting with dyhat_j gives the three terms: dyhat_i ("direct"), -mean(dyhat)
//   ("through the mean"), -xhat_i * mean(dyhat * xhat) ("through the variance").
// RMSNorm (Zhang & Sennrich 2019): no mean is subtracted, so the middle term is absent.
// Given, constant statistics (eval-mode BatchNorm): both correction terms vanish,
//   dx = rstd * dyhat.
// Parameters (every layer): dweight[c] = sum dy * xhat, dbias[c] = sum dy over the elements
// of channel c (all axes except g and k).
//
// So: pass 1 reduces sum(dyhat) and sum(dyhat * xhat) per statistic (and the parameter
// sums), pass 2 writes dx. Per run of one channel, sum(dyhat) = weight[c] * sum(dy), so the
// inner loops need only sum(dy) and sum(dy * xhat).
//
// For float32 rows, pass 1 also asks for the dx lines and pass 2 for the next row (see
// "Memory traffic" above moments_kernel).
template <class T>
void backward_kernel(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd,
                     const T* weight, bool batch_stats, T* dx, double* dweight, double* dbias) {
  const std::int64_t C = sp.num_channels();
  const double n = static_cast<double>(sp.count());
  const bool params = dweight || dbias;
  int threads = 1;
#ifdef _OPENMP
  if (parallel(sp)) threads = omp_get_max_threads();
#endif
  // Channels are shared between statistics (LayerNorm: every row uses every weight), so
  // each thread sums its parameter gradients privately; they are added up at the end.
  std::vector<double> dw_part(params ? static_cast<std::size_t>(threads * C) : 0, 0.0);
  std::vector<double> db_part(dw_part.size(), 0.0);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    double* dw_t = params ? dw_part.data() + tid * C : nullptr;
    double* db_t = params ? db_part.data() + tid * C : nullptr;
    // float32 rows (E == 1, A == 1): pass 1 in float lanes. The row sums are taken in float over
    // chunks of kRowChunk elements in 16 lanes (kRowChunk / 16 terms per lane, then the 16
    // lanes: relative error <= ~32 * 2^-24 ~ 2e-6 of the sum of |terms|) and the chunk sums
    // added in double. Each row adds one term per channel to the parameter sums, so these go to
    // float buffers that are added into the double ones after every kFlushRows rows of a group:
    // the same bound per flush.
    constexpr bool is_f32 = std::is_same_v<T, float>;
    const bool rows_f32 = is_f32 && sp.E == 1 && sp.A == 1;
    std::vector<float> dw_f(rows_f32 && params ? static_cast<std::size_t>(C) : 0, 0.0f), db_f(dw_f.size(), 0.0f);
    std::vector<int> rows_since_flush(dw_f.empty() ? 0 : static_cast<std::size_t>(sp.G), 0);
    const auto flush = [&](std::int64_t c0, std::int64_t c1) {
      for (std::int64_t c = c0; c < c1; ++c) {
        const auto ci = static_cast<std::size_t>(c);
        dw_t[c] += static_cast<double>(dw_f[ci]);
        db_t[c] += static_cast<double>(db_f[ci]);
        dw_f[ci] = db_f[ci] = 0.0f;
      }
    };
#pragma omp for
    for (std::int64_t s = 0; s < sp.num_stats(); ++s) {
      const std::int64_t g = s % sp.G;
      const double mu = mean[s], r = rstd[s];
      [[maybe_unused]] const FloatCentre fc(mu, r);  // the float32 loops' xhat
      // Pass 1: the two reductions per statistic.
      double sum_dyhat = 0.0, sum_dyhat_xhat = 0.0;
      if constexpr (is_f32) {
        if (rows_f32) {
          const std::int64_t base = run_offset(sp, 0, s);
          const float* xr = x + base;
          const float* dyr = dy + base;
          float* dw_g = dw_f.data() + g * sp.K;  // this group's channels c = g * K + k
          float* db_g = db_f.data() + g * sp.K;
          const float* w_g = weight ? weight + g * sp.K : nullptr;
          float* dxr = dx ? dx + base : nullptr;
          with_flags(weight != nullptr, params, [&](auto has_w, auto has_p) {
            for (std::int64_t k0 = 0; k0 < sp.K; k0 += kRowChunk) {
              const std::int64_t k1 = std::min(sp.K, k0 + kRowChunk);
              float l_dyhat[kFloatsPerLine] = {}, l_dyhat_xhat[kFloatsPerLine] = {};  // 16 lanes: two AVX2 vectors each
              const auto term = [&](std::int64_t k, std::int64_t j) {
                const float xhat = fc.xhat(xr[k]);
                const float dyhat = dyr[k] * (has_w ? w_g[k] : 1.0f);
                l_dyhat[j] += dyhat;
                l_dyhat_xhat[j] += dyhat * xhat;
                if (has_p) {
                  dw_g[k] += dyr[k] * xhat;
                  db_g[k] += dyr[k];
                }
              };
              std::int64_t k = k0;
              for (; k + kFloatsPerLine <= k1; k += kFloatsPerLine) {  // one cache line of x, dy (and dx) per step
                if (dxr) __builtin_prefetch(dxr + k, 1);  // ownership of the dx line ("Memory traffic")
#pragma omp simd
                for (std::int64_t j = 0; j < kFloatsPerLine; ++j) term(k + j, j);
              }
              for (std::int64_t j = 0; k < k1; ++k, ++j) term(k, j);
              for (std::int64_t h = kFloatsPerLine / 2; h >= 1; h /= 2)  // the lanes' sums, pairwise
                for (std::int64_t j = 0; j < h; ++j) {
                  l_dyhat[j] += l_dyhat[j + h];
                  l_dyhat_xhat[j] += l_dyhat_xhat[j + h];
                }
              const float s_dyhat = l_dyhat[0], s_dyhat_xhat = l_dyhat_xhat[0];
              sum_dyhat += static_cast<double>(s_dyhat);
              sum_dyhat_xhat += static_cast<double>(s_dyhat_xhat);
            }
          });
          if (params && ++rows_since_flush[static_cast<std::size_t>(g)] == kFlushRows) {
            flush(g * sp.K, (g + 1) * sp.K);
            rows_since_flush[static_cast<std::size_t>(g)] = 0;
          }
        }
      }
      for (std::int64_t a = 0; a < sp.A && !rows_f32; ++a) {
        const std::int64_t base = run_offset(sp, a, s);
        if (sp.E == 1) {  // LayerNorm / RMSNorm layout: the same sums, SIMD over k
          const T* xr = x + base;
          const T* dyr = dy + base;
          with_flags(weight != nullptr, params, [&](auto has_w, auto has_p) {  // has_p: parameter gradients wanted
#pragma omp simd reduction(+ : sum_dyhat, sum_dyhat_xhat)
            for (std::int64_t k = 0; k < sp.K; ++k) {
              const std::int64_t c = g * sp.K + k;
              const double xhat = (static_cast<double>(xr[k]) - mu) * r;
              const double dyk = static_cast<double>(dyr[k]);
              const double w = has_w ? static_cast<double>(weight[c]) : 1.0;
              sum_dyhat += w * dyk;
              sum_dyhat_xhat += w * dyk * xhat;
              if (has_p) {
                dw_t[c] += dyk * xhat;
                db_t[c] += dyk;
              }
            }
          });
          continue;
        }
        for (std::int64_t k = 0; k < sp.K; ++k) {
          const std::int64_t c = g * sp.K + k;
          const T* xe = x + base + k * sp.E;
          const T* dye = dy + base + k * sp.E;
          double sum_dy = 0.0, sum_dy_xhat = 0.0;
          if constexpr (is_f32) {  // float lanes over chunks of kRowChunk, chunk sums in double (as above)
            for (std::int64_t e0 = 0; e0 < sp.E; e0 += kRowChunk) {
              const std::int64_t e1 = std::min(sp.E, e0 + kRowChunk);
              float s_dy = 0.0f, s_dy_xhat = 0.0f;
#pragma omp simd reduction(+ : s_dy, s_dy_xhat)
              for (std::int64_t e = e0; e < e1; ++e) {
                s_dy += dye[e];
                s_dy_xhat += dye[e] * fc.xhat(xe[e]);
              }
              sum_dy += static_cast<double>(s_dy);
              sum_dy_xhat += static_cast<double>(s_dy_xhat);
            }
          } else {
#pragma omp simd reduction(+ : sum_dy, sum_dy_xhat)
            for (std::int64_t e = 0; e < sp.E; ++e) {
              const double xhat = (static_cast<double>(xe[e]) - mu) * r;
              sum_dy += static_cast<double>(dye[e]);
              sum_dy_xhat += static_cast<double>(dye[e]) * xhat;
            }
          }
          const double w = weight ? static_cast<double>(weight[c]) : 1.0;
          sum_dyhat += w * sum_dy;            // sum dyhat        = weight[c] * sum dy
          sum_dyhat_xhat += w * sum_dy_xhat;  // sum dyhat * xhat = weight[c] * sum dy * xhat
          if (params) {
            dw_t[c] += sum_dy_xhat;  // dweight[c] = sum dy * xhat
            db_t[c] += sum_dy;       // dbias[c]   = sum dy
          }
        }
      }
      if (!dx) continue;
      // The two correction terms: zero when the statistics do not depend on x.
      const double mean_dyhat = batch_stats && sp.subtract_mean ? sum_dyhat / n : 0.0;
      const double mean_dyhat_xhat = batch_stats ? sum_dyhat_xhat / n : 0.0;
      // Pass 2: dx = rstd * (dyhat - mean(dyhat) - xhat * mean(dyhat * xhat)).
      for (std::int64_t a = 0; a < sp.A; ++a) {
        const std::int64_t base = run_offset(sp, a, s);
        if (sp.E == 1) {  // LayerNorm / RMSNorm layout
          const T* xr = x + base;
          const T* dyr = dy + base;
          T* dxr = dx + base;
          if constexpr (is_f32) {  // float lanes, see FloatCentre
            const float m1 = static_cast<float>(mean_dyhat), m2 = static_cast<float>(mean_dyhat_xhat);
            // The next row's x and dy, asked for while this row is written ("Memory traffic").
            const bool next = sp.A == 1 && s + 1 < sp.num_stats();
            const T* x_next = x + run_offset(sp, 0, next ? s + 1 : s);
            const T* dy_next = dy + run_offset(sp, 0, next ? s + 1 : s);
            with_flags(weight != nullptr, false, [&](auto has_w, auto) {
              const auto term = [&](std::int64_t k) {
                const float dyhat = dyr[k] * (has_w ? weight[g * sp.K + k] : 1.0f);
                dxr[k] = fc.rstd_f * (dyhat - m1 - fc.xhat(xr[k]) * m2);
              };
              std::int64_t k = 0;
              for (; k + kFloatsPerLine <= sp.K; k += kFloatsPerLine) {
                if (next) {
                  __builtin_prefetch(x_next + k);
                  __builtin_prefetch(dy_next + k);
                }
#pragma omp simd
                for (std::int64_t j = 0; j < kFloatsPerLine; ++j) term(k + j);
              }
              for (; k < sp.K; ++k) term(k);
            });
            continue;
          }
          with_flags(weight != nullptr, false, [&](auto has_w, auto) {
#pragma omp simd
            for (std::int64_t k = 0; k < sp.K; ++k) {
              const std::int64_t c = g * sp.K + k;
              const double xhat = (static_cast<double>(xr[k]) - mu) * r;
              const double dyhat = static_cast<double>(dyr[k]) * (has_w ? static_cast<double>(weight[c]) : 1.0);
              dxr[k] = static_cast<T>(r * (dyhat - mean_dyhat - xhat * mean_dyhat_xhat));
            }
          });
          continue;
        }
        for (std::int64_t k = 0; k < sp.K; ++k) {
          const std::int64_t c = g * sp.K + k;
          const double w = weight ? static_cast<double>(weight[c]) : 1.0;
          const T* xe = x + base + k * sp.E;
          const T* dye = dy + base + k * sp.E;
          T* dxe = dx + base + k * sp.E;
          if constexpr (is_f32) {  // float lanes, see FloatCentre
            const float w_f = static_cast<float>(w), m1 = static_cast<float>(mean_dyhat),
                        m2 = static_cast<float>(mean_dyhat_xhat);
#pragma omp simd
            for (std::int64_t e = 0; e < sp.E; ++e) dxe[e] = fc.rstd_f * (dye[e] * w_f - m1 - fc.xhat(xe[e]) * m2);
            continue;
          }
#pragma omp simd
          for (std::int64_t e = 0; e < sp.E; ++e) {
            const double xhat = (static_cast<double>(xe[e]) - mu) * r;
            const double dyhat = static_cast<double>(dye[e]) * w;
            dxe[e] = static_cast<T>(r * (dyhat - mean_dyhat - xhat * mean_dyhat_xhat));
          }
        }
      }
    }
    if (!dw_f.empty()) flush(0, C);  // what is left in this thread's float buffers
  }
  for (int t = 0; params && t < threads; ++t)
    for (std::int64_t c = 0; c < C; ++c) {
      if (dweight) dweight[c] += dw_part[static_cast<std::size_t>(t * C + c)];
      if (dbias) dbias[c] += db_part[static_cast<std::size_t>(t * C + c)];
    }
}

// ---- the column layout: BatchNorm over (N, C) and (N, C, short L) -----------------------
//
// BatchNorm on an (N, C) input (BatchNorm1d in an MLP) has A = N, G = C and runs of one
// element (K = E = 1): statistic c is column c of an N x C matrix, and memory runs across the
// statistics, not along them. The kernels above would take one element per step and stride
// by C (on (4096, 1024) float32 the training forward + backward took 380 ms at 1 thread,
// against 7 ms for LayerNorm on the same shape), and with a short L (E = 2x2 maps, say) they
// pay a run's bookkeeping every few elements. Here the same formulas are looped the other way
// round: x is an A x W matrix (W = C * E columns; statistic s owns columns s*E .. s*E+E-1),
// rows outside, a vector loop over all W columns inside, per-column values in arrays; the
// E columns of a statistic are combined at the end. Threads split the rows (contiguous
// memory), and the sums each thread makes over its rows are combined in thread order, so
// results depend on the thread count only. With R = 1, statistic s is channel s.
// Runs up to this long take the column kernels. Training forward + backward, float32, 1 thread,
// per-statistic kernels -> column kernels: (256, 64, 2, 2) 1110 -> 75 us, (256, 64, 3, 3)
// 1217 -> 174 us, (256, 64, 6, 6) 4522 -> 1258 us; at 7x7 = 49 the two were within noise of
// each other, and longer runs (14x14) favour the per-statistic kernels at 2 threads.
constexpr std::int64_t kColumnMaxRun = 36;
inline bool columns(const NormSpec& sp) {
  return sp.A > 1 && sp.R == 1 && sp.K == 1 && sp.E <= kColumnMaxRun;
}
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

// mean[s] and biased var[s] of every statistic. First the moments of each column: each thread
// takes its rows in blocks that stay in cache, per block the exact two-pass formula in double,
// merged into the thread's running moments by Chan, Golub & LeVeque's formula (as `merge`
// above), so x is read from memory once; then the threads' moments, merged the same way in
// thread order. Then the E columns of each statistic, all with n = A elements:
//   mean = average of the column means,  m2 = sum of column m2 + A * sum (column mean - mean)^2.
template <class T>
void column_moments(const T* x, const NormSpec& sp, double* mean, double* var) {
  const std::int64_t S = sp.num_stats(), W = S * sp.E;
  const int threads = column_threads(sp);
  const auto size = static_cast<std::size_t>(W);
  std::vector<double> part_mean(threads * size, 0.0), part_m2(threads * size, 0.0), part_n(static_cast<std::size_t>(threads), 0.0);
  // (n_a, mu, m2) += a part of nb rows with means bmu and m2 bm2, column by column
  const auto merge_into = [W](double n_a, double* mu, double* m2, double nb, const double* bmu, const double* bm2) {
#pragma omp simd
    for (std::int64_t j = 0; j < W; ++j) merge_parts(n_a, mu[j], m2[j], nb, bmu[j], bm2[j]);
  };
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::int64_t a0 = 0, a1 = 0;
    const int t = thread_rows(sp.A, a0, a1);
    const std::int64_t rows = std::max<std::int64_t>(1, kColumnBlockBytes / (W * static_cast<std::int64_t>(sizeof(T))));
    std::vector<double> bmu(size), bm2(size);
    double* mu = part_mean.data() + t * size;
    double* m2 = part_m2.data() + t * size;
    double n = 0.0;
    for (std::int64_t b0 = a0; b0 < a1; b0 += rows) {
      const std::int64_t b1 = std::min(a1, b0 + rows);
      const double nb = static_cast<double>(b1 - b0);
      std::fill(bmu.begin(), bmu.end(), 0.0);
      std::fill(bm2.begin(), bm2.end(), 0.0);
      if (sp.subtract_mean) {
        for (std::int64_t a = b0; a < b1; ++a) {
          const T* xa = x + a * W;
#pragma omp simd
          for (std::int64_t j = 0; j < W; ++j) bmu[j] += static_cast<double>(xa[j]);
        }
        for (auto& v : bmu) v /= nb;
      }
      for (std::int64_t a = b0; a < b1; ++a) {
        const T* xa = x + a * W;
#pragma omp simd
        for (std::int64_t j = 0; j < W; ++j) {
          const double d = static_cast<double>(xa[j]) - bmu[j];
          bm2[j] += d * d;
        }
      }
      merge_into(n, mu, m2, nb, bmu.data(), bm2.data());  // from n = 0 (all zero): a copy
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

// The per-column constants, in T: xhat = (x - mu) * r - shift (float32: FloatCentre's values,
// so columns offset by 1e4 keep their accuracy; float64: the statistics, shift = 0), and the
// weight; column j belongs to statistic (and channel) j / E.
template <class T>
struct ColumnConstants {
  std::vector<T> mu, r, shift, w;
  ColumnConstants(const NormSpec& sp, const double* mean, const double* rstd, const T* weight)
      : mu(static_cast<std::size_t>(sp.num_stats() * sp.E)), r(mu.size()), shift(mu.size()), w(mu.size()) {
    for (std::size_t j = 0; j < mu.size(); ++j) {
      const std::size_t s = j / static_cast<std::size_t>(sp.E);
      if constexpr (std::is_same_v<T, float>) {
        const FloatCentre fc(mean[s], rstd[s]);
        mu[j] = fc.mu_f;
        r[j] = fc.rstd_f;
        shift[j] = fc.shift;
      } else {
        mu[j] = mean[s];
        r[j] = rstd[s];
        shift[j] = 0;
      }
      w[j] = weight ? weight[s] : T(1);
    }
  }
};

// y = xhat * weight + bias, rows split across threads.
template <class T>
void column_normalize(const T* x, const NormSpec& sp, const double* mean, const double* rstd, const T* weight,
                      const T* bias, T* y) {
  const std::int64_t W = sp.num_stats() * sp.E;
  const ColumnConstants<T> k(sp, mean, rstd, weight);
  std::vector<T> b(static_cast<std::size_t>(W), T(0));
  for (std::int64_t j = 0; bias && j < W; ++j) b[static_cast<std::size_t>(j)] = bias[j / sp.E];
  const T *mu = k.mu.data(), *r = k.r.data(), *shift = k.shift.data(), *w = k.w.data(), *bb = b.data();
  const int threads = column_threads(sp);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t a = 0; a < sp.A; ++a) {
    const T* xa = x + a * W;
    T* ya = y + a * W;
#pragma omp simd
    for (std::int64_t j = 0; j < W; ++j) ya[j] = ((xa[j] - mu[j]) * r[j] - shift[j]) * w[j] + bb[j];
  }
}

// backward_kernel for the column layout. Pass 1 sums dy and dy * xhat down each column (in
// double; each thread over its rows, the threads' sums added in thread order) and then over
// each statistic's E columns; pass 2 writes dx = rstd * (dyhat - mean(dyhat) - xhat *
// mean(dyhat * xhat)), rows split across threads.
template <class T>
void column_backward(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd,
                     const T* weight, bool batch_stats, T* dx, double* dweight, double* dbias) {
  const std::int64_t S = sp.num_stats(), W = S * sp.E;
  const auto size = static_cast<std::size_t>(W);
  const double n = static_cast<double>(sp.count());
  const int threads = column_threads(sp);
  const ColumnConstants<T> k(sp, mean, rstd, weight);
  const T *mu = k.mu.data(), *r = k.r.data(), *shift = k.shift.data(), *w = k.w.data();
  std::vector<double> part(2 * threads * size, 0.0);  // per thread: sum dy, then sum dy * xhat
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::int64_t a0 = 0, a1 = 0;
    const int t = thread_rows(sp.A, a0, a1);
    double* sd = part.data() + 2 * t * size;
    double* sdx = sd + size;
    for (std::int64_t a = a0; a < a1; ++a) {  // pass 1
      const T* xa = x + a * W;
      const T* dya = dy + a * W;
#pragma omp simd
      for (std::int64_t j = 0; j < W; ++j) {
        const T xhat = (xa[j] - mu[j]) * r[j] - shift[j];
        sd[j] += static_cast<double>(dya[j]);
        sdx[j] += static_cast<double>(dya[j] * xhat);
      }
    }
  }
  for (int t = 1; t < threads; ++t)
    for (std::size_t j = 0; j < 2 * size; ++j) part[j] += part[2 * static_cast<std::size_t>(t) * size + j];
  // Per statistic: sum dy and sum dy * xhat over its E columns; then
  // mean(dyhat) = weight * mean(dy), mean(dyhat * xhat) = weight * mean(dy * xhat), per column.
  std::vector<T> m1(size), m2(size);
  for (std::int64_t s = 0; s < S; ++s) {
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (std::int64_t e = 0; e < sp.E; ++e) {
      sum_dy += part[static_cast<std::size_t>(s * sp.E + e)];
      sum_dy_xhat += part[size + static_cast<std::size_t>(s * sp.E + e)];
    }
    if (dweight) dweight[s] += sum_dy_xhat;
    if (dbias) dbias[s] += sum_dy;
    const double ws = weight ? static_cast<double>(weight[s]) : 1.0;
    const T c1 = static_cast<T>(batch_stats && sp.subtract_mean ? ws * sum_dy / n : 0.0);
    const T c2 = static_cast<T>(batch_stats ? ws * sum_dy_xhat / n : 0.0);
    std::fill(m1.begin() + s * sp.E, m1.begin() + (s + 1) * sp.E, c1);
    std::fill(m2.begin() + s * sp.E, m2.begin() + (s + 1) * sp.E, c2);
  }
  if (!dx) return;
  const T *c1 = m1.data(), *c2 = m2.data();
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t a = 0; a < sp.A; ++a) {  // pass 2
    const T* xa = x + a * W;
    const T* dya = dy + a * W;
    T* dxa = dx + a * W;
#pragma omp simd
    for (std::int64_t j = 0; j < W; ++j) {
      const T xhat = (xa[j] - mu[j]) * r[j] - shift[j];
      dxa[j] = r[j] * (dya[j] * w[j] - c1[j] - xhat * c2[j]);
    }
  }
}

// The same backward with differentiable ops, used under create_graph (second-order
// gradients). The statistics are recomputed from x with ops, so that their dependence on x
// is part of the new graph; differentiating this expression gives the exact second
// derivative. Same formula as backward_kernel, on the 5-d view.
Grads backward_composite(const Tensor& x, const Tensor& dy, const Tensor& weight, const Tensor& bias,
                         const NormSpec& sp, double eps, bool batch_stats, const Tensor& mean_s,
                         const Tensor& rstd_s) {
  const Shape v5{sp.A, sp.R, sp.G, sp.K, sp.E};
  const Shape stat5{1, sp.R, sp.G, 1, 1}, chan5{1, 1, sp.G, sp.K, 1};
  const Axes red{0, 3, 4};  // the reduced axes a, k, e
  const Tensor x5 = reshape(x, v5), dy5 = reshape(dy, v5);
  Tensor xc, r;
  if (batch_stats) {
    xc = sp.subtract_mean ? sub(x5, mean(x5, red, true)) : x5;
    r = rsqrt(add(mean(mul(xc, xc), red, true), eps));
  } else {
    xc = sub(x5, reshape(mean_s.to(x.dtype()), stat5));
    r = reshape(rstd_s.to(x.dtype()), stat5);
  }
  const Tensor xhat = mul(xc, r);
  const Tensor dyhat = weight.defined() ? mul(dy5, reshape(weight, chan5)) : dy5;
  Tensor inner = dyhat;
  if (batch_stats) {
    inner = sub(inner, mul(xhat, mean(mul(dyhat, xhat), red, true)));
    if (sp.subtract_mean) inner = sub(inner, mean(dyhat, red, true));
  }
  const Tensor dx = reshape(mul(r, inner), x.shape());
  const Tensor dw = weight.defined() ? reshape(sum_to(mul(dy5, xhat), chan5), weight.shape()) : Tensor();
  const Tensor db = bias.defined() ? reshape(sum_to(dy5, chan5), bias.shape()) : Tensor();
  return {dx, dw, db};
}

void check_param(const Tensor& p, const char* what, const NormSpec& sp, const Tensor& x, const char* op) {
  if (!p.defined()) return;
  if (p.numel() != sp.num_channels())
    fail<ShapeError>("{}: {} must have {} elements: expected {} vs actual {}", op, what, sp.num_channels(),
                     sp.num_channels(), p.numel());
  if (p.dtype() != x.dtype())
    fail<DTypeError>("{}: {} has dtype {} but the input has {}", op, what, p.dtype(), x.dtype());
}

// normalize() and normalize_with_stats(): given_mean / given_var null = batch statistics.
Tensor normalize_impl(const Tensor& x_in, const NormSpec& sp, const Tensor& weight_in, const Tensor& bias_in,
                      double eps, const char* op, const Tensor* given_mean, const Tensor* given_var,
                      NormMoments* moments) {
  if (x_in.numel() != sp.numel())
    fail<ShapeError>("{}: input of shape {} does not fit the normalization layout [A={}, R={}, G={}, K={}, E={}]", op,
                     x_in.shape(), sp.A, sp.R, sp.G, sp.K, sp.E);
  if (!(eps >= 0.0)) fail<ValueError>("{}: eps must be >= 0: got {}", op, eps);
  if (sp.count() == 0) fail<ValueError>("{}: no elements to compute statistics over (input shape {})", op, x_in.shape());
  check_param(weight_in, "weight", sp, x_in, op);
  check_param(bias_in, "bias", sp, x_in, op);
  const std::int64_t S = sp.num_stats();
  const Tensor x = x_in.contiguous();
  const Tensor weight = weight_in.defined() ? weight_in.contiguous() : Tensor();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();

  Tensor mean_s = empty(Shape{S}, DType::f64), var_s = empty(Shape{S}, DType::f64);
  Tensor rstd_s = empty(Shape{S}, DType::f64);
  Tensor y = empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    if (given_mean) {
      NoGradGuard no_grad;
      mean_s.copy_(given_mean->detach().reshape(Shape{S}));
      var_s.copy_(given_var->detach().reshape(Shape{S}));
    }
    double* mean = mean_s.data<double>();
    double* var = var_s.data<double>();
    double* rstd = rstd_s.data<double>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const T* b = bias.defined() ? bias.data<T>() : nullptr;
    if (columns(sp)) {  // BatchNorm over (N, C) or (N, C, short L): see "the column layout"
      if (!given_mean) column_moments<T>(x.data<T>(), sp, mean, var);
      for (std::int64_t s = 0; s < S; ++s) rstd[s] = 1.0 / std::sqrt(std::max(var[s], 0.0) + eps);
      column_normalize<T>(x.data<T>(), sp, mean, rstd, w, b, y.data<T>());
      return;
    }
    // Blocks of statistics whose elements fit in L1 together: moments, then normalize the same
    // block while x is still in cache, so the forward reads x from memory once, not twice.
    const std::int64_t per_block = std::max<std::int64_t>(1, kBlockBytes / (sp.count() * static_cast<std::int64_t>(sizeof(T))));
    const std::int64_t blocks = (S + per_block - 1) / per_block;
#pragma omp parallel for if (parallel(sp))
    for (std::int64_t bl = 0; bl < blocks; ++bl) {
      const std::int64_t s0 = bl * per_block, s1 = std::min(S, s0 + per_block);
      if (!given_mean) moments_kernel<T>(x.data<T>(), sp, s0, s1, mean, var);
      for (std::int64_t s = s0; s < s1; ++s) rstd[s] = 1.0 / std::sqrt(std::max(var[s], 0.0) + eps);  // eps inside the sqrt
      normalize_kernel<T>(x.data<T>(), sp, s0, s1, mean, rstd, w, b, y.data<T>(), per_block);
    }
  });
  if (moments) *moments = NormMoments{mean_s, var_s, sp.count()};

  const bool batch_stats = given_mean == nullptr;
  // Saved for backward: x (an input), mean and rstd per statistic; xhat is recomputed.
  return record(op, {x, weight, bias}, y,
                [x, weight, bias, sp, eps, batch_stats, mean_s, rstd_s, op](BackwardContext& ctx, const Tensor& dy) -> Grads {
                  if (ctx.create_graph()) return backward_composite(x, dy, weight, bias, sp, eps, batch_stats, mean_s, rstd_s);
                  const Tensor dyc = dy.contiguous();
                  const std::int64_t C = sp.num_channels();
                  Tensor dx = x.requires_grad() ? empty(x.shape(), x.dtype()) : Tensor();
                  const bool want_w = weight.defined() && weight.requires_grad();
                  const bool want_b = bias.defined() && bias.requires_grad();
                  std::vector<double> dw(want_w ? static_cast<std::size_t>(C) : 0, 0.0), db(want_b ? static_cast<std::size_t>(C) : 0, 0.0);
                  Tensor dweight, dbias;
                  dispatch_float(x.dtype(), op, [&](auto tag) {
                    using T = decltype(tag);
                    const auto kernel = columns(sp) ? column_backward<T> : backward_kernel<T>;
                    kernel(x.data<T>(), dyc.data<T>(), sp, mean_s.data<double>(), rstd_s.data<double>(),
                           weight.defined() ? weight.data<T>() : nullptr, batch_stats,
                           dx.defined() ? dx.data<T>() : nullptr, want_w ? dw.data() : nullptr,
                           want_b ? db.data() : nullptr);
                    if (want_w) dweight = from_vector(dw, weight.shape(), x.dtype());
                    if (want_b) dbias = from_vector(db, bias.shape(), x.dtype());
                  });
                  return {dx, dweight, dbias};
                });
}

// ---- argument checks shared by the functional API ------------------------------------------

void check_eps(double eps, const char* op) {  // >= 0 as PyTorch (eps = 0: see layers/norm_util.h); NaN refused
  if (!(eps >= 0.0)) fail<ValueError>("{}: eps must be >= 0 (it is added to the variance): got {}", op, eps);
}

void check_channel_vector(const Tensor& t, const char* what, std::int64_t C, const char* op) {
  if (t.defined() && t.shape() != Shape{C})
    fail<ShapeError>("{}: {} must have shape [{}] (one value per channel): expected [{}] vs actual {}", op, what, C, C, t.shape());
}

// Trailing-dims check of layer_norm / rms_norm; returns D = prod(normalized_shape).
std::int64_t check_normalized_shape(const Tensor& x, const Shape& ns, const Tensor& weight, const Tensor& bias,
                                    const char* op) {
  if (ns.ndim() == 0) fail<ShapeError>("{}: normalized_shape must have at least one dim: got []", op);
  bool ok = x.dim() >= ns.ndim();
  for (int i = 0; ok && i < ns.ndim(); ++i)
    ok = x.shape()[static_cast<std::size_t>(x.dim() - ns.ndim() + i)] == ns[static_cast<std::size_t>(i)];
  if (!ok)
    fail<ShapeError>("{}: normalized_shape must equal the trailing dims of the input: expected [*, {}] vs input {}", op,
                     fmt::join(ns.vec(), ", "), x.shape());
  for (const Tensor* p : {&weight, &bias})
    if (p->defined() && p->shape() != ns)
      fail<ShapeError>("{}: {} must have the normalized shape: expected {} vs actual {}", op,
                       p == &weight ? "weight" : "bias", ns, p->shape());
  return ns.numel();
}

// (N, C, L) sizes of an input (N, C, *), L = product of the trailing sizes (1 if none).
struct NCL {
  std::int64_t N, C, L;
};
NCL ncl(const Tensor& x) {
  std::int64_t L = 1;
  for (int d = 2; d < x.dim(); ++d) L *= x.shape()[static_cast<std::size_t>(d)];
  return {x.size(0), x.size(1), L};
}

// Running averages, in place (no autograd). Statistic s belongs to channel s % C; with more
// statistics than channels (InstanceNorm: one per sample and channel) the batch value is the
// average over samples, as PyTorch does. `count` is the number of elements behind each
// statistic, m in the unbiased variance m / (m - 1) * var (Ioffe & Szegedy 2015, Alg. 2:
// inference uses the unbiased estimate; the forward normalizes with the biased one).
//   running = (1 - f) * running + f * batch       (f = momentum, PyTorch's convention)
void update_running_stats(const Tensor& running_mean, const Tensor& running_var, const NormMoments& mom, double f,
                          const char* op) {
  NoGradGuard no_grad;
  for (const Tensor* t : {&running_mean, &running_var})
    if (t->defined() && !t->is_contiguous()) fail<ValueError>("{}: running statistics must be contiguous", op);
  const std::int64_t C = running_mean.defined() ? running_mean.numel() : running_var.numel();
  const std::int64_t S = mom.mean.numel(), per_channel = S / C;
  const double unbias = static_cast<double>(mom.count) / static_cast<double>(mom.count - 1);
  const double* mean = mom.mean.data<double>();
  const double* var = mom.var.data<double>();
  for (const Tensor* t : {&running_mean, &running_var}) {
    if (!t->defined()) continue;
    const bool is_var = t == &running_var;
    dispatch_float(t->dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      T* run = t->data<T>();
      for (std::int64_t c = 0; c < C; ++c) {
        double batch = 0.0;
        for (std::int64_t j = 0; j < per_channel; ++j) batch += is_var ? var[j * C + c] * unbias : mean[j * C + c];
        batch /= static_cast<double>(per_channel);
        run[c] = static_cast<T>((1.0 - f) * static_cast<double>(run[c]) + f * batch);
      }
    });
  }
}

}  // namespace

// ---- the core op ---------------------------------------------------------------------------

Tensor normalize(const Tensor& x, const NormSpec& spec, const Tensor& weight, const Tensor& bias, double eps,
                 const char* op, NormMoments* moments) {
  return normalize_impl(x, spec, weight, bias, eps, op, nullptr, nullptr, moments);
}

Tensor normalize_with_stats(const Tensor& x, const NormSpec& spec, const Tensor& mean, const Tensor& var,
                            const Tensor& weight, const Tensor& bias, double eps, const char* op) {
  for (const Tensor* t : {&mean, &var})
    if (!t->defined() || t->numel() != spec.num_stats())
      fail<ShapeError>("{}: given statistics must have {} elements: expected [{}] vs actual {}", op, spec.num_stats(),
                       spec.num_stats(), t->defined() ? fmt::format("{}", t->shape()) : "undefined");
  return normalize_impl(x, spec, weight, bias, eps, op, &mean, &var, nullptr);
}

// ---- the layers: each one is a choice of NormSpec ------------------------------------------

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, std::optional<double> momentum, double eps,
                  const Tensor& num_batches_tracked) {
  constexpr const char* op = "batch_norm";
  if (x.dim() < 2) fail<ShapeError>("{}: expected an input of shape (N, C) or (N, C, *): got {}", op, x.shape());
  check_eps(eps, op);
  if (momentum && !(*momentum >= 0.0 && *momentum <= 1.0))
    fail<ValueError>("{}: momentum must be in [0, 1] (the new batch's weight in running stats): got {}", op, *momentum);
  const auto [N, C, L] = ncl(x);
  check_channel_vector(weight, "weight", C, op);
  check_channel_vector(bias, "bias", C, op);
  check_channel_vector(running_mean, "running_mean", C, op);
  check_channel_vector(running_var, "running_var", C, op);
  const NormSpec spec = NormSpec::batch(N, C, L);  // statistics per channel, over (N, L)

  if (!training) {
    if (!running_mean.defined() || !running_var.defined())
      fail<ValueError>("{}: running_mean and running_var are required when not training", op);
    return normalize_with_stats(x, spec, running_mean, running_var, weight, bias, eps, op);
  }
  if (N * L == 1)
    fail<ValueError>(
        "{}: expected more than 1 value per channel when training: got input of shape {} (N*L = 1). The variance of "
        "one value is 0, so the output would not depend on the input; use eval mode (running statistics), or "
        "GroupNorm / LayerNorm, which do not normalize over the batch",
        op, x.shape());
  const bool update = running_mean.defined() || running_var.defined();
  if (update && !momentum && !num_batches_tracked.defined())
    fail<ValueError>("{}: momentum = none (cumulative average) needs num_batches_tracked", op);
  NormMoments mom;
  Tensor y = normalize(x, spec, weight, bias, eps, op, &mom);
  if (update) {
    if (num_batches_tracked.defined()) {
      NoGradGuard no_grad;
      num_batches_tracked.data<std::int64_t>()[0] += 1;
    }
    // f = momentum, or 1 / (number of batches so far): the plain average of all batch statistics.
    const double f =
        momentum ? *momentum : 1.0 / static_cast<double>(num_batches_tracked.data<std::int64_t>()[0]);
    update_running_stats(running_mean, running_var, mom, f, op);
  }
  return y;
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  check_eps(eps, "layer_norm");
  const std::int64_t D = check_normalized_shape(x, normalized_shape, weight, bias, "layer_norm");
  const std::int64_t rows = D == 0 ? 0 : x.numel() / D;
  return normalize(x, NormSpec::layer(rows, D), weight, bias, eps, "layer_norm");  // per row, over its D features
}

Tensor group_norm(const Tensor& x, std::int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  constexpr const char* op = "group_norm";
  check_eps(eps, op);
  if (x.dim() < 2) fail<ShapeError>("{}: expected an input of shape (N, C, *): got {}", op, x.shape());
  if (num_groups <= 0) fail<ValueError>("{}: num_groups must be positive: got {}", op, num_groups);
  const auto [N, C, L] = ncl(x);
  if (C % num_groups != 0)
    fail<ShapeError>("{}: the number of channels must be divisible by num_groups: {} channels vs {} groups", op, C,
                     num_groups);
  check_channel_vector(weight, "weight", C, op);
  check_channel_vector(bias, "bias", C, op);
  return normalize(x, NormSpec::group(N, C, L, num_groups), weight, bias, eps, op);  // per (sample, group)
}

Tensor instance_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                     const Tensor& bias, bool use_input_stats, double momentum, double eps) {
  constexpr const char* op = "instance_norm";
  check_eps(eps, op);
  if (!(momentum >= 0.0 && momentum <= 1.0))
    fail<ValueError>("{}: momentum must be in [0, 1] (the new batch's weight in running stats): got {}", op, momentum);
  if (x.dim() < 2) fail<ShapeError>("{}: expected an input of shape (N, C, *): got {}", op, x.shape());
  const auto [N, C, L] = ncl(x);
  check_channel_vector(weight, "weight", C, op);
  check_channel_vector(bias, "bias", C, op);
  check_channel_vector(running_mean, "running_mean", C, op);
  check_channel_vector(running_var, "running_var", C, op);
  const NormSpec spec = NormSpec::instance(N, C, L);  // per (sample, channel), over its L positions
  if (!use_input_stats) {
    if (!running_mean.defined() || !running_var.defined())
      fail<ValueError>("{}: running_mean and running_var are required when use_input_stats is false", op);
    // One statistic per (sample, channel): repeat the per-channel running values over N.
    const Tensor mean = expand(reshape(running_mean.detach(), Shape{1, C}), Shape{N, C}).contiguous();
    const Tensor var = expand(reshape(running_var.detach(), Shape{1, C}), Shape{N, C}).contiguous();
    return normalize_with_stats(x, spec, mean, var, weight, bias, eps, op);
  }
  if (L == 1)
    fail<ValueError>("{}: expected more than 1 spatial element when training: got input of shape {} (one value per "
                     "instance has variance 0)",
                     op, x.shape());
  NormMoments mom;
  Tensor y = normalize(x, spec, weight, bias, eps, op, &mom);
  if (running_mean.defined() || running_var.defined()) update_running_stats(running_mean, running_var, mom, momentum, op);
  return y;
}

Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, std::optional<double> eps) {
  const double e = eps ? *eps
                       : (x.dtype() == DType::f32 ? static_cast<double>(std::numeric_limits<float>::epsilon())
                                                  : std::numeric_limits<double>::epsilon());
  check_eps(e, "rms_norm");
  const std::int64_t D = check_normalized_shape(x, normalized_shape, weight, Tensor(), "rms_norm");
  const std::int64_t rows = D == 0 ? 0 : x.numel() / D;
  return normalize(x, NormSpec::rms(rows, D), weight, Tensor(), e, "rms_norm");  // per row, no mean
}

}  // namespace ng
