#include "io/file_check.h"

#include <filesystem>
#include <system_error>

#include "autograd/error.h"

namespace ng::io::detail {

std::uint64_t regular_file_size(const std::string& path, const char* op) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status)) fail<IOError>("{}: '{}': no such file", op, path);
  if (!fs::is_regular_file(status)) fail<IOError>("{}: '{}': not a regular file", op, path);
  const std::uint64_t size = fs::file_size(path, ec);
  if (ec) fail<IOError>("{}: '{}': cannot read the file size: {}", op, path, ec.message());
  return size;
}

}  // namespace ng::io::detail
