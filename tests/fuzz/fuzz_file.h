// Shared by the fuzz targets: the readers take a path, so each input is written to one
// scratch file per process (in $TMPDIR or /tmp) and read back from there.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace ng::fuzz {

struct ScratchFile {
  std::string path;
  ~ScratchFile() { ::unlink(path.c_str()); }  // at a normal exit of the fuzzer
};

inline const std::string& scratch_path(const char* ext) {
  static const ScratchFile file{[&] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/normgrad_fuzz_" + std::to_string(::getpid()) + ext;
  }()};
  return file.path;
}

// Writes the input to the scratch file; false if that failed (the input is then skipped).
inline bool write_input(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const bool ok = std::fwrite(data, 1, size, f) == size;
  return std::fclose(f) == 0 && ok;
}

}  // namespace ng::fuzz
