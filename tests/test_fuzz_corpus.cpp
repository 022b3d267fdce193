// Replays the fuzzing seed corpus (tests/fuzz/corpus/, see scripts/fuzz.sh and
// docs/reliability.md) through the readers as ordinary tests, so every input the fuzzers
// ever tripped on stays covered -- also under the asan preset in CI. Each input must load or
// throw ng::IOError; the regressions found while fuzzing are also checked by message.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "autograd/error.h"
#include "io/idx.h"
#include "io/safetensors.h"
#include "io/text.h"

namespace fs = std::filesystem;

namespace {

const fs::path kCorpus = fs::path(NORMGRAD_SOURCE_DIR) / "tests" / "fuzz" / "corpus";

// Loads every file of one corpus directory; returns how many loaded (the rest threw IOError).
template <class Load>
int replay(const std::string& target, Load load) {
  int loaded = 0, files = 0;
  for (const auto& e : fs::directory_iterator(kCorpus / target)) {
    ++files;
    CAPTURE(e.path().string());
    try {
      load(e.path().string());
      ++loaded;
    } catch (const ng::IOError&) {
    }
  }
  CHECK(files > 0);
  return loaded;
}

std::string read_file(const fs::path& p) {
  std::string bytes(fs::file_size(p), '\0');
  std::ifstream f(p, std::ios::binary);
  f.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

}  // namespace

TEST_CASE("fuzz corpus: every idx input loads or is an IOError") {
  const int loaded = replay("idx", [](const std::string& p) {
    const ng::io::IdxArray a = ng::io::read_idx(p);
    std::uint64_t n = 1;
    for (const auto d : a.dims) n *= static_cast<std::uint64_t>(d);
    CHECK(n == a.data.size());
    (void)ng::io::read_idx(p, {.expected_ndim = 0, .max_items = 1});
  });
  CHECK(loaded >= 8);  // the valid seeds, plain and gzip
}

TEST_CASE("fuzz corpus: every safetensors input loads or is an IOError") {
  const int loaded = replay("safetensors", [](const std::string& p) {
    const auto c = ng::io::load_safetensors(p);
    // Every element takes at least one byte of the file; read into 8 bytes at most (BOOL -> int64).
    std::uint64_t elements = 0, bytes = 0;
    for (const auto& [name, t] : c.tensors) {
      elements += static_cast<std::uint64_t>(t.numel());
      bytes += static_cast<std::uint64_t>(t.numel()) * ng::dtype_size(t.dtype());
    }
    CHECK(elements <= fs::file_size(p));
    CHECK(bytes <= 8 * fs::file_size(p));
  });
  CHECK(loaded >= 6);  // the valid seeds (F16/BF16 and the integer dtypes among them)
}

TEST_CASE("fuzz corpus: every text input decodes (and re-encodes to its bytes) or is an IOError") {
  const int loaded = replay("text", [](const std::string& p) {
    const std::u32string text = ng::io::read_text(p);
    std::string bytes = read_file(p);
    if (bytes.rfind("\xEF\xBB\xBF", 0) == 0) bytes.erase(0, 3);
    CHECK(ng::io::encode_utf8(text) == bytes);
    const auto vocab = ng::io::CharVocab::from_text(text);
    CHECK(vocab.decode(vocab.encode(text)) == text);
  });
  // the seeds ascii_lines and utf8_bom_crlf decode (the other seeds are errors by design), and
  // so do 15 of the inputs the fuzzer added (issue 23)
  CHECK(loaded == 17);
}

TEST_CASE("load_safetensors: an empty tensor whose non-zero sizes overflow int64 is an IOError") {
  // shape [0, 2^62, 2^62]: numel 0, but its row-major strides would be 2^124 (signed
  // overflow, caught by UBSan). Found by reading the reader for the fuzzing work.
  const fs::path p = kCorpus / "safetensors" / "regression_empty_shape_overflow";
  REQUIRE(read_file(p).find("[0,4611686018427387904,4611686018427387904]") != std::string::npos);
  CHECK_THROWS_WITH_AS(ng::io::load_safetensors(p.string()), doctest::Contains("absurd shape"), ng::IOError);
}

TEST_CASE("fuzz corpus: the half-precision and integer seeds load with their values, bad ones name the problem") {
  const auto half = ng::io::load_safetensors((kCorpus / "safetensors" / "half_f16_bf16").string());
  REQUIRE(half.tensors.size() == 2);
  CHECK(half.tensors[0].second.to_vector() == std::vector<double>{1.0, -2.5, 0x1p-24, INFINITY});
  CHECK(half.stored_dtypes.at("b") == "BF16");
  const auto ints = ng::io::load_safetensors((kCorpus / "safetensors" / "ints_bool").string());
  CHECK(ints.tensors.size() == 9);
  auto fails = [](const char* file, const char* expect) {
    CAPTURE(file);
    CHECK_THROWS_WITH_AS(ng::io::load_safetensors((kCorpus / "safetensors" / file).string()), doctest::Contains(expect),
                         ng::IOError);
  };
  fails("u64_over_int64", "does not fit in int64");
  fails("bool_byte_2", "is neither 0 nor 1");
  fails("truncated_f16", "truncated");
}
