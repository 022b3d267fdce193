// The lab's character-level Transformer: corpus, training run, causal check (char_lm.h).
#include "char_lm.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>

#include "autograd/tape.h"
#include "examples/lm_models.h"
#include "io/text.h"
#include "optim/adam.h"
#include "optim/schedule.h"

namespace lab {

using ng::Tensor;
using ng::nn::TransformerNorm;

bool corpus_present(const Config& cfg) {
  return std::filesystem::exists(cfg.corpus);
}

const Corpus& fortunes(const Config& cfg) {
  static std::map<std::string, Corpus> cache;  // by path: read and encoded once
  auto it = cache.find(cfg.corpus);
  if (it != cache.end()) return it->second;
  if (!corpus_present(cfg))
    throw std::runtime_error(
        fmt::format("the text corpus '{}' is missing: install Debian's fortunes (apt-get install fortunes) "
                    "or pass --corpus FILE_OR_FOLDER",
                    cfg.corpus));
  const std::u32string text = demo::read_corpus(cfg.corpus);
  const auto vocab = ng::io::CharVocab::from_text(text);
  const auto [train, val] = ng::io::split_text(text, 0.1);
  Corpus c;
  c.path = cfg.corpus;
  c.vocab = vocab.size();
  c.chars = static_cast<std::int64_t>(text.size());
  c.train = vocab.encode(train);
  c.val = vocab.encode(val);
  return cache.emplace(cfg.corpus, std::move(c)).first->second;
}

const char* transformer_norm_key(TransformerNorm n) {
  switch (n) {
    case TransformerNorm::layer_norm:
      return "ln";
    case TransformerNorm::rms_norm:
      return "rms";
    case TransformerNorm::batch_norm:
      return "bn";
    case TransformerNorm::none:
      return "none";
  }
  return "?";
}
const char* transformer_norm_title(TransformerNorm n) {
  switch (n) {
    case TransformerNorm::layer_norm:
      return "LayerNorm";
    case TransformerNorm::rms_norm:
      return "RMSNorm";
    case TransformerNorm::batch_norm:
      return "BatchNorm";
    case TransformerNorm::none:
      return "no norm";
  }
  return "?";
}

namespace {

// `n` windows of `block` characters evenly spaced over the validation text:
// inputs ids[o .. o+block), targets ids[o+1 .. o+block+1).
ng::io::TensorDataset validation_windows(const std::vector<std::int64_t>& ids, std::int64_t block, std::int64_t n) {
  const auto len = static_cast<std::int64_t>(ids.size());
  const std::int64_t span = len - block - 1;
  std::vector<std::int64_t> x, y;
  for (std::int64_t w = 0; w < n; ++w) {
    const std::int64_t o = n == 1 ? 0 : w * span / (n - 1);
    for (std::int64_t t = 0; t < block; ++t) {
      x.push_back(ids[static_cast<std::size_t>(o + t)]);
      y.push_back(ids[static_cast<std::size_t>(o + t + 1)]);
    }
  }
  return {ng::from_vector(x, {n, block}), ng::from_vector(y, {n, block})};
}

// Mean cross-entropy (nats per character) in eval mode; the mode is restored.
double val_loss(demo::TinyGPT& m, const ng::io::TensorDataset& val) {
  ng::NoGradGuard no_grad;
  const bool was = m.is_training();
  m.eval();
  const double l = ng::cross_entropy(m.forward(val.inputs), val.targets).item();
  m.train(was);
  return l;
}

}  // namespace

LmLog train_char_lm(const LmSpec& s, const Corpus& c) {
  LmLog log;
  ng::Generator init(s.seed), windows(s.seed + 7919);  // two streams: the same windows for every model of a seed
  demo::TinyGPT model(c.vocab, s.block, s.d, s.heads, s.layers, s.norm, s.pre_ln, /*dropout=*/0.0, &init);
  model.train();
  ng::optim::Adam opt(model.parameters(), {.lr = s.lr});
  std::unique_ptr<ng::optim::LRScheduler> sched;
  if (s.warmup > 0) {  // tiny_gpt's schedule: LinearLR from 1% over `warmup` steps, then cosine to 10%
    auto warm = std::make_shared<ng::optim::LinearLR>(opt, 0.01, 1.0, s.warmup);
    auto decay = std::make_shared<ng::optim::CosineAnnealingLR>(opt, s.steps - s.warmup, 0.1 * s.lr);
    sched = std::make_unique<ng::optim::SequentialLR>(
        opt, std::vector<std::shared_ptr<ng::optim::LRScheduler>>{warm, decay}, std::vector<std::int64_t>{s.warmup});
  } else {
    sched = std::make_unique<ng::optim::CosineAnnealingLR>(opt, s.steps, 0.1 * s.lr);
  }
  const ng::io::TensorDataset val = validation_windows(c.val, s.block, s.val_windows);
  const double uniform = std::log(static_cast<double>(c.vocab));
  const std::int64_t tail_from = s.steps - std::max<std::int64_t>(1, s.steps / 10);
  double tail_sum = 0;
  for (std::int64_t step = 1; step <= s.steps; ++step) {
    const ng::io::TensorDataset b = ng::io::sample_windows(c.train, s.block, s.batch, windows);
    opt.zero_grad();
    Tensor loss = ng::cross_entropy(model.forward(b.inputs), b.targets);  // logits (B, V, T), targets (B, T)
    const double l = loss.item();
    if (!std::isfinite(l) || l > 2 * uniform) {
      log.diverged = true;
      break;
    }
    loss.backward();
    opt.step();
    sched->step();
    if (step > tail_from) tail_sum += l;
    if (step % s.eval_every == 0 || step == s.steps) {
      log.eval_step.push_back(step);
      log.val_loss.push_back(val_loss(model, val));
    }
  }
  if (log.diverged) {
    log.final_val = uniform;
    log.final_train = std::numeric_limits<double>::quiet_NaN();
  } else {
    log.final_val = log.val_loss.back();
    log.final_train = tail_sum / static_cast<double>(s.steps - tail_from);
    if (!std::isfinite(log.final_val)) log.final_val = uniform, log.diverged = true;
  }
  return log;
}

double causal_leak(TransformerNorm norm, bool pre_ln, bool training, const Corpus& c) {
  const std::int64_t B = 4, T = 32, t = T / 2;
  ng::Generator gen(99);
  demo::TinyGPT model(c.vocab, T, 32, 4, 2, norm, pre_ln, 0.0, &gen);
  model.train(training);
  ng::NoGradGuard no_grad;
  std::vector<std::int64_t> x(static_cast<std::size_t>(B * T));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = c.train[i * 7 % c.train.size()];
  std::vector<std::int64_t> x2 = x;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t j = t; j < T; ++j) {
      auto& v = x2[static_cast<std::size_t>(b * T + j)];
      v = (v + 1 + j) % c.vocab;  // a different character at every position from t on
    }
  // (Training-mode BatchNorm normalizes with the batch's statistics: the running ones that the
  // first call updates do not enter the second.)
  const Tensor y1 = model.forward(ng::from_vector(x, {B, T}));  // (B, V, T)
  const Tensor y2 = model.forward(ng::from_vector(x2, {B, T}));
  const Tensor past1 = ng::slice(y1, 2, 0, t).contiguous(), past2 = ng::slice(y2, 2, 0, t).contiguous();
  const auto a = past1.to_vector(), b = past2.to_vector();
  double leak = 0;
  for (std::size_t i = 0; i < a.size(); ++i) leak = std::max(leak, std::abs(a[i] - b[i]));
  return leak;
}

}  // namespace lab
