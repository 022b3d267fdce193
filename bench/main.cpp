// normgrad's benchmark. Each row runs in normgrad and, when built with -DNORMGRAD_WITH_TORCH=ON,
// the identical work in LibTorch in the same process (same machine state, same OpenBLAS and
// OPENBLAS_CORETYPE), at 1 and 2 threads; it prints median times and normgrad / LibTorch.
//
//   normgrad_bench [--threads 1,2] [--min-time SECONDS] [--peak-steps N] [--markdown FILE]
//                  [--targets bench/targets.tsv] [ROW ...]
// The targets each run is held to are the table bench/targets.tsv.
//
// ROW filters by row name:
//   tiny_ops, matmul, bandwidth          framework overhead, GEMM, STREAM-like memory bandwidth
//   bn2d_fb, ln_fb, gn_fb, rms_fb        normalization forward + backward
//   cnn_step, cnn_eval                   the demo BatchNorm CNN (examples/models.h): one training
//                                        step at batch 64, an eval forward at batch 256
//   lnlstm_step, lstm_step               the demo (LayerNorm-)LSTM classifier: one Adam step
//   attention_fb, gpt_step               causal attention forward + backward; one Adam step of the
//                                        tiny_gpt model (bench/attention_rows.h)
//   cnn_peak_rss                         peak resident memory of a CNN training run (default
//                                        200 steps at batch 64), each framework in a fresh process
// All tensors are float32. Normalization rows also report the achieved fraction of the
// machine's memory bandwidth, measured here with a STREAM-like copy and triad. The model rows
// start LibTorch from normgrad's initial parameters and print a check that both frameworks
// compute the same losses.
#include <malloc.h>
#include <omp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "autograd/ops.h"
#include "autograd/random.h"
#include "autograd/tensor.h"
#include "bench/attention_rows.h"
#include "bench/harness.h"
#include "examples/models.h"
#include "optim/adam.h"
#include "optim/sgd.h"
#ifdef NORMGRAD_WITH_TORCH
#include "bench/torch_attention_rows.h"
#include "bench/torch_rows.h"
namespace torch_rows = bench::torch_rows;
#endif

namespace bench {
void set_threads(int n) {
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}
}  // namespace bench

namespace {

using Work = std::function<void()>;
using Builder = std::function<Work()>;

struct Row {
  std::string name;
  std::string shape;
  Builder ours;
  Builder torch;            // empty: no LibTorch counterpart in this build
  // Several LibTorch forms of the same work (name, builder), instead of `torch`: each is timed in
  // alternation with normgrad, and the row's ratio is the one against the fastest form (the
  // smallest median LibTorch time); the note gives every form's time and ratio.
  std::vector<std::pair<std::string, Builder>> torch_forms;
  std::string torch_note;   // what LibTorch runs, when it is not the same op
  double divide = 1;        // times are reported per `divide` (tiny_ops: per op)
  bool micro = false;       // report in microseconds instead of milliseconds
  double flops = 0;         // > 0: report GFLOP/s
  double bytes = 0;         // > 0: minimum bytes moved; report the fraction of bandwidth
  std::string bytes_rule;   // how `bytes` was counted
  Builder reference;        // matmul: cblas_sgemm called directly
  std::function<void()> check;  // model rows: prints that both frameworks compute the same
  bool speedup = false;     // print the 2-thread vs 1-thread speedup
  bool peak_rss = false;    // not timed: peak resident memory of child processes, in MiB
  bool contention = false;  // timed at the largest thread count only, while a busy process runs
};

struct Result {
  std::string name, shape;
  std::string note{};
  int threads = 0;
  double ours = 0, torch = 0, reference = 0;  // seconds per unit (median)
  const Row* row = nullptr;
  double over_reference = 0;          // matmul: median of per-round ratios normgrad / cblas_sgemm
  double speedup = 0;                 // cnn_step: median over rounds of (1-thread time / t-thread time)
  double ratio = 0;                   // median of per-round ratios (rows timed in alternation), else 0
  double ratio_q1 = 0, ratio_q3 = 0;  // their quartiles
  int rounds = 0;
  double floor_s = 0;                 // the row's physical floor: FLOPs at the sgemm rate or bytes at triad
  std::string floor_kind{};           // which of the two
  double normgrad_over_torch() const { return ratio > 0 ? ratio : ours / torch; }
  std::string ratio_text() const {
    return ratio > 0 ? fmt::format("{:.2f} ({:.2f}-{:.2f})", ratio, ratio_q1, ratio_q3)
                     : fmt::format("{:.2f}", normgrad_over_torch());
  }
};

// ---- normgrad rows ------------------------------------------------------------------------

ng::Generator& gen() {
  static ng::Generator g(1234);
  return g;
}
ng::Tensor leaf(ng::Tensor t) {
  t.requires_grad_();
  return t;
}
ng::Shape shape_of(const std::vector<std::int64_t>& v) { return ng::Shape(v.begin(), v.end()); }

Work ng_tiny_ops(int n) {
  ng::Tensor a = leaf(ng::ones({1})), b = leaf(ng::ones({1}));
  return [a, b, n]() mutable {
    ng::Tensor y = a;
    for (int i = 0; i < n; ++i) y = ng::add(y, b);
    y.backward();
    a.zero_grad();
    b.zero_grad();
  };
}

Work ng_matmul(int n) {
  ng::Tensor a = ng::randn({n, n}, ng::DType::f32, &gen()), b = ng::randn({n, n}, ng::DType::f32, &gen());
  return [a, b]() { ng::Tensor c = ng::matmul(a, b); };
}

Work cblas_matmul(int n) {
  auto a = std::make_shared<std::vector<float>>(static_cast<std::size_t>(n) * n, 0.5f);
  auto b = std::make_shared<std::vector<float>>(static_cast<std::size_t>(n) * n, 0.25f);
  auto c = std::make_shared<std::vector<float>>(static_cast<std::size_t>(n) * n);
  return [a, b, c, n]() {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a->data(), n, b->data(), n, 0.0f,
                c->data(), n);
  };
}

Work ng_batch_norm_fb(const std::vector<std::int64_t>& shape) {
  const std::int64_t C = shape[1];
  ng::Tensor x = leaf(ng::randn(shape_of(shape), ng::DType::f32, &gen()));
  ng::Tensor w = leaf(ng::ones({C})), b = leaf(ng::zeros({C}));
  ng::Tensor rm = ng::zeros({C}), rv = ng::ones({C});
  ng::Tensor dy = ng::randn(shape_of(shape), ng::DType::f32, &gen());
  return [=]() mutable {
    ng::Tensor y = ng::batch_norm(x, rm, rv, w, b, /*training=*/true, 0.1, 1e-5);
    y.backward(dy);
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  };
}

