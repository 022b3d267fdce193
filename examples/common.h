// What the demos share (header-only, so a test can include it too):
//   Args               --flag value / --flag=value / --switch command lines
//   set_threads        the OpenMP thread count
//   stop_requested     a flag set by Ctrl-C (SIGINT): finish the step, checkpoint, exit
//   Stopwatch, hms     wall-clock time
//   ProgressBar        a per-epoch bar on stderr (\r-updated on a terminal, plain lines otherwise)
//   CsvLog             the curves as CSV, appended to on resume
//   train_step         forward, cross-entropy, backward, optimizer step
//   evaluate           accuracy of a classifier on a data set (eval mode, no tape)
//   save_training / load_training
//                      a whole training run in one safetensors file: model, optimizer,
//                      LR schedule, data-loader position and the caller's metadata
//   svg_line_plot      a minimal SVG line chart
#pragma once
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>

#include "autograd/ops.h"
#include "io/data_loader.h"
#include "io/fashion_mnist.h"
#include "io/safetensors.h"
#include "layers/module.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace demo {

// ---- command line -------------------------------------------------------------------------
// Options are declared with a default and a help line; parse() accepts "--name value",
// "--name=value" and, for switches, "--name". Unknown options and missing values throw
// std::invalid_argument with the usage text. given(name) says whether the user set it.
class Args {
 public:
  Args(std::string program, std::string description) : program_(std::move(program)), description_(std::move(description)) {}

  Args& option(const std::string& name, const std::string& default_value, const std::string& help) {
    specs_.push_back({name, default_value, help, false});
    values_[name] = default_value;
    return *this;
  }
  Args& flag(const std::string& name, const std::string& help) {
    specs_.push_back({name, "", help, true});
    values_[name] = "0";
    return *this;
  }

  // Returns false if --help was asked for (the usage has been printed).
  bool parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "-h" || a == "--help") {
        fmt::print("{}", usage());
        return false;
      }
      if (a.rfind("--", 0) != 0) throw std::invalid_argument(fmt::format("unexpected argument '{}'\n{}", a, usage()));
      std::string name = a.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      const Spec* s = find(name);
      if (!s) throw std::invalid_argument(fmt::format("unknown option '--{}'\n{}", name, usage()));
      if (s->is_flag) {
        value = has_value ? value : "1";
      } else if (!has_value) {
        if (i + 1 >= argc) throw std::invalid_argument(fmt::format("option '--{}' needs a value\n{}", name, usage()));
        value = argv[++i];
      }
      values_[name] = value;
      given_.insert(name);
    }
    return true;
  }

  std::string str(const std::string& name) const { return values_.at(name); }
  void set(const std::string& name, const std::string& value) { values_.at(name) = value; }
  bool on(const std::string& name) const { return values_.at(name) == "1" || values_.at(name) == "true"; }
  bool given(const std::string& name) const { return given_.count(name) != 0; }
  std::int64_t integer(const std::string& name) const {
    const std::string& v = values_.at(name);
    std::size_t used = 0;
    std::int64_t x = 0;
    try {
      x = std::stoll(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != v.size() || v.empty()) throw std::invalid_argument(fmt::format("--{}: expected an integer, got '{}'", name, v));
    return x;
  }
  double real(const std::string& name) const {
    const std::string& v = values_.at(name);
    std::size_t used = 0;
    double x = 0;
    try {
      x = std::stod(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != v.size() || v.empty()) throw std::invalid_argument(fmt::format("--{}: expected a number, got '{}'", name, v));
    return x;
  }

  std::string usage() const {
    std::string u = fmt::format("usage: {} [options]\n{}\n\noptions:\n", program_, description_);
    for (const Spec& s : specs_) {
      std::string left = s.is_flag ? "--" + s.name : fmt::format("--{} {}", s.name, s.default_value.empty() ? "X" : s.default_value);
      u += fmt::format("  {:<26} {}\n", left, s.help);
    }
    return u;
  }

 private:
  struct Spec {
    std::string name, default_value, help;
    bool is_flag;
  };
  const Spec* find(const std::string& name) const {
    for (const Spec& s : specs_)
      if (s.name == name) return &s;
    return nullptr;
  }
  std::string program_, description_;
  std::vector<Spec> specs_;
  std::map<std::string, std::string> values_;
  std::set<std::string> given_;
};

// ---- threads ------------------------------------------------------------------------------
// --threads N: N > 0 threads; 0 keeps the defaults (OMP_NUM_THREADS, else every core), as the
// flag's help says; a negative N is refused (std::invalid_argument). Returns the count in use.
// OpenMP's count is the only one: normgrad runs BLAS single-threaded inside its own OpenMP
// threads (autograd/blas.h).
inline int set_threads(std::int64_t n) {
  if (n < 0 || n > std::numeric_limits<int>::max())
    throw std::invalid_argument(
        fmt::format("--threads: expected 0 (OMP_NUM_THREADS or all cores) or a positive count, got {}", n));
  if (n > 0) omp_set_num_threads(static_cast<int>(n));
  return omp_get_max_threads();
}

// ---- Ctrl-C -------------------------------------------------------------------------------
// The first SIGINT only sets the flag (the training loop finishes its step, saves a checkpoint
// and exits); a second one ends the program at once (the default action is restored).
inline std::atomic<bool>& stop_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}
inline bool stop_requested() { return stop_flag().load(std::memory_order_relaxed); }
extern "C" inline void demo_on_sigint(int) {
  stop_flag().store(true, std::memory_order_relaxed);
  std::signal(SIGINT, SIG_DFL);
}
inline void install_sigint_handler() {
  static_assert(std::atomic<bool>::is_always_lock_free, "a signal handler may only touch lock-free atomics");
  std::signal(SIGINT, demo_on_sigint);
}

