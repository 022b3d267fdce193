// libFuzzer target for the IDX reader (io/idx.h): any byte string, plain or gzip, must either
// load or throw ng::IOError; never crash, leak, or allocate more than the file justifies
// (scripts/fuzz.sh runs it with -rss_limit_mb and -malloc_limit_mb).
#include <cstdint>

#include "autograd/error.h"
#include "io/idx.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = ng::fuzz::scratch_path(".idx");
  if (!ng::fuzz::write_input(path, data, size)) return 0;
  for (const std::int64_t max_items : {std::int64_t{-1}, std::int64_t{1}}) {
    try {
      const ng::io::IdxArray a = ng::io::read_idx(path, {.expected_ndim = 0, .max_items = max_items});
      // What loaded must be self-consistent: data holds exactly product(dims) bytes.
      std::uint64_t n = 1;
      for (const auto d : a.dims) n *= static_cast<std::uint64_t>(d);
      if (n != a.data.size()) __builtin_trap();
    } catch (const ng::IOError&) {
    }
  }
  return 0;
}
