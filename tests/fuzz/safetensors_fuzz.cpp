// libFuzzer target for the safetensors reader (io/safetensors.h): any byte string must either
// load or throw ng::IOError; never crash, leak, or allocate more than the file justifies
// (8 bytes per file byte at most: BOOL widens to int64).
#include <cstdint>

#include "autograd/error.h"
#include "io/safetensors.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = ng::fuzz::scratch_path(".safetensors");
  if (!ng::fuzz::write_input(path, data, size)) return 0;
  try {
    const ng::io::SafetensorsContents c = ng::io::load_safetensors(path);
    // Loaded tensors fit in the file: every element takes at least one byte of it, and is
    // read into at most 8 bytes (BOOL and U8 widen to int64).
    std::uint64_t elements = 0, bytes = 0;
    for (const auto& [name, t] : c.tensors) {
      elements += static_cast<std::uint64_t>(t.numel());
      bytes += static_cast<std::uint64_t>(t.numel()) * ng::dtype_size(t.dtype());
    }
    if (elements > size || bytes > 8 * size) __builtin_trap();
  } catch (const ng::IOError&) {
  }
  return 0;
}