// ---- time ---------------------------------------------------------------------------------
class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
  void reset() { start_ = std::chrono::steady_clock::now(); }

 private:
  std::chrono::steady_clock::time_point start_;
};

// 75.3 -> "1:15", 3725 -> "1:02:05"
inline std::string hms(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto s = static_cast<std::int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

// ---- progress bar -------------------------------------------------------------------------
// One bar per epoch on stderr:
//   epoch 2/3 [==========>               ] 401/938  loss 0.3121  1850 img/s  ETA 0:17
// On a terminal the line is redrawn in place (\r) at most 10 times a second; when stderr is
// not a terminal (a log file, CI) a plain line is written every 10% of the epoch instead.
class ProgressBar {
 public:
  ProgressBar(std::string label, std::int64_t total, std::int64_t first = 0)
      : label_(std::move(label)), total_(total), first_(first), tty_(isatty(fileno(stderr)) != 0) {}

  // `done` steps of `total` finished; `loss` the running mean; `images` seen since this bar began.
  void update(std::int64_t done, double loss, std::int64_t images) {
    const double t = clock_.seconds();
    const double rate = t > 0 ? static_cast<double>(images) / t : 0.0;
    const double steps_per_s = t > 0 ? static_cast<double>(done - first_) / t : 0.0;
    const double eta = steps_per_s > 0 ? static_cast<double>(total_ - done) / steps_per_s : -1;
    if (tty_) {
      if (done < total_ && t - last_draw_ < 0.1) return;
      last_draw_ = t;
      const int width = 28;
      const auto filled = static_cast<int>(static_cast<double>(width) * static_cast<double>(done) / static_cast<double>(std::max<std::int64_t>(total_, 1)));
      std::string bar(static_cast<std::size_t>(filled), '=');
      if (filled < width) bar += '>';
      bar.resize(static_cast<std::size_t>(width), ' ');
      fmt::print(stderr, "\r{} [{}] {}/{}  loss {:.4f}  {:.0f} img/s  ETA {}   ", label_, bar, done, total_, loss, rate, hms(eta));
      std::fflush(stderr);
    } else {
      const std::int64_t tenth = std::max<std::int64_t>(total_ / 10, 1);
      if (done % tenth != 0 && done != total_) return;
      fmt::print(stderr, "{} {}/{}  loss {:.4f}  {:.0f} img/s  ETA {}\n", label_, done, total_, loss, rate, hms(eta));
    }
  }
  // Ends the line (terminal) so that the next output starts on a fresh one.
  void finish() {
    if (tty_) fmt::print(stderr, "\n");
  }
  double seconds() const { return clock_.seconds(); }

 private:
  std::string label_;
  std::int64_t total_, first_;
  bool tty_;
  Stopwatch clock_;
  double last_draw_ = -1.0;
};

// ---- CSV ----------------------------------------------------------------------------------
// A CSV file with a header line. With `resume_after_step` >= 0 (a resumed run) the existing
// file is kept up to and including the rows whose "step" column is <= that step, so rows a
// crashed run wrote after its last checkpoint are not duplicated; otherwise the file starts anew.
class CsvLog {
 public:
  CsvLog() = default;
  CsvLog(const std::string& path, const std::vector<std::string>& columns, std::int64_t resume_after_step = -1) {
    if (path.empty()) return;
    std::string header;
    for (std::size_t i = 0; i < columns.size(); ++i) header += (i ? "," : "") + columns[i];
    std::vector<std::string> kept;
    if (resume_after_step >= 0) {
      std::size_t step_col = columns.size();
      for (std::size_t i = 0; i < columns.size(); ++i)
        if (columns[i] == "step") step_col = i;
      std::ifstream in(path);
      std::string line;
      if (in && std::getline(in, line) && line == header && step_col < columns.size()) {
        while (std::getline(in, line)) {
          std::stringstream ss(line);
          std::string cell;
          for (std::size_t i = 0; i <= step_col && std::getline(ss, cell, ','); ++i) {
          }
          try {
            if (std::stoll(cell) <= resume_after_step) kept.push_back(line);
          } catch (const std::exception&) {
          }
        }
      }
    }
    out_.open(path, std::ios::trunc);
    if (!out_) throw std::runtime_error("cannot write " + path);
    out_ << header << '\n';
    for (const auto& l : kept) out_ << l << '\n';
    out_.flush();
  }
  bool enabled() const { return out_.is_open(); }
  void row(const std::vector<std::string>& cells) {
    if (!out_.is_open()) return;
    for (std::size_t i = 0; i < cells.size(); ++i) out_ << (i ? "," : "") << cells[i];
    out_ << '\n';
    out_.flush();
  }

 private:
  std::ofstream out_;
};

// ---- training and evaluation --------------------------------------------------------------
// One optimization step on a batch: logits = model(x), loss = cross_entropy(logits, y)
// (mean over the batch), gradients by the tape, one optimizer update. Returns the loss.
inline double train_step(ng::nn::Module& model, ng::optim::Optimizer& opt, const ng::Tensor& x, const ng::Tensor& y) {
  opt.zero_grad();
  ng::Tensor loss = ng::cross_entropy(model(x), y);
  loss.backward();
  opt.step();
  return loss.item();
}

struct EvalOptions {
  std::int64_t batch_size = 100;  // (1000 was 2x slower: the im2col buffers of a big batch)
  std::int64_t limit = -1;     // the first `limit` samples only (-1: all)
  bool train_mode = false;     // true: forward in training mode (BatchNorm uses the statistics
                               // of each evaluation batch); buffers are restored afterwards
};

// Fraction of correctly classified samples: argmax over the logits == target. Runs without the
// tape; restores the model's mode (and, with train_mode, its buffers: running statistics).
inline double evaluate(ng::nn::Module& model, const ng::io::TensorDataset& data, EvalOptions opt = {}) {
  const bool was_training = model.is_training();
  ng::NoGradGuard no_grad;
  std::vector<ng::Tensor> saved;
  if (opt.train_mode)
    for (const ng::Tensor& b : model.buffers()) saved.push_back(b.clone());
  model.train(opt.train_mode);
  const std::int64_t n = opt.limit >= 0 ? std::min(opt.limit, data.size()) : data.size();
  std::int64_t correct = 0;
  for (std::int64_t first = 0; first < n; first += opt.batch_size) {
    const std::int64_t last = std::min(n, first + opt.batch_size);
    ng::Tensor x = ng::slice(data.inputs, 0, first, last).contiguous();
    ng::Tensor pred = ng::argmax(model(x), 1);
    const std::int64_t* p = pred.data<std::int64_t>();
    ng::Tensor y = ng::slice(data.targets, 0, first, last).contiguous();
    const std::int64_t* t = y.data<std::int64_t>();
    for (std::int64_t i = 0; i < last - first; ++i) correct += p[i] == t[i];
  }
  if (opt.train_mode) {
    std::vector<ng::Tensor> bufs = model.buffers();
    for (std::size_t i = 0; i < bufs.size(); ++i) bufs[i].copy_(saved[i]);
  }
  model.train(was_training);
  return n > 0 ? static_cast<double>(correct) / static_cast<double>(n) : 0.0;
}

// ---- training checkpoints -----------------------------------------------------------------
// One safetensors file (io/safetensors.h) holds everything a run needs to continue exactly:
//   model tensors              parameters and buffers, PyTorch's state_dict names
//   "optimizer.<key>"          the optimizer's state_dict (momentum buffers, Adam moments, ...)
//   "optimizer.lr_scheduler.<key>"
//                              the schedule's state_dict (last_epoch, base_lrs, last_lr)
//   metadata "data_loader"     the loader's position and shuffling state (DataLoaderState)
//   metadata (caller's)        epoch, step, settings, running sums, ...
inline constexpr const char* kSchedulePrefix = "lr_scheduler.";

inline void save_training(const std::string& path, const ng::nn::Module& model, const ng::optim::Optimizer& opt,
                          const ng::optim::LRScheduler* sched, const ng::io::DataLoader& loader,
                          ng::io::Metadata metadata) {
  ng::io::NamedTensors opt_state = opt.state_dict();
  if (sched)
    for (auto& [k, v] : sched->state_dict()) opt_state.emplace_back(kSchedulePrefix + k, v);
  metadata["data_loader"] = loader.state().to_json();
  ng::io::save_checkpoint(path, model, opt_state, metadata);
}

// Loads a file written by save_training into objects built with the same settings; returns
// the metadata. The model is loaded with load_module's strict checks.
inline ng::io::Metadata load_training(const std::string& path, ng::nn::Module& model, ng::optim::Optimizer& opt,
                                      ng::optim::LRScheduler* sched, ng::io::DataLoader& loader) {
  ng::io::Checkpoint ck = ng::io::load_checkpoint(path, model);
  ng::io::NamedTensors opt_state, sched_state;
  const std::string prefix = kSchedulePrefix;
  for (auto& [k, v] : ck.optimizer) {
    if (k.rfind(prefix, 0) == 0)
      sched_state.emplace_back(k.substr(prefix.size()), v);
    else
      opt_state.emplace_back(k, v);
  }
  opt.load_state_dict(opt_state);
  if (sched) sched->load_state_dict(sched_state);
  auto it = ck.metadata.find("data_loader");
  if (it == ck.metadata.end()) throw std::runtime_error(path + ": not a training checkpoint (no data_loader state)");
  loader.set_state(ng::io::DataLoaderState::from_json(it->second));
  return ck.metadata;
}

// ---- the training loop of the demos ------------------------------------------------------
// fit() trains a classifier for whole epochs with everything the demos promise: a progress
// bar, per-epoch test accuracy, a CSV of the curves, checkpoints at each epoch end, exact
// resumption, and a clean stop on Ctrl-C.
//
// Resuming is exact: the checkpoint holds the model, the optimizer's state, the schedule, the
// data loader's position and shuffling state, the step count and the running loss of the
// epoch in progress, so a run interrupted at step k and resumed computes the same numbers,
// bit for bit, as a run that never stopped (tests/test_demo_smoke.cpp checks this).
//
// CSV columns: epoch, step, train_loss, test_acc, lr, seconds. Every `log_every` steps a row
// with the mean loss of those steps, a fractional epoch and no test_acc; at each epoch end a
// row with the epoch's mean loss and the test accuracy. seconds is wall-clock time since the
// run began (continued across resumes).
struct FitConfig {
  std::string program = "demo";     // for messages: how to resume
  std::int64_t epochs = 1;
  std::string checkpoint;           // saved at each epoch end (and on interrupt) when not empty
  std::string interrupt_checkpoint; // where to save on interrupt when `checkpoint` is empty
  bool resume = false;              // load `checkpoint` first and continue from it
  std::string csv;                  // "" = no CSV
  std::int64_t log_every = 100;     // CSV rows within an epoch (0 = epoch rows only)
  std::int64_t stop_after_step = -1;  // stop as if interrupted once the global step reaches this
  bool quiet = false;               // no output at all (tests)
  ng::io::Metadata settings;        // the run's settings, stored in every checkpoint
  EvalOptions eval;                 // how the test accuracy is measured
};

struct EpochStats {
  std::int64_t epoch = 0;  // 1-based
  double train_loss = 0, test_acc = 0, train_seconds = 0, eval_seconds = 0;
  std::int64_t images = 0;  // trained in this session (a resumed epoch counts its remainder)
};

struct FitResult {
  std::vector<double> step_losses;  // every step of this session, in order
  std::vector<EpochStats> epochs;   // epochs that ended in this session
  std::int64_t step = 0;            // global step count at the end
  bool interrupted = false;         // stopped early (Ctrl-C or stop_after_step); checkpoint saved
  std::string saved_to;             // the last checkpoint written
  double seconds = 0;               // total wall-clock time of the run (across resumes)
};

inline std::string exact(double v) { return fmt::format("{:.17g}", v); }

inline FitResult fit(const FitConfig& cfg, ng::nn::Module& model, ng::optim::Optimizer& opt,
                     ng::optim::LRScheduler* sched, ng::io::DataLoader& loader, const ng::io::TensorDataset& test) {
  FitResult res;
  const std::int64_t nb = loader.num_batches();
  double seconds_before = 0, loss_sum = 0;
  std::int64_t loss_count = 0;
  if (cfg.resume) {
    if (cfg.checkpoint.empty()) throw std::invalid_argument("--resume needs --checkpoint PATH");
    ng::io::Metadata m = load_training(cfg.checkpoint, model, opt, sched, loader);
    res.step = std::stoll(m.at("step"));
    seconds_before = std::stod(m.at("seconds"));
    loss_sum = std::stod(m.at("loss_sum"));
    loss_count = std::stoll(m.at("loss_count"));
    if (!cfg.quiet)
      fmt::print("resumed from {}: step {}, epoch {}, batch {}/{}\n", cfg.checkpoint, res.step,
                 loader.epoch() + 1, loader.batch_index(), nb);
  }
  CsvLog csv(cfg.csv, {"epoch", "step", "train_loss", "test_acc", "lr", "seconds"}, cfg.resume ? res.step : -1);
  Stopwatch clock;
  auto elapsed = [&] { return seconds_before + clock.seconds(); };
  auto lr = [&] { return opt.param_groups().at(0).lr(); };
  auto save = [&](const std::string& path, std::int64_t epoch_of_loader) {
    ng::io::Metadata m = cfg.settings;
    m["program"] = cfg.program;
    m["step"] = std::to_string(res.step);
    m["epoch"] = std::to_string(epoch_of_loader);
    m["loss_sum"] = exact(loss_sum);
    m["loss_count"] = std::to_string(loss_count);
    m["seconds"] = exact(elapsed());
    save_training(path, model, opt, sched, loader, m);
    res.saved_to = path;
  };
  auto stop_here = [&](const std::string& where) {
    res.interrupted = true;
    const std::string path = cfg.checkpoint.empty() ? cfg.interrupt_checkpoint : cfg.checkpoint;
    save(path, loader.epoch());
    if (!cfg.quiet)
      fmt::print("\nstopped {} (step {}). Checkpoint saved to {}.\nResume with:  {} --checkpoint {} --resume{}\n", where,
                 res.step, path, cfg.program, path, cfg.csv.empty() ? "" : " --csv " + cfg.csv);
  };

  while (true) {
    // The loader's cursor says where we are: a finished epoch means the next one is due.
    const bool finished = loader.batch_index() >= nb;
    const std::int64_t epoch = finished ? loader.epoch() + 1 : loader.epoch();  // 0-based
    if (epoch >= cfg.epochs) break;
    if (finished) loss_sum = 0, loss_count = 0;
    const std::int64_t first_batch = finished ? 0 : loader.batch_index();
    std::fflush(stdout);  // what was printed so far comes before the progress bar (stderr)
    ProgressBar bar(fmt::format("epoch {}/{}", epoch + 1, cfg.epochs), nb, first_batch);
    Stopwatch train_clock;
    std::int64_t images = 0, interval_n = 0;
    double interval_sum = 0;
    bool stop = false;
    for (const ng::io::Batch& b : loader) {
      const double l = train_step(model, opt, b.inputs, b.targets);
      if (sched) sched->step();
      ++res.step;
      res.step_losses.push_back(l);
      loss_sum += l, ++loss_count, interval_sum += l, ++interval_n;
      images += b.inputs.size(0);
      if (!cfg.quiet) bar.update(loader.batch_index(), loss_sum / static_cast<double>(loss_count), images);
      if (cfg.log_every > 0 && res.step % cfg.log_every == 0) {
        const double e = static_cast<double>(epoch) + static_cast<double>(loader.batch_index()) / static_cast<double>(nb);
        csv.row({fmt::format("{:.4f}", e), std::to_string(res.step), fmt::format("{:.6f}", interval_sum / static_cast<double>(interval_n)),
                 "", fmt::format("{:.6g}", lr()), fmt::format("{:.2f}", elapsed())});
        interval_sum = 0, interval_n = 0;
      }
      if (stop_requested() || res.step == cfg.stop_after_step) {
        stop = true;
        break;
      }
    }
    if (!cfg.quiet) bar.finish();
    const double train_seconds = train_clock.seconds();
    if (stop && loader.batch_index() < nb) {
      stop_here(fmt::format("in epoch {} at batch {}/{}", epoch + 1, loader.batch_index(), nb));
      break;
    }
    // End of the epoch: test accuracy in eval mode, a log line, a CSV row, a checkpoint.
    Stopwatch eval_clock;
    EpochStats st;
    st.epoch = epoch + 1;
    st.train_loss = loss_sum / static_cast<double>(std::max<std::int64_t>(loss_count, 1));
    st.test_acc = evaluate(model, test, cfg.eval);
    st.train_seconds = train_seconds;
    st.eval_seconds = eval_clock.seconds();
    st.images = images;
    res.epochs.push_back(st);
    if (!cfg.quiet)
      fmt::print("epoch {}/{}  train loss {:.4f}  test acc {:.4f}  lr {:.4g}  time {:.1f} s (train {:.1f} s, {:.0f} img/s; test {:.1f} s)\n",
                 st.epoch, cfg.epochs, st.train_loss, st.test_acc, lr(), st.train_seconds + st.eval_seconds,
                 st.train_seconds, static_cast<double>(images) / std::max(st.train_seconds, 1e-9), st.eval_seconds);
    std::fflush(stdout);
    csv.row({std::to_string(epoch + 1), std::to_string(res.step), fmt::format("{:.6f}", st.train_loss),
             fmt::format("{:.4f}", st.test_acc), fmt::format("{:.6g}", lr()), fmt::format("{:.2f}", elapsed())});
    if (stop || stop_requested()) {
      stop_here(fmt::format("after epoch {}", epoch + 1));
      break;
    }
    if (!cfg.checkpoint.empty()) save(cfg.checkpoint, loader.epoch());
  }
  if (cfg.resume && res.step_losses.empty() && !res.interrupted && !cfg.quiet)
    fmt::print("nothing to do: the run in {} already finished its {} epoch(s)\n", cfg.checkpoint, cfg.epochs);
  res.seconds = elapsed();
  return res;
}

// "0.05" and "5e-2" are the same setting; otherwise the text must match.
inline bool same_setting(const std::string& a, const std::string& b) {
  if (a == b) return true;
  try {
    std::size_t ua = 0, ub = 0;
    const double x = std::stod(a, &ua), y = std::stod(b, &ub);
    return ua == a.size() && ub == b.size() && x == y;
  } catch (const std::exception&) {
    return false;
  }
}

// For --resume: the settings a checkpoint was made with become this run's settings. A flag the
// user gave explicitly with a different value is an error (the run could not continue exactly).
// The options every Fashion-MNIST demo shares (data, threads, checkpoints, logging), added
// after the demo's own model and optimizer options.
inline Args& add_run_options(Args& args, const std::string& csv_default) {
  return args.option("limit", "-1", "train on the first N training images only (-1: all 60000)")
      .option("threads", "0", "threads (0: OMP_NUM_THREADS or all cores)")
      .option("data-dir", "", "Fashion-MNIST folder (default: $NORMGRAD_DATA_DIR, else " +
                                  std::string(ng::io::kFashionMnistDefaultDir) + ")")
      .option("checkpoint", "", "save the training state here at each epoch end (and on Ctrl-C)")
      .flag("resume", "continue the run saved in --checkpoint exactly where it stopped")
      .option("csv", csv_default, "write the curves here ('' for none)")
      .option("log-every", "100", "a CSV row every N steps besides the per-epoch rows")
      .option("max-steps", "-1", "stop after N steps in total as if interrupted (checkpoint, exit)")
      .option("eval-batch", "100", "test images per forward pass when measuring accuracy");
}

void apply_checkpoint_settings(Args& args, const std::string& path, const std::vector<std::string>& keys);

// With --resume, the run's settings (`keys`) come from --checkpoint's file.
inline void resume_settings(Args& args, const std::vector<std::string>& keys) {
  if (!args.on("resume")) return;
  if (args.str("checkpoint").empty()) throw std::invalid_argument("--resume needs --checkpoint PATH");
  apply_checkpoint_settings(args, args.str("checkpoint"), keys);
}

inline void apply_checkpoint_settings(Args& args, const std::string& path, const std::vector<std::string>& keys) {
  ng::io::Metadata meta = ng::io::load_safetensors(path).metadata;
  std::string conflicts;
  for (const std::string& k : keys) {
    auto it = meta.find(k);
    if (it == meta.end()) throw std::runtime_error(fmt::format("{}: checkpoint has no setting '{}'", path, k));
    if (args.given(k) && !same_setting(args.str(k), it->second))
      conflicts += fmt::format("\n  --{} {} (the checkpoint was made with {})", k, args.str(k), it->second);
    args.set(k, it->second);
  }
  if (!conflicts.empty())
    throw std::invalid_argument("--resume continues a run with its own settings; drop these flags:" + conflicts);
}

// ---- a minimal SVG line chart ---------------------------------------------------------------
struct Series {
  std::string name;
  std::vector<double> x, y;
  bool dashed = false;
};

// Lines with markers, one colour per series, a legend, ticks at the given x values (drawn on
// a log2 axis when log2_x) and a y axis from y_min to y_max.
inline std::string svg_line_plot(const std::string& title, const std::string& x_label, const std::string& y_label,
                                 const std::vector<Series>& series, const std::vector<double>& x_ticks, bool log2_x,
                                 double y_min, double y_max) {
  const double W = 640, H = 420, left = 70, right = 150, top = 40, bottom = 60;
  const double pw = W - left - right, ph = H - top - bottom;
  auto fx = [&](double v) { return log2_x ? std::log2(v) : v; };
  double x0 = fx(x_ticks.front()), x1 = fx(x_ticks.back());
  if (x1 == x0) x1 = x0 + 1;
  auto px = [&](double v) { return left + (fx(v) - x0) / (x1 - x0) * pw; };
  auto py = [&](double v) { return top + (1 - (std::clamp(v, y_min, y_max) - y_min) / (y_max - y_min)) * ph; };
  const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#7f7f7f", "#9467bd", "#ff7f0e"};
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{3}</text>\n",
      W, H, left + pw / 2, title);
  // y grid and labels: 5 intervals
  for (int i = 0; i <= 5; ++i) {
    const double v = y_min + (y_max - y_min) * i / 5.0, y = py(v);
    s += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", left, y, left + pw, y);
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.2f}</text>\n", left - 6, y + 4, v);
  }
  for (double t : x_ticks) {
    const double x = px(t);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"#ddd\"/>\n", x, top, x, top + ph);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:g}</text>\n", x, top + ph + 18, t);
  }
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", left, top, pw, ph);
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + pw / 2, H - 18, x_label);
  s += fmt::format("<text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">{}</text>\n",
                   top + ph / 2, top + ph / 2, y_label);
  for (std::size_t k = 0; k < series.size(); ++k) {
    const char* c = colours[k % 6];
    const Series& se = series[k];
    std::string pts;
    for (std::size_t i = 0; i < se.x.size(); ++i) pts += fmt::format("{:.1f},{:.1f} ", px(se.x[i]), py(se.y[i]));
    const char* dash = se.dashed ? " stroke-dasharray=\"6 4\"" : "";
    s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>\n", pts, c, dash);
    for (std::size_t i = 0; i < se.x.size(); ++i)
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"/>\n", px(se.x[i]), py(se.y[i]), c);
    const double ly = top + 14 + 20.0 * static_cast<double>(k);
    s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"{}/>\n", left + pw + 12, ly,
                     left + pw + 34, ly, c, dash);
    s += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", left + pw + 40, ly + 4, se.name);
  }
  s += "</svg>\n";
  return s;
}

