#include "autograd/blas.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <mutex>
#include <type_traits>

namespace ng::detail {

namespace {

// BLAS on this thread's share only (see blas.h). openblas_set_num_threads is process-wide and
// not meant to be called from two threads at once; it is only called (under a lock) when the
// setting differs, so normally this is one load and a compare.
void blas_single_thread() {
  if (openblas_get_num_threads() == 1) return;
  static std::mutex mu;
  const std::lock_guard<std::mutex> lock(mu);
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

template <class T>
void blas_call(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A, std::int64_t lda,
               const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
  const auto TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  const auto m = static_cast<blasint>(M), n = static_cast<blasint>(N), k = static_cast<blasint>(K);
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, TA, TB, m, n, k, alpha, A, static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta,
                C, static_cast<blasint>(ldc));
  else
    cblas_dgemm(CblasRowMajor, TA, TB, m, n, k, alpha, A, static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta,
                C, static_cast<blasint>(ldc));
}

// Splits C into one block per thread: along N (columns of op(B), contiguous runs of C's rows)
// when N is the larger side, else along M (rows of op(A)). Blocks are multiples of 16, so that
// each thread's share stays aligned to the BLAS kernel's register tile.
template <class T>
void gemm_impl(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A, std::int64_t lda,
               const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
  blas_single_thread();
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads <= 1 || M * N * K < kGemmParallelWork || std::max(M, N) < 32) {
    blas_call(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const bool split_n = N >= M;
  const std::int64_t extent = split_n ? N : M;
  const std::int64_t block = ((extent + threads - 1) / threads + 15) & ~std::int64_t{15};
  const std::int64_t nblocks = (extent + block - 1) / block;
#pragma omp parallel for num_threads(static_cast<int>(nblocks))
  for (std::int64_t b = 0; b < nblocks; ++b) {
    const std::int64_t lo = b * block, len = std::min(block, extent - lo);
    if (split_n)  // columns [lo, lo + len) of op(B) and of C
      blas_call(ta, tb, M, len, K, alpha, A, lda, tb ? B + lo * ldb : B + lo, ldb, beta, C + lo, ldc);
    else  // rows [lo, lo + len) of op(A) and of C
      blas_call(ta, tb, len, N, K, alpha, ta ? A + lo : A + lo * lda, lda, B, ldb, beta, C + lo * ldc, ldc);
  }
}

}  // namespace

void gemm(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, float alpha, const float* A,
          std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc) {
  gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, double alpha, const double* A,
          std::int64_t lda, const double* B, std::int64_t ldb, double beta, double* C, std::int64_t ldc) {
  gemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace ng::detail
