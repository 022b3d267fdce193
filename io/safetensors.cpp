#include "io/safetensors.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "autograd/error.h"
#include "autograd/tape.h"

namespace ng::io {

// The data section holds the tensors' in-memory bytes as they are, which is the format's
// little-endian layout only on a little-endian machine.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian machine");

namespace {

using json = nlohmann::ordered_json;

std::string_view st_dtype(DType d) {
  switch (d) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i64: return "I64";
  }
  return "?";
}

bool parse_st_dtype(const std::string& s, DType& d) {
  if (s == "F32") d = DType::f32;
  else if (s == "F64") d = DType::f64;
  else if (s == "I64") d = DType::i64;
  else return false;
  return true;
}

const char* raw_bytes(const Tensor& t) {
  return static_cast<const char*>(t.impl().storage->data) + static_cast<std::size_t>(t.offset()) * dtype_size(t.dtype());
}

// -- atomic write -------------------------------------------------------------------------

struct Piece {
  const char* data;
  std::size_t size;
};

// Owns the temporary file until it is renamed into place; on any exit before that, closes
// and removes it.
struct TempFile {
  std::string path;
  int fd = -1;
  bool committed = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!committed) ::unlink(path.c_str());
  }
};

void write_all(int fd, const char* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<std::size_t>(n, std::size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail<IOError>("save_safetensors: writing '{}' failed: {}", path, std::strerror(errno));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

// A save killed mid-write leaves its "<path>.tmp.<pid>" behind. Before writing, remove those
// of `path` whose process is gone: kill(pid, 0) fails with ESRCH. A live process (also one that
// reused a dead writer's pid) keeps its file, and so does anything not of that exact form.
// Best effort: a file that cannot be listed or removed is left alone.
void remove_stale_temp_files(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return;
  for (const fs::directory_entry& e : it) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with(prefix) || name.size() == prefix.size() || name.size() - prefix.size() > 9) continue;
    const std::string digits = name.substr(prefix.size());
    if (!std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) fs::remove(e.path(), ec);
  }
}

void write_atomically(const std::string& path, const std::vector<Piece>& pieces) {
  remove_stale_temp_files(path);
  TempFile tmp{fmt::format("{}.tmp.{}", path, ::getpid())};
  tmp.fd = ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (tmp.fd < 0) {
    const int err = errno;
    tmp.committed = true;  // nothing was created: nothing to remove
    fail<IOError>("save_safetensors: cannot create '{}': {}", tmp.path, std::strerror(err));
  }
  for (const auto& piece : pieces) write_all(tmp.fd, piece.data, piece.size, tmp.path);
  if (::fsync(tmp.fd) != 0)
    fail<IOError>("save_safetensors: flushing '{}' to disk failed: {}", tmp.path, std::strerror(errno));
  const int fd = std::exchange(tmp.fd, -1);
  if (::close(fd) != 0) fail<IOError>("save_safetensors: closing '{}' failed: {}", tmp.path, std::strerror(errno));
  if (std::rename(tmp.path.c_str(), path.c_str()) != 0)
    fail<IOError>("save_safetensors: cannot rename '{}' to '{}': {}", tmp.path, path, std::strerror(errno));
  tmp.committed = true;
  // Make the rename itself durable: sync the directory entry.
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) {
    const int err = errno;
    if (dfd >= 0) ::close(dfd);
    fail<IOError>("save_safetensors: '{}' was written but its directory '{}' could not be synced: {}", path, dir,
                  std::strerror(err));
  }
  ::close(dfd);
}

// -- reading ------------------------------------------------------------------------------

struct FileCloser {
  std::FILE* f;
  ~FileCloser() { std::fclose(f); }
};

void read_exact(std::FILE* f, void* dst, std::size_t n, const std::string& path, std::string_view what) {
  if (n > 0 && std::fread(dst, 1, n, f) != n)
    fail<IOError>("load_safetensors: '{}': reading the {} failed: {}", path, what,
                  std::ferror(f) ? std::strerror(errno) : "unexpected end of file");
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t begin, end;
};

[[noreturn]] void bad_entry(const std::string& path, const std::string& name, std::string_view what) {
  fail<IOError>("load_safetensors: '{}': tensor '{}': {}", path, name, what);
}

