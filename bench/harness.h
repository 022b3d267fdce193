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

// Two programs timed in alternation, for a ratio that the machine's drift does not bias. On a
// shared VM the speed of a core moves by 20% and more over seconds (other tenants, memory
// traffic); timing all of A's repetitions and then all of B's lets that drift land on one side.
// Here each round runs A three times and then B three times (the first run of each burst
// untimed: it brings that side's data back into the caches) and keeps the faster timed run of
// each; a round's ratio is A / B. Rounds repeat until `min_rounds` rounds and `min_time_s`
// seconds have passed (at most max_rounds). `prepare_a` / `prepare_b` run before each burst
// (thread settings of each side).
struct PairTiming {
  Timing a, b;              // medians (and minima) of the rounds' times
  double ratio = 0;         // median over rounds of a / b
  double ratio_q1 = 0, ratio_q3 = 0;  // its quartiles: the spread to report
  int rounds = 0;
};

inline PairTiming measure_pair(const std::function<void()>& fa, const std::function<void()>& prepare_a,
                               const std::function<void()>& fb, const std::function<void()>& prepare_b,
                               int min_rounds = 5, double min_time_s = 1.0, int max_rounds = 200) {
  auto burst = [](const std::function<void()>& f, const std::function<void()>& prepare) {
    prepare();
    f();  // untimed: warms the caches for this side
    double best = 0;
    for (int i = 0; i < 2; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      f();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = i == 0 ? s : std::min(best, s);
    }
    return best;
  };
  std::vector<double> ta, tb, ratio;
  double total = 0;
  while (static_cast<int>(ratio.size()) < min_rounds || (total < min_time_s && static_cast<int>(ratio.size()) < max_rounds)) {
    const auto t0 = std::chrono::steady_clock::now();
    const double a = burst(fa, prepare_a), b = burst(fb, prepare_b);
    ta.push_back(a);
    tb.push_back(b);
    ratio.push_back(a / b);
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  auto quantile = [](std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
  };
  const int n = static_cast<int>(ratio.size());
  return {{quantile(ta, 0.5), quantile(ta, 0.0), n}, {quantile(tb, 0.5), quantile(tb, 0.0), n},
          quantile(ratio, 0.5), quantile(ratio, 0.25), quantile(ratio, 0.75), n};
}

// Sets OpenMP's and OpenBLAS's thread counts (normgrad's side).
void set_threads(int n);

}  // namespace bench
