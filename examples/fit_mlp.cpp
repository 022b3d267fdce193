// The smallest real training loop in normgrad: a 1-32-32-1 tanh MLP learns y = sin(3x) on
// [-1, 1] with plain tensors, the tape, and a hand-written SGD step. Prints the loss curve and
// the tape of one training step.
#include <fmt/core.h>

#include <cmath>

#include "autograd/ops.h"
#include "autograd/random.h"

using namespace ng;

int main() {
  Generator gen(0);
  const std::int64_t n = 256, h = 32;
  Tensor x = uniform({n, 1}, -1, 1, DType::f32, &gen);
  // Target y = sin(3x), computed elementwise outside the tape.
  Tensor y = empty_like(x);
  for (std::int64_t i = 0; i < n; ++i) y.data<float>()[i] = std::sin(3.0f * x.data<float>()[i]);

  // Parameters, initialised like PyTorch's Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  auto param = [&](Shape s, double fan_in) {
    const double b = 1.0 / std::sqrt(fan_in);
    return uniform(s, -b, b, DType::f32, &gen).requires_grad_();
  };
  Tensor w1 = param({1, h}, 1), b1 = param({h}, 1), w2 = param({h, h}, h), b2 = param({h}, h),
         w3 = param({h, 1}, h), b3 = param({1}, h);
  std::vector<Tensor> params{w1, b1, w2, b2, w3, b3};

  const double lr = 0.1, momentum = 0.9;
  std::vector<Tensor> velocity;
  for (auto& p : params) velocity.push_back(zeros_like(p));
  double first = 0, last = 0;
  for (int step = 0; step < 2000; ++step) {
    Tensor h1 = tanh(matmul(x, w1) + b1);
    Tensor h2 = tanh(matmul(h1, w2) + b2);
    Tensor loss = mean(pow(matmul(h2, w3) + b3 - y, 2.0));
    if (step == 0) fmt::print("The tape of one training step:\n{}\n", tape_summary());
    loss.backward();
    {  // SGD with momentum, outside the tape
      NoGradGuard no_grad;
      for (std::size_t i = 0; i < params.size(); ++i) {
        velocity[i].mul_(momentum).add_(params[i].grad());
        params[i].add_(velocity[i], -lr);
        params[i].zero_grad();
      }
    }
    last = loss.item();
    if (step == 0) first = last;
    if (step % 250 == 0 || step == 1999) fmt::print("step {:4d}  mse {:.5f}\n", step, last);
  }
  fmt::print("mse fell from {:.4f} to {:.5f}\n", first, last);
  return last < first * 0.05 ? 0 : 1;
}
