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
#include "io/file_check.h"
#include "io/float16.h"

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

// The dtypes a file may hold, and the normgrad dtype each one is read into: every value
// converts exactly (F16 and BF16 are floats; the integers and BOOL fit in int64, except
// U64 values above 2^63 - 1, which are refused).
enum class Stored { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };
struct StoredType {
  Stored kind;
  std::string_view name;
  std::uint64_t size;  // bytes per element
  DType dtype;         // read into
};
constexpr StoredType kStoredTypes[] = {
    {Stored::F64, "F64", 8, DType::f64},  {Stored::F32, "F32", 4, DType::f32},  {Stored::F16, "F16", 2, DType::f32},
    {Stored::BF16, "BF16", 2, DType::f32}, {Stored::I64, "I64", 8, DType::i64},  {Stored::I32, "I32", 4, DType::i64},
    {Stored::I16, "I16", 2, DType::i64},  {Stored::I8, "I8", 1, DType::i64},    {Stored::U64, "U64", 8, DType::i64},
    {Stored::U32, "U32", 4, DType::i64},  {Stored::U16, "U16", 2, DType::i64},  {Stored::U8, "U8", 1, DType::i64},
    {Stored::BOOL, "BOOL", 1, DType::i64},
};
constexpr std::string_view kStoredNames = "F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL";

const StoredType* find_stored(const std::string& s) {
  for (const auto& t : kStoredTypes)
    if (t.name == s) return &t;
  return nullptr;
}

std::string_view format_name(FloatFormat f) {
  switch (f) {
    case FloatFormat::keep: return "keep";
    case FloatFormat::F64: return "F64";
    case FloatFormat::F32: return "F32";
    case FloatFormat::F16: return "F16";
    case FloatFormat::BF16: return "BF16";
  }
  return "?";
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
  const StoredType* stored;
  Shape shape;
  std::uint64_t begin, end;
};

[[noreturn]] void bad_entry(const std::string& path, const std::string& name, std::string_view what) {
  fail<IOError>("load_safetensors: '{}': tensor '{}': {}", path, name, what);
}

// One header entry, checked against the data section size.
Entry parse_entry(const std::string& name, const json& v, std::uint64_t data_size, const std::string& path) {
  if (!v.is_object()) bad_entry(path, name, "the entry is not a JSON object");
  Entry e{name, nullptr, {}, 0, 0};
  const auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) bad_entry(path, name, "missing \"dtype\" string");
  e.stored = find_stored(dt->get<std::string>());
  if (!e.stored)
    bad_entry(path, name, fmt::format("unsupported dtype '{}' (normgrad reads {})", dt->get<std::string>(), kStoredNames));

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
  if (e.begin > e.end)
    bad_entry(path, name, fmt::format("data_offsets [{}, {}] end before they begin", e.begin, e.end));
  if (e.end > data_size)
    bad_entry(path, name,
              fmt::format("truncated: data_offsets [{}, {}] reach past the end of the file, whose data section has "
                          "{} bytes",
                          e.begin, e.end, data_size));
  const std::uint64_t item = e.stored->size;
  if (too_big || numel * item != e.end - e.begin)
    bad_entry(path, name,
              fmt::format("shape {} of dtype {} does not match data_offsets [{}, {}] ({} bytes)", e.shape,
                          e.stored->name, e.begin, e.end, e.end - e.begin));
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

// Loads the file's model tensors (not the "optimizer." ones) with the module's rules
// (nn::Module::load_state_dict); a mismatch names the operation and the file.
nn::IncompatibleKeys load_into(const std::string& path, const NamedTensors& file_tensors, nn::Module& module,
                               std::string_view op, const nn::LoadOptions& opt) {
  NamedTensors model_part;
  for (const auto& [name, t] : file_tensors)
    if (!has_optimizer_prefix(name)) model_part.emplace_back(name, t);
  try {
    return module.load_state_dict(model_part, opt);
  } catch (const ValueError& e) {
    fail<ValueError>("{}: '{}': {}", op, path, e.what());
  }
}

// Reads the entry's bytes (the file is positioned at them) into a new tensor of the dtype
// it is read into, converting element by element where the stored type differs.
Tensor read_tensor(std::FILE* f, const Entry& e, const std::string& path) {
  Tensor t = empty(e.shape, e.stored->dtype);
  const std::string what = fmt::format("data of '{}'", e.name);
  const std::uint64_t bytes = e.end - e.begin;
  const Stored k = e.stored->kind;
  if (k == Stored::F64 || k == Stored::F32 || k == Stored::I64) {  // the in-memory layout: read in place
    read_exact(f, const_cast<char*>(raw_bytes(t)), bytes, path, what);
    return t;
  }
  std::vector<unsigned char> raw(static_cast<std::size_t>(bytes));
  read_exact(f, raw.data(), raw.size(), path, what);
  const auto n = static_cast<std::size_t>(t.numel());
  auto element = [&]<class S>(S, std::size_t i) {
    S v;
    std::memcpy(&v, raw.data() + i * sizeof(S), sizeof(S));
    return v;
  };
  if (k == Stored::F16 || k == Stored::BF16) {
    float* out = t.data<float>();
    for (std::size_t i = 0; i < n; ++i) {
      const auto h = element(std::uint16_t{}, i);
      out[i] = k == Stored::F16 ? f16_to_float(h) : bf16_to_float(h);
    }
    return t;
  }
  std::int64_t* out = t.data<std::int64_t>();
  auto widen = [&]<class S>(S tag) {
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::int64_t>(element(tag, i));
  };
  switch (k) {
    case Stored::I32: widen(std::int32_t{}); break;
    case Stored::I16: widen(std::int16_t{}); break;
    case Stored::I8: widen(std::int8_t{}); break;
    case Stored::U32: widen(std::uint32_t{}); break;
    case Stored::U16: widen(std::uint16_t{}); break;
    case Stored::U8: widen(std::uint8_t{}); break;
    case Stored::U64:
      for (std::size_t i = 0; i < n; ++i) {
        const auto v = element(std::uint64_t{}, i);
        if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          bad_entry(path, e.name, fmt::format("U64 value {} (element {}) does not fit in int64", v, i));
        out[i] = static_cast<std::int64_t>(v);
      }
      break;
    case Stored::BOOL:
      for (std::size_t i = 0; i < n; ++i) {
        const auto v = element(std::uint8_t{}, i);
        if (v > 1) bad_entry(path, e.name, fmt::format("BOOL byte {} (element {}) is neither 0 nor 1", v, i));
        out[i] = v;
      }
      break;
    default: break;
  }
  return t;
}

