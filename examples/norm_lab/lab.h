// The normalization lab's shared part: what every experiment of examples/norm_lab needs.
//
//   Config          --quick / --seeds / --out / --data-dir / --corpus of the command line
//   Stat, stat      mean and sample standard deviation over seeds
//   Diff, compare   is a difference of two means larger than its noise?
//   Claim, Result   what an experiment reports: its claims with verdicts, its named figures
//   Mlp             a plain multilayer perceptron with a choice of normalization (functional:
//                   the lab needs every parameter, running statistic and activation in hand)
//   train_mlp       SGD on Fashion-MNIST batches, with a per-step hook for diagnostics
//   forward_ranks   data parallelism over ranks emulated in one process (per-rank BatchNorm)
//   accuracy        eval-mode or train-mode accuracy
//   fashion         the Fashion-MNIST subsets, flattened to (N, 784)
//
// A verdict is never typed: each experiment computes it from its measurements with
// compare() (or an exact invariant with a tolerance) and states the figures beside it.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"
#include "autograd/random.h"
#include "autograd/tensor.h"
#include "io/dataset.h"

namespace lab {

struct Config {
  bool quick = false;      // a seconds-long version (the test suite)
  int seeds = 3;           // independent repetitions (initial weights, data order)
  std::string out = ".";   // folder for the CSV and SVG files ("" writes nothing)
  std::string data_dir;    // Fashion-MNIST folder ("" = the default)
  std::string corpus = "/usr/share/games/fortunes";  // text for the language models (Debian's fortunes)
  bool print = true;       // progress and verdicts on stdout
  std::uint64_t seed0 = 1; // first seed; seeds are seed0, seed0 + 1, ...
};

// ---- statistics over seeds ----------------------------------------------------------------
struct Stat {
  double mean = 0, std = 0;  // sample standard deviation (n - 1); 0 for n = 1
  int n = 0;
};
Stat stat(const std::vector<double>& v);
std::string show(const Stat& s, int digits = 3);  // "0.412 +- 0.010"

// Difference a - b of two means over independent seeds, with its standard error
// se = sqrt(sa^2 / na + sb^2 / nb). "real" when |d| > 2 se and |d| > floor: the floor is the
// smallest difference worth calling one (a measured 0 +- 0 is not an effect of 1e-9).
// With fewer than 2 seeds on a side the noise is unknown and nothing is "real".
struct Diff {
  double d = 0, se = 0;
  bool real = false;
  std::string text() const;  // "+0.051 (2 se = 0.012)"
};
Diff compare(const Stat& a, const Stat& b, double floor = 0);

// ---- what an experiment reports ----------------------------------------------------------
enum class Verdict { supported, refuted, noise, pending };
const char* verdict_name(Verdict v);  // "supported", "refuted", "not distinguishable from noise", "pending"

struct Claim {
  std::string id;      // short key: "bn_higher_lr"
  std::string text;    // the claim in the words people use
  std::string source;  // where it (or the counter-evidence) comes from
  Verdict verdict = Verdict::noise;
  std::string because; // the figures behind the verdict, computed
};

struct Result {
  std::string experiment;
  std::vector<Claim> claims;
  std::vector<std::pair<std::string, double>> values;  // every quoted figure, by name
  std::vector<std::string> files;                      // written CSV / SVG
  double seconds = 0;      // wall time
  double cpu_seconds = 0;  // user + system CPU time of the process while it ran (all threads)

  void set(const std::string& key, double v);
  void set(const std::string& key, const Stat& s);  // key_mean and key_std
  double get(const std::string& key) const;         // throws std::out_of_range when missing
  bool has(const std::string& key) const;
  void claim(std::string id, std::string text, std::string source, Verdict v, std::string because);
  const Claim& claim_of(const std::string& id) const;
};

// A verdict from one comparison: "claim says a > b". Supported when a - b > noise, refuted
// when b - a > noise (the opposite holds), noise otherwise.
Verdict verdict_greater(const Diff& a_minus_b);

// ---- data ---------------------------------------------------------------------------------
// The first n_train training and n_test test images, flattened to (N, 784), standardized as
// io/fashion_mnist.h does. Loaded once per process.
struct Data {
  ng::io::TensorDataset train, test;
};
Data fashion(const Config& cfg, std::int64_t n_train, std::int64_t n_test);
// Rows [first, last) of a data set, contiguous.
ng::io::TensorDataset rows(const ng::io::TensorDataset& d, std::int64_t first, std::int64_t last);

// ---- the model ----------------------------------------------------------------------------
enum class Norm { none, bn, ln, gn, rms };
const char* norm_key(Norm n);    // "none", "bn", "ln", "gn", "rms"
const char* norm_title(Norm n);  // "no norm", "BatchNorm", ...

struct MlpSpec {
  std::int64_t in = 784, width = 64, hidden = 8, out = 10;  // `hidden` Linear+norm+act blocks, then Linear(width, out)
  Norm norm = Norm::none;
  bool tanh = false;             // activation: tanh (makemore part 3) or ReLU
  bool norm_after_act = false;   // Linear -> act -> norm instead of Linear -> norm -> act
  double shift = 0;              // > 0: after every norm, y <- y * s + m with s ~ U(1, 1 + shift),
                                 // m ~ U(-shift, shift) per unit, redrawn every training step
                                 // (Santurkar et al. 2018, sec. 2.1: "noisy" BatchNorm)
  std::int64_t groups = 8;       // GroupNorm groups
  double eps = 1e-5;             // of every norm (PyTorch's default)
  ng::DType dtype = ng::DType::f32;
};

// What a forward pass leaves behind for the diagnostics: per hidden block, the Linear
// output (before the norm) and the block output (after the activation).
struct Trace {
  std::vector<ng::Tensor> pre, post;
};

// A plain MLP: x -> [Linear -> norm -> act] x hidden -> Linear. Linear layers are initialized
// as PyTorch's default (U(-1/sqrt(in), 1/sqrt(in)) for weight and bias): what a user gets.
class Mlp {
 public:
  Mlp(const MlpSpec& spec, ng::Generator& gen);
  // training: BatchNorm uses (and updates) batch statistics; otherwise its running ones.
  ng::Tensor forward(const ng::Tensor& x, bool training, Trace* trace = nullptr);
  std::vector<ng::Tensor> parameters() const;
  void reset_running_stats();  // running mean 0, variance 1

