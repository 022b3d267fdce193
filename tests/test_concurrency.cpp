// Concurrency: two std::threads training two models at once give bit-identical results to
// training them one after the other. Each thread has its own tape, grad mode and default
// generator; the ops share no mutable state; and the OpenMP regions inside the ops (sizes
// here are above kParallelGrain) and the BLAS calls stay correct when two threads enter them
// at the same time.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "autograd/ops.h"
#include "autograd/random.h"
#include "layers/batch_norm.h"
#include "optim/sgd.h"

using namespace ng;

namespace {

// x [N, D] -> matmul W1 [D, H] -> BatchNorm1d(H) -> relu -> matmul W2 [H, C] -> cross_entropy.
// N * H = 65,536 elements per activation: above detail::kParallelGrain (32,768,
// autograd/kernels.h), so the elementwise, norm and reduction kernels take their OpenMP paths.
constexpr std::int64_t N = 256, D = 96, H = 256, C = 10;

struct Run {
  std::vector<double> losses;
  std::vector<std::vector<std::uint8_t>> state;  // raw bytes of every parameter and buffer
};

std::vector<std::uint8_t> bytes_of(const Tensor& t) {
  const Tensor c = t.contiguous();
  const std::size_t n = static_cast<std::size_t>(c.numel()) * dtype_size(c.dtype());
  std::vector<std::uint8_t> b(n);
  if (n) std::memcpy(b.data(), static_cast<const char*>(c.impl().storage->data) + c.offset() * static_cast<std::int64_t>(dtype_size(c.dtype())), n);
  return b;
}

Run train(std::uint64_t seed, int steps) {
  Generator g(seed);
  Tensor w1 = mul(randn({D, H}, DType::f32, &g), 0.1).requires_grad_();
  Tensor w2 = mul(randn({H, C}, DType::f32, &g), 0.1).requires_grad_();
  nn::BatchNorm1d bn{nn::BatchNormOptions(H)};
  std::vector<Tensor> params{w1, w2, bn.weight, bn.bias};
  optim::SGD opt(params, {.lr = 0.05, .momentum = 0.9});
  Run r;
  for (int s = 0; s < steps; ++s) {
    Tensor x = randn({N, D}, DType::f32, &g);
    Tensor target = randint({N}, 0, C, &g);
    Tensor loss = cross_entropy(matmul(relu(bn.forward(matmul(x, w1))), w2), target);
    opt.zero_grad();
    loss.backward();
    opt.step();
    r.losses.push_back(loss.item());
  }
  for (const auto& [name, t] : bn.state_dict()) r.state.push_back(bytes_of(t));
  r.state.push_back(bytes_of(w1));
  r.state.push_back(bytes_of(w2));
  return r;
}

}  // namespace

TEST_CASE("concurrency: two threads training BatchNorm MLPs are bit-identical to sequential training") {
  constexpr int kSteps = 6;
  const Run seq_a = train(101, kSteps);
  const Run seq_b = train(202, kSteps);
  REQUIRE(seq_a.losses != seq_b.losses);  // two different models

  for (int attempt = 0; attempt < 2; ++attempt) {
    Run par_a, par_b;
    std::thread ta([&] { par_a = train(101, kSteps); });
    std::thread tb([&] { par_b = train(202, kSteps); });
    ta.join();
    tb.join();
    CHECK(par_a.losses == seq_a.losses);  // exact: == on doubles
    CHECK(par_b.losses == seq_b.losses);
    CHECK(par_a.state == seq_a.state);    // every byte of every parameter and buffer
    CHECK(par_b.state == seq_b.state);
  }
  CHECK(tape_size() == 0);
}

TEST_CASE("concurrency: threads with anomaly mode and NoGradGuard on one thread do not affect another") {
  // Thread 1 runs inference under NoGradGuard with anomaly mode on while thread 2 trains:
  // thread 2 still records (its grad mode is its own) and is not checked for anomalies.
  Run trained;
  bool recorded_in_t1 = true;
  std::thread t1([&] {
    NoGradGuard ng;
    AnomalyModeGuard anomaly;
    for (int i = 0; i < 20; ++i) {
      Tensor y = log(zeros({N, H}));  // -inf, but nothing is recorded, so nothing is checked
      recorded_in_t1 = recorded_in_t1 && y.requires_grad();
    }
  });
  std::thread t2([&] { trained = train(101, 3); });
  t1.join();
  t2.join();
  CHECK_FALSE(recorded_in_t1);
  const Run want = train(101, 3);
  CHECK(trained.losses == want.losses);
  CHECK(trained.state == want.state);
}
