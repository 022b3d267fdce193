// Text data for character-level language models: read a UTF-8 file, build a character
// vocabulary, split train/validation deterministically, and cut (context, next character)
// examples.
//
//   auto text = io::read_text("/usr/share/dict/american-english");   // code points
//   auto vocab = io::CharVocab::from_text(text);                       // sorted characters
//   auto [train, val] = io::split_text(text, 0.1);                      // the last 10% validates
//   auto ids = vocab.encode(train);
//   auto batch = io::sample_windows(ids, 64, 32, gen);                  // (32, 64) -> (32, 64)
//
// read_text never trusts the file: a missing file, an empty one, one over max_bytes, and any
// byte sequence that is not UTF-8 (overlong forms, surrogates, code points above U+10FFFF,
// truncated sequences; RFC 3629) are ng::IOError naming the file and the byte offset.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "autograd/random.h"
#include "io/dataset.h"

namespace ng::io {

// The whole file as Unicode code points. A UTF-8 byte order mark at the start is dropped.
std::u32string read_text(const std::string& path, std::int64_t max_bytes = std::int64_t{1} << 30);

// Strict UTF-8 decoding; `what` names the source in the IOError ("'words.txt'").
std::u32string decode_utf8(std::string_view bytes, std::string_view what);
std::string encode_utf8(std::u32string_view text);

// The lines of a text (split at '\n'; a '\r' before it is dropped; empty lines skipped).
std::vector<std::u32string> split_lines(const std::u32string& text);

// Characters <-> token ids. Ids are positions in `chars` (sorted by code point), after the
// optional boundary token at id 0 (makemore's '.' that starts and ends every word).
class CharVocab {
 public:
  CharVocab() = default;
  // Every distinct character of `text`, sorted; with a boundary, that character gets id 0 (it
  // must not occur in the text).
  static CharVocab from_text(const std::u32string& text, std::optional<char32_t> boundary = std::nullopt);
  std::int64_t size() const { return static_cast<std::int64_t>(chars_.size()); }
  const std::u32string& chars() const { return chars_; }
  bool has_boundary() const { return has_boundary_; }
  // Throws ValueError naming the character if it is not in the vocabulary.
  std::int64_t id(char32_t c) const;
  char32_t character(std::int64_t id) const;  // IndexError outside [0, size())
  std::vector<std::int64_t> encode(const std::u32string& text) const;
  std::u32string decode(const std::vector<std::int64_t>& ids) const;

 private:
  std::u32string chars_;
  std::vector<std::pair<char32_t, std::int64_t>> index_;  // sorted by character, for id()
  std::array<std::int64_t, 128> ascii_{};                 // id of each ASCII character, -1 if absent
  bool has_boundary_ = false;
};

// A deterministic split of a running text: the last `val_fraction` of the characters
// validate (as nanoGPT: no shuffling, so no window straddles both parts).
std::pair<std::u32string, std::u32string> split_text(const std::u32string& text, double val_fraction);

// A deterministic split of a list (of words): shuffled with Generator(seed), then the last
// `val_fraction` of them validate (makemore's split; the same seed gives the same split).
std::pair<std::vector<std::u32string>, std::vector<std::u32string>> split_items(std::vector<std::u32string> items,
                                                                                double val_fraction,
                                                                                std::uint64_t seed = 42);

// makemore's examples: for every word w and every position, the `block_size` previous
// characters (the boundary id 0 before the start) -> the next character, the boundary last.
// inputs (M, block_size) int64, targets (M) int64, M = sum over words of (length + 1).
TensorDataset word_examples(const std::vector<std::u32string>& words, const CharVocab& vocab, std::int64_t block_size);

// Every window of a running text: inputs ids[i .. i+block), targets ids[i+1 .. i+block+1)
// (next character at every position), for i = 0, stride, 2 stride, ...
TensorDataset text_windows(const std::vector<std::int64_t>& ids, std::int64_t block_size, std::int64_t stride);

// `batch` windows at random offsets (drawn from gen): {inputs (batch, block), targets (batch, block)}.
TensorDataset sample_windows(const std::vector<std::int64_t>& ids, std::int64_t block_size, std::int64_t batch,
                             Generator& gen);

}  // namespace ng::io
