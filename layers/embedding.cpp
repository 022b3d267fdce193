#include "layers/embedding.h"

#include "layers/init.h"

namespace ng::nn {

Embedding::Embedding(std::int64_t num, std::int64_t dim, std::optional<std::int64_t> pad, Generator* gen, DType dtype)
    : num_embeddings(num), embedding_dim(dim) {
  if (num <= 0 || dim <= 0)
    fail<ValueError>("Embedding: num_embeddings and embedding_dim must be positive, got {} and {}", num, dim);
  if (pad) {
    if (*pad < -num || *pad >= num)
      fail<IndexError>("Embedding: padding_idx must be within [-{}, {}), got {}", num, num, *pad);
    padding_idx = *pad < 0 ? *pad + num : *pad;
  }
  detail::check_param_dtype(dtype, "Embedding");
  weight = register_parameter("weight", empty({num, dim}, dtype));
  init::normal_(weight, 0.0, 1.0, gen);
  if (padding_idx) {
    NoGradGuard ng;
    Tensor row = select(weight.detach(), 0, *padding_idx);
    row.fill_(0.0);
  }
}

Tensor Embedding::forward(const Tensor& indices) {
  if (indices.dtype() != DType::i64)
    fail<DTypeError>("Embedding({}): indices must be int64, got {}", extra_repr(), indices.dtype());
  const Tensor flat = reshape(indices, {indices.numel()}).contiguous();
  // Validate here so the message names the layer (index_select would name itself).
  const std::int64_t* ip = flat.data<std::int64_t>();
  for (std::int64_t k = 0; k < flat.numel(); ++k)
    if (ip[k] < 0 || ip[k] >= num_embeddings)
      fail<IndexError>("Embedding({}): index {} is out of range [0, {})", extra_repr(), ip[k], num_embeddings);
  Shape out_shape = indices.shape();
  out_shape.push_back(embedding_dim);
  Tensor rows = index_select(weight, 0, flat);  // (numel, dim); backward: index_add into weight
  if (padding_idx) {
    // Positions that look up padding_idx get its value but pass no gradient to the weight.
    Tensor is_pad = zeros({flat.numel(), 1}, weight.dtype());
    bool any = false;
    dispatch_float(weight.dtype(), "Embedding", [&](auto tag) {
      using T = decltype(tag);
      T* m = is_pad.data<T>();
      for (std::int64_t k = 0; k < flat.numel(); ++k)
        if (ip[k] == *padding_idx) m[k] = T(1), any = true;
    });
    if (any) rows = where(is_pad, index_select(weight.detach(), 0, flat), rows);
  }
  return reshape(rows, out_shape);
}

std::string Embedding::extra_repr() const {
  std::string s = fmt::format("{}, {}", num_embeddings, embedding_dim);
  if (padding_idx) s += fmt::format(", padding_idx={}", *padding_idx);
  return s;
}

}  // namespace ng::nn