// One header entry, checked against the data section size.
Entry parse_entry(const std::string& name, const json& v, std::uint64_t data_size, const std::string& path) {
  if (!v.is_object()) bad_entry(path, name, "the entry is not a JSON object");
  Entry e{name, DType::f32, {}, 0, 0};
  const auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) bad_entry(path, name, "missing \"dtype\" string");
  if (!parse_st_dtype(dt->get<std::string>(), e.dtype))
    bad_entry(path, name, fmt::format("unsupported dtype '{}' (normgrad reads F32, F64, I64)", dt->get<std::string>()));

  const auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) bad_entry(path, name, "missing \"shape\" list");
  // numel, capped at the data section size (a tensor cannot be larger), so the product
  // never overflows; a zero anywhere makes the tensor empty.
  // The non-zero sizes' product must also fit in int64 even when a zero makes the tensor
  // empty: strides are products of trailing sizes ([0, 2^62, 2^62] would overflow them).
  constexpr auto kMaxI64 = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t numel = 1, nonzero_product = 1;
  bool zero = false, too_big = false, overflow = false;
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned())
      bad_entry(path, name, fmt::format("shape {} is not a list of non-negative integers", sh->dump()));
    const auto n = d.get<std::uint64_t>();
    if (n > kMaxI64) bad_entry(path, name, fmt::format("absurd dimension {} in shape {}", n, sh->dump()));
    e.shape.push_back(static_cast<std::int64_t>(n));
    if (n == 0) {
      zero = true;
      continue;
    }
    if (nonzero_product > kMaxI64 / n) overflow = true;
    else nonzero_product *= n;
    if (numel > data_size / n) too_big = true;
    else numel *= n;
  }
  if (zero && overflow)
    bad_entry(path, name, fmt::format("absurd shape {}: its non-zero sizes multiply past 2^63", sh->dump()));
  if (zero) {
    numel = 0;
    too_big = false;
  }

  const auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    bad_entry(path, name, "\"data_offsets\" must be a list of two non-negative integers");
  e.begin = (*off)[0].get<std::uint64_t>();
  e.end = (*off)[1].get<std::uint64_t>();
  if (e.begin > e.end || e.end > data_size)
    bad_entry(path, name,
              fmt::format("data_offsets [{}, {}] outside the data section of {} bytes", e.begin, e.end, data_size));
  const std::uint64_t item = dtype_size(e.dtype);
  if (too_big || numel * item != e.end - e.begin)
    bad_entry(path, name,
              fmt::format("shape {} of dtype {} does not match data_offsets [{}, {}] ({} bytes)", e.shape,
                          st_dtype(e.dtype), e.begin, e.end, e.end - e.begin));
  return e;
}

void check_names(const NamedTensors& tensors, std::string_view op) {
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    if (name.empty()) fail<ValueError>("{}: a tensor has an empty name", op);
    if (name == "__metadata__") fail<ValueError>("{}: '__metadata__' is reserved and cannot name a tensor", op);
    if (!seen.insert(name).second) fail<ValueError>("{}: duplicate tensor name '{}'", op, name);
    if (!t.defined()) fail<ValueError>("{}: tensor '{}' is undefined", op, name);
  }
}

Metadata with_format(Metadata m) {
  m.emplace("format", "pt");  // what safetensors.torch.save_file writes; kept if the caller set it
  return m;
}

bool has_optimizer_prefix(const std::string& name) { return name.starts_with(kOptimizerPrefix); }

