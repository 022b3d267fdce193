// makemore: a character-level MLP that makes up English words (Bengio et al. 2003, "A Neural
// Probabilistic Language Model"; the recipe of Karpathy's makemore part 3), trained on the word
// list of Debian's wamerican package, with BatchNorm1d, LayerNorm or no normalization after
// each hidden Linear:
//
//   context (3 previous characters, '.' before the start) -> Embedding(V, 10) -> flatten
//   -> [Linear(., 100, bias only without a norm) -> norm -> Tanh] x 4 -> Linear(100, V)
//
//   ./build/release/bin/makemore                     BatchNorm1d (the lecture's model)
//   ./build/release/bin/makemore --norm ln           LayerNorm
//   ./build/release/bin/makemore --norm none         no normalization (Kaiming tanh init only)
//   ./build/release/bin/makemore --checkpoint mm.safetensors      (Ctrl-C, then --resume)
//
// Words: the lines of /usr/share/dict/american-english made only of the letters a-z (proper
// nouns, possessives and accented words are dropped), split 90/10 train/validation with a
// fixed shuffle. Reports the validation loss in nats per character (every character of a word
// and its end; the boundary '.' counts) and samples words from the trained model. SGD lr 0.1,
// divided by 10 for the last quarter of the steps, as in the lecture. Initialization as the
// lecture's: Kaiming-normal for tanh (gain 5/3) on the hidden Linears, the output layer's
// weights scaled by 0.1 so that the first predictions are nearly uniform.
#include <fmt/core.h>

#include "lm_common.h"
#include "lm_models.h"
#include "optim/sgd.h"

