// A small benchmark harness: warm-up, repetitions, medians; thread control for both sides.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace bench {

struct Timing {
  double median_s = 0;
  double min_s = 0;
  int reps = 0;
};

// Runs f() `warmup` times, then repeats until `min_reps` runs and `min_time_s` seconds have
// passed (at most max_reps); returns the median and the minimum of the timed runs.
inline Timing measure(const std::function<void()>& f, int warmup = 2, int min_reps = 5, double min_time_s = 0.5,
                      int max_reps = 200) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> t;
  double total = 0;
  while (static_cast<int>(t.size()) < min_reps || (total < min_time_s && static_cast<int>(t.size()) < max_reps)) {
    const auto a = std::chrono::steady_clock::now();
    f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
    t.push_back(s);
    total += s;
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front(), static_cast<int>(t.size())};
}

// Sets OpenMP's and OpenBLAS's thread counts (normgrad's side).
void set_threads(int n);

}  // namespace bench
