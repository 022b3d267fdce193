// The character-level demos end to end on small data written here (examples/makemore.cpp,
// examples/tiny_gpt.cpp; their models are examples/lm_models.h, the loop examples/lm_common.h):
// both learn (validation loss well below the uniform log V), TinyGPT is causal, and a run of
// fit_lm interrupted and resumed from its checkpoint equals the uninterrupted run bit for bit.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "examples/lm_common.h"
#include "examples/lm_models.h"
#include "optim/adam.h"
#include "optim/sgd.h"

namespace {

namespace fs = std::filesystem;

struct TempPath {
  explicit TempPath(const std::string& stem)
      : path((fs::temp_directory_path() / (stem + "." + std::to_string(::getpid()))).string()) {}
  ~TempPath() {
    std::error_code ec;
    fs::remove(path, ec);
  }
  std::string path;
};

// A small "language": words built from a few syllables, so that a model can learn it fast.
std::vector<std::u32string> toy_words(std::size_t n, std::uint64_t seed) {
  const std::u32string syl[] = {U"ka", U"ro", U"mi", U"tu", U"sel", U"an"};
  ng::Generator gen(seed);
  std::vector<std::u32string> words;
  for (std::size_t i = 0; i < n; ++i) {
    std::u32string w;
    const auto k = gen.randint(1, 4);
    for (std::int64_t j = 0; j < k; ++j) w += syl[gen.randint(0, 6)];
    words.push_back(w);
  }
  return words;
}

demo::FitConfig quiet_config(std::int64_t epochs) {
  demo::FitConfig cfg;
  cfg.epochs = epochs;
  cfg.quiet = true;
  cfg.log_every = 0;
  cfg.eval.batch_size = 256;
  return cfg;
}

}  // namespace

TEST_CASE("makemore demo: the MLP learns a toy word list with BatchNorm1d, LayerNorm and none") {
  const auto words = toy_words(600, 1);
  std::u32string all;
  for (const auto& w : words) all += w;
  const auto vocab = ng::io::CharVocab::from_text(all, U'.');
  const auto [tr, va] = ng::io::split_items(words, 0.2, 3);
  const auto train = ng::io::word_examples(tr, vocab, 3), val = ng::io::word_examples(va, vocab, 3);
  for (const char* norm : {"bn", "ln", "none"}) {
    CAPTURE(norm);
    ng::Generator gen(5);
    auto model = demo::make_makemore_mlp(norm, vocab.size(), 3, 8, 32, 2, &gen);
    ng::optim::SGD opt(model->parameters(), {.lr = 0.1});
    ng::io::DataLoader loader(train, {.batch_size = 32, .shuffle = true, .drop_last = true, .seed = 1});
    const double before = demo::eval_loss(*model, val);
    CHECK(before ==
          doctest::Approx(std::log(static_cast<double>(vocab.size()))).epsilon(0.1));  // ~uniform at the start
    const demo::LmResult r = demo::fit_lm(quiet_config(3), *model, opt, nullptr, loader, val);
    CHECK(r.epochs.size() == 3);
    CHECK(r.epochs.back().val_loss < 0.65 * before);
  }
}

TEST_CASE(
    "tiny_gpt demo: causal (a later token never changes earlier logits); learns a periodic text; pre- and post-LN") {
  std::u32string text;
  for (int i = 0; i < 120; ++i) text += U"the cat sat. ";
  const auto vocab = ng::io::CharVocab::from_text(text);
  const auto ids = vocab.encode(text);
  const auto train = ng::io::text_windows(ids, 16, 16);
  for (bool pre_ln : {true, false}) {
    CAPTURE(pre_ln);
    ng::Generator gen(7);
    demo::TinyGPT model(vocab.size(), 16, 16, 2, 2, demo::TransformerNorm::layer_norm, pre_ln, 0.0, &gen);
    {
      ng::NoGradGuard no_grad;
      ng::Tensor x = ng::slice(train.inputs, 0, 0, 2).contiguous();
      const ng::Tensor a = model(x);
      CHECK(a.shape() == ng::Shape{2, vocab.size(), 16});
      x.data<std::int64_t>()[10] = (x.data<std::int64_t>()[10] + 1) % vocab.size();  // sample 0, position 10
      const ng::Tensor b = model(x);
      const ng::Tensor diff = ng::abs(ng::sub(a, b));
      CHECK(ng::max(ng::slice(ng::select(diff, 0, 0), 1, 0, 10)).item() == 0.0);  // positions < 10 unchanged
      CHECK(ng::max(ng::slice(ng::select(diff, 0, 0), 1, 10, 16)).item() > 0.0);
      CHECK(ng::max(ng::select(diff, 0, 1)).item() == 0.0);  // the other sample unchanged
    }
    ng::optim::Adam opt(model.parameters(), {.lr = 3e-3});
    ng::io::DataLoader loader(train, {.batch_size = 8, .shuffle = true, .drop_last = true, .seed = 1});
    const double before = demo::eval_loss(model, train);
    const demo::LmResult r = demo::fit_lm(quiet_config(6), model, opt, nullptr, loader, train);
    CHECK(r.epochs.back().val_loss < 0.5 * before);
  }
}

TEST_CASE("fit_lm: interrupted at step k and resumed equals the uninterrupted run bit for bit") {
  std::u32string text;
  for (int i = 0; i < 60; ++i) text += U"abcab cabba ";
  const auto vocab = ng::io::CharVocab::from_text(text);
  const auto data = ng::io::text_windows(vocab.encode(text), 8, 8);
  auto make = [&](ng::Generator& g) {
    return std::make_unique<demo::TinyGPT>(vocab.size(), 8, 8, 2, 1, demo::TransformerNorm::batch_norm, true, 0.1, &g);
  };
  auto run = [&](std::int64_t stop_after, const std::string& ckpt, bool resume) {
    ng::Generator g(3);
    auto model = make(g);
    for (auto& b : model->blocks) b->set_generator(&g);
    ng::optim::Adam opt(model->parameters(), {.lr = 1e-2});
    ng::optim::CosineAnnealingLR sched(opt, 40);
    ng::io::DataLoader loader(data, {.batch_size = 4, .shuffle = true, .drop_last = true, .seed = 2});
    demo::FitConfig cfg = quiet_config(2);
    cfg.checkpoint = ckpt;
    cfg.stop_after_step = stop_after;
    cfg.resume = resume;
    demo::fit_lm(cfg, *model, opt, &sched, loader, data, &g);  // dropout draws from g: saved too
    return model->state_dict();
  };
  TempPath a("fit_lm_straight"), b("fit_lm_resumed");
  const auto straight = run(-1, a.path, false);
  run(5, b.path, false);  // interrupted at step 5 (checkpoint written)
  const auto resumed = run(-1, b.path, true);
  REQUIRE(straight.size() == resumed.size());
  for (std::size_t i = 0; i < straight.size(); ++i) {
    CAPTURE(straight[i].first);
    CHECK(straight[i].first == resumed[i].first);
    CHECK(straight[i].second.to_vector() == resumed[i].second.to_vector());  // exact
  }
}
