#include "autograd/random.h"

#include <cmath>
#include <numbers>
#include <sstream>

#include "autograd/error.h"

namespace ng {

double Generator::normal() {
  // Box-Muller: two uniforms give two independent standard normals; keep the second.
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();  // log(0) guard
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double th = 2.0 * std::numbers::pi * u2;
  spare_ = r * std::sin(th);
  has_spare_ = true;
  return r * std::cos(th);
}

std::int64_t Generator::randint(std::int64_t lo, std::int64_t hi) {
  if (hi <= lo) fail<ValueError>("randint: empty range [{}, {})", lo, hi);
  // in uint64 (modular): hi - lo and lo + offset may not fit int64, the result always does
  const std::uint64_t range = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
  const std::uint64_t limit = UINT64_MAX - UINT64_MAX % range;  // reject the biased tail
  std::uint64_t x;
  do x = engine_();
  while (x >= limit);
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(lo) + x % range);
}

std::string Generator::state() const {
  std::ostringstream os;
  os << engine_ << ' ' << has_spare_ << ' ' << std::hexfloat << spare_;
  return os.str();
}

void Generator::set_state(const std::string& s) {
  std::istringstream is(s);
  std::string spare;
  is >> engine_ >> has_spare_ >> spare;
  if (!is && !is.eof()) fail<ValueError>("Generator::set_state: malformed state string");
  spare_ = std::strtod(spare.c_str(), nullptr);
}

Generator& default_generator() {
  thread_local Generator g(0);
  return g;
}

void manual_seed(std::uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace ng
