// IDX reader and the Fashion-MNIST loader: small files written here (plain and gzip),
// every kind of damage, and the real data set when it is installed.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/fashion_mnist.h"
#include "io/idx.h"
#include "tests/helpers.h"

namespace fs = std::filesystem;
using ng::io::read_idx;

namespace {

using test::TempDir;

std::vector<unsigned char> be32(std::uint32_t v) {
  return {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16), static_cast<unsigned char>(v >> 8),
          static_cast<unsigned char>(v)};
}

// magic, then dims, then data: the bytes of an IDX file.
std::vector<unsigned char> idx_bytes(std::uint32_t magic, const std::vector<std::uint32_t>& dims,
                                     const std::vector<unsigned char>& data) {
  std::vector<unsigned char> out = be32(magic);
  for (auto d : dims) {
    const auto b = be32(d);
    out.insert(out.end(), b.begin(), b.end());
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void write_plain(const std::string& path, const std::vector<unsigned char>& bytes) { test::write_file(path, bytes); }

void write_gz(const std::string& path, const std::vector<unsigned char>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!bytes.empty()) REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

std::vector<unsigned char> iota_bytes(std::size_t n, unsigned start = 0) {
  std::vector<unsigned char> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>((start + i * 7) % 256);
  return v;
}

}  // namespace

TEST_CASE("read_idx: plain and gzip files give the same dims and bytes") {
  TempDir dir("idx_roundtrip");
  const auto pixels = iota_bytes(3 * 5 * 7);
  const auto bytes = idx_bytes(0x00000803, {3, 5, 7}, pixels);
  write_plain(dir / "images", bytes);
  write_gz(dir / "images.gz", bytes);
  for (const auto& name : {"images", "images.gz"}) {
    CAPTURE(name);
    const auto a = read_idx(dir / name, {.expected_ndim = 3});
    CHECK(a.dims == std::vector<std::int64_t>{3, 5, 7});
    CHECK(a.data == pixels);
  }
  const std::vector<unsigned char> labels = {3, 1, 4, 1, 5};
  write_gz(dir / "labels.gz", idx_bytes(0x00000801, {5}, labels));
  const auto l = read_idx(dir / "labels.gz", {.expected_ndim = 1});
  CHECK(l.dims == std::vector<std::int64_t>{5});
  CHECK(l.data == labels);
}

TEST_CASE("read_idx: max_items keeps the first items") {
  TempDir dir("idx_limit");
  const auto pixels = iota_bytes(5 * 3 * 3);
  const auto bytes = idx_bytes(0x00000803, {5, 3, 3}, pixels);
  write_plain(dir / "plain", bytes);
  write_gz(dir / "gz", bytes);
  for (const auto& name : {"plain", "gz"}) {
    CAPTURE(name);
    const auto a = read_idx(dir / name, {.max_items = 2});
    CHECK(a.dims == std::vector<std::int64_t>{2, 3, 3});
    CHECK(a.data == std::vector<unsigned char>(pixels.begin(), pixels.begin() + 18));
    CHECK(read_idx(dir / name, {.max_items = 99}).dims[0] == 5);  // more than there is: all
    CHECK(read_idx(dir / name, {.max_items = 0}).data.empty());
  }
}

TEST_CASE("read_idx: missing file, not a file, wrong magic numbers") {
  TempDir dir("idx_magic");
  CHECK_THROWS_WITH_AS(read_idx(dir / "nope.gz"), doctest::Contains("nope.gz': no such file"), ng::IOError);
  CHECK_THROWS_WITH_AS(read_idx(dir.path.string()), doctest::Contains("not a regular file"), ng::IOError);

  write_gz(dir / "notidx.gz", idx_bytes(0x12345678, {1}, {0}));
  CHECK_THROWS_WITH_AS(read_idx(dir / "notidx.gz"), doctest::Contains("not an IDX file: magic number 0x12345678"),
                       ng::IOError);
  write_gz(dir / "int32.gz", idx_bytes(0x00000c01, {1}, {0, 0, 0, 0}));
  CHECK_THROWS_WITH_AS(read_idx(dir / "int32.gz"), doctest::Contains("unsupported element type 0x0c"), ng::IOError);
  write_gz(dir / "labels.gz", idx_bytes(0x00000801, {2}, {1, 2}));
  CHECK_THROWS_WITH_AS(read_idx(dir / "labels.gz", {.expected_ndim = 3}),
                       doctest::Contains("wrong magic number: expected 0x00000803 (3-d uint8) vs 0x00000801 (1-d)"),
                       ng::IOError);
  write_plain(dir / "zero_dims", idx_bytes(0x00000800, {}, {}));
  CHECK_THROWS_WITH_AS(read_idx(dir / "zero_dims"), doctest::Contains("declares 0 dimensions"), ng::IOError);
  write_plain(dir / "empty", {});
  CHECK_THROWS_WITH_AS(read_idx(dir / "empty"), doctest::Contains("shorter than the 4-byte magic"), ng::IOError);
  write_gz(dir / "short_dims.gz", {0, 0, 8, 3, 0, 0, 0, 2});
  CHECK_THROWS_WITH_AS(read_idx(dir / "short_dims.gz"), doctest::Contains("ends before their sizes"), ng::IOError);
}

TEST_CASE("read_idx: dimensions that do not match the data") {
  TempDir dir("idx_size");
  // 3 x 5 x 7 declared, 104 of the 105 bytes present; and 106 present.
  const auto short_bytes = idx_bytes(0x00000803, {3, 5, 7}, iota_bytes(104));
  const auto long_bytes = idx_bytes(0x00000803, {3, 5, 7}, iota_bytes(106));
  write_plain(dir / "short", short_bytes);
  write_plain(dir / "long", long_bytes);
  CHECK_THROWS_WITH_AS(read_idx(dir / "short"),
                       doctest::Contains("dimensions do not match the file size: 3 x 5 x 7 = 105 bytes of data "
                                         "declared vs 104 in the file"),
                       ng::IOError);
  CHECK_THROWS_WITH_AS(read_idx(dir / "long"), doctest::Contains("105 bytes of data declared vs 106"), ng::IOError);
  write_gz(dir / "short.gz", short_bytes);
  write_gz(dir / "long.gz", long_bytes);
  CHECK_THROWS_WITH_AS(read_idx(dir / "short.gz"),
                       doctest::Contains("truncated: dimensions 3 x 5 x 7 declare 105 bytes of data, the file ends "
                                         "after 104"),
                       ng::IOError);
  CHECK_THROWS_WITH_AS(read_idx(dir / "long.gz"), doctest::Contains("data continues after the 105 bytes"),
                       ng::IOError);
}

TEST_CASE("read_idx: a damaged gzip stream is an IOError naming the file") {
  TempDir dir("idx_gzip");
  const auto bytes = idx_bytes(0x00000803, {20, 28, 28}, iota_bytes(20 * 28 * 28));
  write_gz(dir / "good.gz", bytes);
  std::vector<char> gz(fs::file_size(dir / "good.gz"));
  std::ifstream in(dir / "good.gz", std::ios::binary);
  in.read(gz.data(), static_cast<std::streamsize>(gz.size()));
  REQUIRE(gz.size() > 40);

  // Cut in the middle of the deflate stream.
  std::vector<unsigned char> cut(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2));
  write_plain(dir / "cut.gz", cut);
  CHECK_THROWS_WITH_AS(read_idx(dir / "cut.gz"), doctest::Contains("cut.gz"), ng::IOError);

  // Garbage after a valid gzip header (10 bytes): invalid deflate data.
  std::vector<unsigned char> garbage(gz.begin(), gz.begin() + 10);
  for (int i = 0; i < 200; ++i) garbage.push_back(static_cast<unsigned char>(0xff - i));
  write_plain(dir / "garbage.gz", garbage);
  CHECK_THROWS_WITH_AS(read_idx(dir / "garbage.gz"), doctest::Contains("corrupt or truncated gzip data"), ng::IOError);

  // A flipped byte in the compressed data: deflate error or CRC mismatch, never silence.
  std::vector<unsigned char> flipped(gz.begin(), gz.end());
  flipped[gz.size() / 2] ^= 0x55;
  write_plain(dir / "flipped.gz", flipped);
  CHECK_THROWS_AS(read_idx(dir / "flipped.gz"), ng::IOError);
}

