// The demo CNN's training step across processes: what data parallelism costs and buys on one
// machine, and how many bytes each step communicates. Run it twice on a quiet machine:
//
//   mpirun -np 2 --bind-to core ./build/release/bin/normgrad_dist_bench --threads 1   (2 ranks x 1 thread)
//   ./build/release/bin/normgrad_dist_bench --threads 2                                (1 rank x 2 threads)
//   (as root add --allow-run-as-root; --sync-bn for SyncBatchNorm, --norm none without BatchNorm)
//
// Every configuration trains the same global batch (--batch, split evenly over the ranks) of
// the README's CNN (examples/models.h) with SGD through DistributedDataParallel, so the work per
// step is the same; only the split between processes and threads differs. Each rank times
// --steps steps after --warmup untimed ones, every step bracketed by barriers (so a step's time
// is the slowest rank's); printed: the median and quartiles of the step time, images per second,
// and per step and rank: the payload bytes all-reduced for the gradients (DistributedDataParallel),
// all bytes this rank sent into collectives (gradients, the buffer broadcast, SyncBatchNorm's
// statistics), the number of collectives, and what a ring all-reduce moves over each link
// (2 (R-1)/R x the payload; docs/distributed.md).
#include <CLI/CLI.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include <fmt/format.h>

#include "dist/ddp.h"
#include "dist/dist.h"
#include "dist/sync_batch_norm.h"
#include "examples/models.h"
#include "optim/sgd.h"

namespace {

int run(int argc, char** argv) {
  CLI::App app{"normgrad_dist_bench: the demo CNN's training step, data-parallel (bench/dist_step.cpp)"};
  int threads = 1, steps = 20, warmup = 3;
  std::int64_t batch = 64;
  bool sync_bn = false, no_checks = false;
  std::string norm = "bn";
  app.add_option("--threads", threads, "OpenMP threads per rank")->check(CLI::Range(1, 1024));
  app.add_option("--steps", steps, "timed steps")->check(CLI::Range(1, 100000));
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::Range(0, 1000));
  app.add_option("--batch", batch, "global batch (divided evenly over the ranks)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--norm", norm, "bn (BatchNorm) or none")->check(CLI::IsMember({"bn", "none"}));
  app.add_flag("--sync-bn", sync_bn, "SyncBatchNorm instead of per-rank BatchNorm");
  app.add_flag("--no-checks", no_checks, "skip the collective signature checks (one small collective less each)");
  CLI11_PARSE(app, argc, argv);

  ng::dist::init();
  auto group = ng::dist::world();
  if (no_checks) group->set_check_collectives(false);
  const int R = group->size(), rank = group->rank();
  if (batch % R != 0)
    throw std::invalid_argument(fmt::format("--batch {} must be divisible by the number of processes {}", batch, R));
  omp_set_num_threads(threads);
  const std::int64_t per_rank = batch / R;

  ng::Generator gen(1);
  ng::nn::ModulePtr model = demo::fmnist_cnn(demo::parse_norm(norm), &gen);
  if (sync_bn) model = ng::dist::convert_sync_batchnorm(model);
  auto ddp = std::make_shared<ng::dist::DistributedDataParallel>(model);
  ng::optim::SGD opt(ddp->parameters(), {.lr = 0.01, .momentum = 0.9});
  ng::Generator data(7 + static_cast<std::uint64_t>(rank));
  const ng::Tensor x = ng::randn({per_rank, 1, 28, 28}, ng::DType::f32, &data);
  const ng::Tensor y = ng::randint({per_rank}, 0, 10, &data);
  auto step = [&] {
    opt.zero_grad();
    ng::cross_entropy((*ddp)(x), y).backward();
    opt.step();
  };
  for (int i = 0; i < warmup; ++i) step();
  group->reset_stats();
  std::vector<double> times;
  for (int i = 0; i < steps; ++i) {
    group->barrier();
    const auto a = std::chrono::steady_clock::now();
    step();
    group->barrier();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  const auto st = group->stats();  // (the two barriers per step are counted as collectives of 0 bytes)
  std::sort(times.begin(), times.end());
  const double med = times[times.size() / 2], q1 = times[times.size() / 4], q3 = times[3 * times.size() / 4];
  const double payload = static_cast<double>(ddp->bytes_per_sync());
  if (rank == 0) {
    fmt::print("cnn_step_dist  {} rank(s) x {} thread(s), global batch {} ({} per rank), {}{}\n", R, threads, batch,
               per_rank, norm == "none" ? "no BatchNorm" : sync_bn ? "SyncBatchNorm" : "per-rank BatchNorm",
               group->check_collectives() ? "" : ", signature checks off");
    fmt::print("  step time   median {:.2f} ms (quartiles {:.2f}-{:.2f}), {:.0f} images/s over {} steps\n", med * 1e3,
               q1 * 1e3, q3 * 1e3, static_cast<double>(batch) / med, steps);
    fmt::print("  per step and rank: gradients all-reduced {:.3f} MB in {} bucket(s); all collectives {:.3f} MB in "
               "{:.0f} calls (incl. 2 timing barriers); ring all-reduce traffic per link ~{:.3f} MB\n",
               payload / 1e6, ddp->num_buckets(), static_cast<double>(st.bytes) / steps / 1e6,
               static_cast<double>(st.collectives) / steps, 2.0 * (R - 1) / R * payload / 1e6);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return ng::dist::guarded_main([&] { return run(argc, argv); });
}