// ---- the end of a demo ----------------------------------------------------------------------
// The closing lines of a training demo: a summary of this session's epochs (accuracy, time
// per epoch, throughput), where the curves and the checkpoint went. Returns the exit code
// (130, the shell's code for "stopped by SIGINT", after Ctrl-C).
inline int finish(const std::string& title, const FitResult& r, const FitConfig& cfg, int threads) {
  if (!r.epochs.empty()) {
    double train_s = 0, eval_s = 0;
    std::int64_t images = 0;
    for (const auto& e : r.epochs) train_s += e.train_seconds, eval_s += e.eval_seconds, images += e.images;
    const auto n = static_cast<double>(r.epochs.size());
    fmt::print(
        "\nsummary: {} ({}), {} epoch(s) run, test accuracy {:.4f} after epoch {}; "
        "{:.1f} s per epoch ({:.1f} s training at {:.0f} img/s, {:.1f} s testing) on {} threads; "
        "{} steps, {:.0f} s in all\n",
        title, r.interrupted ? "interrupted" : "finished", r.epochs.size(), r.epochs.back().test_acc,
        r.epochs.back().epoch, (train_s + eval_s) / n, train_s / n, static_cast<double>(images) / train_s, eval_s / n,
        threads, r.step, r.seconds);
  }
  if (!cfg.csv.empty()) fmt::print("curves written to {}\n", cfg.csv);
  if (!r.interrupted && !cfg.checkpoint.empty()) fmt::print("checkpoint: {}\n", cfg.checkpoint);
  return stop_requested() ? 130 : 0;
}

// main() of a demo: run(argc, argv), with any error printed as "<program>: <what>" (exit 1).
inline int guarded_main(const char* program, int (*run)(int, char**), int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return 1;
  }
}

}  // namespace demo
