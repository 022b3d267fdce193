// The demos end to end: the README's CNN learns Fashion-MNIST, a run interrupted and resumed
// from its checkpoint equals a run that never stopped (bit for bit), and a saved CNN loads
// into a fresh one with identical outputs. The models and the training loop are the demos'
// own (examples/models.h, examples/common.h). The teaching programs (batchnorm_graph,
// tape_tour, backprop_by_hand, hessian_power) are run as they are, each in a fresh directory.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "examples/common.h"
#include "examples/models.h"
#include "io/fashion_mnist.h"
#include "optim/sgd.h"
#include "tests/helpers.h"

namespace {

namespace fs = std::filesystem;

// A file name in the temporary directory, removed by the destructor.
struct TempFile {
  explicit TempFile(const std::string& stem)
      : path((fs::temp_directory_path() / (stem + "." + std::to_string(::getpid()))).string()) {}
  ~TempFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
  std::string path;
};

// Bitwise equality of two float32 tensors of the same shape.
bool same_bits(const ng::Tensor& a, const ng::Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  ng::Tensor ca = a.contiguous(), cb = b.contiguous();
  const auto n = static_cast<std::size_t>(ca.numel());
  switch (a.dtype()) {
    case ng::DType::f32: return std::memcmp(ca.data<float>(), cb.data<float>(), n * sizeof(float)) == 0;
    case ng::DType::f64: return std::memcmp(ca.data<double>(), cb.data<double>(), n * sizeof(double)) == 0;
    case ng::DType::i64: return std::memcmp(ca.data<std::int64_t>(), cb.data<std::int64_t>(), n * sizeof(std::int64_t)) == 0;
  }
  return false;
}

// Random "images" and labels: the resume test is about bookkeeping, not about learning.
ng::io::TensorDataset synthetic(std::int64_t n, std::uint64_t seed) {
  ng::Generator gen(seed);
  ng::Tensor x = ng::randn({n, 1, 28, 28}, ng::DType::f32, &gen);
  ng::Tensor y = ng::zeros({n}, ng::DType::i64);
  for (std::int64_t i = 0; i < n; ++i) y.data<std::int64_t>()[i] = gen.randint(0, 10);
  return {x, y};
}

// The CSV minus its last column (wall-clock seconds differ between runs).
std::vector<std::string> csv_without_time(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string l; std::getline(in, l);) lines.push_back(l.substr(0, l.rfind(',')));
  return lines;
}

}  // namespace

TEST_CASE("fmnist_cnn demo: the BatchNorm CNN learns Fashion-MNIST in 200 steps of 32 images") {
  if (!test::fashion_mnist_present()) {
    MESSAGE("Fashion-MNIST not found in " << ng::io::fashion_mnist_dir()
                                          << ": skipped (apt-get install dataset-fashion-mnist, or set NORMGRAD_DATA_DIR)");
    return;
  }
  // The demo's recipe (SGD 0.05, momentum 0.9, cosine over the run) with batch 32, on the
  // first 200 x 32 = 6,400 training images; accuracy on the first 1,000 test images.
  const std::int64_t steps = 200, batch = 32;
  ng::io::TensorDataset train = ng::io::load_fashion_mnist(ng::io::Split::train, {.limit = steps * batch});
  ng::io::TensorDataset test = ng::io::load_fashion_mnist(ng::io::Split::test, {.limit = 1000});
  ng::Generator gen(1);
  auto model = demo::fmnist_cnn(demo::Norm::batch, &gen);
  ng::optim::SGD opt(model->parameters(), {.lr = 0.05, .momentum = 0.9});
  ng::io::DataLoader loader(train, {.batch_size = batch, .shuffle = true, .seed = 1});
  ng::optim::CosineAnnealingLR sched(opt, loader.num_batches());
  demo::FitConfig cfg;
  cfg.quiet = true;
  demo::FitResult r = demo::fit(cfg, *model, opt, &sched, loader, test);

  REQUIRE(r.step_losses.size() == static_cast<std::size_t>(steps));
  auto mean_of = [&](std::size_t from, std::size_t to) {
    return std::accumulate(r.step_losses.begin() + static_cast<std::ptrdiff_t>(from),
                           r.step_losses.begin() + static_cast<std::ptrdiff_t>(to), 0.0) /
           static_cast<double>(to - from);
  };
  const double first = mean_of(0, 10), last = mean_of(steps - 20, steps);
  MESSAGE("loss " << first << " -> " << last << ", test accuracy " << r.epochs.at(0).test_acc << " in " << r.seconds << " s");
  CHECK(first > 1.0);        // about ln 10 = 2.3 at the start
  CHECK(last < 0.6 * first);
  CHECK(r.epochs.at(0).test_acc > 0.75);
  CHECK(demo::evaluate(*model, test) == doctest::Approx(r.epochs.at(0).test_acc));  // eval mode again: the same
}