TEST_CASE("read_idx: huge declared dimensions are refused without allocating them") {
  TempDir dir("idx_huge");
  // 2^32-1 x 28 x 28: beyond the 4 GiB cap.
  write_gz(dir / "absurd.gz", idx_bytes(0x00000803, {0xffffffffu, 28, 28}, iota_bytes(28 * 28)));
  CHECK_THROWS_WITH_AS(read_idx(dir / "absurd.gz"), doctest::Contains("absurd dimensions 4294967295 x 28 x 28"),
                       ng::IOError);
  write_plain(dir / "absurd_inner", idx_bytes(0x00000803, {1, 0xffffffffu, 0xffffffffu}, {}));
  CHECK_THROWS_WITH_AS(read_idx(dir / "absurd_inner"), doctest::Contains("absurd dimensions"), ng::IOError);

  // 1000 x 1000 x 1000 (1 GB, under the cap) with 10 bytes of data: the plain file is refused
  // from its size, the gzip one after inflating the few bytes there are (the buffer grows only
  // with data that arrives). Both in well under a second: nothing of 1 GB is touched.
  write_plain(dir / "big", idx_bytes(0x00000803, {1000, 1000, 1000}, iota_bytes(10)));
  write_gz(dir / "big.gz", idx_bytes(0x00000803, {1000, 1000, 1000}, iota_bytes(10)));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH_AS(read_idx(dir / "big"), doctest::Contains("1000000000 bytes of data declared vs 10"),
                       ng::IOError);
  CHECK_THROWS_WITH_AS(read_idx(dir / "big.gz"), doctest::Contains("the file ends after 10"), ng::IOError);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(500));
}

