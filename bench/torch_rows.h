// LibTorch's side of the benchmark rows. Compiled in its own translation unit
// (torch_rows.cpp, only with -DNORMGRAD_WITH_TORCH=ON) so that normgrad's and LibTorch's
// headers never meet; this interface uses only the standard library.
//
// Each builder allocates its inputs once and returns the work of one repetition as a
// closure, which does exactly what the normgrad row of the same name does.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace bench::torch_rows {

std::string version();        // e.g. "1.13.0"
void set_threads(int n);      // torch::set_num_threads
int get_threads();

// y = a; n times y = y + b (one-element float32 tensors requiring grad); y.backward().
std::function<void()> tiny_ops(int n);
// C = A B, all n x n float32, no autograd.
std::function<void()> matmul(int n);
// Training-mode batch_norm forward + backward (x, weight, bias) with a given dy.
std::function<void()> batch_norm_fb(const std::vector<std::int64_t>& shape);
// layer_norm over the last dim, forward + backward (x, weight, bias; bias off for `no_bias`).
std::function<void()> layer_norm_fb(std::int64_t rows, std::int64_t d, bool no_bias = false);
// group_norm forward + backward (x, weight, bias).
std::function<void()> group_norm_fb(const std::vector<std::int64_t>& shape, std::int64_t groups);

// ---- the demo models (examples/models.h) ----------------------------------------------------
// A float32 tensor by name, to hand normgrad's initial parameters to the LibTorch model (the
// names are the state_dict keys, the same in both frameworks).
struct NamedArray {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};
using NamedArrays = std::vector<NamedArray>;

// A fixed batch: images x (float32, shape x_shape) and int64 class labels y.
struct Batch {
  std::vector<std::int64_t> x_shape;
  std::vector<float> x;
  std::vector<std::int64_t> y;
};

// The demo BatchNorm CNN (demo::fmnist_cnn) as a torch::nn::Sequential with the same layers;
// every parameter is overwritten by `init` (by name; an empty `init` keeps LibTorch's own
// initialization). One call of the returned closure is one training step on `batch`:
// gradients set to none, forward (training mode), cross-entropy (mean), backward, SGD step
// (lr 0.05, momentum 0.9). Returns that step's loss. channels_last: the conv weights and the
// images in torch.channels_last (NHWC) memory format, LibTorch's alternative layout.
std::function<double()> cnn_step(const NamedArrays& init, const Batch& batch, bool channels_last = false);
// The same model in eval mode under c10::InferenceMode: forward only; returns the sum of the logits.
std::function<double()> cnn_eval(const NamedArrays& init, const Batch& batch, bool channels_last = false);
// demo::SequenceClassifier: the 28 image rows as 28 time steps of 28 features, a one-layer
// LSTM with hidden size `hidden` (batch first), Linear(hidden, 10) on the last hidden state.
// LibTorch can run it in several forms; lstm_forms names them (index = `form`):
//   layer_norm = false: 0 torch::nn::LSTM; 1 a loop over the steps with the input projection
//     of all steps as one GEMM up front (addmm per step for h W_hh^T, chunk, sigmoid / tanh);
//     2 a loop of torch::lstm_cell.
//   layer_norm = true (LibTorch has no LayerNorm-LSTM): the cell of layers/recurrent.h in
//     LibTorch ops, a loop over the steps; 0 with LN_ih(x W_ih^T) of all steps up front (as
//     normgrad computes it), 1 with the three LayerNorms inside the loop.
// One call is one training step with Adam (lr 1e-3); returns the loss.
std::vector<std::string> lstm_forms(bool layer_norm);
std::function<double()> lstm_step(bool layer_norm, int form, std::int64_t hidden, const NamedArrays& init,
                                  const Batch& batch);

// Peak resident memory: `steps` training steps of cnn_step on a random batch of `batch_size`
// images (LibTorch's own initialization). Run it in a fresh process (see bench/main.cpp).
void cnn_train(int steps, std::int64_t batch_size);

}  // namespace bench::torch_rows
