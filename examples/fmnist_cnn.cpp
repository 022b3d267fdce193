// Fashion-MNIST with a BatchNorm CNN: the README's main demo.
//
//   ./build/release/bin/fmnist_cnn                       3 epochs, about 92% test accuracy
//   ./build/release/bin/fmnist_cnn --norm none           the same net without BatchNorm
//   ./build/release/bin/fmnist_cnn --checkpoint run.safetensors     (Ctrl-C, then)
//   ./build/release/bin/fmnist_cnn --checkpoint run.safetensors --resume
//
// The net (examples/models.h): two conv -> BatchNorm2d -> ReLU -> max-pool blocks, then
// Linear(3136, 128) -> BatchNorm1d -> ReLU -> Linear(128, 10). Cross-entropy loss, SGD with
// momentum 0.9, learning rate 0.05 annealed to 0 over the whole run along a cosine, one
// schedule step per optimizer step (CosineAnnealingLR with T_max = epochs x batches per epoch).
//
// Each epoch shows a progress bar on stderr, then the mean training loss, the test accuracy
// (eval mode: BatchNorm uses its running statistics; no tape) and the time. The curves go to a
// CSV file; with --checkpoint the whole training state is saved at each epoch end, and Ctrl-C
// stops after the current step with a checkpoint from which --resume continues exactly.
#include <fmt/core.h>

#include <memory>

#include "common.h"
#include "io/fashion_mnist.h"
#include "models.h"
#include "optim/sgd.h"

namespace {

int run(int argc, char** argv) {
  demo::Args args("fmnist_cnn", "Trains a BatchNorm CNN on Fashion-MNIST (examples/fmnist_cnn.cpp).");
  args.option("epochs", "3", "passes over the training set")
      .option("batch-size", "64", "images per step")
      .option("lr", "0.05", "SGD learning rate (momentum 0.9)")
      .option("schedule", "cosine", "cosine (annealed to 0 over the run, per step) or constant")
      .option("seed", "1", "seeds the initialization and the shuffling")
      .option("norm", "bn", "bn (BatchNorm) or none (the same net without normalization)");
  demo::add_run_options(args, "fmnist_cnn.csv");
  if (!args.parse(argc, argv)) return 0;
  const std::vector<std::string> settings = {"epochs", "batch-size", "lr", "schedule", "seed", "norm", "limit"};
  demo::resume_settings(args, settings);
  const std::int64_t epochs = args.integer("epochs"), batch = args.integer("batch-size");
  const double lr = args.real("lr");
  const auto seed = static_cast<std::uint64_t>(args.integer("seed"));
  const demo::Norm norm = demo::parse_norm(args.str("norm"));
  const std::string schedule = args.str("schedule");
  if (schedule != "cosine" && schedule != "constant") throw std::invalid_argument("--schedule: cosine or constant");
  if (epochs < 1 || batch < 1) throw std::invalid_argument("--epochs and --batch-size must be positive");
  const int threads = demo::set_threads(args.integer("threads"));

  // Data: images (N, 1, 28, 28) standardized with the training set's mean and std, labels (N).
  ng::io::FashionMnistOptions data_opt{.dir = args.str("data-dir"), .limit = args.integer("limit")};
  demo::Stopwatch load_clock;
  ng::io::TensorDataset train = ng::io::load_fashion_mnist(ng::io::Split::train, data_opt);
  ng::io::TensorDataset test = ng::io::load_fashion_mnist(ng::io::Split::test, {.dir = data_opt.dir});
  fmt::print("Fashion-MNIST from {}: {} training and {} test images ({:.1f} s)\n", ng::io::fashion_mnist_dir(data_opt.dir),
             train.size(), test.size(), load_clock.seconds());

  // Model, optimizer, schedule, data order: all fixed by the seed.
  ng::Generator gen(seed);
  auto model = demo::fmnist_cnn(norm, &gen);
  ng::optim::SGD opt(model->parameters(), {.lr = lr, .momentum = 0.9});
  ng::io::DataLoader loader(train, {.batch_size = batch, .shuffle = true, .seed = seed});
  std::unique_ptr<ng::optim::LRScheduler> sched;
  if (schedule == "cosine") sched = std::make_unique<ng::optim::CosineAnnealingLR>(opt, epochs * loader.num_batches());
  fmt::print("{}\n{} parameters; SGD lr {} momentum 0.9, {} schedule; batch {}, {} steps per epoch, {} epochs; "
             "{} threads; seed {}\n",
             *model, model->num_parameters(), lr, schedule, batch, loader.num_batches(), epochs, threads, seed);

  demo::FitConfig cfg;
  cfg.program = argv[0];
  cfg.epochs = epochs;
  cfg.checkpoint = args.str("checkpoint");
  cfg.interrupt_checkpoint = "fmnist_cnn.interrupted.safetensors";
  cfg.resume = args.on("resume");
  cfg.csv = args.str("csv");
  cfg.log_every = args.integer("log-every");
  cfg.stop_after_step = args.integer("max-steps");
  cfg.eval.batch_size = args.integer("eval-batch");
  for (const auto& k : settings) cfg.settings[k] = args.str(k);
  demo::install_sigint_handler();
  demo::FitResult r = demo::fit(cfg, *model, opt, sched.get(), loader, test);

  return demo::finish(norm == demo::Norm::batch ? "BatchNorm CNN" : "CNN without normalization", r, cfg, threads);
}

}  // namespace

int main(int argc, char** argv) {
  return demo::guarded_main("fmnist_cnn", run, argc, argv);
}