// -- Fashion-MNIST ------------------------------------------------------------------------

namespace {

// Sets an environment variable for the lifetime of the object, then restores it.
struct ScopedEnv {
  std::string name;
  std::string old;
  bool had;
  ScopedEnv(std::string n, const char* value) : name(std::move(n)) {
    const char* o = std::getenv(name.c_str());
    had = o != nullptr;
    if (had) old = o;
    if (value) ::setenv(name.c_str(), value, 1);
    else ::unsetenv(name.c_str());
  }
  ~ScopedEnv() {
    if (had) ::setenv(name.c_str(), old.c_str(), 1);
    else ::unsetenv(name.c_str());
  }
};

void write_fake_fashion_mnist(const TempDir& dir, const std::string& prefix, std::uint32_t n,
                              const std::vector<unsigned char>& labels) {
  std::vector<unsigned char> pixels(n * 28 * 28);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<unsigned char>(i % 256);
  write_gz(dir / (prefix + "-images-idx3-ubyte.gz"), idx_bytes(0x00000803, {n, 28, 28}, pixels));
  write_gz(dir / (prefix + "-labels-idx1-ubyte.gz"), idx_bytes(0x00000801, {n}, labels));
}

}  // namespace

TEST_CASE("fashion_mnist: directory from the argument, then NORMGRAD_DATA_DIR, then the default") {
  TempDir dir("fmnist_dir");
  {
    ScopedEnv env("NORMGRAD_DATA_DIR", nullptr);
    CHECK(ng::io::fashion_mnist_dir() == "/usr/share/datasets/fashion-mnist");
    CHECK(ng::io::fashion_mnist_dir("/x") == "/x");
  }
  ScopedEnv env("NORMGRAD_DATA_DIR", dir.path.c_str());
  CHECK(ng::io::fashion_mnist_dir() == dir.path.string());
  CHECK(ng::io::fashion_mnist_dir("/x") == "/x");

  // Files written here, found through the environment variable.
  write_fake_fashion_mnist(dir, "t10k", 3, {9, 0, 4});
  const auto ds = ng::io::load_fashion_mnist(ng::io::Split::test);
  CHECK(ds.inputs.shape() == ng::Shape{3, 1, 28, 28});
  CHECK(ds.inputs.dtype() == ng::DType::f32);
  CHECK(ds.targets.shape() == ng::Shape{3});
  CHECK(ds.targets.dtype() == ng::DType::i64);
  CHECK(ds.targets.to_vector() == std::vector<double>{9, 0, 4});
  // pixel p -> (p/255 - 0.2860) / 0.3530; pixel index i holds i % 256.
  const float* x = ds.inputs.data<float>();
  for (int i : {0, 1, 255, 256 + 17, 3 * 784 - 1}) {
    const double p = i % 256;
    CHECK(x[i] == doctest::Approx((p / 255.0 - 0.2860) / 0.3530).epsilon(1e-6));
  }
  const auto raw = ng::io::load_fashion_mnist(ng::io::Split::test, {.limit = 2, .normalize = false});
  CHECK(raw.inputs.shape() == ng::Shape{2, 1, 28, 28});
  CHECK(raw.inputs.data<float>()[255] == 1.0f);
  CHECK(raw.inputs.data<float>()[0] == 0.0f);
}