// Compares the file's model tensors with the module's state_dict, lists every problem in
// one ValueError, then copies the values in.
void load_into(const std::string& path, const NamedTensors& file_tensors, nn::Module& module, std::string_view op) {
  const NamedTensors mine = module.state_dict();
  std::map<std::string, const Tensor*> in_file;
  for (const auto& [name, t] : file_tensors)
    if (!has_optimizer_prefix(name)) in_file.emplace(name, &t);
  std::vector<std::string> problems;
  NamedTensors to_load;
  for (const auto& [name, t] : mine) {
    const auto it = in_file.find(name);
    if (it == in_file.end()) {
      problems.push_back(fmt::format("missing key '{}' (the model has {} {})", name, t.shape(), t.dtype()));
      continue;
    }
    const Tensor& f = *it->second;
    if (f.shape() != t.shape())
      problems.push_back(fmt::format("'{}': shape {} in the file vs {} in the model", name, f.shape(), t.shape()));
    if (f.dtype() != t.dtype())
      problems.push_back(fmt::format("'{}': dtype {} in the file vs {} in the model", name, f.dtype(), t.dtype()));
    to_load.emplace_back(name, f);
    in_file.erase(it);
  }
  for (const auto& [name, t] : in_file) problems.push_back(fmt::format("unexpected key '{}'", name));
  if (!problems.empty())
    fail<ValueError>("{}: '{}' does not match the {} model: {} problem(s):\n  {}", op, path, module.type_name(),
                     problems.size(), fmt::join(problems, "\n  "));
  module.load_state_dict(to_load);
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  check_names(tensors, "save_safetensors");
  json header = json::object();
  if (!metadata.empty()) {
    json meta = json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::vector<Tensor> contiguous;  // keeps copies of strided tensors alive while writing
  std::vector<Piece> pieces(2);    // [header length, header] then the data
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    Tensor c = t.detach().contiguous();
    const std::uint64_t bytes = static_cast<std::uint64_t>(c.numel()) * dtype_size(c.dtype());
    header[name] = {{"dtype", std::string(st_dtype(c.dtype()))}, {"shape", c.shape().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    if (bytes > 0) pieces.push_back({raw_bytes(c), static_cast<std::size_t>(bytes)});
    contiguous.push_back(std::move(c));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // pad to a multiple of 8 (aligns the data)
  const std::uint64_t n = text.size();
  char length[8];
  std::memcpy(length, &n, 8);  // little-endian (static_assert above)
  pieces[0] = {length, 8};
  pieces[1] = {text.data(), text.size()};
  write_atomically(path, pieces);
}

SafetensorsContents load_safetensors(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status)) fail<IOError>("load_safetensors: '{}': no such file", path);
  if (!fs::is_regular_file(status)) fail<IOError>("load_safetensors: '{}': not a regular file", path);
  const std::uint64_t file_size = fs::file_size(path, ec);
  if (ec) fail<IOError>("load_safetensors: '{}': cannot read the file size: {}", path, ec.message());
  if (file_size < 8)
    fail<IOError>("load_safetensors: '{}': truncated: {} bytes, shorter than the 8-byte header length", path,
                  file_size);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail<IOError>("load_safetensors: '{}': cannot open: {}", path, std::strerror(errno));
  FileCloser closer{f};

  unsigned char length[8];
  read_exact(f, length, 8, path, "header length");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | length[i];
  if (n > kSafetensorsMaxHeader)
    fail<IOError>("load_safetensors: '{}': header length {} is over the {} byte limit (corrupt file?)", path, n,
                  kSafetensorsMaxHeader);
  if (n > file_size - 8)
    fail<IOError>("load_safetensors: '{}': truncated: header length {} vs {} bytes after the length field", path,
                  n, file_size - 8);
  std::string text(n, '\0');
  read_exact(f, text.data(), n, path, "header");
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    fail<IOError>("load_safetensors: '{}': the header is not valid JSON: {}", path, e.what());
  }
  if (!header.is_object()) fail<IOError>("load_safetensors: '{}': the header is not a JSON object", path);

  const std::uint64_t data_size = file_size - 8 - n;
  SafetensorsContents out;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const json& value = it.value();
    if (key == "__metadata__") {
      if (!value.is_object()) fail<IOError>("load_safetensors: '{}': __metadata__ is not a JSON object", path);
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string())
          fail<IOError>("load_safetensors: '{}': __metadata__ value for '{}' is not a string", path, m.key());
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(key, value, data_size, path));
  }
  // The tensors must tile [0, data_size): sorted by offset (stable: empty tensors sharing an
  // offset keep their header order), each starts where the last ended.
  std::stable_sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  std::uint64_t pos = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.begin < pos)
      fail<IOError>("load_safetensors: '{}': tensors '{}' and '{}' overlap in the data section", path,
                    entries[i - 1].name, e.name);
    if (e.begin > pos)
      fail<IOError>("load_safetensors: '{}': bytes [{}, {}) of the data section belong to no tensor", path, pos,
                    e.begin);
    pos = e.end;
  }
  if (pos != data_size)
    fail<IOError>("load_safetensors: '{}': {} bytes of data after the last tensor", path, data_size - pos);

  // Sequential reads straight into the tensors: total allocation == the data section size.
  for (const Entry& e : entries) {
    Tensor t = empty(e.shape, e.dtype);
    read_exact(f, const_cast<char*>(raw_bytes(t)), e.end - e.begin, path, fmt::format("data of '{}'", e.name));
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

void save_module(const std::string& path, const nn::Module& module, const Metadata& metadata) {
  save_safetensors(path, module.state_dict(), with_format(metadata));
}

Metadata load_module(const std::string& path, nn::Module& module) {
  SafetensorsContents c = load_safetensors(path);
  load_into(path, c.tensors, module, "load_module");
  return std::move(c.metadata);
}

void save_checkpoint(const std::string& path, const nn::Module& model, const NamedTensors& optimizer_state,
                     const Metadata& metadata) {
  NamedTensors all = model.state_dict();
  for (const auto& [name, t] : all)
    if (has_optimizer_prefix(name))
      fail<ValueError>("save_checkpoint: model key '{}' collides with the '{}' prefix reserved for the optimizer",
                       name, kOptimizerPrefix);
  for (const auto& [name, t] : optimizer_state) all.emplace_back(fmt::format("{}{}", kOptimizerPrefix, name), t);
  check_names(all, "save_checkpoint");
  save_safetensors(path, all, with_format(metadata));
}

Checkpoint load_checkpoint(const std::string& path, nn::Module& model) {
  SafetensorsContents c = load_safetensors(path);
  load_into(path, c.tensors, model, "load_checkpoint");
  Checkpoint out;
  out.metadata = std::move(c.metadata);
  for (auto& [name, t] : c.tensors) {
    if (has_optimizer_prefix(name)) out.optimizer.emplace_back(name.substr(kOptimizerPrefix.size()), std::move(t));
    else out.model.emplace_back(name, std::move(t));
  }
  return out;
}

}  // namespace ng::io
