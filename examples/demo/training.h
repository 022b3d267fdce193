// The training loop of the demos: train_step, evaluate, fit (progress bar, CSV, checkpoints,
// exact resumption, Ctrl-C), and the end of a demo (finish, guarded_main).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>

#include "autograd/ops.h"
#include "checkpoint.h"
#include "csv_log.h"
#include "progress.h"
#include "io/data_loader.h"
#include "layers/module.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace demo {

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

// Where a run left off: with cfg.resume, the state saved in cfg.checkpoint is loaded into the
// model, optimizer, schedule and loader, and its counters returned (with the file's metadata,
// for what a caller saved besides); without, a fresh start.
struct ResumedRun {
  std::int64_t step = 0, loss_count = 0;
  double seconds = 0, loss_sum = 0;
  ng::io::Metadata meta;
};
inline ResumedRun resume_run(const FitConfig& cfg, ng::nn::Module& model, ng::optim::Optimizer& opt,
                             ng::optim::LRScheduler* sched, ng::io::DataLoader& loader) {
  ResumedRun r;
  if (!cfg.resume) return r;
  if (cfg.checkpoint.empty()) throw std::invalid_argument("--resume needs --checkpoint PATH");
  r.meta = load_training(cfg.checkpoint, model, opt, sched, loader);
  r.step = std::stoll(r.meta.at("step"));
  r.seconds = std::stod(r.meta.at("seconds"));
  r.loss_sum = std::stod(r.meta.at("loss_sum"));
  r.loss_count = std::stoll(r.meta.at("loss_count"));
  if (!cfg.quiet)
    fmt::print("resumed from {}: step {}, epoch {}, batch {}/{}\n", cfg.checkpoint, r.step, loader.epoch() + 1,
               loader.batch_index(), loader.num_batches());
  return r;
}

inline FitResult fit(const FitConfig& cfg, ng::nn::Module& model, ng::optim::Optimizer& opt,
                     ng::optim::LRScheduler* sched, ng::io::DataLoader& loader, const ng::io::TensorDataset& test) {
  FitResult res;
  const std::int64_t nb = loader.num_batches();
  const ResumedRun resumed = resume_run(cfg, model, opt, sched, loader);
  res.step = resumed.step;
  const double seconds_before = resumed.seconds;
  double loss_sum = resumed.loss_sum;
  std::int64_t loss_count = resumed.loss_count;
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
