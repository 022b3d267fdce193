// Matrix products through BLAS, and the one place that decides how they use threads
// (internal; used by ops/matmul.cpp and ops/conv.cpp).
//
// Threads: normgrad has one thread pool, OpenMP's. BLAS itself always runs single-threaded,
// and a large product is split into blocks of C that OpenMP threads compute side by side.
// Why: Debian's OpenBLAS (pthreads build) keeps its own worker threads. With both pools
// active on 2 cores, each pool's idle threads spin while the other pool's threads want the
// CPU: the demo CNN's training step ran 1.30x faster on 2 threads than on 1; with one pool
// it runs about 1.6x faster (docs/benchmarks.md). Inside an OpenMP region (e.g. conv2d's
// loop over images) a product is never split again.
#pragma once
#include <cstdint>

namespace ng::detail {

// C = alpha op(A) op(B) + beta C, row-major; op(A) is M x K, op(B) is K x N.
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha, const float* A,
          std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc);
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, double alpha, const double* A,
          std::int64_t lda, const double* B, std::int64_t ldb, double beta, double* C, std::int64_t ldc);

// Multiply-adds (M N K) from which a product is split across OpenMP threads.
inline constexpr std::int64_t kGemmParallelWork = std::int64_t{1} << 21;

}  // namespace ng::detail
