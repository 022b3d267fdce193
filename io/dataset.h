// TensorDataset: a dataset held in memory as two tensors whose first axis is the sample
// index, inputs [N, ...] and targets [N, ...] (like torch.utils.data.TensorDataset with two
// tensors). Fashion-MNIST loads into one; DataLoader batches one.
#pragma once
#include <cstdint>

#include "autograd/tensor.h"

namespace ng::io {

struct TensorDataset {
  Tensor inputs;   // e.g. images [N, 1, 28, 28] float32
  Tensor targets;  // e.g. labels [N] int64

  std::int64_t size() const { return inputs.defined() ? inputs.size(0) : 0; }
};

}  // namespace ng::io
