// Running a demo: the thread count, a clean stop on Ctrl-C, wall-clock time and a per-epoch
// progress bar on stderr (\r-updated on a terminal, plain lines otherwise).
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
#include <limits>
#include <stdexcept>
#include <string>

#include <fmt/core.h>
#include <fmt/format.h>

namespace demo {

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

}  // namespace demo