TEST_CASE("fashion_mnist: missing files say how to install them, and bad contents are IOErrors") {
  TempDir dir("fmnist_missing");
  ScopedEnv env("NORMGRAD_DATA_DIR", nullptr);
  CHECK_THROWS_WITH_AS(ng::io::load_fashion_mnist(ng::io::Split::train, {.dir = dir.path.string()}),
                       doctest::Contains("train-images-idx3-ubyte.gz' not found"), ng::IOError);
  CHECK_THROWS_WITH_AS(ng::io::load_fashion_mnist(ng::io::Split::train, {.dir = dir.path.string()}),
                       doctest::Contains("apt-get install dataset-fashion-mnist"), ng::IOError);
  CHECK_THROWS_WITH_AS(ng::io::load_fashion_mnist(ng::io::Split::train, {.dir = dir.path.string()}),
                       doctest::Contains("NORMGRAD_DATA_DIR"), ng::IOError);

  write_fake_fashion_mnist(dir, "train", 2, {1, 10});
  CHECK_THROWS_WITH_AS(ng::io::load_fashion_mnist(ng::io::Split::train, {.dir = dir.path.string()}),
                       doctest::Contains("label 10 at index 1 is outside 0..9"), ng::IOError);
  write_gz(dir / "train-labels-idx1-ubyte.gz", idx_bytes(0x00000801, {3}, {1, 2, 3}));
  CHECK_THROWS_WITH_AS(ng::io::load_fashion_mnist(ng::io::Split::train, {.dir = dir.path.string()}),
                       doctest::Contains("2 images in"), ng::IOError);
  write_gz(dir / "train-images-idx3-ubyte.gz", idx_bytes(0x00000803, {3, 2, 2}, iota_bytes(12)));
  CHECK_THROWS_WITH_AS(ng::io::load_fashion_mnist(ng::io::Split::train, {.dir = dir.path.string()}),
                       doctest::Contains("images are 2 x 2, expected 28 x 28"), ng::IOError);
}

TEST_CASE("fashion_mnist: the installed data set (60000 + 10000 images, normalized)") {
  const std::string dir = ng::io::fashion_mnist_dir();
  if (!fs::exists(fs::path(dir) / "train-images-idx3-ubyte.gz")) {
    MESSAGE("Fashion-MNIST not found in " << dir << ": skipped (apt-get install dataset-fashion-mnist)");
    return;
  }
  const auto train = ng::io::load_fashion_mnist(ng::io::Split::train);
  const auto test = ng::io::load_fashion_mnist(ng::io::Split::test);
  CHECK(train.inputs.shape() == ng::Shape{60000, 1, 28, 28});
  CHECK(train.targets.shape() == ng::Shape{60000});
  CHECK(test.inputs.shape() == ng::Shape{10000, 1, 28, 28});
  CHECK(test.targets.shape() == ng::Shape{10000});

  // Balanced classes: 6000 of each label in train, 1000 in test.
  for (const auto* ds : {&train, &test}) {
    std::vector<std::int64_t> count(10, 0);
    const std::int64_t* y = ds->targets.data<std::int64_t>();
    std::int64_t out_of_range = 0;
    for (std::int64_t i = 0; i < ds->size(); ++i) {
      if (y[i] < 0 || y[i] >= 10) ++out_of_range;
      else ++count[static_cast<std::size_t>(y[i])];
    }
    CHECK(out_of_range == 0);
    for (auto c : count) CHECK(c == ds->size() / 10);
  }
  // Normalized with the training statistics: mean ~0 and std ~1 on the training set.
  const float* x = train.inputs.data<float>();
  double s = 0, s2 = 0;
  const std::int64_t n = train.inputs.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    s += x[i];
    s2 += double{x[i]} * x[i];
  }
  const double mean = s / static_cast<double>(n);
  const double stddev = std::sqrt(s2 / static_cast<double>(n) - mean * mean);
  CHECK(std::abs(mean) < 0.005);
  CHECK(stddev == doctest::Approx(1.0).epsilon(0.005));

  const auto few = ng::io::load_fashion_mnist(ng::io::Split::train, {.limit = 100});
  CHECK(few.inputs.shape() == ng::Shape{100, 1, 28, 28});
  const auto all_labels = train.targets.to_vector();
  CHECK(few.targets.to_vector() == std::vector<double>(all_labels.begin(), all_labels.begin() + 100));
}
