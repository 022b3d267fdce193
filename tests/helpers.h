// Shared test helpers.
#pragma once
#include <doctest/doctest.h>

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/random.h"
#include "io/fashion_mnist.h"

// CHECK_GRADCHECK(ng::gradcheck(fn, inputs)): on failure the whole report (worst element,
// analytic vs numeric) is printed in the doctest output.
#define CHECK_GRADCHECK(expr)                        \
  do {                                               \
    const ::ng::GradcheckReport report_ = (expr);    \
    CHECK_MESSAGE(report_.passed, report_.to_string()); \
  } while (0)

namespace test {

// A float64 leaf with N(0,1) entries from a fixed seed, requiring grad.
inline ng::Tensor rnd(const ng::Shape& s, std::uint64_t seed = 1, bool requires_grad = true) {
  ng::Generator g(seed);
  ng::Tensor t = ng::randn(s, ng::DType::f64, &g);
  if (requires_grad) t.requires_grad_();
  return t;
}
// Positive float64 leaf: U[lo, hi).
inline ng::Tensor rnd_pos(const ng::Shape& s, std::uint64_t seed = 1, double lo = 0.5, double hi = 2.0) {
  ng::Generator g(seed);
  return ng::uniform(s, lo, hi, ng::DType::f64, &g).requires_grad_();
}

// Sets the OpenMP thread count for a scope and restores the previous one however it ends.
struct OmpThreads {
  int before = omp_get_max_threads();
  explicit OmpThreads(int n) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(before); }
  OmpThreads(const OmpThreads&) = delete;
  OmpThreads& operator=(const OmpThreads&) = delete;
};

inline void check_values(const ng::Tensor& t, const std::vector<double>& expect, double tol = 1e-6) {
  const auto v = t.to_vector();
  REQUIRE(v.size() == expect.size());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == doctest::Approx(expect[i]).epsilon(tol));
}

// A fresh directory under the system temp dir, named after the test and the process, removed
// with everything in it when the scope ends (also files a test made read-only, and files that
// a test left open: removal errors are ignored). dir / "file" is the path of a file in it.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() / ("normgrad_test_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& file) const { return (path / file).string(); }
};

// Writes bytes to a file (binary, replacing it); the test fails if that does not work.
inline void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE_MESSAGE(f.good(), "cannot write ", path);
}
inline void write_file(const std::string& path, const std::vector<unsigned char>& bytes) {
  write_file(path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}
// The whole file as bytes.
inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  REQUIRE_MESSAGE(f.good(), "cannot read ", path);
  std::string bytes(static_cast<std::size_t>(f.tellg()), '\0');
  f.seekg(0);
  f.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

// Max |t| over all elements.
inline double max_abs(const ng::Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

// Max |a - b| over all elements (same shape required).
inline double max_abs_diff(const ng::Tensor& a, const ng::Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const auto va = a.to_vector(), vb = b.to_vector();
  double m = 0;
  for (std::size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m;
}

// Whether the Fashion-MNIST files are installed (tests that train on them skip without).
inline bool fashion_mnist_present() {
  const std::filesystem::path dir = ng::io::fashion_mnist_dir();
  for (const char* f : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                        "t10k-labels-idx1-ubyte.gz"})
    if (!std::filesystem::exists(dir / f)) return false;
  return true;
}

}  // namespace test
