// tiny_gpt: a small causal Transformer that writes like a fortune cookie. Character-level
// language model (GPT: Radford et al. 2018; nanoGPT's shakespeare_char, scaled down) trained on
// Debian's `fortunes` package (/usr/share/games/fortunes: 2.6 MB of quotations, jokes, verse
// and definitions in plain UTF-8 English; all files concatenated in name order):
//
//   tokens (B, T) -> Embedding(V, d) + learned positions -> L x TransformerEncoderLayer
//   (causal self-attention, GELU feed-forward 4d, pre-LN by default) -> final norm (pre-LN)
//   -> Linear(d, V) -> next-character logits at every position
//
//   ./build/release/bin/tiny_gpt                         pre-LN, LayerNorm, warmup 100 steps
//   ./build/release/bin/tiny_gpt --post-ln --warmup 0    the original post-LN without warmup
//   ./build/release/bin/tiny_gpt --norm rms              RMSNorm (or bn: BatchNorm over tokens; none)
//   ./build/release/bin/tiny_gpt --checkpoint gpt.safetensors        (Ctrl-C, then --resume)
//
// The last 10% of the text validates (no shuffling across the split); training windows are
// the non-overlapping blocks of T characters of the first 90%, shuffled each epoch. Adam with
// a linear warmup (LinearLR from 1% of the lr) followed by cosine decay to 10% of the lr over
// the run. Reports validation nats/char and a sample. The layers are nn::TransformerEncoderLayer
// (layers/transformer.h), whose checkpoints carry PyTorch's names.
#include <fmt/core.h>

#include "lm_common.h"
#include "lm_models.h"
#include "optim/adam.h"