Work ng_layer_norm_fb(std::int64_t rows, std::int64_t d, bool rms) {
  ng::Tensor x = leaf(ng::randn({rows, d}, ng::DType::f32, &gen()));
  ng::Tensor w = leaf(ng::ones({d}));
  ng::Tensor b = rms ? ng::Tensor() : leaf(ng::zeros({d}));
  ng::Tensor dy = ng::randn({rows, d}, ng::DType::f32, &gen());
  return [=]() mutable {
    ng::Tensor y = rms ? ng::rms_norm(x, {d}, w, 1e-5) : ng::layer_norm(x, {d}, w, b, 1e-5);
    y.backward(dy);
    x.zero_grad();
    w.zero_grad();
    if (b.defined()) b.zero_grad();
  };
}

Work ng_group_norm_fb(const std::vector<std::int64_t>& shape, std::int64_t groups) {
  const std::int64_t C = shape[1];
  ng::Tensor x = leaf(ng::randn(shape_of(shape), ng::DType::f32, &gen()));
  ng::Tensor w = leaf(ng::ones({C})), b = leaf(ng::zeros({C}));
  ng::Tensor dy = ng::randn(shape_of(shape), ng::DType::f32, &gen());
  return [=]() mutable {
    ng::Tensor y = ng::group_norm(x, groups, w, b, 1e-5);
    y.backward(dy);
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  };
}

// ---- memory bandwidth (STREAM-like) ---------------------------------------------------------

// Three arrays of 512 MB each (1.5 GB, far beyond any cache), first touched by the threads
// that use them. STREAM's byte counts: copy c = a moves 2 arrays, triad a = b + s c moves 3
// (write-allocate traffic not counted). Returns GB/s (1e9 bytes) from the median of repetitions.
struct Bandwidth {
  double copy = 0, triad = 0;
};
Bandwidth measure_bandwidth(double min_time) {
  const std::size_t n = std::size_t{128} << 20;  // 128 Mi floats = 512 MB
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
  float *pa = a.get(), *pb = b.get(), *pc = c.get();
  const auto N = static_cast<std::int64_t>(n);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < N; ++i) {
    pa[i] = 1.0f;
    pb[i] = 2.0f;
    pc[i] = 0.0f;
  }
  const double bytes = static_cast<double>(n * sizeof(float));
  const bench::Timing copy = bench::measure(
      [&] {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < N; ++i) pc[i] = pa[i];
      },
      1, 5, min_time, 20);
  const bench::Timing triad = bench::measure(
      [&] {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < N; ++i) pa[i] = pb[i] + 3.0f * pc[i];
      },
      1, 5, min_time, 20);
  return {2 * bytes / copy.median_s / 1e9, 3 * bytes / triad.median_s / 1e9};
}

// The sgemm rate of this machine at the current thread count: GFLOP/s of cblas_sgemm on
// 1024 x 1024 x 1024, its fastest repetition (the floor of the rows whose work is GEMM-shaped).
double measure_sgemm_gflops(double min_time) {
  constexpr int n = 1024;
  // the fastest repetition: the rate the hardware reaches (a floor must not be set by a slow moment)
  const bench::Timing t = bench::measure(cblas_matmul(n), 2, 10, 2 * min_time);
  return 2.0 * n * n * n / t.min_s / 1e9;
}

// A process that keeps one core busy for as long as it lives (the contention row): this
// executable run with --busy-child, killed when the object goes out of scope.
class BusyProcess {
 public:
  explicit BusyProcess(const std::string& exe);
  ~BusyProcess();
  BusyProcess(const BusyProcess&) = delete;
  BusyProcess& operator=(const BusyProcess&) = delete;

 private:
  pid_t pid_ = -1;
};

int busy_child() {
  // Spins until killed; gives up by itself after 30 minutes should the parent have died.
  const auto end = std::chrono::steady_clock::now() + std::chrono::minutes(30);
  volatile std::uint64_t sink = 0;
  while (std::chrono::steady_clock::now() < end)
    for (int i = 0; i < 10000000; ++i) sink = sink + 1;
  return 0;
}

std::string fmt_time(double s, bool micro) {
  return micro ? fmt::format("{:.3f} us", s * 1e6) : fmt::format("{:.3f} ms", s * 1e3);
}
std::string fmt_value(const Row& row, double v) {
  return row.peak_rss ? fmt::format("{:.1f} MiB", v) : fmt_time(v, row.micro);
}

// ---- the demo models (examples/models.h) ----------------------------------------------------

// Fixed seeds: the model's initial parameters and the batch are the same in every run.
constexpr std::uint64_t kModelSeed = 7;
constexpr std::uint64_t kDataSeed = 42;
constexpr std::int64_t kCnnBatch = 64, kCnnEvalBatch = 256, kRnnBatch = 64, kRnnHidden = 128;

// One training step (or one eval forward) of a model; returns the loss (eval: the sum of
// the logits), which the checks compare across frameworks.
using Step = std::function<double()>;

struct Batch {
  ng::Tensor x, y;  // images (N, 1, 28, 28) float32 ~ N(0, 1), labels (N) int64 in [0, 10)
};
Batch make_batch(std::int64_t n) {
  ng::Generator g(kDataSeed);
  Batch b;
  b.x = ng::randn({n, 1, 28, 28}, ng::DType::f32, &g);
  b.y = ng::randint({n}, 0, 10, &g);
  return b;
}

// The models own their generator (layers keep a pointer to it, e.g. for dropout masks).
struct Cnn {
  std::shared_ptr<ng::Generator> gen = std::make_shared<ng::Generator>(kModelSeed);
  std::shared_ptr<ng::nn::Sequential> net = demo::fmnist_cnn(demo::Norm::batch, gen.get());
};
struct Rnn {
  Rnn(bool layer_norm)
      : gen(std::make_shared<ng::Generator>(kModelSeed)),
        net(std::make_shared<demo::SequenceClassifier>(layer_norm ? demo::Norm::layer : demo::Norm::none, kRnnHidden,
                                                        gen.get())) {}
  std::shared_ptr<ng::Generator> gen;
  std::shared_ptr<demo::SequenceClassifier> net;
};

// demo::train_step (examples/common.h): zero_grad (gradients to none), forward in training
// mode, cross-entropy (mean), backward, optimizer step.
Step ng_train_step(std::shared_ptr<ng::nn::Module> net, std::shared_ptr<void> keep,
                   std::shared_ptr<ng::optim::Optimizer> opt, Batch b) {
  net->train();
  return [net, keep, opt, b]() {
    opt->zero_grad();
    ng::Tensor loss = ng::cross_entropy(net->forward(b.x), b.y);
    loss.backward();
    opt->step();
    return loss.item();
  };
}

Step ng_cnn_step(std::int64_t batch) {
  Cnn m;
  auto opt = std::make_shared<ng::optim::SGD>(m.net->parameters(), ng::optim::SGDOptions{.lr = 0.05, .momentum = 0.9});
  return ng_train_step(m.net, m.gen, opt, make_batch(batch));
}

Step ng_cnn_eval(std::int64_t batch) {
  Cnn m;
  m.net->eval();
  const Batch b = make_batch(batch);
  return [m, b]() {
    ng::NoGradGuard no_grad;
    return m.net->forward(b.x).sum().item();
  };
}

