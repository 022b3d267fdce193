// libFuzzer target for the text reader (io/text.h): any byte string must either decode as
// UTF-8 or throw ng::IOError; what decodes must re-encode to the same bytes (after a BOM),
// and the vocabulary built from it must round-trip the text.
#include <cstdint>
#include <string>

#include "autograd/error.h"
#include "io/text.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = ng::fuzz::scratch_path(".txt");
  if (!ng::fuzz::write_input(path, data, size)) return 0;
  try {
    const std::u32string text = ng::io::read_text(path);
    std::string bytes(reinterpret_cast<const char*>(data), size);
    if (bytes.rfind("\xEF\xBB\xBF", 0) == 0) bytes.erase(0, 3);
    if (ng::io::encode_utf8(text) != bytes) __builtin_trap();
    const auto vocab = ng::io::CharVocab::from_text(text);
    if (vocab.decode(vocab.encode(text)) != text) __builtin_trap();
    (void)ng::io::split_lines(text);
  } catch (const ng::IOError&) {
  }
  return 0;
}
