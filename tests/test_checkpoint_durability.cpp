// Checkpoint durability: a child process saving a checkpoint over and over is killed with
// SIGKILL at random (seeded) moments; the file on disk must always load and hold exactly one
// complete checkpoint, the last one or a newer one -- never a mix of two.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "io/safetensors.h"
#include "layers/layer_norm.h"

namespace fs = std::filesystem;
using namespace ng;

namespace {

// Checkpoint k holds, in every element of tensor j, the value value_of(k % 2, j): two
// prepared states that alternate, so consecutive checkpoints differ in every byte of data and
// a file mixing two of them cannot pass as either. The step number k travels in metadata.
constexpr std::int64_t kFeatures = 1 << 18;  // LayerNorm weight + bias: 2 MB of float32
constexpr std::int64_t kMomentum = 1 << 17;  // optimizer tensor: 1 MB of float64
double value_of(int parity, std::size_t j) { return parity ? -1.5 - static_cast<double>(j) : 2.25 + static_cast<double>(j); }

struct State {
  nn::LayerNorm model{nn::LayerNormOptions({kFeatures})};
  io::NamedTensors optimizer;
  explicit State(int parity) {
    NoGradGuard ng;
    model.weight.fill_(value_of(parity, 0));
    model.bias.fill_(value_of(parity, 1));
    optimizer.emplace_back("state.0.momentum_buffer", full({kMomentum}, value_of(parity, 2), DType::f64));
  }
};

void save(const std::string& path, const State& s, std::int64_t step) {
  io::save_checkpoint(path, s.model, s.optimizer, {{"step", std::to_string(step)}});
}

// Loads the checkpoint and checks that every element matches the state its step number says.
// Returns the step, or -1 if anything is inconsistent.
std::int64_t load_and_check(const std::string& path) {
  nn::LayerNorm model(nn::LayerNormOptions({kFeatures}));
  const io::Checkpoint c = io::load_checkpoint(path, model);
  const std::int64_t step = std::stoll(c.metadata.at("step"));
  const int parity = static_cast<int>(step % 2);
  auto all_equal = [](const Tensor& t, double v) {
    const Tensor ct = t.contiguous();
    if (ct.dtype() == DType::f32) {
      const float* p = ct.data<float>();
      for (std::int64_t i = 0; i < ct.numel(); ++i)
        if (p[i] != static_cast<float>(v)) return false;
    } else {
      const double* p = ct.data<double>();
      for (std::int64_t i = 0; i < ct.numel(); ++i)
        if (p[i] != v) return false;
    }
    return true;
  };
  if (c.optimizer.size() != 1 || !all_equal(model.weight, value_of(parity, 0)) ||
      !all_equal(model.bias, value_of(parity, 1)) || !all_equal(c.optimizer[0].second, value_of(parity, 2)))
    return -1;
  return step;
}

}  // namespace

TEST_CASE("save_checkpoint: SIGKILL at random moments never leaves a torn or missing checkpoint") {
  const fs::path dir = fs::temp_directory_path() / ("normgrad_durability_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "ckpt.safetensors").string();

  // Both states are built before forking: the child only serializes (no OpenMP region after fork).
  const State states[2] = {State(0), State(1)};
  save(path, states[0], 0);

  std::mt19937 rng(20240607);
  std::uniform_int_distribution<int> delay_us(0, 30000);
  std::int64_t last_step = 0;
  int rounds_with_progress = 0, rounds_with_leftover_temp = 0;
  constexpr int kRounds = 12;
  for (int round = 0; round < kRounds; ++round) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // Child: checkpoint steps last_step+1, last_step+2, ... until killed.
      try {
        for (std::int64_t k = last_step + 1;; ++k) save(path, states[k % 2], k);
      } catch (...) {
        ::_exit(3);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    REQUIRE(::kill(child, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));  // killed, not failed (an exit code 3 would mean save threw)

    // A killed save leaves its temporary file behind; the checkpoint itself is intact.
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().starts_with("ckpt.safetensors.tmp.")) {
        ++rounds_with_leftover_temp;
        fs::remove(e.path());
      }
    std::int64_t step = -2;
    REQUIRE_NOTHROW(step = load_and_check(path));
    REQUIRE_MESSAGE(step >= 0, "round " << round << ": the checkpoint mixes two saves");
    CHECK(step >= last_step);  // never goes back to an older checkpoint
    if (step > last_step) ++rounds_with_progress;
    last_step = step;
  }
  MESSAGE("rounds in which the child completed a save: " << rounds_with_progress << " of " << kRounds
                                                         << "; killed mid-write: " << rounds_with_leftover_temp);
  CHECK(rounds_with_progress > 0);  // the child did save while being killed
  CHECK(rounds_with_leftover_temp > 0);  // and some kills did land in the middle of a save
  fs::remove_all(dir);
}

TEST_CASE("save_safetensors: removes temporary files of dead writers, never a live process's") {
  const fs::path dir = fs::temp_directory_path() / ("normgrad_stale_tmp_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "m.safetensors").string();
  // a pid that is surely gone: a child that exited and was reaped
  const pid_t dead = ::fork();
  REQUIRE(dead >= 0);
  if (dead == 0) ::_exit(0);
  REQUIRE(::waitpid(dead, nullptr, 0) == dead);
  REQUIRE(::kill(dead, 0) != 0);
  // a live one: a child sleeping until we kill it
  const pid_t live = ::fork();
  REQUIRE(live >= 0);
  if (live == 0) {
    ::pause();
    ::_exit(0);
  }
  auto touch = [](const fs::path& p) { std::FILE* f = std::fopen(p.c_str(), "w"); if (f) { std::fputs("partial", f); std::fclose(f); } };
  const fs::path stale = path + ".tmp." + std::to_string(dead), alive = path + ".tmp." + std::to_string(live);
  const fs::path other = dir / ("n.safetensors.tmp." + std::to_string(dead));  // another checkpoint's
  const fs::path odd = path + ".tmp.12ab";                                       // not "<path>.tmp.<pid>"
  for (const auto& p : {stale, alive, other, odd}) touch(p);
  io::save_safetensors(path, {{"w", full({3}, 1.5)}});
  CHECK_FALSE(fs::exists(stale));  // its writer is gone
  CHECK(fs::exists(alive));        // its writer may still be writing
  CHECK(fs::exists(other));
  CHECK(fs::exists(odd));
  CHECK(io::load_safetensors(path).tensors.size() == 1);
  ::kill(live, SIGKILL);
  ::waitpid(live, nullptr, 0);
  // once that writer is gone too, the next save removes its file
  io::save_safetensors(path, {{"w", full({3}, 2.5)}});
  CHECK_FALSE(fs::exists(alive));
  fs::remove_all(dir);
}
