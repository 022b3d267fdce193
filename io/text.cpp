#include "io/text.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "autograd/error.h"

namespace ng::io {

namespace fs = std::filesystem;

namespace {

// "U+00E9 'é'" for messages.
std::string describe(char32_t c) {
  std::string s = fmt::format("U+{:04X}", static_cast<std::uint32_t>(c));
  if (c >= 0x20 && c != 0x7F) s += " '" + encode_utf8(std::u32string_view(&c, 1)) + "'";
  return s;
}

}  // namespace

std::u32string decode_utf8(std::string_view b, std::string_view what) {
  std::u32string out;
  out.reserve(b.size());
  std::size_t i = 0;
  if (b.size() >= 3 && static_cast<unsigned char>(b[0]) == 0xEF && static_cast<unsigned char>(b[1]) == 0xBB &&
      static_cast<unsigned char>(b[2]) == 0xBF)
    i = 3;  // byte order mark
  auto bad = [&](std::size_t at, const char* why) {
    fail<IOError>("read_text: {}: not UTF-8 at byte {} (0x{:02X}): {}", what, at,
                  static_cast<unsigned>(static_cast<unsigned char>(b[at])), why);
  };
  while (i < b.size()) {
    const unsigned char c0 = static_cast<unsigned char>(b[i]);
    if (c0 < 0x80) {
      out.push_back(c0);
      ++i;
      continue;
    }
    // Lead byte: 110xxxxx (2 bytes), 1110xxxx (3), 11110xxx (4); RFC 3629's table.
    std::size_t len = 0;
    char32_t cp = 0, min = 0;
    if ((c0 & 0xE0) == 0xC0)
      len = 2, cp = c0 & 0x1F, min = 0x80;
    else if ((c0 & 0xF0) == 0xE0)
      len = 3, cp = c0 & 0x0F, min = 0x800;
    else if ((c0 & 0xF8) == 0xF0)
      len = 4, cp = c0 & 0x07, min = 0x10000;
    else
      bad(i, c0 < 0xC0 ? "a continuation byte without a lead byte" : "an invalid lead byte");
    if (i + len > b.size()) bad(i, "a multi-byte sequence cut off by the end of the file");
    for (std::size_t k = 1; k < len; ++k) {
      const unsigned char ck = static_cast<unsigned char>(b[i + k]);
      if ((ck & 0xC0) != 0x80) bad(i + k, "a multi-byte sequence missing a continuation byte");
      cp = (cp << 6) | (ck & 0x3F);
    }
    if (cp < min) bad(i, "an overlong encoding");
    if (cp > 0x10FFFF) bad(i, "a code point above U+10FFFF");
    if (cp >= 0xD800 && cp <= 0xDFFF) bad(i, "a UTF-16 surrogate code point");
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string encode_utf8(std::u32string_view text) {
  std::string s;
  s.reserve(text.size());
  for (char32_t c : text) {
    if (c < 0x80) {
      s.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      s.push_back(static_cast<char>(0xC0 | (c >> 6)));
      s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      s.push_back(static_cast<char>(0xE0 | (c >> 12)));
      s.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      s.push_back(static_cast<char>(0xF0 | (c >> 18)));
      s.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      s.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return s;
}

std::u32string read_text(const std::string& path, std::int64_t max_bytes) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status)) fail<IOError>("read_text: '{}': no such file", path);
  if (!fs::is_regular_file(status)) fail<IOError>("read_text: '{}': not a regular file", path);
  const auto size = fs::file_size(path, ec);
  if (ec) fail<IOError>("read_text: '{}': cannot read the file size: {}", path, ec.message());
  if (size == 0) fail<IOError>("read_text: '{}': the file is empty (a text corpus needs at least one character)", path);
  if (max_bytes >= 0 && size > static_cast<std::uintmax_t>(max_bytes))
    fail<IOError>("read_text: '{}': {} bytes is more than max_bytes = {}", path, size, max_bytes);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail<IOError>("read_text: '{}': cannot open: {}", path, std::strerror(errno));
  std::string bytes(static_cast<std::size_t>(size), '\0');
  f.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (static_cast<std::uintmax_t>(f.gcount()) != size)
    fail<IOError>("read_text: '{}': read {} of {} bytes (the file changed while reading?)", path, f.gcount(), size);
  std::u32string text = decode_utf8(bytes, "'" + path + "'");
  if (text.empty()) fail<IOError>("read_text: '{}': the file holds only a byte order mark", path);
  return text;
}

std::vector<std::u32string> split_lines(const std::u32string& text) {
  std::vector<std::u32string> lines;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(U'\n', start);
    if (end == std::u32string::npos) end = text.size();
    std::size_t stop = end;
    if (stop > start && text[stop - 1] == U'\r') --stop;
    if (stop > start) lines.emplace_back(text.substr(start, stop - start));
    start = end + 1;
  }
  return lines;
}

CharVocab CharVocab::from_text(const std::u32string& text, std::optional<char32_t> boundary) {
  CharVocab v;
  std::vector<bool> seen(0x110000, false);  // one bit per code point: linear in the text
  for (char32_t c : text) {
    if (c >= 0x110000)
      fail<ValueError>("CharVocab: U+{:X} is not a Unicode code point (above U+10FFFF)", static_cast<std::uint32_t>(c));
    seen[c] = true;
  }
  std::u32string chars;
  for (char32_t c = 0; c < 0x110000; ++c)
    if (seen[c]) chars.push_back(c);
  if (boundary) {
    if (*boundary >= 0x110000 || seen[*boundary])
      fail<ValueError>(
          "CharVocab: the boundary character {} occurs in the text or is not a code point (choose another one)",
          describe(*boundary));
    chars.insert(chars.begin(), *boundary);
    v.has_boundary_ = true;
  }
  v.chars_ = chars;
  v.ascii_.fill(-1);
  for (std::size_t i = 0; i < chars.size(); ++i) {
    v.index_.emplace_back(chars[i], static_cast<std::int64_t>(i));
    if (chars[i] < 128) v.ascii_[chars[i]] = static_cast<std::int64_t>(i);
  }
  std::sort(v.index_.begin(), v.index_.end());
  return v;
}

std::int64_t CharVocab::id(char32_t c) const {
  if (c < 128 && ascii_[c] >= 0) return ascii_[c];
  const auto it = std::lower_bound(index_.begin(), index_.end(), std::pair<char32_t, std::int64_t>{c, 0});
  if (it == index_.end() || it->first != c)
    fail<ValueError>("CharVocab: character {} is not in the vocabulary of {} characters", describe(c), size());
  return it->second;
}

char32_t CharVocab::character(std::int64_t i) const {
  if (i < 0 || i >= size()) fail<IndexError>("CharVocab: id {} is outside [0, {})", i, size());
  return chars_[static_cast<std::size_t>(i)];
}

std::vector<std::int64_t> CharVocab::encode(const std::u32string& text) const {
  std::vector<std::int64_t> ids;
  ids.reserve(text.size());
  for (char32_t c : text) ids.push_back(id(c));
  return ids;
}

std::u32string CharVocab::decode(const std::vector<std::int64_t>& ids) const {
  std::u32string s;
  for (auto i : ids) s.push_back(character(i));
  return s;
}

namespace {
void check_fraction(double f, const char* op) {
  if (!(f >= 0.0 && f < 1.0)) fail<ValueError>("{}: val_fraction must be in [0, 1), got {}", op, f);
}
}  // namespace

std::pair<std::u32string, std::u32string> split_text(const std::u32string& text, double val_fraction) {
  check_fraction(val_fraction, "split_text");
  const auto n_val = static_cast<std::size_t>(static_cast<double>(text.size()) * val_fraction);
  const std::size_t n_train = text.size() - n_val;
  return {text.substr(0, n_train), text.substr(n_train)};
}

std::pair<std::vector<std::u32string>, std::vector<std::u32string>> split_items(std::vector<std::u32string> items,
                                                                                double val_fraction,
                                                                                std::uint64_t seed) {
  check_fraction(val_fraction, "split_items");
  Generator gen(seed);
  for (std::size_t i = items.size(); i > 1; --i)  // Fisher-Yates with the portable generator
    std::swap(items[i - 1], items[static_cast<std::size_t>(gen.randint(0, static_cast<std::int64_t>(i)))]);
  const auto n_val = static_cast<std::size_t>(static_cast<double>(items.size()) * val_fraction);
  std::vector<std::u32string> val(items.end() - static_cast<std::ptrdiff_t>(n_val), items.end());
  items.resize(items.size() - n_val);
  return {std::move(items), std::move(val)};
}

TensorDataset word_examples(const std::vector<std::u32string>& words, const CharVocab& vocab, std::int64_t block) {
  if (!vocab.has_boundary()) fail<ValueError>("word_examples: the vocabulary needs a boundary token (id 0)");
  if (block <= 0) fail<ValueError>("word_examples: block_size must be positive, got {}", block);
  // inputs (M, block): M x block is checked (overflow, allocation limit) before anything is built
  std::int64_t examples = 0;
  for (const auto& w : words) examples += static_cast<std::int64_t>(w.size()) + 1;
  checked_nbytes(Shape{examples, block}, sizeof(std::int64_t), "word_examples");
  std::vector<std::int64_t> x, y;
  for (const auto& w : words) {
    std::vector<std::int64_t> context(static_cast<std::size_t>(block), 0);
    std::vector<std::int64_t> ids = vocab.encode(w);
    ids.push_back(0);  // the word ends with the boundary
    for (auto next : ids) {
      x.insert(x.end(), context.begin(), context.end());
      y.push_back(next);
      context.erase(context.begin());
      context.push_back(next);
    }
  }
  const auto m = static_cast<std::int64_t>(y.size());
  return {from_vector(x, {m, block}), from_vector(y, {m})};
}

TensorDataset text_windows(const std::vector<std::int64_t>& ids, std::int64_t block, std::int64_t stride) {
  if (block <= 0 || stride <= 0)
    fail<ValueError>("text_windows: block_size and stride must be positive, got {} and {}", block, stride);
  const auto n = static_cast<std::int64_t>(ids.size());
  if (n <= block)  // (n < block + 1 would overflow for block = INT64_MAX)
    fail<ValueError>("text_windows: a text of {} characters has no window of block_size + 1 = {}", n,
                     static_cast<std::uint64_t>(block) + 1);  // block > 0: no overflow in unsigned
  const std::int64_t m = (n - block - 1) / stride + 1;
  // overlapping windows (stride < block) copy each id up to block times: check the size first
  checked_nbytes(Shape{m, block}, sizeof(std::int64_t), "text_windows");
  std::vector<std::int64_t> x(static_cast<std::size_t>(m * block)), y(x.size());
  for (std::int64_t w = 0; w < m; ++w)
    for (std::int64_t t = 0; t < block; ++t) {
      x[static_cast<std::size_t>(w * block + t)] = ids[static_cast<std::size_t>(w * stride + t)];
      y[static_cast<std::size_t>(w * block + t)] = ids[static_cast<std::size_t>(w * stride + t + 1)];
    }
  return {from_vector(x, {m, block}), from_vector(y, {m, block})};
}

TensorDataset sample_windows(const std::vector<std::int64_t>& ids, std::int64_t block, std::int64_t batch,
                             Generator& gen) {
  const auto n = static_cast<std::int64_t>(ids.size());
  if (block <= 0 || batch <= 0)
    fail<ValueError>("sample_windows: block_size and batch must be positive, got {} and {}", block, batch);
  if (n <= block)  // (n < block + 1 would overflow for block = INT64_MAX)
    fail<ValueError>("sample_windows: a text of {} characters has no window of block_size + 1 = {}", n,
                     static_cast<std::uint64_t>(block) + 1);  // block > 0: no overflow in unsigned
  checked_nbytes(Shape{batch, block}, sizeof(std::int64_t), "sample_windows");  // batch x block may overflow
  std::vector<std::int64_t> x(static_cast<std::size_t>(batch * block)), y(x.size());
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t start = gen.randint(0, n - block);
    for (std::int64_t t = 0; t < block; ++t) {
      x[static_cast<std::size_t>(b * block + t)] = ids[static_cast<std::size_t>(start + t)];
      y[static_cast<std::size_t>(b * block + t)] = ids[static_cast<std::size_t>(start + t + 1)];
    }
  }
  return {from_vector(x, {batch, block}), from_vector(y, {batch, block})};
}

}  // namespace ng::io