namespace {

using ng::nn::TransformerNorm;

int run(int argc, char** argv) {
  demo::Args args("tiny_gpt", "Trains a tiny causal Transformer on Debian's fortunes (examples/tiny_gpt.cpp).");
  args.option("data", "/usr/share/games/fortunes", "a UTF-8 text file, or a folder of them")
      .option("norm", "ln", "normalization in the layers: ln, rms, bn (BatchNorm over the tokens) or none")
      .option("layers", "2", "Transformer layers")
      .option("d-model", "64", "width")
      .option("heads", "4", "attention heads")
      .option("block", "64", "context length T")
      .option("dropout", "0.0", "dropout in the layers")
      .option("epochs", "1", "passes over the training text")
      .option("batch-size", "32", "windows per step")
      .option("lr", "0.003", "Adam peak learning rate")
      .option("warmup", "100", "linear warmup steps (0: none)")
      .option("seed", "1", "seeds the initialization, the shuffling and the sampling")
      .option("limit-chars", "-1", "use the first N characters of the corpus only (-1: all)")
      .option("val-windows", "256", "validation windows of T characters to evaluate (-1: all)")
      .option("sample-chars", "300", "characters to sample at the end")
      .option("temperature", "0.8", "sampling temperature")
      .option("threads", "0", "threads (0: OMP_NUM_THREADS or all cores)")
      .option("checkpoint", "", "save the training state here at each epoch end (and on Ctrl-C)")
      .option("csv", "tiny_gpt.csv", "write the curves here ('' for none)")
      .option("log-every", "50", "a CSV row every N steps besides the per-epoch rows")
      .option("max-steps", "-1", "stop after N steps in total as if interrupted (checkpoint, exit)");
  demo::add_flags(args, {{"post-ln", "post-LN layers (the original Transformer) instead of pre-LN"},
                         {"resume", "continue the run saved in --checkpoint exactly where it stopped"}});
  if (!args.parse(argc, argv)) return 0;
  const std::vector<std::string> settings = {"data",  "norm",   "post-ln", "layers",     "d-model",
                                             "heads", "block",  "dropout", "epochs",     "batch-size",
                                             "lr",    "warmup", "seed",    "limit-chars"};
  demo::resume_settings(args, settings);
  const TransformerNorm norm = demo::parse_transformer_norm(args.str("norm"));
  const bool pre_ln = !args.on("post-ln");
  const std::int64_t layers = args.integer("layers"), d = args.integer("d-model"), heads = args.integer("heads"),
                     block = args.integer("block"), epochs = args.integer("epochs"), batch = args.integer("batch-size"),
                     warmup = args.integer("warmup");
  if (layers < 1 || d < 1 || heads < 1 || block < 1 || epochs < 1 || batch < 1 || warmup < 0)
    throw std::invalid_argument(
        "--layers, --d-model, --heads, --block, --epochs, --batch-size must be positive, --warmup >= 0");
  const auto seed = static_cast<std::uint64_t>(args.integer("seed"));
  const int threads = demo::set_threads(args.integer("threads"));

  std::u32string text = demo::read_corpus(args.str("data"));
  if (args.integer("limit-chars") >= 0 && static_cast<std::int64_t>(text.size()) > args.integer("limit-chars"))
    text.resize(static_cast<std::size_t>(args.integer("limit-chars")));
  const auto vocab = ng::io::CharVocab::from_text(text);
  const auto [train_text, val_text] = ng::io::split_text(text, 0.1);
  const ng::io::TensorDataset train = ng::io::text_windows(vocab.encode(train_text), block, block);
  const ng::io::TensorDataset val = ng::io::text_windows(vocab.encode(val_text), block, block);
  fmt::print("{}: {} characters, vocabulary {}; {} training and {} validation windows of {}\n", args.str("data"),
             text.size(), vocab.size(), train.size(), val.size(), block);

  ng::Generator gen(seed);
  demo::TinyGPT model(vocab.size(), block, d, heads, layers, norm, pre_ln, args.real("dropout"), &gen);
  for (auto& b : model.blocks) b->set_generator(&gen);
  ng::optim::Adam opt(model.parameters(), {.lr = args.real("lr")});
  ng::io::DataLoader loader(train, {.batch_size = batch, .shuffle = true, .drop_last = true, .seed = seed});
  const std::int64_t total = epochs * loader.num_batches();
  std::unique_ptr<ng::optim::LRScheduler> sched;
  if (warmup > 0 && warmup < total) {
    auto warm = std::make_shared<ng::optim::LinearLR>(opt, 0.01, 1.0, warmup);
    auto decay = std::make_shared<ng::optim::CosineAnnealingLR>(opt, total - warmup, 0.1 * args.real("lr"));
    sched = std::make_unique<ng::optim::SequentialLR>(
        opt, std::vector<std::shared_ptr<ng::optim::LRScheduler>>{warm, decay}, std::vector<std::int64_t>{warmup});
  } else {
    sched = std::make_unique<ng::optim::CosineAnnealingLR>(opt, total, 0.1 * args.real("lr"));
  }
  fmt::print(
      "{} layers, d_model {}, {} heads, {}, {}; {} parameters; Adam lr {}, warmup {} steps, cosine to 10%; "
      "batch {}, {} steps per epoch, {} epoch(s); {} threads\n",
      layers, d, heads, pre_ln ? "pre-LN" : "post-LN", args.str("norm"), model.num_parameters(), args.real("lr"),
      warmup, batch, loader.num_batches(), epochs, threads);

  demo::FitConfig cfg;
  cfg.program = argv[0];
  cfg.epochs = epochs;
  cfg.checkpoint = args.str("checkpoint");
  cfg.interrupt_checkpoint = "tiny_gpt.interrupted.safetensors";
  cfg.resume = args.on("resume");
  cfg.csv = args.str("csv");
  cfg.log_every = args.integer("log-every");
  cfg.stop_after_step = args.integer("max-steps");
  cfg.eval.batch_size = 64;
  cfg.eval.limit = args.integer("val-windows");
  for (const auto& k : settings) cfg.settings[k] = args.str(k);
  demo::install_sigint_handler();
  const demo::LmResult r = demo::fit_lm(cfg, model, opt, sched.get(), loader, val, &gen);

  // Sample: start from the first character of the validation text, keep the last T characters.
  ng::NoGradGuard no_grad;
  model.eval();
  ng::Generator sampler(seed + 1000);
  std::vector<std::int64_t> ids{vocab.id(val_text.empty() ? text[0] : val_text[0])};
  for (std::int64_t i = 0; i < args.integer("sample-chars"); ++i) {
    const std::int64_t n = std::min<std::int64_t>(static_cast<std::int64_t>(ids.size()), block);
    const std::vector<std::int64_t> ctx(ids.end() - n, ids.end());
    const ng::Tensor logits = model(ng::from_vector(ctx, {1, n}));  // (1, V, n)
    ids.push_back(demo::sample_next(ng::select(ng::select(logits, 0, 0), 1, n - 1), args.real("temperature"), sampler));
  }
  fmt::print("sample:\n{}\n", ng::io::encode_utf8(vocab.decode(ids)));
  const double val_loss = demo::eval_loss(model, val, 64, args.integer("val-windows"));
  fmt::print(
      "\nsummary: tiny_gpt {} {} {} layers d={} warmup {} ({}), validation loss {:.4f} nats/char after {} steps, "
      "{:.0f} s on {} threads\n",
      pre_ln ? "pre-LN" : "post-LN", args.str("norm"), layers, d, warmup, r.interrupted ? "interrupted" : "finished",
      val_loss, r.step, r.seconds, threads);
  if (!cfg.csv.empty()) fmt::print("curves written to {}\n", cfg.csv);
  return demo::stop_requested() ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return demo::guarded_main("tiny_gpt", run, argc, argv);
}