TEST_CASE("fit: interrupted at step k and resumed equals the uninterrupted run bit for bit") {
  // 96 images, batch 16: 6 steps per epoch, 2 epochs = 12 steps. Stop mid-epoch (k = 4) and
  // exactly at an epoch end (k = 6), then resume into freshly built objects.
  const ng::io::TensorDataset train = synthetic(96, 7), test = synthetic(32, 8);
  struct Run {
    std::shared_ptr<ng::nn::Sequential> model;
    std::unique_ptr<ng::optim::SGD> opt;
    std::unique_ptr<ng::io::DataLoader> loader;
    std::unique_ptr<ng::optim::CosineAnnealingLR> sched;
    explicit Run(const ng::io::TensorDataset& data, std::uint64_t init_seed) {
      ng::Generator gen(init_seed);
      model = demo::fmnist_cnn(demo::Norm::batch, &gen);
      opt = std::make_unique<ng::optim::SGD>(model->parameters(), ng::optim::SGDOptions{.lr = 0.05, .momentum = 0.9});
      loader = std::make_unique<ng::io::DataLoader>(data, ng::io::DataLoaderOptions{.batch_size = 16, .shuffle = true, .seed = 3});
      sched = std::make_unique<ng::optim::CosineAnnealingLR>(*opt, 12);
    }
    demo::FitResult fit(const demo::FitConfig& cfg, const ng::io::TensorDataset& t) {
      return demo::fit(cfg, *model, *opt, sched.get(), *loader, t);
    }
  };
  demo::FitConfig base;
  base.quiet = true;
  base.epochs = 2;
  base.log_every = 2;
  base.eval = {.batch_size = 16};

  TempFile csv_full("normgrad_resume_full.csv");
  demo::FitConfig full_cfg = base;
  full_cfg.csv = csv_full.path;
  Run full(train, 1);
  const demo::FitResult all = full.fit(full_cfg, test);
  REQUIRE(all.step_losses.size() == 12);
  REQUIRE(all.epochs.size() == 2);

  for (std::int64_t k : {4, 6}) {
    CAPTURE(k);
    TempFile ckpt("normgrad_resume.safetensors"), csv("normgrad_resume.csv");
    demo::FitConfig cfg = base;
    cfg.checkpoint = ckpt.path;
    cfg.csv = csv.path;
    cfg.stop_after_step = k;
    Run first(train, 1);
    const demo::FitResult a = first.fit(cfg, test);
    CHECK(a.interrupted);
    CHECK(a.step == k);
    REQUIRE(fs::exists(ckpt.path));

    // Different initial weights: everything must come from the checkpoint.
    cfg.stop_after_step = -1;
    cfg.resume = true;
    Run second(train, 99);
    const demo::FitResult b = second.fit(cfg, test);
    CHECK_FALSE(b.interrupted);
    CHECK(b.step == 12);

    std::vector<double> losses = a.step_losses;
    losses.insert(losses.end(), b.step_losses.begin(), b.step_losses.end());
    REQUIRE(losses.size() == all.step_losses.size());
    for (std::size_t i = 0; i < losses.size(); ++i) {
      CAPTURE(i);
      CHECK(losses[i] == all.step_losses[i]);  // exact
    }
    const auto sd_full = full.model->state_dict(), sd_resumed = second.model->state_dict();
    REQUIRE(sd_full.size() == sd_resumed.size());
    for (std::size_t i = 0; i < sd_full.size(); ++i) {
      CAPTURE(sd_full[i].first);
      CHECK(same_bits(sd_full[i].second, sd_resumed[i].second));
    }
    const auto os_full = full.opt->state_dict(), os_resumed = second.opt->state_dict();
    REQUIRE(os_full.size() == os_resumed.size());
    for (std::size_t i = 0; i < os_full.size(); ++i) {
      CAPTURE(os_full[i].first);
      CHECK(same_bits(os_full[i].second, os_resumed[i].second));
    }
    CHECK(second.sched->last_epoch() == 12);
    CHECK(all.epochs.back().test_acc == b.epochs.back().test_acc);
    // The resumed run's CSV continues the interrupted one's: the same rows as the full run.
    CHECK(csv_without_time(csv.path) == csv_without_time(csv_full.path));
  }
}

