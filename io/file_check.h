// The check every file reader in io/ starts with (internal): the path names an existing regular
// file, whose size is returned. Errors are IOError "<op>: '<path>': no such file" / "not a
// regular file" / "cannot read the file size: <reason>".
#pragma once
#include <cstdint>
#include <string>

namespace ng::io::detail {

std::uint64_t regular_file_size(const std::string& path, const char* op);

}  // namespace ng::io::detail
