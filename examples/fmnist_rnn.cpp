// Fashion-MNIST with a layer-normalized LSTM: each image is read as a sequence of its 28 rows
// (28 time steps of 28 features), and a Linear(128, 10) classifies the last hidden state.
//
//   ./build/release/bin/fmnist_rnn                  LayerNorm-LSTM, hidden 128, Adam 1e-3
//   ./build/release/bin/fmnist_rnn --norm none      the plain LSTM
//   ./build/release/bin/fmnist_rnn --checkpoint rnn.safetensors     (Ctrl-C, then)
//   ./build/release/bin/fmnist_rnn --checkpoint rnn.safetensors --resume
//
// The LayerNorm-LSTM (layers/recurrent.h; Ba, Kiros & Hinton 2016) normalizes the input and
// the recurrent pre-activations of the gates separately, and the cell state inside the output
// tanh; there are no batch statistics, so training and eval compute the same function and a
// batch of any size (even 1) behaves the same. Training as in examples/fmnist_cnn.cpp (the
// shared loop is demo::fit in examples/common.h): progress bar, per-epoch test accuracy, CSV,
// checkpoints, exact resume, Ctrl-C.
#include <fmt/core.h>

#include <memory>

#include "common.h"
#include "io/fashion_mnist.h"
#include "models.h"
#include "optim/adam.h"

namespace {

int run(int argc, char** argv) {
  demo::Args args("fmnist_rnn", "Trains a LayerNorm-LSTM on Fashion-MNIST rows (examples/fmnist_rnn.cpp).");
  args.option("epochs", "3", "passes over the training set")
      .option("batch-size", "64", "images per step")
      .option("lr", "0.001", "Adam learning rate")
      .option("schedule", "cosine", "cosine (annealed to 0 over the run, per step) or constant")
      .option("hidden", "128", "LSTM hidden size")
      .option("seed", "1", "seeds the initialization and the shuffling")
      .option("norm", "ln", "ln (LayerNorm-LSTM) or none (plain LSTM)");
  demo::add_run_options(args, "fmnist_rnn.csv");
  if (!args.parse(argc, argv)) return 0;
  const std::vector<std::string> settings = {"epochs", "batch-size", "lr", "schedule", "hidden", "seed", "norm", "limit"};
  demo::resume_settings(args, settings);
  const std::int64_t epochs = args.integer("epochs"), batch = args.integer("batch-size"), hidden = args.integer("hidden");
  const double lr = args.real("lr");
  const auto seed = static_cast<std::uint64_t>(args.integer("seed"));
  const demo::Norm norm = demo::parse_norm(args.str("norm"));
  const std::string schedule = args.str("schedule");
  if (schedule != "cosine" && schedule != "constant") throw std::invalid_argument("--schedule: cosine or constant");
  if (epochs < 1 || batch < 1 || hidden < 1) throw std::invalid_argument("--epochs, --batch-size and --hidden must be positive");
  const int threads = demo::set_threads(args.integer("threads"));

  ng::io::FashionMnistOptions data_opt{.dir = args.str("data-dir"), .limit = args.integer("limit")};
  demo::Stopwatch load_clock;
  ng::io::TensorDataset train = ng::io::load_fashion_mnist(ng::io::Split::train, data_opt);
  ng::io::TensorDataset test = ng::io::load_fashion_mnist(ng::io::Split::test, {.dir = data_opt.dir});
  fmt::print("Fashion-MNIST from {}: {} training and {} test images ({:.1f} s)\n", ng::io::fashion_mnist_dir(data_opt.dir),
             train.size(), test.size(), load_clock.seconds());

  ng::Generator gen(seed);
  demo::SequenceClassifier model(norm, hidden, &gen);
  ng::optim::Adam opt(model.parameters(), {.lr = lr});
  ng::io::DataLoader loader(train, {.batch_size = batch, .shuffle = true, .seed = seed});
  std::unique_ptr<ng::optim::LRScheduler> sched;
  if (schedule == "cosine") sched = std::make_unique<ng::optim::CosineAnnealingLR>(opt, epochs * loader.num_batches());
  fmt::print("{}\n{} parameters; Adam lr {}, {} schedule; batch {}, {} steps per epoch, {} epochs; {} threads; seed {}\n",
             model, model.num_parameters(), lr, schedule, batch, loader.num_batches(), epochs, threads, seed);

  demo::FitConfig cfg;
  cfg.program = argv[0];
  cfg.epochs = epochs;
  cfg.checkpoint = args.str("checkpoint");
  cfg.interrupt_checkpoint = "fmnist_rnn.interrupted.safetensors";
  cfg.resume = args.on("resume");
  cfg.csv = args.str("csv");
  cfg.log_every = args.integer("log-every");
  cfg.stop_after_step = args.integer("max-steps");
  cfg.eval.batch_size = args.integer("eval-batch");
  for (const auto& k : settings) cfg.settings[k] = args.str(k);
  demo::install_sigint_handler();
  demo::FitResult r = demo::fit(cfg, model, opt, sched.get(), loader, test);

  return demo::finish(fmt::format("{} with hidden size {}", norm == demo::Norm::layer ? "LayerNorm-LSTM" : "LSTM", hidden), r,
                      cfg, threads);
}

}  // namespace

int main(int argc, char** argv) {
  return demo::guarded_main("fmnist_rnn", run, argc, argv);
}
