// Replays the API fuzzer's committed corpus (tests/fuzz/corpus/api/, grown by scripts/fuzz.sh)
// through the same harness as ordinary tests, so every call sequence the fuzzer found
// interesting stays covered in CI -- under the asan preset too. See tests/fuzz/api_harness.h
// for what each input checks.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "tests/fuzz/api_harness.h"

namespace fs = std::filesystem;

TEST_CASE("fuzz corpus: every api input throws ng::Error or passes the harness's checks") {
  const fs::path dir = fs::path(NORMGRAD_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / "api";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  CHECK(files.size() >= 10);
  const std::uint64_t limit = ng::allocation_limit();
  for (const fs::path& p : files) {
    std::ifstream f(p, std::ios::binary);
    const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    CAPTURE(p.filename().string());
    CHECK_NOTHROW(ng::fuzz::run_api_input(bytes.data(), bytes.size()));
  }
  CHECK(ng::allocation_limit() == limit);  // the harness restores what it changes
}

TEST_CASE("api fuzzer: the op table covers the public ops and layers, and names are unique") {
  std::vector<std::string> names = ng::fuzz::api_op_names();
  CHECK(names.size() >= 130);
  for (const char* must : {"matmul", "conv2d", "max_pool2d", "layer_norm", "batch_norm_train", "cat", "pad", "expand",
                           "reshape", "Linear", "LSTM", "Embedding", "backward", "grad_mode",
                           // features merged after the harness was written (issue 23)
                           "scaled_dot_product_attention", "attention_weights", "pad_modes", "cross_entropy_options",
                           "nll_loss_options", "copy_", "add_", "mul_", "fill_", "text_windows", "MultiheadAttention",
                           "TransformerEncoderLayer", "TransformerEncoder", "SinusoidalPositionalEncoding",
                           "LearnedPositionalEmbedding", "SyncBatchNorm", "sync_batch_norm", "LayerNormGRU"})
    CHECK_MESSAGE(std::find(names.begin(), names.end(), must) != names.end(), must);
  std::sort(names.begin(), names.end());
  CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
}
