// IDX files: the simple array format of MNIST and Fashion-MNIST (LeCun et al.,
// http://yann.lecun.com/exdb/mnist/), usually gzip-compressed.
//
//   bytes 0-1   0x00 0x00
//   byte  2     element type: 0x08 = unsigned byte (the only one these datasets use)
//   byte  3     number of dimensions d
//   then d big-endian uint32 sizes, then the elements in row-major order.
//
// So magic 0x00000803 is a uint8 array N x rows x cols (images), 0x00000801 a uint8
// vector of N labels.
//
// read_idx never trusts the header: a declared size is checked against what the file can
// hold before anything of that size is allocated (plain files: the exact file size; gzip
// files: the data is inflated incrementally and the buffer grows only as bytes actually
// arrive), and every problem -- missing file, wrong magic, truncated or trailing data,
// corrupt gzip stream, absurd dimensions -- is an ng::IOError naming the file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ng::io {

struct IdxArray {
  std::vector<std::int64_t> dims;  // as declared, except dims[0] after a `max_items` limit
  std::vector<std::uint8_t> data;  // row-major, product(dims) bytes
};

struct IdxReadOptions {
  int expected_ndim = 0;         // 0: any; otherwise the header must declare this many dims
  std::int64_t max_items = -1;   // read only the first max_items entries along dim 0 (-1: all)
};

// Reads a uint8 IDX file, gzip-compressed or plain (zlib reads plain files transparently).
// With max_items, a gzip file is inflated only as far as needed and its remainder is not
// checked; a plain file is still checked against its full declared size.
IdxArray read_idx(const std::string& path, IdxReadOptions opt = {});

// The largest total size (bytes of data) read_idx accepts from a header: 4 GiB, far above
// any IDX dataset, far below an overflow.
inline constexpr std::uint64_t kIdxMaxBytes = std::uint64_t{1} << 32;

}  // namespace ng::io