namespace {

int run(int argc, char** argv) {
  demo::Args args("makemore", "Trains a character-level MLP on English words (examples/makemore.cpp).");
  args.option("words", "/usr/share/dict/american-english", "word list, one word per line (UTF-8)")
      .option("norm", "bn", "bn (BatchNorm1d), ln (LayerNorm) or none")
      .option("block", "3", "characters of context")
      .option("embed", "10", "embedding size per character")
      .option("hidden", "100", "width of the hidden layers")
      .option("layers", "4", "hidden layers")
      .option("epochs", "2", "passes over the training words")
      .option("batch-size", "32", "examples per step")
      .option("lr", "0.1", "SGD learning rate (divided by 10 for the last quarter of the steps)")
      .option("seed", "1", "seeds the initialization, the shuffling and the sampling")
      .option("limit", "-1", "use the first N words of the list only (-1: all)")
      .option("samples", "20", "words to sample at the end")
      .option("threads", "0", "threads (0: OMP_NUM_THREADS or all cores)")
      .option("checkpoint", "", "save the training state here at each epoch end (and on Ctrl-C)")
      .option("csv", "makemore.csv", "write the curves here ('' for none)")
      .option("log-every", "1000", "a CSV row every N steps besides the per-epoch rows")
      .option("max-steps", "-1", "stop after N steps in total as if interrupted (checkpoint, exit)");
  demo::add_flags(args, {{"resume", "continue the run saved in --checkpoint exactly where it stopped"}});
  if (!args.parse(argc, argv)) return 0;
  const std::vector<std::string> settings = {"words",  "norm",       "block", "embed", "hidden", "layers",
                                             "epochs", "batch-size", "lr",    "seed",  "limit"};
  demo::resume_settings(args, settings);
  const std::string norm = args.str("norm");
  if (norm != "bn" && norm != "ln" && norm != "none") throw std::invalid_argument("--norm: bn, ln or none");
  const std::int64_t block = args.integer("block"), embed = args.integer("embed"), hidden = args.integer("hidden"),
                     layers = args.integer("layers"), epochs = args.integer("epochs"),
                     batch = args.integer("batch-size");
  if (block < 1 || embed < 1 || hidden < 1 || layers < 1 || epochs < 1 || batch < 1)
    throw std::invalid_argument("--block, --embed, --hidden, --layers, --epochs and --batch-size must be positive");
  const auto seed = static_cast<std::uint64_t>(args.integer("seed"));
  const int threads = demo::set_threads(args.integer("threads"));

  // Words made of a-z only, then a fixed 90/10 split.
  std::vector<std::u32string> words;
  for (auto& w : ng::io::split_lines(ng::io::read_text(args.str("words")))) {
    if (std::all_of(w.begin(), w.end(), [](char32_t c) { return c >= U'a' && c <= U'z'; })) words.push_back(w);
    if (args.integer("limit") >= 0 && static_cast<std::int64_t>(words.size()) >= args.integer("limit")) break;
  }
  if (words.size() < 10) throw std::invalid_argument(args.str("words") + ": fewer than 10 words made of a-z");
  std::u32string all;
  for (const auto& w : words) all += w;
  const auto vocab = ng::io::CharVocab::from_text(all, U'.');
  const auto [train_words, val_words] = ng::io::split_items(words, 0.1, seed);
  const ng::io::TensorDataset train = ng::io::word_examples(train_words, vocab, block);
  const ng::io::TensorDataset val = ng::io::word_examples(val_words, vocab, block);
  fmt::print(
      "{}: {} words of a-z ({} train, {} validation), {} characters in the vocabulary with '.'; {} / {} examples\n",
      args.str("words"), words.size(), train_words.size(), val_words.size(), vocab.size(), train.size(), val.size());

  ng::Generator gen(seed);
  auto model = demo::make_makemore_mlp(norm, vocab.size(), block, embed, hidden, layers, &gen);
  ng::optim::SGD opt(model->parameters(), {.lr = args.real("lr")});
  ng::io::DataLoader loader(train, {.batch_size = batch, .shuffle = true, .drop_last = true, .seed = seed});
  const std::int64_t total = epochs * loader.num_batches();
  ng::optim::MultiStepLR sched(opt, {total * 3 / 4}, 0.1);
  fmt::print("{}\n{} parameters; SGD lr {} (x0.1 after step {}); batch {}, {} steps per epoch, {} epochs; {} threads\n",
             *model, model->num_parameters(), args.real("lr"), total * 3 / 4, batch, loader.num_batches(), epochs,
             threads);

  demo::FitConfig cfg;
  cfg.program = argv[0];
  cfg.epochs = epochs;
  cfg.checkpoint = args.str("checkpoint");
  cfg.interrupt_checkpoint = "makemore.interrupted.safetensors";
  cfg.resume = args.on("resume");
  cfg.csv = args.str("csv");
  cfg.log_every = args.integer("log-every");
  cfg.stop_after_step = args.integer("max-steps");
  cfg.eval.batch_size = 1024;
  for (const auto& k : settings) cfg.settings[k] = args.str(k);
  demo::install_sigint_handler();
  const demo::LmResult r = demo::fit_lm(cfg, *model, opt, &sched, loader, val);

  // Sample words: start from '.'s, draw characters until '.' (eval mode: BatchNorm uses its
  // running statistics, so one context at a time is fine).
  ng::NoGradGuard no_grad;
  model->eval();
  ng::Generator sampler(seed + 1000);
  std::vector<std::string> samples;
  for (std::int64_t s = 0; s < args.integer("samples"); ++s) {
    std::vector<std::int64_t> context(static_cast<std::size_t>(block), 0), out;
    for (int t = 0; t < 40; ++t) {
      const ng::Tensor logits = (*model)(ng::from_vector(context, {1, block}));
      const std::int64_t next = demo::sample_next(ng::select(logits, 0, 0), 1.0, sampler);
      if (next == 0) break;
      out.push_back(next);
      context.erase(context.begin());
      context.push_back(next);
    }
    samples.push_back(ng::io::encode_utf8(vocab.decode(out)));
  }
  fmt::print("samples: {}\n", fmt::join(samples, " "));
  const double val_loss = demo::eval_loss(*model, val, 1024);
  fmt::print(
      "\nsummary: makemore MLP with {} ({}), validation loss {:.4f} nats/char after {} steps, {:.0f} s on {} threads\n",
      norm == "bn" ? "BatchNorm1d" : (norm == "ln" ? "LayerNorm" : "no normalization"),
      r.interrupted ? "interrupted" : "finished", val_loss, r.step, r.seconds, threads);
  if (!cfg.csv.empty()) fmt::print("curves written to {}\n", cfg.csv);
  return demo::stop_requested() ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return demo::guarded_main("makemore", run, argc, argv);
}
