// Fashion-MNIST with a BatchNorm CNN: the README's main demo.
//
//   ./build/release/bin/fmnist_cnn                       3 epochs, about 92% test accuracy
//   ./build/release/bin/fmnist_cnn --norm none           the same net without BatchNorm
//   ./build/release/bin/fmnist_cnn --checkpoint run.safetensors     (Ctrl-C, then)
//   ./build/release/bin/fmnist_cnn --checkpoint run.safetensors --resume
//   mpirun -np 2 ./build/release/bin/fmnist_cnn --sync-bn      2 processes, SyncBatchNorm
//   mpirun -np 2 ./build/release/bin/fmnist_cnn                2 processes, per-rank BatchNorm
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
//
// Under mpirun (more than one process) the same training runs data-parallel
// (train_data_parallel below): --batch-size is the global batch, split evenly over the
// ranks; a DistributedSampler gives each rank its share of every epoch; DistributedDataParallel
// averages the gradients; with --sync-bn every BatchNorm becomes a SyncBatchNorm (statistics
// of the global batch: the same function as one process), without it each rank normalizes
// with its own share's statistics. Rank 0 prints and writes the CSV; the others are silent.
// Checkpoints are not written in this mode.
#include <fmt/core.h>

#include <cstdio>
#include <memory>

#include "common.h"
#include "dist/ddp.h"
#include "dist/dist.h"
#include "dist/sampler.h"
#include "dist/sync_batch_norm.h"
#include "io/fashion_mnist.h"
#include "models.h"
#include "optim/sgd.h"