Step ng_lstm_step(bool layer_norm) {
  Rnn m(layer_norm);
  auto opt = std::make_shared<ng::optim::Adam>(m.net->parameters(), ng::optim::AdamOptions{.lr = 1e-3});
  return ng_train_step(m.net, m.gen, opt, make_batch(kRnnBatch));
}

Work as_work(Step s) {
  return [s = std::move(s)]() { (void)s(); };
}

// Resident memory of this process from /proc/self/status, in KiB: "VmRSS" now, "VmHWM" its peak.
double proc_status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(f, line))
    if (line.rfind(prefix, 0) == 0) return std::atof(line.c_str() + prefix.size());
  return -1;
}

// The child of cnn_peak_rss: `steps` training steps of the CNN at batch `batch` in normgrad
// ("ng") or LibTorch ("torch"); prints "peak_rss_kib <VmRSS before the model> <VmHWM at the end>".
int peak_child(const std::string& framework, int steps, std::int64_t batch, int threads) {
  bench::set_threads(threads);
  const double before = proc_status_kib("VmRSS");
  if (framework == "ng") {
    Step step = ng_cnn_step(batch);
    for (int i = 0; i < steps; ++i) (void)step();
  } else if (framework == "torch") {
#ifdef NORMGRAD_WITH_TORCH
    torch_rows::set_threads(threads);
    torch_rows::cnn_train(steps, batch);
#else
    fmt::print(stderr, "built without LibTorch\n");
    return 1;
#endif
  } else {
    return 1;
  }
  fmt::print("peak_rss_kib {} {}\n", before, proc_status_kib("VmHWM"));
  return 0;
}

struct Peak {
  double before_mib = 0, peak_mib = 0;
  bool ok = false;
};

// Runs `exe --peak-child ...` as a fresh process and reads its report from a pipe.
//
// Why the child reports its own VmHWM instead of the parent using wait4()'s ru_maxrss: at
// exec, Linux folds the high-water mark of the address space being replaced into the child's
// ru_maxrss -- for a fork that is a copy of this (large) process, for posix_spawn (vfork) it is
// this very process's address space -- so ru_maxrss would report at least this process's peak.
// VmHWM belongs to the address space the exec created and counts the child alone.
Peak run_peak_child(const std::string& exe, const std::string& framework, int steps, std::int64_t batch, int threads) {
  Peak r;
  int fd[2];
  if (pipe(fd) != 0) return r;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fd[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fd[0]);
  posix_spawn_file_actions_addclose(&actions, fd[1]);
  const std::string s_steps = std::to_string(steps), s_batch = std::to_string(batch), s_threads = std::to_string(threads);
  std::vector<std::string> args{exe, "--peak-child", framework, s_steps, s_batch, s_threads};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fd[1]);
  std::string out;
  if (rc == 0) {
    char buf[256];
    ssize_t n = 0;
    while ((n = read(fd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  }
  close(fd[0]);
  if (rc != 0) return r;
  int status = 0;
  waitpid(pid, &status, 0);
  double before = 0, peak = 0;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
      std::sscanf(out.c_str(), "peak_rss_kib %lf %lf", &before, &peak) == 2) {
    r = {before / 1024, peak / 1024, true};
  }
  return r;
}

// This executable's path, and the normgrad-only sibling normgrad_bench_ng built next to it
// when LibTorch is on (bench/CMakeLists.txt): the normgrad child must not carry LibTorch's
// libraries and static initializers in its resident memory.
std::string self_exe() {
  std::vector<char> buf(4096);
  const ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  return n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : std::string();
}
std::string normgrad_only_exe() {
  const std::string self = self_exe();
#ifdef NORMGRAD_WITH_TORCH
  const std::string sibling = self.substr(0, self.rfind('/') + 1) + "normgrad_bench_ng";
  if (access(sibling.c_str(), X_OK) == 0) return sibling;
#endif
  return self;
}

BusyProcess::BusyProcess(const std::string& exe) {
  std::string a0 = exe, a1 = "--busy-child";
  char* argv[] = {a0.data(), a1.data(), nullptr};
  if (posix_spawn(&pid_, exe.c_str(), nullptr, nullptr, argv, environ) != 0) pid_ = -1;
}
BusyProcess::~BusyProcess() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
}

#ifdef NORMGRAD_WITH_TORCH
// normgrad's parameters by name (the state_dict keys, which are PyTorch's), for LibTorch.
torch_rows::NamedArrays export_params(const ng::nn::Module& m) {
  torch_rows::NamedArrays out;
  for (const auto& [name, t] : m.named_parameters()) {
    const ng::Tensor c = t.contiguous();
    out.push_back({name, c.shape().vec(), std::vector<float>(c.data<float>(), c.data<float>() + c.numel())});
  }
  return out;
}
torch_rows::Batch export_batch(const Batch& b) {
  const ng::Tensor x = b.x.contiguous(), y = b.y.contiguous();
  return {x.shape().vec(), std::vector<float>(x.data<float>(), x.data<float>() + x.numel()),
          std::vector<std::int64_t>(y.data<std::int64_t>(), y.data<std::int64_t>() + y.numel())};
}

// Runs `steps` calls of each side from the same start and prints the values side by side.
void print_check(const std::string& row, const std::string& what, const Step& ours, const Step& theirs, int steps) {
  std::vector<double> a, b;
  double diff = 0;
  for (int i = 0; i < steps; ++i) {
    a.push_back(ours());
    b.push_back(theirs());
    diff = std::max(diff, std::abs(a.back() - b.back()));
  }
  fmt::print("check: {}: {} normgrad [{:.6f}] LibTorch [{:.6f}]  max |diff| {:.2e}\n", row, what, fmt::join(a, ", "),
             fmt::join(b, ", "), diff);
}

// LibTorch's forms of the CNN rows: the demo CNN in NCHW and in channels_last, one training step
// (eval = false) or one eval forward, from normgrad's initial parameters and batch.
std::vector<std::pair<std::string, Builder>> cnn_torch_forms(bool eval, std::int64_t batch) {
  std::vector<std::pair<std::string, Builder>> forms;
  for (const bool channels_last : {false, true})
    forms.emplace_back(channels_last ? "channels_last" : "NCHW", [eval, batch, channels_last] {
      const auto init = export_params(*Cnn().net);
      const auto data = export_batch(make_batch(batch));
      return as_work(eval ? torch_rows::cnn_eval(init, data, channels_last)
                          : torch_rows::cnn_step(init, data, channels_last));
    });
  return forms;
}
#endif

// Thread settings to run before each burst of a side (bench::measure_pair): normgrad's (OpenMP
// and OpenBLAS) and LibTorch's (its own setting as well).
std::function<void()> ng_threads(int n) {
  return [n] { bench::set_threads(n); };
}
#ifdef NORMGRAD_WITH_TORCH
std::function<void()> torch_threads(int n) {
  return [n] {
    torch_rows::set_threads(n);
    bench::set_threads(n);
  };
}
#endif

}  // namespace