  MlpSpec spec;
  std::vector<ng::Tensor> W, b;          // hidden + 1 Linear layers: W (out, in), b (out)
  std::vector<ng::Tensor> gamma, beta;   // per hidden block (undefined with Norm::none; no beta for RMSNorm)
  std::vector<ng::Tensor> running_mean, running_var;  // BatchNorm only
  std::optional<double> momentum = 0.1;  // BatchNorm running-statistics momentum (nullopt: cumulative)
  ng::Tensor num_batches_tracked;
  ng::Generator noise_gen{12345};        // for `shift`
};

struct TrainSpec {
  std::int64_t steps = 500, batch = 64;
  double lr = 0.05, momentum = 0.9, weight_decay = 0;
  std::uint64_t seed = 1;  // data order
  std::int64_t ranks = 1;  // > 1: data parallel over emulated ranks with per-rank BatchNorm (forward_ranks)
};
struct TrainLog {
  std::vector<double> loss;  // per step (NaN after a divergence)
  bool diverged = false;     // loss became non-finite or > 100
};
// SGD (ng::optim::SGD) on cross-entropy. hook(step, mlp) runs after every update (step from 1);
// before_step(step, mlp) before the update of that step with the gradients in place.
TrainLog train_mlp(Mlp& m, const ng::io::TensorDataset& data, const TrainSpec& ts,
                   const std::function<void(std::int64_t)>& after_step = {},
                   const std::function<void(std::int64_t)>& with_grads = {});

// Data parallelism over `ranks` ranks, emulated in one process: the batch (N, ...) is split into
// `ranks` equal shards and each is forwarded on its own in training mode, so BatchNorm normalizes
// each shard with that shard's statistics, as per-rank (unsynchronized) BatchNorm under
// DistributedDataParallel does; the logits are concatenated. The mean loss over the whole batch
// then has exactly DDP's gradient (the average over ranks of each rank's mean-loss gradient,
// shards being equal). Running statistics are updated from shard 0 only (momentum 0 for the
// others): DDP broadcasts rank 0's buffers before every forward, so rank 0's are the ones kept.
// Per-sample norms (LN, GN, RMSNorm) compute the same as one forward of the whole batch.
ng::Tensor forward_ranks(Mlp& m, const ng::Tensor& x, std::int64_t ranks);

// Fraction correct. Eval mode (running statistics), or train mode in batches of `batch`
// (BatchNorm uses each batch's statistics; the running statistics are restored afterwards).
double accuracy(Mlp& m, const ng::io::TensorDataset& d, bool train_mode = false, std::int64_t batch = 500);
// Mean cross-entropy in eval mode.
double eval_loss(Mlp& m, const ng::io::TensorDataset& d);
// Recompute BatchNorm's running statistics as exact averages over the training set
// (batches of `batch` in train mode, cumulative average; "precise BN", Wu & He 2018 sec. 4).
void recompute_bn_stats(Mlp& m, const ng::io::TensorDataset& d, std::int64_t batch);

// ---- small helpers ------------------------------------------------------------------------
double norm2(const ng::Tensor& t);                        // Euclidean norm of all elements
double dot(const ng::Tensor& a, const ng::Tensor& b);     // sum of products
double mean_of(const std::vector<double>& v, std::size_t from, std::size_t to);  // NaN-aware: NaN if any
std::vector<double> log_space(double lo, double hi, int n);
std::string join_path(const std::string& dir, const std::string& file);
// Writes a CSV (header + rows) to cfg.out/name unless cfg.out is empty; records it in r.files.
void write_csv(const Config& cfg, Result& r, const std::string& name, const std::vector<std::string>& header,
               const std::vector<std::vector<std::string>>& rows);
void write_text(const Config& cfg, Result& r, const std::string& name, const std::string& text);
std::string num(double v, int sig = 4);  // "{:.4g}": the text a CSV cell and the docs quote

}  // namespace lab