// A floating tensor in the requested file format: its bytes in `storage` (kept alive by the
// caller until written). Finite values that the format cannot hold are refused.
std::string_view convert_for_file(const std::string& name, const Tensor& c, FloatFormat fmt_,
                                  std::vector<unsigned char>& storage) {
  const auto v = c.to_vector();
  const std::size_t n = v.size();
  auto overflow = [&](double x) {
    fail<ValueError>("save_safetensors: tensor '{}': value {} is finite but overflows {} (largest {}){}", name, x,
                     format_name(fmt_),
                     fmt_ == FloatFormat::F16 ? "65504" : fmt_ == FloatFormat::BF16 ? "3.39e38" : "3.40e38",
                     fmt_ == FloatFormat::F16 ? "; BF16 has float32's range" : "; keep the tensor's dtype");
  };
  if (fmt_ == FloatFormat::F16 || fmt_ == FloatFormat::BF16) {
    storage.resize(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
      const bool f16 = fmt_ == FloatFormat::F16;
      const std::uint16_t h = f16 ? to_f16(v[i]) : to_bf16(v[i]);
      if (std::isfinite(v[i]) && std::isinf(f16 ? f16_to_float(h) : bf16_to_float(h))) overflow(v[i]);
      std::memcpy(storage.data() + 2 * i, &h, 2);
    }
    return format_name(fmt_);
  }
  if (fmt_ == FloatFormat::F32) {
    storage.resize(n * 4);
    for (std::size_t i = 0; i < n; ++i) {
      const auto x = static_cast<float>(v[i]);
      if (std::isfinite(v[i]) && !std::isfinite(x)) overflow(v[i]);
      std::memcpy(storage.data() + 4 * i, &x, 4);
    }
    return "F32";
  }
  storage.resize(n * 8);  // F64: exact
  if (n > 0) std::memcpy(storage.data(), v.data(), n * 8);
  return "F64";
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata,
                      const SaveOptions& options) {
  check_names(tensors, "save_safetensors");
  json header = json::object();
  if (!metadata.empty()) {
    json meta = json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::vector<Tensor> contiguous;  // keeps copies of strided tensors alive while writing
  std::vector<std::vector<unsigned char>> converted(tensors.size());  // floats in options.float_format
  std::vector<Piece> pieces(2);    // [header length, header] then the data
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    Tensor c = t.detach().contiguous();
    std::string_view dtype = st_dtype(c.dtype());
    const char* data = raw_bytes(c);
    std::uint64_t bytes = static_cast<std::uint64_t>(c.numel()) * dtype_size(c.dtype());
    if (options.float_format != FloatFormat::keep && is_floating(c.dtype()) &&
        format_name(options.float_format) != dtype) {
      dtype = convert_for_file(name, c, options.float_format, converted[i]);
      data = reinterpret_cast<const char*>(converted[i].data());
      bytes = converted[i].size();
    }
    header[name] = {{"dtype", std::string(dtype)}, {"shape", c.shape().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    if (bytes > 0) pieces.push_back({data, static_cast<std::size_t>(bytes)});
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
  const std::uint64_t file_size = detail::regular_file_size(path, "load_safetensors");
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

  // Sequential reads, straight into the tensors when the stored type is the in-memory one.
  // The tensors total at most 8 times the data section (BOOL and U8 widen to int64).
  for (const Entry& e : entries) {
    out.tensors.emplace_back(e.name, read_tensor(f, e, path));
    out.stored_dtypes.emplace(e.name, e.stored->name);
  }
  return out;
}

void save_module(const std::string& path, const nn::Module& module, const Metadata& metadata,
                 const SaveOptions& options) {
  save_safetensors(path, module.state_dict(), with_format(metadata), options);
}

LoadedModule load_module(const std::string& path, nn::Module& module, const nn::LoadOptions& options) {
  SafetensorsContents c = load_safetensors(path);
  LoadedModule out;
  out.keys = load_into(path, c.tensors, module, "load_module", options);
  out.metadata = std::move(c.metadata);
  return out;
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

Checkpoint load_checkpoint(const std::string& path, nn::Module& model, const nn::LoadOptions& options) {
  SafetensorsContents c = load_safetensors(path);
  Checkpoint out;
  out.keys = load_into(path, c.tensors, model, "load_checkpoint", options);
  out.metadata = std::move(c.metadata);
  for (auto& [name, t] : c.tensors) {
    if (has_optimizer_prefix(name)) out.optimizer.emplace_back(name.substr(kOptimizerPrefix.size()), std::move(t));
    else out.model.emplace_back(name, std::move(t));
  }
  return out;
}

}  // namespace ng::io
