// io/text.h: UTF-8 reading and its errors, the character vocabulary, deterministic splits,
// and the (context, next character) examples. Every file is written here.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "io/text.h"
#include "tests/helpers.h"

namespace fs = std::filesystem;
using namespace ng;
using namespace ng::io;

namespace {

struct TextTempDir {
  fs::path path;
  explicit TextTempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("normgrad_test_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TextTempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& bytes) const {
    const std::string p = (path / name).string();
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
};

}  // namespace

TEST_CASE("read_text: UTF-8 text as code points, BOM dropped, lines") {
  TextTempDir dir("text_read");
  const auto text = read_text(dir.write("a.txt", "\xEF\xBB\xBFh\xC3\xA9llo\r\nw\xE2\x82\xAC\n\n\xF0\x9F\x98\x80\n"));
  CHECK(text == U"h\u00e9llo\r\nw\u20ac\n\n\U0001F600\n");
  CHECK(encode_utf8(text) == "h\xC3\xA9llo\r\nw\xE2\x82\xAC\n\n\xF0\x9F\x98\x80\n");
  CHECK(split_lines(text) == std::vector<std::u32string>{U"h\u00e9llo", U"w\u20ac", U"\U0001F600"});
  CHECK(split_lines(U"a\nb") == std::vector<std::u32string>{U"a", U"b"});
}

TEST_CASE("read_text: missing, empty, too large and non-UTF-8 files are IOErrors naming the file and byte") {
  TextTempDir dir("text_errors");
  CHECK_THROWS_WITH_AS(read_text((dir.path / "nope.txt").string()), doctest::Contains("nope.txt': no such file"),
                       IOError);
  CHECK_THROWS_WITH_AS(read_text(dir.path.string()), doctest::Contains("not a regular file"), IOError);
  CHECK_THROWS_WITH_AS(read_text(dir.write("e.txt", "")), doctest::Contains("e.txt': the file is empty"), IOError);
  CHECK_THROWS_WITH_AS(read_text(dir.write("bom.txt", "\xEF\xBB\xBF")), doctest::Contains("only a byte order mark"),
                       IOError);
  CHECK_THROWS_WITH_AS(read_text(dir.write("big.txt", "abcdef"), 5),
                       doctest::Contains("6 bytes is more than max_bytes = 5"), IOError);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"ab\x80", "byte 2 (0x80): a continuation byte without a lead byte"},
      {"a\xC3", "byte 1 (0xC3): a multi-byte sequence cut off by the end of the file"},
      {"a\xC3(", "byte 2 (0x28): a multi-byte sequence missing a continuation byte"},
      {"\xC0\xAF", "byte 0 (0xC0): an overlong encoding"},
      {"\xE0\x80\xAF", "an overlong encoding"},
      {"\xED\xA0\x80", "a UTF-16 surrogate code point"},
      {"\xF4\x90\x80\x80", "a code point above U+10FFFF"},
      {"\xFF", "byte 0 (0xFF): an invalid lead byte"},
      {"latin1 caf\xE9!", "byte 10 (0xE9)"},
  };
  for (const auto& [bytes, msg] : bad) {
    CAPTURE(msg);
    CHECK_THROWS_WITH_AS(read_text(dir.write("bad.txt", bytes)), doctest::Contains(msg.c_str()), IOError);
    CHECK_THROWS_WITH_AS(read_text(dir.write("bad.txt", bytes)), doctest::Contains("bad.txt': not UTF-8 at byte"),
                         IOError);
  }
}

TEST_CASE("CharVocab: sorted characters, boundary id 0, encode/decode round trip, errors") {
  const auto v = CharVocab::from_text(U"hello\u00e9", U'.');
  CHECK(v.chars() == U".ehlo\u00e9");
  CHECK(v.size() == 6);
  CHECK(v.id(U'.') == 0);
  CHECK(v.id(U'l') == 3);
  CHECK(v.encode(U"hole") == std::vector<std::int64_t>{2, 4, 3, 1});
  CHECK(v.decode({2, 1, 3, 3, 4, 0}) == U"hello.");
  CHECK_THROWS_WITH_AS(v.id(U'z'), doctest::Contains("character U+007A 'z' is not in the vocabulary of 6"), ValueError);
  CHECK_THROWS_WITH_AS(v.character(6), doctest::Contains("id 6 is outside [0, 6)"), IndexError);
  CHECK_THROWS_WITH_AS(CharVocab::from_text(U"a.b", U'.'), doctest::Contains("boundary character U+002E '.' occurs"),
                       ValueError);
  CHECK_THROWS_WITH_AS(CharVocab::from_text(std::u32string(1, char32_t{0x110000})),
                       doctest::Contains("U+110000 is not a Unicode code point"), ValueError);
  CHECK_FALSE(CharVocab::from_text(U"ba").has_boundary());
  CHECK(CharVocab::from_text(U"ba").id(U'a') == 0);
}

TEST_CASE("split_text and split_items: deterministic, the sizes asked for") {
  const auto [train, val] = split_text(U"abcdefghij", 0.3);
  CHECK(train == U"abcdefg");
  CHECK(val == U"hij");
  std::vector<std::u32string> words;
  for (int i = 0; i < 20; ++i) words.push_back(std::u32string(1, static_cast<char32_t>(U'a' + i)));
  const auto s1 = split_items(words, 0.25, 7), s2 = split_items(words, 0.25, 7), s3 = split_items(words, 0.25, 8);
  CHECK(s1.first.size() == 15);
  CHECK(s1.second.size() == 5);
  CHECK(s1 == s2);
  CHECK(s1 != s3);
  auto all = s1.first;
  all.insert(all.end(), s1.second.begin(), s1.second.end());
  std::sort(all.begin(), all.end());
  CHECK(all == words);  // a permutation
  CHECK_THROWS_WITH_AS(split_text(U"ab", 1.0), doctest::Contains("val_fraction must be in [0, 1), got 1"), ValueError);
}

TEST_CASE("word_examples, text_windows, sample_windows: contexts and next characters") {
  const auto v = CharVocab::from_text(U"abc", U'.');
  const TensorDataset d = word_examples({U"ab", U"c"}, v, 3);
  CHECK(d.inputs.shape() == Shape{5, 3});
  CHECK(d.inputs.to_vector() == std::vector<double>{0, 0, 0, 0, 0, 1, 0, 1, 2, 0, 0, 0, 0, 0, 3});
  CHECK(d.targets.to_vector() == std::vector<double>{1, 2, 0, 3, 0});
  const std::vector<std::int64_t> ids{5, 6, 7, 8, 9, 10};
  const TensorDataset w = text_windows(ids, 2, 2);
  CHECK(w.inputs.to_vector() == std::vector<double>{5, 6, 7, 8});
  CHECK(w.targets.to_vector() == std::vector<double>{6, 7, 8, 9});
  Generator gen(1);
  const TensorDataset s = sample_windows(ids, 3, 4, gen);
  CHECK(s.inputs.shape() == Shape{4, 3});
  const auto x = s.inputs.to_vector(), y = s.targets.to_vector();
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(y[i] == x[i] + 1);  // the next character at every position
  CHECK_THROWS_WITH_AS(text_windows(ids, 6, 1),
                       doctest::Contains("a text of 6 characters has no window of block_size + 1 = 7"), ValueError);
  CHECK_THROWS_AS(sample_windows(ids, 0, 1, gen), ValueError);
  CHECK_THROWS_WITH_AS(word_examples({U"ab"}, CharVocab::from_text(U"ab"), 3),
                       doctest::Contains("needs a boundary token"), ValueError);
}
