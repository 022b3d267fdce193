// The lab's language model: a small causal character-level Transformer (demo::TinyGPT of
// examples/lm_models.h, the model of examples/tiny_gpt) trained on Debian's `fortunes`
// (/usr/share/games/fortunes, all files concatenated in name order, as tiny_gpt reads them).
//
//   fortunes       the corpus as token ids: the first 90% trains, the last 10% validates
//                  (no shuffling across the split), loaded once per process
//   train_char_lm  Adam on random windows, with tiny_gpt's schedule: a linear warmup from 1% of
//                  the rate (optim::LinearLR) then cosine decay to 10% of it, or the cosine decay
//                  alone without warmup; no gradient clipping (it would hide what warmup does)
//   causal_leak    how much the logits at positions < t move when the tokens from t on change
//
// A run "diverges" when its training loss becomes non-finite or exceeds 2 ln V (twice a uniform
// guess): it stops there and its validation loss counts as ln V, the loss of a uniform predictor.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/dataset.h"
#include "lab.h"
#include "layers/transformer.h"

namespace lab {

struct Corpus {
  std::string path;
  std::int64_t vocab = 0, chars = 0;
  std::vector<std::int64_t> train, val;
};
// The folder (or file) named by cfg.corpus; std::runtime_error naming the fix when it is missing.
const Corpus& fortunes(const Config& cfg);
bool corpus_present(const Config& cfg);

struct LmSpec {
  std::int64_t layers = 2, d = 64, heads = 4, block = 64, batch = 16;
  std::int64_t steps = 400, warmup = 0;  // warmup 0: cosine decay from the first step
  double lr = 3e-3;                      // Adam's peak rate
  bool pre_ln = true;                    // norm_first
  ng::nn::TransformerNorm norm = ng::nn::TransformerNorm::layer_norm;
  std::uint64_t seed = 1;         // initial weights, and the windows drawn (one stream each)
  std::int64_t eval_every = 50;   // validation loss every N steps (and at the end)
  std::int64_t val_windows = 64;  // validation windows of `block` characters, evenly spaced
};
struct LmLog {
  std::vector<std::int64_t> eval_step;
  std::vector<double> val_loss;  // nats per character, at eval_step
  double final_val = 0;          // after the last step (ln V if diverged)
  double final_train = 0;        // mean training loss over the last 10% of the steps (NaN if diverged)
  bool diverged = false;
};
LmLog train_char_lm(const LmSpec& spec, const Corpus& corpus);

// Max |logits(x) - logits(x')| over positions < t, where x' equals x before position t and
// differs from t on. 0 for a causal model; BatchNorm over the tokens in training mode leaks the
// future through its batch statistics.
double causal_leak(ng::nn::TransformerNorm norm, bool pre_ln, bool training, const Corpus& corpus);

const char* transformer_norm_key(ng::nn::TransformerNorm n);    // "ln", "rms", "bn", "none"
const char* transformer_norm_title(ng::nn::TransformerNorm n);  // "LayerNorm", ...

}  // namespace lab
