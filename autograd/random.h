// Seedable random numbers that are the same on every machine: a 64-bit Mersenne Twister
// (its output sequence is fixed by the C++ standard) turned into uniform doubles with 53
// random bits, and normals by the Box-Muller transform. (std::normal_distribution is not
// used: its algorithm differs between standard libraries.)
#pragma once
#include <cstdint>
#include <random>
#include <string>

namespace ng {

class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0) { manual_seed(seed); }
  void manual_seed(std::uint64_t seed) {
    engine_.seed(seed);
    has_spare_ = false;
  }
  std::uint64_t next_u64() { return engine_(); }
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal();  // N(0, 1)
  // Integer in [lo, hi) (hi > lo), without modulo bias.
  std::int64_t randint(std::int64_t lo, std::int64_t hi);
  // The whole state (for checkpoints) as text, and back.
  std::string state() const;
  void set_state(const std::string& s);

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// The calling thread's default generator (each thread has its own, seeded 0 until
// manual_seed is called on that thread), used when no generator is passed.
Generator& default_generator();
void manual_seed(std::uint64_t seed);

}  // namespace ng