TEST_CASE("fmnist_cnn demo: a saved CNN loads into a fresh one with identical outputs") {
  ng::Generator gen(5);
  auto model = demo::fmnist_cnn(demo::Norm::batch, &gen);
  const ng::Tensor x = ng::randn({5, 1, 28, 28}, ng::DType::f32, &gen);
  {  // a few training-mode forwards so the running statistics are not the initial 0 and 1
    ng::NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) (*model)(ng::randn({7, 1, 28, 28}, ng::DType::f32, &gen));
  }
  TempFile file("normgrad_cnn.safetensors");
  ng::io::save_module(file.path, *model);

  ng::Generator other(6);
  auto fresh = demo::fmnist_cnn(demo::Norm::batch, &other);
  ng::io::load_module(file.path, *fresh);
  model->eval();
  fresh->eval();
  ng::NoGradGuard no_grad;
  CHECK(same_bits((*model)(x), (*fresh)(x)));
  const auto a = model->state_dict(), b = fresh->state_dict();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].first);
    CHECK(a[i].first == b[i].first);
    CHECK(same_bits(a[i].second, b[i].second));
  }
  CHECK(fresh->named_buffers().at(2).first == "1.num_batches_tracked");
  CHECK(fresh->named_buffers().at(2).second.item() == 3);
}

#ifdef NORMGRAD_EXAMPLES_BIN_DIR
namespace {

struct ProgramRun {
  int status = -1;
  std::string output;
};
// Runs an example program from the build's bin directory inside `dir`; stdout and stderr.
ProgramRun run_example(const std::string& program, const test::TempDir& dir) {
  const std::string cmd = "cd '" + dir.path.string() + "' && '" NORMGRAD_EXAMPLES_BIN_DIR "/" + program + "' 2>&1";
  ProgramRun r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) r.output.append(buf, n);
  const int raw = ::pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}
bool has_dot() { return std::system("command -v dot >/dev/null 2>&1") == 0; }

}  // namespace

TEST_CASE("batchnorm_graph example: the node-by-node backward agrees with ng::grad and the fused op, and the graph is drawn") {
  const test::TempDir dir("batchnorm_graph");
  const ProgramRun r = run_example("batchnorm_graph", dir);
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("OK: by hand, ng::grad node by node and the fused op agree") != std::string::npos);
  for (const char* node : {"xmu", "sqrtvar", "ivar", "xhat", "gammax"}) CHECK(r.output.find(node) != std::string::npos);
  const std::string dot = test::read_file(dir / "batchnorm_graph.dot");
  CHECK(dot.rfind("digraph tape {", 0) == 0);
  CHECK(dot.find("shape=record") != std::string::npos);  // nodes drawn with value and gradient
  CHECK(dot.find("grad [4, 3]") != std::string::npos);
  if (has_dot()) CHECK(fs::file_size(dir / "batchnorm_graph.svg") > 0);
}

TEST_CASE("tape_tour example: prints the tape and draws it with values and gradients") {
  const test::TempDir dir("tape_tour");
  const ProgramRun r = run_example("tape_tour", dir);
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("The tape after the forward pass") != std::string::npos);
  const std::string dot = test::read_file(dir / "tape_tour.dot");
  CHECK(dot.find("a = tanh(z + b)") != std::string::npos);
  if (has_dot()) CHECK(fs::file_size(dir / "tape_tour.svg") > 0);
}

TEST_CASE("backprop_by_hand example: BatchNorm by hand and LayerNorm with gamma inside the means match the library") {
  const test::TempDir dir("backprop_by_hand");
  const ProgramRun r = run_example("backprop_by_hand", dir);
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("column_backward") != std::string::npos);  // names the path it runs
  CHECK(r.output.find("max |gamma outside - library|") != std::string::npos);
  CHECK(r.output.find("OK: BatchNorm's step-by-step") != std::string::npos);
}

TEST_CASE("hessian_power example: the top eigenvalue with and without BatchNorm, against 2 / lr") {
  const test::TempDir dir("hessian_power");
  const ProgramRun r = run_example("hessian_power", dir);
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("==== with BatchNorm") != std::string::npos);
  CHECK(r.output.find("==== without BatchNorm") != std::string::npos);
  CHECK(r.output.find("2 / lr = 20.0") != std::string::npos);
  CHECK(r.output.find("agree.") != std::string::npos);
}
#endif

TEST_CASE("demos: --threads 0 means the default count, a negative count is refused") {
  const int before = omp_get_max_threads();
  CHECK(demo::set_threads(0) == before);  // OMP_NUM_THREADS or all cores: unchanged
  CHECK(demo::set_threads(1) == 1);
  CHECK_THROWS_WITH_AS(demo::set_threads(-3),
                       doctest::Contains("--threads: expected 0 (OMP_NUM_THREADS or all cores) or a positive count, got -3"),
                       std::invalid_argument);
  CHECK_THROWS_AS(demo::set_threads(std::int64_t{1} << 40), std::invalid_argument);
  CHECK(omp_get_max_threads() == 1);  // a refused count changes nothing
  demo::set_threads(before);
}
