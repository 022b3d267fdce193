// The row layout: each statistic's n = A * K * E elements are A runs of K * E contiguous values
// (LayerNorm and RMSNorm rows, GroupNorm and InstanceNorm maps, BatchNorm on maps longer than
// kColumnMaxRun). These are the plain kernel's loops (norm_plain.cpp) with the statistic as the
// outer loop, so each statistic's data is read in one phase and written in the next while it
// is still in cache:
//
//   row_forward   moments_kernel, then y = xhat * weight + bias, block by block    (x read once)
//   row_backward  pass 1: sum(dxhat), sum(dxhat * xhat) and the parameter sums;
//                 pass 2: dx, per statistic                         (x and dy read once)
//
// float64 runs in double. float32 runs in float lanes (twice as many per vector) with the
// statistics in double: y through FloatRowAffine / FloatAffine and the backward's xhat through
// FloatCentre (norm_kernels.h), which keep rows offset by 1e4 at full float accuracy, and float
// sums over short chunks added in double.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <type_traits>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "autograd/ops/norm_kernels.h"

namespace ng::norm_kernels {

namespace {

// Calls f(a, b) with a, b as std::true_type / std::false_type, so that the loops below test
// these flags (weight given? bias given?) at compile time. A load like `weight ? weight[c] : 1`
// behind a run-time test of the pointer keeps GCC from vectorizing a loop (it may not load
// where the source does not).
template <class F>
void with_flags(bool a, bool b, F&& f) {
  if (a && b) f(std::true_type{}, std::true_type{});
  else if (a) f(std::true_type{}, std::false_type{});
  else if (b) f(std::false_type{}, std::true_type{});
  else f(std::false_type{}, std::false_type{});
}

// ---- memory traffic ------------------------------------------------------------------------
//
// Each statistic's data is read in one phase (moments; backward pass 1) and written in the
// next (normalize; backward pass 2, which re-reads the row from L1). Left alone, one core's
// memory traffic alternates between reading and writing, and each row starts cold: the
// hardware prefetcher starts afresh at each 4 KB page, and a LayerNorm row is often about one
// page. For float32 rows (E == 1, A == 1) prefetch hints (no effect on results) overlap the
// phases: the write phase asks for the lines of the rows processed next (forward: the next
// block's x and y; backward: the next row's x and dy), one line per 16 elements written, so
// they arrive while this row is written. Backward pass 1 also asks for ownership of each dx
// line as it reads the matching x and dy lines: the read-for-ownership that a store needs then
// runs during the reads. (Other layouts: see prefetch_run in norm_moments.cpp.)
constexpr std::int64_t kFloatsPerLine = 16;  // float32 rows: elements per 64-byte line, one hint each

constexpr std::int64_t kRowChunk = 256;         // backward, float32: elements per float partial sum
constexpr int kFlushRows = 64;                  // backward, float32 rows: rows per float parameter sum
constexpr std::int64_t kBlockBytes = 16 << 10;  // forward: statistics per block, by their bytes

// y = (x - mean) * rstd * weight[c] + bias[c] for statistics s0..s1-1 (the plain kernel's last
// loop). Along a run of E elements of one channel c, that is y = x * scale + offset with
// scale = rstd * weight[c], offset = bias[c] - mean * scale. `ahead`: statistics per block (the
// float32 rows ask for the row that many statistics on).
template <class T>
void normalize_kernel(const T* x, const NormSpec& sp, std::int64_t s0, std::int64_t s1, const double* mean,
                      const double* rstd, const T* weight, const T* bias, T* y, std::int64_t ahead) {
  for (std::int64_t s = s0; s < s1; ++s) {
    const std::int64_t g = s % sp.G;
    for (std::int64_t a = 0; a < sp.A; ++a) {
      const std::int64_t base = run_offset(sp, a, s);
      if (sp.E == 1) {  // LayerNorm / RMSNorm layout: a new channel at every element (SIMD over k)
        const T* xr = x + base;
        T* yr = y + base;
        const double mu = mean[s], r = rstd[s];
        if constexpr (std::is_same_v<T, float>) {
          const FloatRowAffine row(mu, r);  // y = xhat * weight + bias, rounded once (norm_kernels.h)
          // x and y of the row `ahead` statistics on (the next block's), while this row is written.
          const bool pf = sp.A == 1 && s + ahead < sp.num_stats();
          const T* x_pf = x + run_offset(sp, 0, pf ? s + ahead : s);
          T* y_pf = y + run_offset(sp, 0, pf ? s + ahead : s);
          with_flags(weight != nullptr, bias != nullptr, [&](auto has_w, auto has_b) {
            const auto term = [&](std::int64_t k) {
              const std::int64_t c = g * sp.K + k;
              yr[k] = row.y(xr[k], has_w ? weight[c] : 1.0f, has_b ? bias[c] : 0.0f);
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
            const double xh = xhat(static_cast<double>(xr[k]), mu, r);
            yr[k] = static_cast<T>(xh * (has_w ? static_cast<double>(weight[c]) : 1.0) + (has_b ? static_cast<double>(bias[c]) : 0.0));
          }
        });
        continue;
      }
      for (std::int64_t k = 0; k < sp.K; ++k) {
        const std::int64_t c = g * sp.K + k;
        if constexpr (std::is_same_v<T, float>) {  // y = xhat * weight[c] + bias[c], rounded once (norm_kernels.h)
          const FloatAffine affine(mean[s], rstd[s], weight ? static_cast<double>(weight[c]) : 1.0,
                                   bias ? static_cast<double>(bias[c]) : 0.0);
          const float* xe = x + base + k * sp.E;
          float* ye = y + base + k * sp.E;
#pragma omp simd
          for (std::int64_t e = 0; e < sp.E; ++e) ye[e] = affine.y(xe[e]);
          continue;
        }
        const double scale = rstd[s] * (weight ? static_cast<double>(weight[c]) : 1.0);
        const double offset = (bias ? static_cast<double>(bias[c]) : 0.0) - mean[s] * scale;
        const T* xe = x + base + k * sp.E;
        T* ye = y + base + k * sp.E;
#pragma omp simd
        for (std::int64_t e = 0; e < sp.E; ++e) ye[e] = static_cast<T>(static_cast<double>(xe[e]) * scale + offset);
      }
    }
  }
}

// Pass 2 of the backward for one statistic s: dx = rstd * (dxhat - mean_dxhat - xhat *
// mean_dxhat_xhat) (the plain kernel's last loop). Float32 rows ask for the next row's x and
// dy while this one is written ("memory traffic").
template <class T>
inline void row_dx_one(const T* x, const T* dy, const NormSpec& sp, std::int64_t s, double mu, double r,
                       const T* weight, double mean_dxhat, double mean_dxhat_xhat, T* dx) {
  const std::int64_t g = s % sp.G;
  for (std::int64_t a = 0; a < sp.A; ++a) {
    const std::int64_t base = run_offset(sp, a, s);
    if (sp.E == 1) {  // LayerNorm / RMSNorm layout
      const T* xr = x + base;
      const T* dyr = dy + base;
      T* dxr = dx + base;
      if constexpr (std::is_same_v<T, float>) {
        const FloatCentre fc(mu, r);
        const float mean_dxhat_f = static_cast<float>(mean_dxhat), mean_dxhat_xhat_f = static_cast<float>(mean_dxhat_xhat);
        const bool next = sp.A == 1 && s + 1 < sp.num_stats();
        const T* x_next = x + run_offset(sp, 0, next ? s + 1 : s);
        const T* dy_next = dy + run_offset(sp, 0, next ? s + 1 : s);
        with_flags(weight != nullptr, false, [&](auto has_w, auto) {
          const auto term = [&](std::int64_t k) {
            const float dxhat = dyr[k] * (has_w ? weight[g * sp.K + k] : 1.0f);
            dxr[k] = norm_kernels::dx(fc.rstd_f, dxhat, fc.xhat(xr[k]), mean_dxhat_f, mean_dxhat_xhat_f);
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
          const double dxhat = static_cast<double>(dyr[k]) * (has_w ? static_cast<double>(weight[c]) : 1.0);
          dxr[k] = static_cast<T>(norm_kernels::dx(r, dxhat, xhat(static_cast<double>(xr[k]), mu, r), mean_dxhat, mean_dxhat_xhat));
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
      if constexpr (std::is_same_v<T, float>) {
        const FloatCentre fc(mu, r);
        const float w_f = static_cast<float>(w), mean_dxhat_f = static_cast<float>(mean_dxhat),
                    mean_dxhat_xhat_f = static_cast<float>(mean_dxhat_xhat);
#pragma omp simd
        for (std::int64_t e = 0; e < sp.E; ++e)
          dxe[e] = norm_kernels::dx(fc.rstd_f, dye[e] * w_f, fc.xhat(xe[e]), mean_dxhat_f, mean_dxhat_xhat_f);
        continue;
      }
#pragma omp simd
      for (std::int64_t e = 0; e < sp.E; ++e) {
        const double dxhat = static_cast<double>(dye[e]) * w;
        dxe[e] = static_cast<T>(norm_kernels::dx(r, dxhat, xhat(static_cast<double>(xe[e]), mu, r), mean_dxhat, mean_dxhat_xhat));
      }
    }
  }
}

}  // namespace

bool has_fused_multiply_add() {
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
  return true;
#else
  return false;
#endif
}

template <class T>
void row_forward(const T* x, const NormSpec& sp, const T* weight, const T* bias, double eps, bool given_stats,
                 double* mean, double* var, double* rstd, T* y) {
  assert(!uses_columns(sp) && sp.count() > 0);
  const std::int64_t S = sp.num_stats();
  // Blocks of statistics whose elements fit in L1 together: moments, then normalize the same
  // block while x is still in cache, so the forward reads x from memory once, not twice.
  // (kBlockBytes / sizeof(T)) / count = kBlockBytes / (count sizeof(T)), whose product can overflow
  // for an empty input with a huge normalized extent ([0, C, 2^62])
  const std::int64_t per_block =
      std::max<std::int64_t>(1, kBlockBytes / static_cast<std::int64_t>(sizeof(T)) / sp.count());
  const std::int64_t blocks = (S + per_block - 1) / per_block;
#pragma omp parallel for if (parallel(sp))
  for (std::int64_t bl = 0; bl < blocks; ++bl) {
    const std::int64_t s0 = bl * per_block, s1 = std::min(S, s0 + per_block);
    if (!given_stats) moments_kernel<T>(x, sp, s0, s1, mean, var);
    for (std::int64_t s = s0; s < s1; ++s) rstd[s] = 1.0 / std::sqrt(std::max(var[s], 0.0) + eps);  // eps inside the sqrt
    normalize_kernel<T>(x, sp, s0, s1, mean, rstd, weight, bias, y, per_block);
  }
}

// Pass 1 sums, per statistic, sum(dxhat) and sum(dxhat * xhat); per run of one channel
// sum(dxhat) = weight[c] * sum(dy), so the E > 1 loops need only sum(dy) and sum(dy * xhat).
template <class T>
void row_backward(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd,
                  const T* weight, bool batch_stats, T* dx, double* dweight, double* dbias) {
  assert(!uses_columns(sp) && sp.count() > 0);
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
      double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
      if constexpr (is_f32) {
        if (rows_f32) {
          const std::int64_t base = run_offset(sp, 0, s);
          const float* xr = x + base;
          const float* dyr = dy + base;
          // this group's channels c = g * K + k (no buffers without parameter gradients: null)
          float* dw_g = dw_f.empty() ? nullptr : dw_f.data() + g * sp.K;
          float* db_g = db_f.empty() ? nullptr : db_f.data() + g * sp.K;
          const float* w_g = weight ? weight + g * sp.K : nullptr;
          float* dxr = dx ? dx + base : nullptr;
          with_flags(weight != nullptr, params, [&](auto has_w, auto has_p) {
            for (std::int64_t k0 = 0; k0 < sp.K; k0 += kRowChunk) {
              const std::int64_t k1 = std::min(sp.K, k0 + kRowChunk);
              float lane_dxhat[kFloatsPerLine] = {}, lane_dxhat_xhat[kFloatsPerLine] = {};  // 16 lanes: two AVX2 vectors each
              const auto term = [&](std::int64_t k, std::int64_t j) {
                const float xh = fc.xhat(xr[k]);
                const float dxhat = dyr[k] * (has_w ? w_g[k] : 1.0f);
                lane_dxhat[j] += dxhat;
                lane_dxhat_xhat[j] += dxhat * xh;
                if (has_p) {
                  dw_g[k] += dyr[k] * xh;
                  db_g[k] += dyr[k];
                }
              };
              std::int64_t k = k0;
              for (; k + kFloatsPerLine <= k1; k += kFloatsPerLine) {  // one cache line of x, dy (and dx) per step
                if (dxr) __builtin_prefetch(dxr + k, 1);  // ownership of the dx line ("memory traffic")
#pragma omp simd
                for (std::int64_t j = 0; j < kFloatsPerLine; ++j) term(k + j, j);
              }
              for (std::int64_t j = 0; k < k1; ++k, ++j) term(k, j);
              for (std::int64_t h = kFloatsPerLine / 2; h >= 1; h /= 2)  // the lanes' sums, pairwise
                for (std::int64_t j = 0; j < h; ++j) {
                  lane_dxhat[j] += lane_dxhat[j + h];
                  lane_dxhat_xhat[j] += lane_dxhat_xhat[j + h];
                }
              sum_dxhat += static_cast<double>(lane_dxhat[0]);
              sum_dxhat_xhat += static_cast<double>(lane_dxhat_xhat[0]);
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
#pragma omp simd reduction(+ : sum_dxhat, sum_dxhat_xhat)
            for (std::int64_t k = 0; k < sp.K; ++k) {
              const std::int64_t c = g * sp.K + k;
              const double xh = xhat(static_cast<double>(xr[k]), mu, r);
              const double dyk = static_cast<double>(dyr[k]);
              const double w = has_w ? static_cast<double>(weight[c]) : 1.0;
              sum_dxhat += w * dyk;
              sum_dxhat_xhat += w * dyk * xh;
              if (has_p) {
                dw_t[c] += dyk * xh;
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
              float chunk_dy = 0.0f, chunk_dy_xhat = 0.0f;
#pragma omp simd reduction(+ : chunk_dy, chunk_dy_xhat)
              for (std::int64_t e = e0; e < e1; ++e) {
                chunk_dy += dye[e];
                chunk_dy_xhat += dye[e] * fc.xhat(xe[e]);
              }
              sum_dy += static_cast<double>(chunk_dy);
              sum_dy_xhat += static_cast<double>(chunk_dy_xhat);
            }
          } else {
#pragma omp simd reduction(+ : sum_dy, sum_dy_xhat)
            for (std::int64_t e = 0; e < sp.E; ++e) {
              const double xh = xhat(static_cast<double>(xe[e]), mu, r);
              sum_dy += static_cast<double>(dye[e]);
              sum_dy_xhat += static_cast<double>(dye[e]) * xh;
            }
          }
          const double w = weight ? static_cast<double>(weight[c]) : 1.0;
          sum_dxhat += w * sum_dy;            // sum dxhat        = weight[c] * sum dy
          sum_dxhat_xhat += w * sum_dy_xhat;  // sum dxhat * xhat = weight[c] * sum dy * xhat
          if (params) {
            dw_t[c] += sum_dy_xhat;  // dweight[c] = sum dy * xhat
            db_t[c] += sum_dy;       // dbias[c]   = sum dy
          }
        }
      }
      if (!dx) continue;
      // The two correction terms: zero when the statistics do not depend on x.
      const double mean_dxhat = batch_stats && sp.subtract_mean ? sum_dxhat / n : 0.0;
      const double mean_dxhat_xhat = batch_stats ? sum_dxhat_xhat / n : 0.0;
      // Pass 2: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
      row_dx_one(x, dy, sp, s, mu, r, weight, mean_dxhat, mean_dxhat_xhat, dx);
    }
    if (!dw_f.empty()) flush(0, C);  // what is left in this thread's float buffers
  }
  for (int t = 0; params && t < threads; ++t)
    for (std::int64_t c = 0; c < C; ++c) {
      if (dweight) dweight[c] += dw_part[static_cast<std::size_t>(t * C + c)];
      if (dbias) dbias[c] += db_part[static_cast<std::size_t>(t * C + c)];
    }
}

template <class T>
void row_dx(const T* x, const T* dy, const NormSpec& sp, const double* mean, const double* rstd, const T* weight,
            const double* mean_dxhat, const double* mean_dxhat_xhat, T* dx) {
  assert(!uses_columns(sp));
#pragma omp parallel for if (parallel(sp))
  for (std::int64_t s = 0; s < sp.num_stats(); ++s)
    row_dx_one(x, dy, sp, s, mean[s], rstd[s], weight, mean_dxhat[s], mean_dxhat_xhat[s], dx);
}

#define NG_NORM_ROWS(T)                                                                                              \
  template void row_forward<T>(const T*, const NormSpec&, const T*, const T*, double, bool, double*, double*, double*, \
                               T*);                                                                                  \
  template void row_backward<T>(const T*, const T*, const NormSpec&, const double*, const double*, const T*, bool, T*, \
                                double*, double*);                                                                   \
  template void row_dx<T>(const T*, const T*, const NormSpec&, const double*, const double*, const T*, const double*, \
                          const double*, T*);
NG_NORM_ROWS(float)
NG_NORM_ROWS(double)
#undef NG_NORM_ROWS

}  // namespace ng::norm_kernels