// One line of bench/targets.tsv: what is checked (kind), on which row (and shape prefix), and
// the limit. The table's header explains the kinds.
struct Target {
  std::string kind, row, shape;
  double limit = 0;
  int threads = 0;  // optional fifth field: only at this thread count (0: at every one)
};
std::vector<Target> read_targets(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("normgrad_bench: cannot read the targets table '{}'", path));
  std::vector<Target> out;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    Target t;
    if (!(fields >> t.kind >> t.row >> t.shape >> t.limit) ||
        (t.kind != "ratio" && t.kind != "bandwidth" && t.kind != "reference" && t.kind != "peak_rss" &&
         t.kind != "speedup" && t.kind != "floor"))
      throw std::runtime_error(fmt::format("normgrad_bench: {}:{}: expected 'kind row shape limit [threads]' with kind "
                                           "one of ratio, bandwidth, reference, peak_rss, speedup, floor: got '{}'",
                                           path, line_no, line));
    if (!(fields >> t.threads)) t.threads = 0;
    out.push_back(t);
  }
  return out;
}

int main(int argc, char** argv) {
  // Hidden: the child process of cnn_peak_rss.
  if (argc == 6 && std::strcmp(argv[1], "--peak-child") == 0)
    return peak_child(argv[2], std::atoi(argv[3]), std::atoll(argv[4]), std::atoi(argv[5]));
  // Hidden: the busy process of the contention row.
  if (argc == 2 && std::strcmp(argv[1], "--busy-child") == 0) return busy_child();

  // glibc gives every freed block above its mmap threshold back to the kernel, so a framework
  // that allocates its activations with malloc pays page faults for them on every step, unless
  // an earlier large free has raised the (adaptive) threshold. That made LibTorch's CNN rows
  // bimodal: slow when run alone, fast after the normalization rows. A LibTorch user who cares
  // about speed removes this (PyTorch's CPU tuning guide recommends jemalloc or tcmalloc); here
  // the threshold is fixed at its maximum for the whole process, so LibTorch always runs in its
  // fast mode. normgrad keeps its large buffers in its own pool (autograd/pool.h) either way.
  const bool mallopt_ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 256 << 20) == 1;

  std::vector<int> thread_counts{1, 2};
  double min_time = 0.5;
  int peak_steps = 200;
  std::string markdown, targets_path = NORMGRAD_BENCH_TARGETS;
  std::vector<std::string> only;
  bool normgrad_only = false;
  CLI::App app{"normgrad's benchmark: each row in normgrad and, when built with LibTorch, in LibTorch (float32)"};
  app.add_option("--threads", thread_counts, "thread counts to run, e.g. 1,2")->delimiter(',')->check(CLI::PositiveNumber);
  app.add_option("--min-time", min_time, "seconds of repetitions per row and side")->check(CLI::NonNegativeNumber);
  app.add_option("--peak-steps", peak_steps, "training steps of the cnn_peak_rss row")->check(CLI::PositiveNumber);
  app.add_option("--markdown", markdown, "also write the results as a markdown table to this file");
  app.add_option("--targets", targets_path, "the targets table (bench/targets.tsv)");
  app.add_option("rows", only, "rows to run (default: all): tiny_ops matmul bandwidth bn2d_fb ln_fb gn_fb rms_fb "
                               "cnn_step cnn_eval lnlstm_step lstm_step attention_fb gpt_step cnn_peak_rss");
  app.add_flag("--normgrad-only", normgrad_only, "run normgrad's side only (for profiling it with perf)");
  CLI11_PARSE(app, argc, argv);
  std::vector<Target> target_table;
  try {
    target_table = read_targets(targets_path);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
  }
  auto wanted = [&](const std::string& name) {
    return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
  };

  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  fmt::print("normgrad benchmark (float32; medians of repetitions after warm-up)\n");
  fmt::print("OPENBLAS_CORETYPE={} (OpenBLAS core: {}; config: {})\n", coretype ? coretype : "(unset)",
             openblas_get_corename(), openblas_get_config());
  fmt::print("malloc: mmap threshold 32 MiB, trim threshold 256 MiB ({})\n", mallopt_ok ? "set" : "mallopt FAILED");
#ifdef NORMGRAD_WITH_TORCH
  fmt::print("LibTorch {} in the same process (same OpenMP runtime and environment)\n", torch_rows::version());
#else
  fmt::print("built without LibTorch (-DNORMGRAD_WITH_TORCH=OFF): normgrad columns only\n");
