#include "io/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autograd/error.h"
#include "io/file_check.h"

namespace ng::io {
namespace {

struct GzCloser {
  gzFile f;
  ~GzCloser() { gzclose(f); }
};

std::string gz_message(gzFile f) {
  int errnum = 0;
  const char* msg = gzerror(f, &errnum);
  if (errnum == Z_ERRNO) return std::strerror(errno);
  return msg ? msg : "unknown zlib error";
}

// Reads up to n bytes; fewer only at the end of the stream. A damaged gzip stream (bad
// CRC, invalid deflate data, a stream cut in the middle) throws.
std::size_t read_some(gzFile f, void* dst, std::size_t n, const std::string& path) {
  auto* out = static_cast<unsigned char*>(dst);
  std::size_t got = 0;
  while (got < n) {
    const auto chunk = static_cast<unsigned>(std::min<std::size_t>(n - got, std::size_t{1} << 30));
    const int r = gzread(f, out + got, chunk);
    if (r < 0) fail<IOError>("read_idx: '{}': corrupt or truncated gzip data (zlib: {})", path, gz_message(f));
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return got;
}

std::uint32_t big_endian_u32(const unsigned char* b) {
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | std::uint32_t{b[3]};
}

}  // namespace

IdxArray read_idx(const std::string& path, IdxReadOptions opt) {
  const std::uint64_t file_size = detail::regular_file_size(path, "read_idx");

  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail<IOError>("read_idx: '{}': cannot open: {}", path, std::strerror(errno));
  GzCloser closer{f};
  gzbuffer(f, 256 * 1024);

  // -- header: magic number, then ndim big-endian uint32 sizes ---------------------------
  unsigned char magic[4];
  if (read_some(f, magic, 4, path) != 4)
    fail<IOError>("read_idx: '{}': truncated: the file is shorter than the 4-byte magic number", path);
  const std::uint32_t magic_number = big_endian_u32(magic);
  if (magic[0] != 0 || magic[1] != 0)
    fail<IOError>("read_idx: '{}': not an IDX file: magic number 0x{:08x} does not start with two zero bytes",
                  path, magic_number);
  if (magic[2] != 0x08)
    fail<IOError>("read_idx: '{}': unsupported element type 0x{:02x} (magic 0x{:08x}): only unsigned bytes (0x08)",
                  path, magic[2], magic_number);
  const int ndim = magic[3];
  if (ndim < 1) fail<IOError>("read_idx: '{}': magic 0x{:08x} declares 0 dimensions", path, magic_number);
  if (opt.expected_ndim > 0 && ndim != opt.expected_ndim)
    fail<IOError>("read_idx: '{}': wrong magic number: expected 0x{:08x} ({}-d uint8) vs 0x{:08x} ({}-d)", path,
                  0x800u + static_cast<unsigned>(opt.expected_ndim), opt.expected_ndim, magic_number, ndim);

  std::vector<unsigned char> dim_bytes(4 * static_cast<std::size_t>(ndim));
  if (read_some(f, dim_bytes.data(), dim_bytes.size(), path) != dim_bytes.size())
    fail<IOError>("read_idx: '{}': truncated: the header declares {} dimensions but ends before their sizes", path,
                  ndim);
  IdxArray out;
  out.dims.resize(static_cast<std::size_t>(ndim));
  // bytes per item (product of dims[1:]) and total bytes. item_bytes is capped at
  // kIdxMaxBytes = 2^32 as it grows, so with each dim < 2^32 no product overflows 64 bits.
  std::uint64_t item_bytes = 1;
  bool absurd = false;
  for (int i = 0; i < ndim; ++i) {
    const std::uint32_t d = big_endian_u32(&dim_bytes[4 * static_cast<std::size_t>(i)]);
    out.dims[static_cast<std::size_t>(i)] = d;
    if (i > 0) {
      item_bytes *= d;
      if (item_bytes > kIdxMaxBytes) {
        absurd = true;
        item_bytes = kIdxMaxBytes;
      }
    }
  }
  const std::uint64_t total_bytes = item_bytes * static_cast<std::uint64_t>(out.dims[0]);
  if (absurd || total_bytes > kIdxMaxBytes)
    fail<IOError>("read_idx: '{}': absurd dimensions {}: more than {} bytes of data declared", path,
                  fmt::join(out.dims, " x "), kIdxMaxBytes);

  const std::uint64_t header_bytes = 4 + 4 * static_cast<std::uint64_t>(ndim);
  const bool compressed = gzdirect(f) == 0;
  // A plain file must hold exactly the declared bytes: checked before allocating anything.
  if (!compressed && file_size != header_bytes + total_bytes)
    fail<IOError>("read_idx: '{}': dimensions do not match the file size: {} = {} bytes of data declared vs {} in "
                  "the file",
                  path, fmt::join(out.dims, " x "), total_bytes,
                  file_size >= header_bytes ? file_size - header_bytes : 0);

  // -- data: read incrementally, so a gzip file's buffer grows only with bytes that arrive
  std::int64_t items = out.dims[0];
  if (opt.max_items >= 0 && opt.max_items < items) items = opt.max_items;
  const std::uint64_t want = static_cast<std::uint64_t>(items) * item_bytes;
  constexpr std::size_t kChunk = std::size_t{4} << 20;
  std::size_t have = 0;
  while (have < want) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, want - have));
    out.data.resize(have + n);
    const std::size_t got = read_some(f, out.data.data() + have, n, path);
    have += got;
    if (got < n)
      fail<IOError>("read_idx: '{}': truncated: dimensions {} declare {} bytes of data, the file ends after {}",
                    path, fmt::join(out.dims, " x "), total_bytes, have);
  }
  if (items == out.dims[0] && compressed) {
    unsigned char extra;
    if (read_some(f, &extra, 1, path) != 0)
      fail<IOError>("read_idx: '{}': dimensions do not match the file size: data continues after the {} bytes "
                    "declared by {}",
                    path, total_bytes, fmt::join(out.dims, " x "));
  }
  out.dims[0] = items;
  return out;
}

}  // namespace ng::io
