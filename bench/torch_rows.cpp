// LibTorch's side of the benchmark rows (see torch_rows.h). Every closure mirrors the normgrad
// closure of the same row in bench/main.cpp: same shapes, float32, inputs made once, gradients
// reset to none after each repetition (so neither side pays for accumulating into an old .grad).
#include "bench/torch_rows.h"

#include <torch/torch.h>

namespace bench::torch_rows {

namespace {
torch::Tensor leaf(torch::Tensor t) { return t.requires_grad_(true); }
void reset_grad(torch::Tensor& t) { t.mutable_grad() = torch::Tensor(); }
torch::TensorOptions f32() { return torch::TensorOptions().dtype(torch::kFloat32); }
}  // namespace

std::string version() { return TORCH_VERSION; }
void set_threads(int n) { torch::set_num_threads(n); }
int get_threads() { return torch::get_num_threads(); }

std::function<void()> tiny_ops(int n) {
  torch::Tensor a = leaf(torch::ones({1}, f32()));
  torch::Tensor b = leaf(torch::ones({1}, f32()));
  return [a, b, n]() mutable {
    torch::Tensor y = a;
    for (int i = 0; i < n; ++i) y = y + b;
    y.backward();
    reset_grad(a);
    reset_grad(b);
  };
}

std::function<void()> matmul(int n) {
  torch::NoGradGuard no_grad;
  torch::Tensor a = torch::randn({n, n}, f32()), b = torch::randn({n, n}, f32());
  return [a, b]() {
    torch::NoGradGuard guard;
    torch::Tensor c = torch::matmul(a, b);
  };
}

std::function<void()> batch_norm_fb(const std::vector<std::int64_t>& shape) {
  const std::int64_t C = shape[1];
  torch::Tensor x = leaf(torch::randn(shape, f32()));
  torch::Tensor w = leaf(torch::ones({C}, f32())), b = leaf(torch::zeros({C}, f32()));
  torch::Tensor rm = torch::zeros({C}, f32()), rv = torch::ones({C}, f32());
  torch::Tensor dy = torch::randn(shape, f32());
  return [=]() mutable {
    torch::Tensor y = torch::batch_norm(x, w, b, rm, rv, /*training=*/true, 0.1, 1e-5, /*cudnn_enabled=*/false);
    y.backward(dy);
    reset_grad(x);
    reset_grad(w);
    reset_grad(b);
  };
}

std::function<void()> layer_norm_fb(std::int64_t rows, std::int64_t d, bool no_bias) {
  torch::Tensor x = leaf(torch::randn({rows, d}, f32()));
  torch::Tensor w = leaf(torch::ones({d}, f32()));
  torch::Tensor b = no_bias ? torch::Tensor() : leaf(torch::zeros({d}, f32()));
  torch::Tensor dy = torch::randn({rows, d}, f32());
  return [=]() mutable {
    torch::Tensor y = torch::layer_norm(x, {d}, w, b, 1e-5, /*cudnn_enable=*/false);
    y.backward(dy);
    reset_grad(x);
    reset_grad(w);
    if (b.defined()) reset_grad(b);
  };
}

std::function<void()> group_norm_fb(const std::vector<std::int64_t>& shape, std::int64_t groups) {
  const std::int64_t C = shape[1];
  torch::Tensor x = leaf(torch::randn(shape, f32()));
  torch::Tensor w = leaf(torch::ones({C}, f32())), b = leaf(torch::zeros({C}, f32()));
  torch::Tensor dy = torch::randn(shape, f32());
  return [=]() mutable {
    torch::Tensor y = torch::group_norm(x, groups, w, b, 1e-5, /*cudnn_enabled=*/false);
    y.backward(dy);
    reset_grad(x);
    reset_grad(w);
    reset_grad(b);
  };
}

}  // namespace bench::torch_rows