#endif

  // ---- the rows ----
  constexpr int kTinyOps = 1000;
  constexpr int kMatmul = 1024;
  std::vector<Row> rows;
  auto add_row = [&rows](std::string name, std::string shape, Builder ours) -> Row& {
    rows.emplace_back();
    rows.back().name = std::move(name);
    rows.back().shape = std::move(shape);
    rows.back().ours = std::move(ours);
    return rows.back();
  };
  // Per-op cost of the framework: a chain of adds on one-element tensors, forward + backward,
  // divided by the number of adds.
  {
    Row& r = add_row("tiny_ops", fmt::format("{} x add [1]", kTinyOps), [] { return ng_tiny_ops(kTinyOps); });
    r.divide = kTinyOps;
    r.micro = true;
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [] { return torch_rows::tiny_ops(kTinyOps); };
#endif
  }
  {
    Row& r = add_row("matmul", fmt::format("{0}x{0}x{0}", kMatmul), [] { return ng_matmul(kMatmul); });
    r.flops = 2.0 * kMatmul * kMatmul * kMatmul;
    r.reference = [] { return cblas_matmul(kMatmul); };
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [] { return torch_rows::matmul(kMatmul); };
#endif
  }
  // Minimum bytes moved, by the data size S = numel(x) * 4 bytes:
  //  * BatchNorm: a channel's N*H*W values do not stay in cache between passes, so forward
  //    reads x twice (statistics, then normalize) and writes y; backward reads x and dy twice
  //    (the two reductions, then the elementwise pass) and writes dx: 3S + 5S = 8S.
  //  * LayerNorm / GroupNorm / RMSNorm: a row (or group) fits in L1, so each pass over it can
  //    hit cache: forward reads x once and writes y, backward reads x and dy once and writes
  //    dx: 2S + 3S = 5S.
  // weight/bias/statistics are negligible. Rows whose data fit in the last-level cache can
  // exceed 100%.
  const std::string bn_rule = "8S: fwd reads x twice + writes y; bwd reads x, dy twice + writes dx";
  const std::string row_rule = "5S: fwd reads x + writes y; bwd reads x, dy + writes dx";
  auto bytes_of = [](double numel, double passes) { return passes * 4.0 * numel; };
  for (const auto& s : std::vector<std::vector<std::int64_t>>{{64, 64, 14, 14}, {128, 128, 28, 28}}) {
    Row& r = add_row("bn2d_fb", fmt::format("({})", fmt::join(s, ",")), [s] { return ng_batch_norm_fb(s); });
    r.bytes = bytes_of(static_cast<double>(s[0] * s[1] * s[2] * s[3]), 8);
    r.bytes_rule = bn_rule;
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [s] { return torch_rows::batch_norm_fb(s); };
#endif
  }
  for (const auto& [rows_, d] : std::vector<std::pair<std::int64_t, std::int64_t>>{{1792, 512}, {4096, 1024}}) {
    const std::int64_t n = rows_, D = d;
    Row& r = add_row("ln_fb", fmt::format("({},{})", n, D), [n, D] { return ng_layer_norm_fb(n, D, false); });
    r.bytes = bytes_of(static_cast<double>(n * D), 5);
    r.bytes_rule = row_rule;
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [n, D] { return torch_rows::layer_norm_fb(n, D); };
#endif
  }
  {
    const std::vector<std::int64_t> s{64, 64, 14, 14};
    Row& r = add_row("gn_fb", "(64,64,14,14) G=32", [s] { return ng_group_norm_fb(s, 32); });
    r.bytes = bytes_of(64.0 * 64 * 14 * 14, 5);
    r.bytes_rule = row_rule;
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [s] { return torch_rows::group_norm_fb(s, 32); };
#endif
  }
  {
    Row& r = add_row("rms_fb", "(4096,1024)", [] { return ng_layer_norm_fb(4096, 1024, true); });
    r.bytes = bytes_of(4096.0 * 1024, 5);
    r.bytes_rule = row_rule;
#ifdef NORMGRAD_WITH_TORCH
    r.torch = [] { return torch_rows::layer_norm_fb(4096, 1024, /*no_bias=*/true); };
    r.torch_note = "LibTorch 1.13 has no RMSNorm: the LibTorch column is its LayerNorm (weight, no bias)";
#endif
  }

  // The demo models. Multiply-adds per image of the CNN's conv and linear layers (the only
  // GEMM-shaped work; BatchNorm, ReLU, pooling and the loss are not counted):
  //   conv1  32 x 28 x 28 outputs x (1 x 3 x 3)  =   225,792
  //   conv2  64 x 14 x 14 outputs x (32 x 3 x 3) = 3,612,672
  //   fc1    3136 x 128                          =   401,408
  //   fc2    128 x 10                            =     1,280
  //   forward                                    = 4,241,152 MACs
  // A training step adds, for each layer, the weight gradient (as many MACs as its forward)
  // and the input gradient (as many again), except conv1's input gradient (the images need
  // none): 3 x 4,241,152 - 225,792 = 12,497,664 MACs per image. FLOPs = 2 x MACs.
  constexpr double kCnnFwdMacs = 225792.0 + 3612672.0 + 401408.0 + 1280.0;
  constexpr double kCnnStepMacs = 3 * kCnnFwdMacs - 225792.0;
  const std::string flops_rule =
      "CNN FLOPs = 2 x multiply-adds of the conv and linear layers: forward 4,241,152 per image; a training step "
      "3 x forward - conv1's input gradient = 12,497,664 per image";
  {
    Row& r = add_row("cnn_step", fmt::format("batch {}", kCnnBatch), [] { return as_work(ng_cnn_step(kCnnBatch)); });
    r.flops = 2 * kCnnStepMacs * kCnnBatch;
    r.speedup = true;
#ifdef NORMGRAD_WITH_TORCH
    const auto init = [] { return export_params(*Cnn().net); };
    r.torch_forms = cnn_torch_forms(false, kCnnBatch);
    r.check = [init] {
      print_check("cnn_step", "loss of steps 1-3", ng_cnn_step(kCnnBatch),
                  torch_rows::cnn_step(init(), export_batch(make_batch(kCnnBatch))), 3);
    };
#endif
  }
  {
    Row& r = add_row("cnn_eval", fmt::format("batch {}", kCnnEvalBatch),
                     [] { return as_work(ng_cnn_eval(kCnnEvalBatch)); });
    r.flops = 2 * kCnnFwdMacs * kCnnEvalBatch;
#ifdef NORMGRAD_WITH_TORCH
    const auto init = [] { return export_params(*Cnn().net); };
    r.torch_forms = cnn_torch_forms(true, kCnnEvalBatch);
    r.check = [init] {
      print_check("cnn_eval", "sum of the logits", ng_cnn_eval(kCnnEvalBatch),
                  torch_rows::cnn_eval(init(), export_batch(make_batch(kCnnEvalBatch))), 1);
    };
#endif
  }
  {
    // cnn_step again at the largest thread count, while another process keeps one core busy:
    // how gracefully each framework shares the machine (its speed against its own 1-thread time).
    Row& r = add_row("cnn_step_busy", fmt::format("batch {}, 1 busy process", kCnnBatch),
                     [] { return as_work(ng_cnn_step(kCnnBatch)); });
    r.flops = 2 * kCnnStepMacs * kCnnBatch;
    r.contention = true;
#ifdef NORMGRAD_WITH_TORCH
    r.torch_forms = cnn_torch_forms(false, kCnnBatch);
#endif
  }
  // GEMM work of the LSTM rows (the classifier reads the last hidden state): per step the gates
  // take N x 4H x (F + H) multiply-adds, N = 64, F = 28, H = 128, 28 steps: 143,130,624 forward.
  // A training step adds the weight gradients (as many) and the hidden state's input gradient
  // (N x 4H x H per step: 117,440,512; the images need none), plus Linear(128, 10) three times
  // (245,760): 403,947,520 multiply-adds. The LayerNorm-LSTM has the same GEMMs.
  constexpr double kLstmStepMacs = 143130624.0 * 2 + 117440512.0 + 245760.0;
  for (const bool layer_norm : {true, false}) {
    const std::string name = layer_norm ? "lnlstm_step" : "lstm_step";
    [[maybe_unused]] Row& r = add_row(name, fmt::format("({},28,28) H={}", kRnnBatch, kRnnHidden),
                     [layer_norm] { return as_work(ng_lstm_step(layer_norm)); });
    r.flops = 2 * kLstmStepMacs;
#ifdef NORMGRAD_WITH_TORCH
    const auto init = [layer_norm] { return export_params(*Rnn(layer_norm).net); };
    const auto forms = torch_rows::lstm_forms(layer_norm);
    for (std::size_t f = 0; f < forms.size(); ++f)
      r.torch_forms.emplace_back(forms[f], [init, layer_norm, f] {
        return as_work(torch_rows::lstm_step(layer_norm, static_cast<int>(f), kRnnHidden, init(),
                                             export_batch(make_batch(kRnnBatch))));
      });
    r.check = [init, layer_norm, name, forms] {
      for (std::size_t f = 0; f < forms.size(); ++f)
        print_check(name + " (LibTorch: " + forms[f] + ")", "loss of steps 1-3", ng_lstm_step(layer_norm),
                    torch_rows::lstm_step(layer_norm, static_cast<int>(f), kRnnHidden, init(),
                                          export_batch(make_batch(kRnnBatch))),
                    3);
    };
    r.torch_note = fmt::format("LibTorch runs {} forms, each timed in alternation with normgrad: {}; the ratio is the "
                               "one against the fastest (named in the row's notes). ",
                               forms.size(), fmt::join(forms, "; "));
    if (layer_norm)
      r.torch_note += "LibTorch has no LayerNorm-LSTM: its forms are the cell of layers/recurrent.h written out in "
                      "LibTorch ops (linear, layer_norm, sigmoid, tanh, chunk), a loop over the 28 steps";
    else
      r.torch_note += "The loops use the same parameters as torch::nn::LSTM (batch first); all forms end in "
                      "torch::nn::Linear";
#endif
  }
  // Attention and the tiny GPT (bench/attention_rows.h).
  {
    namespace at = bench::attention;
    [[maybe_unused]] Row& a = add_row("attention_fb", fmt::format("({},{},{},{}) causal", at::kBatch, at::kHeads, at::kLen, at::kHeadDim),
                                      [] { return at::ng_attention_fb(); });
    // 4 GEMMs of 2 B H L^2 D FLOPs each in the backward (dV, dP, dQ, dK), 2 in the forward: the
    // dense count, for both sides (normgrad skips the causal blocks above the diagonal).
    a.flops = 6 * 2.0 * at::kBatch * at::kHeads * at::kLen * at::kLen * at::kHeadDim;
    [[maybe_unused]] Row& g = add_row("gpt_step", "post-LN 2x64, batch 32x64", [] { return as_work(at::ng_gpt_step()); });
    // GEMM work per token and layer: q, k, v and out projections 4 d^2, feed-forward 2 d 256,
    // attention scores and their use 2 L d (full L x L, as LibTorch's composite computes it):
    // 57,344 multiply-adds; 2 layers and the head (d x vocab = 6,144): 120,832 per token, times
    // 32 x 64 tokens, forward; a training step 3x (every input needs its gradient).
    g.flops = 2.0 * 3 * 120832.0 * 32 * 64;
#ifdef NORMGRAD_WITH_TORCH
    a.torch = [] { return torch_rows::attention_fb(at::kBatch, at::kHeads, at::kLen, at::kHeadDim); };
    a.torch_note = "LibTorch 1.13 has no fused attention: q * scale, baddbmm adding the -inf causal mask, softmax, bmm "
                   "(as its F::multi_head_attention_forward) and its autograd";
    auto torch_gpt = [] {
      const at::GptConfig c;
      const at::GptInit i = at::gpt_init(c);
      return torch_rows::gpt_step(c.vocab, c.block, c.d_model, c.heads, c.layers, c.batch, c.lr, i.names, i.shapes, i.values,
                                  i.x, i.y);
    };
    g.torch = [torch_gpt] { return as_work(torch_gpt()); };
    g.torch_note = "torch::nn::TransformerEncoderLayer (post-LN, sequence-first) with the same weights";
    g.check = [torch_gpt] { print_check("gpt_step", "loss of steps 1-3", at::ng_gpt_step(), torch_gpt(), 3); };
#endif
  }
  {
    Row& r = add_row("cnn_peak_rss", fmt::format("{} steps, batch {}", peak_steps, kCnnBatch), Builder());
    r.peak_rss = true;
  }

  // ---- run ----
  std::vector<Result> results;
  std::vector<Bandwidth> bandwidth(thread_counts.size());
  std::vector<double> sgemm_gflops(thread_counts.size(), 0.0);
  bool any_bytes = wanted("bandwidth"), any_flops = false;
  for (const Row& r : rows)
    if (wanted(r.name)) any_bytes |= r.bytes > 0, any_flops |= r.flops > 0;
  for (std::size_t k = 0; k < thread_counts.size(); ++k) {
    bench::set_threads(thread_counts[k]);
    if (any_bytes) {
      bandwidth[k] = measure_bandwidth(min_time);
      fmt::print("memory bandwidth, {} thread(s): copy {:.1f} GB/s, triad {:.1f} GB/s (3 x 512 MB arrays)\n",
                 thread_counts[k], bandwidth[k].copy, bandwidth[k].triad);
    }
    if (any_flops) {
      sgemm_gflops[k] = measure_sgemm_gflops(min_time);
      fmt::print("sgemm, {} thread(s): {:.1f} GFLOP/s (cblas_sgemm 1024^3)\n", thread_counts[k], sgemm_gflops[k]);
    }
  }
  std::fflush(stdout);

  if (normgrad_only)
    for (Row& row : rows) row.torch = Builder();
  for (const Row& row : rows) {
    if (!wanted(row.name)) continue;
    if (row.peak_rss) {
      // Peak resident memory of a CNN training run, each framework in a fresh process (so the
      // two do not share a peak and this process's allocations do not count), at the largest
      // thread count given.
      const int t = *std::max_element(thread_counts.begin(), thread_counts.end());
      const Peak ours = run_peak_child(normgrad_only_exe(), "ng", peak_steps, kCnnBatch, t);
      Result r{.name = row.name, .shape = row.shape, .threads = t, .ours = ours.peak_mib, .row = &row};
      r.note = fmt::format("VmHWM of a fresh process; at start: normgrad {:.1f} MiB", ours.before_mib);
      std::string growth = fmt::format("; peak - start: normgrad {:.1f} MiB", ours.peak_mib - ours.before_mib);
#ifdef NORMGRAD_WITH_TORCH
      const Peak theirs = run_peak_child(self_exe(), "torch", peak_steps, kCnnBatch, t);
      if (theirs.ok) {
        r.torch = theirs.peak_mib;
        r.note += fmt::format(", LibTorch {:.1f} MiB", theirs.before_mib);
        growth += fmt::format(", LibTorch {:.1f} MiB", theirs.peak_mib - theirs.before_mib);
      }
#endif
      r.note += growth;
      if (!ours.ok) {
        fmt::print("{}: the child process failed\n", row.name);
        continue;
      }
      fmt::print("{:<12} {:<20} {} thr  normgrad {:>12}", r.name, r.shape, t, fmt_value(row, r.ours));
      if (r.torch > 0) fmt::print("  LibTorch {:>12}  ratio {:5.2f}", fmt_value(row, r.torch), r.ours / r.torch);
      fmt::print("  {}\n", r.note);
      std::fflush(stdout);
      results.push_back(r);
      continue;
    }
    if (row.check) {
      bench::set_threads(thread_counts.front());
#ifdef NORMGRAD_WITH_TORCH
      torch_rows::set_threads(thread_counts.front());
#endif
      row.check();
    }
    Work ours = row.ours();
    Work theirs = row.torch ? row.torch() : Work();
    std::vector<std::pair<std::string, Work>> forms;
#ifdef NORMGRAD_WITH_TORCH
    for (const auto& [form_name, build] : row.torch_forms) forms.emplace_back(form_name, build());
#endif
    Work ref = row.reference ? row.reference() : Work();
    if (!row.torch_note.empty()) fmt::print("note: {}: {}\n", row.name, row.torch_note);
    const int max_threads = *std::max_element(thread_counts.begin(), thread_counts.end());
    for (std::size_t k = 0; k < thread_counts.size(); ++k) {
      const int t = thread_counts[k];
      if (row.contention && t != max_threads) continue;
      std::optional<BusyProcess> busy;
      if (row.contention) busy.emplace(self_exe());
      Result r{.name = row.name, .shape = row.shape, .threads = t, .row = &row};
      bench::set_threads(t);
      std::string forms_note;
      Work fastest = theirs;  // LibTorch's work at this thread count (the fastest form, if several)
#ifdef NORMGRAD_WITH_TORCH
      if (!forms.empty()) {  // each form in alternation with normgrad; the row keeps the fastest form's
        std::string each, fastest_name;
        for (const auto& [form_name, form] : forms) {
          const bench::PairTiming p = bench::measure_pair(ours, ng_threads(t), form, torch_threads(t), 5, 2 * min_time);
          each += fmt::format("{}{} {} ({:.2f})", each.empty() ? "" : "; ", form_name,
                              fmt_time(p.b.median_s / row.divide, row.micro), p.ratio);
          if (fastest_name.empty() || p.b.median_s < r.torch * row.divide) {  // the fastest LibTorch form
            fastest_name = form_name;
            fastest = form;
            r.ours = p.a.median_s / row.divide;
            r.torch = p.b.median_s / row.divide;
            r.ratio = p.ratio;
            r.ratio_q1 = p.ratio_q1;
            r.ratio_q3 = p.ratio_q3;
            r.rounds = p.rounds;
          }
        }
        forms_note = fmt::format("LibTorch forms (time, normgrad / form): {}; ratio against the fastest: {}", each,
                                 fastest_name);
      } else if (theirs) {  // in alternation, see bench::measure_pair
        const bench::PairTiming p = bench::measure_pair(ours, ng_threads(t), theirs, torch_threads(t), 5, 2 * min_time);
        r.ours = p.a.median_s / row.divide;
        r.torch = p.b.median_s / row.divide;
        r.ratio = p.ratio;
        r.ratio_q1 = p.ratio_q1;
        r.ratio_q3 = p.ratio_q3;
        r.rounds = p.rounds;
      } else
#endif
        r.ours = bench::measure(ours, 2, 5, min_time).median_s / row.divide;
      if (ref) {
        // In alternation with normgrad too. normgrad's own products set OpenBLAS to one thread
        // (autograd/blas.h): the direct cblas_sgemm call gets its t threads back before each burst.
        const bench::PairTiming p = bench::measure_pair(ours, ng_threads(t), ref, ng_threads(t), 5, 2 * min_time);
        r.reference = p.b.median_s / row.divide;
        r.over_reference = p.ratio;
      }
      auto add_note = [&r](const std::string& text) { r.note += (r.note.empty() ? "" : "; ") + text; };
      if (row.flops > 0 && sgemm_gflops[k] > 0) r.floor_s = row.flops / (sgemm_gflops[k] * 1e9), r.floor_kind = "FLOPs at sgemm";
      if (row.bytes > 0 && bandwidth[k].triad > 0) r.floor_s = row.bytes / (bandwidth[k].triad * 1e9), r.floor_kind = "bytes at triad";
      if (row.flops > 0) {
        add_note(fmt::format("GFLOP/s: normgrad {:.1f}", row.flops / r.ours / 1e9));
        if (r.torch > 0) r.note += fmt::format(", LibTorch {:.1f}", row.flops / r.torch / 1e9);
        if (r.reference > 0) r.note += fmt::format(", cblas_sgemm {:.1f}", row.flops / r.reference / 1e9);
      }
      if (row.bytes > 0) {
        const double bw = bandwidth[k].triad * 1e9;
        add_note(fmt::format("of triad BW: normgrad {:.0f}%", 100 * row.bytes / r.ours / bw));
        if (r.torch > 0) r.note += fmt::format(", LibTorch {:.0f}%", 100 * row.bytes / r.torch / bw);
      }
      if (row.speedup && t > 1) {
        // 1 thread and t threads timed in alternation as well (the second core of a shared VM
        // is the noisiest part of it): the speedup is the median of the rounds' ratios.
        const bench::PairTiming s1 = bench::measure_pair(ours, ng_threads(1), ours, ng_threads(t), 5, 2 * min_time);
        r.speedup = s1.ratio;  // (1-thread time) / (t-thread time), per round
        if (!r.note.empty()) r.note += "; ";
        r.note += fmt::format("speedup over 1 thread (in alternation): normgrad {:.2f}x ({:.2f}-{:.2f})", r.speedup,
                              s1.ratio_q1, s1.ratio_q3);
#ifdef NORMGRAD_WITH_TORCH
        if (fastest) {
          const bench::PairTiming s2 =
              bench::measure_pair(fastest, torch_threads(1), fastest, torch_threads(t), 5, 2 * min_time);
          r.note += fmt::format(", LibTorch {:.2f}x", s2.ratio);
        }
#endif
        bench::set_threads(t);
      }
      if (row.contention) {
        // each framework's speed here against its own 1-thread cnn_step time of this run
        for (const auto& q : results)
          if (q.name == "cnn_step" && q.threads == 1) {
            add_note(fmt::format("speed kept vs its own 1 thread alone: normgrad {:.2f}x", q.ours / r.ours));
            if (r.torch > 0 && q.torch > 0) r.note += fmt::format(", LibTorch {:.2f}x", q.torch / r.torch);
          }
      }
      if (r.floor_s > 0) {
        const std::string of_floor = fmt::format("{:.0f}%", 100 * r.floor_s / r.ours);
        fmt::print("{} floor ({}): {} -> normgrad at {}{}\n", r.name, r.floor_kind, fmt_time(r.floor_s, row.micro),
                   of_floor, r.torch > 0 ? fmt::format(", LibTorch at {:.0f}%", 100 * r.floor_s / r.torch) : "");
      }
      if (!forms_note.empty()) r.note += (r.note.empty() ? "" : "; ") + forms_note;
      fmt::print("{:<12} {:<20} {} thr  normgrad {:>12}", r.name, r.shape, t, fmt_time(r.ours, row.micro));
      if (r.torch > 0)
        fmt::print("  LibTorch {:>12}  ratio {} over {} rounds", fmt_time(r.torch, row.micro), r.ratio_text(), r.rounds);
      fmt::print("  {}\n", r.note);
      std::fflush(stdout);
      results.push_back(r);
    }
  }

  // ---- issue 7's targets, evaluated on this run ----
  // Ratio targets count as met when the median ratio is at or below the limit; the table says
  // when the upper quartile of the rounds is above it (met in most rounds, not all).
  auto find = [&](const std::string& name, const std::string& shape, int t) -> const Result* {
    for (const auto& r : results)
      if (r.name == name && (shape.empty() || r.shape.rfind(shape, 0) == 0) && r.threads == t) return &r;
    return nullptr;
  };
  std::string targets = "| target | threads | measured | met |\n| --- | ---: | --- | --- |\n";
  auto add_target = [&](const std::string& what, int t, const std::string& measured, bool met, const std::string& detail) {
    targets += fmt::format("| {} | {} | {} | {}{} |\n", what, t, measured, met ? "yes" : "no", detail);
  };
  auto ratio_target = [&](const std::string& name, const std::string& shape, double limit) {
    for (std::size_t k = 0; k < thread_counts.size(); ++k) {
      const int t = thread_counts[k];
      const Result* r = find(name, shape, t);
      if (!r || r->torch <= 0) continue;
      const double v = r->normgrad_over_torch();
      std::string detail = v > limit ? fmt::format(" (by {:.2f})", v - limit)
                           : r->ratio > 0 && r->ratio_q3 > limit ? " (median; the upper quartile is above)"
                                                                 : "";
      // A memory-bound row: what meeting the target would take, in bandwidth.
      if (v > limit && r->row->bytes > 0 && bandwidth[k].triad > 0) {
        const double torch_frac = r->row->bytes / r->torch / (bandwidth[k].triad * 1e9);
        detail = fmt::format(" (by {:.2f}; LibTorch ran at {:.0f}% of triad bandwidth, so {:.2f}x LibTorch needs {:.0f}%)",
                             v - limit, 100 * torch_frac, limit, 100 * torch_frac / limit);
      }
      add_target(fmt::format("{} {}<= {:.2f} x LibTorch", name, shape.empty() ? "" : shape + " ", limit), t,
                 r->ratio_text(), v <= limit, detail);
    }
  };
  // The table (bench/targets.tsv), one target at a time.
  for (const Target& tg : target_table) {
    const std::string shape = tg.shape == "-" ? "" : tg.shape;
    if (tg.kind == "ratio") {
      ratio_target(tg.row, shape, tg.limit);
    } else if (tg.kind == "bandwidth") {
      for (std::size_t k = 0; k < thread_counts.size(); ++k) {
        const Result* r = find(tg.row, shape, thread_counts[k]);
        if (!r || r->row->bytes <= 0 || bandwidth[k].triad <= 0) continue;
        const double frac = r->row->bytes / r->ours / (bandwidth[k].triad * 1e9);
        add_target(fmt::format("{} {} >= {:.0f}% of triad bandwidth", tg.row, shape, 100 * tg.limit), r->threads,
                   fmt::format("{:.0f}%", 100 * frac), frac >= tg.limit, "");
      }
    } else if (tg.kind == "reference") {
      for (const int t : thread_counts)
        if (const Result* r = find(tg.row, shape, t); r && r->reference > 0) {
          const double v = r->over_reference;
          add_target(fmt::format("{} time <= {:.2f} x cblas_sgemm called directly", tg.row, tg.limit), t,
                     fmt::format("{:.2f}", v), v <= tg.limit, "");
        }
    } else if (tg.kind == "peak_rss") {
      for (const int t : thread_counts)
        if (const Result* r = find(tg.row, shape, t); r && r->torch > 0)
          add_target(fmt::format("{} <= {:.2f} x LibTorch's", tg.row, tg.limit), t,
                     fmt::format("{:.1f} vs {:.1f} MiB", r->ours, r->torch), r->ours <= tg.limit * r->torch, "");
    } else if (tg.kind == "floor") {
      for (const int t : thread_counts)
        if (const Result* r = find(tg.row, shape, t); r && r->floor_s > 0 && (tg.threads == 0 || tg.threads == t)) {
          const double frac = r->floor_s / r->ours;
          add_target(fmt::format("{} >= {:.0f}% of its floor ({})", tg.row, 100 * tg.limit, r->floor_kind), t,
                     fmt::format("{:.0f}%", 100 * frac), frac >= tg.limit, "");
        }
    } else if (tg.kind == "speedup") {
      if (const Result* two = find(tg.row, shape, 2); two && two->speedup > 0) {
        const double v = two->speedup;
        add_target(fmt::format("{}: 2 threads >= {:.1f}x faster than 1", tg.row, tg.limit), 2, fmt::format("{:.2f}x", v),
                   v >= tg.limit, v < tg.limit ? fmt::format(" (by {:.2f}x)", tg.limit - v) : "");
      }
    }
  }
  fmt::print("\ntargets (issue 7) on this run:\n{}", targets);

  // ---- markdown table (scripts/bench.sh puts it into docs/benchmarks.md) ----
  if (!markdown.empty()) {
    std::string md;
    md += "| row | shape | threads | normgrad | LibTorch | normgrad / LibTorch | floor: normgrad, LibTorch at | notes |\n";
    md += "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |\n";
    for (const auto& r : results) {
      const bool micro = r.row->micro;
      const std::string unit = micro ? " per op" : "";
      std::string floor = "-";
      if (r.floor_s > 0)
        floor = fmt::format("{} ({}): {:.0f}%{}", fmt_time(r.floor_s, micro), r.floor_kind, 100 * r.floor_s / r.ours,
                            r.torch > 0 ? fmt::format(", {:.0f}%", 100 * r.floor_s / r.torch) : "");
      md += fmt::format("| {} | {} | {} | {}{} | {} | {} | {} | {} |\n", r.name, r.shape, r.threads,
                        fmt_value(*r.row, r.ours), unit, r.torch > 0 ? fmt_value(*r.row, r.torch) : "-",
                        r.torch > 0 ? r.ratio_text() : "-", floor, r.note);
    }
    md += "\n";
    for (std::size_t k = 0; k < thread_counts.size(); ++k)
      if (sgemm_gflops[k] > 0)
        md += fmt::format("- sgemm, {} thread(s): {:.1f} GFLOP/s (cblas_sgemm on 1024 x 1024 x 1024, measured at the start).\n",
                          thread_counts[k], sgemm_gflops[k]);
    for (std::size_t k = 0; k < thread_counts.size(); ++k)
      if (bandwidth[k].triad > 0)
        md += fmt::format("- Memory bandwidth, {} thread(s): copy {:.1f} GB/s, triad {:.1f} GB/s (STREAM-like, 3 x 512 MB arrays).\n",
                          thread_counts[k], bandwidth[k].copy, bandwidth[k].triad);
    md += fmt::format("- Minimum bytes per normalization row (S = numel(x) * 4 bytes): BatchNorm {}; LayerNorm, GroupNorm, RMSNorm {}.\n",
                      bn_rule, row_rule);
    if (wanted("cnn_step") || wanted("cnn_eval")) md += fmt::format("- {}.\n", flops_rule);
    if (wanted("cnn_step") && thread_counts.size() > 1)
      md += "- cnn_step: the speedup over 1 thread is the median over rounds of (1-thread time / 2-thread time), "
            "the two timed in alternation like the two frameworks (target for normgrad: >= 1.7x at 2 threads).\n";
    if (wanted("cnn_peak_rss"))
      md += "- cnn_peak_rss: peak resident memory (VmHWM) of a fresh process that trains the CNN, one per framework "
            "(normgrad's is a build of this benchmark without LibTorch, so LibTorch's libraries are not in it); "
            "`at start` is the process's VmRSS before the model is built (libraries, runtime).\n";
    for (const auto& r : rows)
      if (!r.torch_note.empty() && wanted(r.name)) md += fmt::format("- {}: {}.\n", r.name, r.torch_note);
    md += "\n## Targets (issue 7) on this run\n\n";
    md += "A ratio target counts as met when the median of the rounds' ratios is at or below it.\n\n" + targets;
    std::FILE* f = std::fopen(markdown.c_str(), "w");
    if (!f) {
      fmt::print(stderr, "cannot write {}\n", markdown);
      return 1;
    }
    std::fputs(md.c_str(), f);
    std::fclose(f);
  }
  return 0;
}