namespace {

struct Settings {
  std::int64_t epochs, batch;
  double lr;
  std::uint64_t seed;
  demo::Norm norm;
  bool sync_bn, cosine;
  int threads;
};

int train_data_parallel(const Settings& s, demo::Args& args, const ng::io::TensorDataset& train,
                        const ng::io::TensorDataset& test) {
  const int world = ng::dist::world_size(), rank = ng::dist::rank();
  if (!args.str("checkpoint").empty() || args.on("resume") || args.integer("max-steps") >= 0)
    throw std::invalid_argument("--checkpoint, --resume and --max-steps are not supported under mpirun");
  if (s.batch % world != 0)
    throw std::invalid_argument(fmt::format("--batch-size {} (the global batch) must be divisible by the number of "
                                            "processes, {}",
                                            s.batch, world));
  const std::int64_t per_rank = s.batch / world;
  // The same initialization on every rank (DistributedDataParallel also broadcasts rank 0's).
  ng::Generator gen(s.seed);
  ng::nn::ModulePtr model = demo::fmnist_cnn(s.norm, &gen);
  if (s.sync_bn) model = ng::dist::convert_sync_batchnorm(model);
  auto ddp = std::make_shared<ng::dist::DistributedDataParallel>(model);
  ng::optim::SGD opt(ddp->parameters(), {.lr = s.lr, .momentum = 0.9});
  ng::dist::DistributedSampler sampler(train.size(), {.shuffle = true, .seed = s.seed});
  const std::int64_t steps_per_epoch = (sampler.num_samples() + per_rank - 1) / per_rank;
  std::unique_ptr<ng::optim::LRScheduler> sched;
  if (s.cosine) sched = std::make_unique<ng::optim::CosineAnnealingLR>(opt, s.epochs * steps_per_epoch);
  const char* bn = s.norm == demo::Norm::none ? "no normalization"
                   : s.sync_bn                ? "SyncBatchNorm (statistics of the global batch)"
                                              : "per-rank BatchNorm (statistics of each rank's share)";
  fmt::print("{}\n{} processes x {} threads, global batch {} = {} x {} per rank, {}; {} steps per epoch, {} epochs; "
             "gradients averaged in {} bucket(s), {:.2f} MB per step\n",
             *model, world, s.threads, s.batch, world, per_rank, bn, steps_per_epoch, s.epochs, ddp->num_buckets(),
             static_cast<double>(ddp->bytes_per_sync()) / 1e6);
  demo::CsvLog csv(rank == 0 ? args.str("csv") : "", {"epoch", "step", "train_loss", "test_acc", "lr", "seconds"});
  demo::Stopwatch clock;
  std::int64_t step = 0;
  double acc = 0;
  auto& group = *ng::dist::world();
  group.reset_stats();
  for (std::int64_t epoch = 0; epoch < s.epochs; ++epoch) {
    sampler.set_epoch(epoch);
    ng::io::DataLoader loader(sampler.shard(train), {.batch_size = per_rank});
    std::fflush(stdout);
    std::unique_ptr<demo::ProgressBar> bar;
    if (rank == 0) bar = std::make_unique<demo::ProgressBar>(fmt::format("epoch {}/{}", epoch + 1, s.epochs), steps_per_epoch);
    demo::Stopwatch train_clock;
    double loss_sum = 0;
    std::int64_t images = 0, n = 0;
    for (const ng::io::Batch& b : loader) {
      loss_sum += demo::train_step(*ddp, opt, b.inputs, b.targets);
      if (sched) sched->step();
      ++step, ++n;
      images += b.inputs.size(0) * world;
      if (bar) bar->update(loader.batch_index(), loss_sum / static_cast<double>(n), images);
    }
    if (bar) bar->finish();
    const double train_seconds = train_clock.seconds();
    // The mean training loss over every rank's steps.
    ng::Tensor mean_loss = ng::scalar(loss_sum / static_cast<double>(n), ng::DType::f64);
    ng::dist::all_reduce(mean_loss, ng::dist::ReduceOp::mean);
    // Test accuracy on rank 0 (whose running statistics every rank received before each step).
    if (rank == 0) acc = demo::evaluate(*model, test, {.batch_size = args.integer("eval-batch")});
    fmt::print("epoch {}/{}: train loss {:.4f}, test accuracy {:.4f} ({:.1f} s training, {:.0f} img/s over {} "
               "processes)\n",
               epoch + 1, s.epochs, mean_loss.item(), acc, train_seconds, static_cast<double>(images) / train_seconds,
               world);
    csv.row({std::to_string(epoch + 1), std::to_string(step), fmt::format("{:.6f}", mean_loss.item()),
             fmt::format("{:.4f}", acc), fmt::format("{:.6g}", opt.param_groups().at(0).lr()),
             fmt::format("{:.2f}", clock.seconds())});
  }
  const auto st = group.stats();
  fmt::print("\nsummary: fmnist_cnn on {} processes with {}: test accuracy {:.4f}; {} steps, {:.0f} s; rank 0 sent "
             "{:.2f} MB per step in {:.1f} collectives per step\n",
             world, bn, acc, step, clock.seconds(), static_cast<double>(st.bytes) / 1e6 / static_cast<double>(step),
             static_cast<double>(st.collectives) / static_cast<double>(step));
  if (!args.str("csv").empty()) fmt::print("curves written to {}\n", args.str("csv"));
  return 0;
}

int run(int argc, char** argv) {
  demo::Args args("fmnist_cnn", "Trains a BatchNorm CNN on Fashion-MNIST (examples/fmnist_cnn.cpp).");
  args.option("epochs", "3", "passes over the training set")
      .option("batch-size", "64", "images per step")
      .option("lr", "0.05", "SGD learning rate (momentum 0.9)")
      .option("schedule", "cosine", "cosine (annealed to 0 over the run, per step) or constant")
      .option("seed", "1", "seeds the initialization and the shuffling")
      .option("norm", "bn", "bn (BatchNorm) or none (the same net without normalization)")
      .flag("sync-bn", "under mpirun: SyncBatchNorm (BatchNorm statistics over the global batch, all ranks)");
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
  const bool sync_bn = args.on("sync-bn");

  // Data: images (N, 1, 28, 28) standardized with the training set's mean and std, labels (N).
  ng::io::FashionMnistOptions data_opt{.dir = args.str("data-dir"), .limit = args.integer("limit")};
  demo::Stopwatch load_clock;
  ng::io::TensorDataset train = ng::io::load_fashion_mnist(ng::io::Split::train, data_opt);
  ng::io::TensorDataset test = ng::io::load_fashion_mnist(ng::io::Split::test, {.dir = data_opt.dir});
  fmt::print("Fashion-MNIST from {}: {} training and {} test images ({:.1f} s)\n", ng::io::fashion_mnist_dir(data_opt.dir),
             train.size(), test.size(), load_clock.seconds());
  if (ng::dist::world_size() > 1)
    return train_data_parallel({epochs, batch, lr, seed, norm, sync_bn, schedule == "cosine", threads}, args, train, test);

  // Model, optimizer, schedule, data order: all fixed by the seed.
  ng::Generator gen(seed);
  auto model = demo::fmnist_cnn(norm, &gen);
  if (sync_bn) ng::dist::convert_sync_batchnorm(model);  // one process: SyncBatchNorm is BatchNorm
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
  ng::dist::init();  // a world of one process unless started by mpirun
  if (ng::dist::world_size() == 1) return demo::guarded_main("fmnist_cnn", run, argc, argv);
  if (ng::dist::rank() != 0 && !std::freopen("/dev/null", "w", stdout)) return 1;  // rank 0 prints
  // An error on any rank ends every rank (the others would wait for it in their next collective).
  return ng::dist::guarded_main([&] { return run(argc, argv); });
}
