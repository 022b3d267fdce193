#include "layers/embedding.h"

#include <algorithm>
#include <cmath>

#include "layers/init.h"
#include "layers/repr.h"

namespace ng::nn {

Embedding::Embedding(std::int64_t num, std::int64_t dim, std::optional<std::int64_t> pad, Generator* gen, DType dtype,
                     std::optional<double> max_norm_, double norm_type_)
    : num_embeddings(num), embedding_dim(dim), max_norm(max_norm_), norm_type(norm_type_) {
  if (max_norm && !(*max_norm > 0.0)) fail<ValueError>("Embedding: max_norm must be positive, got {}", *max_norm);
  if (!(norm_type > 0.0)) fail<ValueError>("Embedding: norm_type must be positive, got {}", norm_type);
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
  if (max_norm) renorm_rows(flat);
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

// PyTorch's embedding_renorm_: each distinct looked-up row i with ||w_i||_p > max_norm becomes
// w_i * max_norm / (||w_i||_p + 1e-7). In place, outside the tape (no_grad).
void Embedding::renorm_rows(const Tensor& flat) {
  NoGradGuard no_grad;
  std::vector<std::int64_t> rows(flat.data<std::int64_t>(), flat.data<std::int64_t>() + flat.numel());
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  const Tensor w = weight.detach();  // (num, dim), any strides
  const std::int64_t rs = w.strides()[0], cs = w.strides()[1];
  const double p = norm_type;
  dispatch_float(w.dtype(), "Embedding", [&](auto tag) {
    using T = decltype(tag);
    T* pw = w.data<T>();
    for (const std::int64_t i : rows) {
      T* row = pw + i * rs;
      double norm = 0;
      if (std::isinf(p)) {
        for (std::int64_t j = 0; j < embedding_dim; ++j) norm = std::max(norm, std::abs(static_cast<double>(row[j * cs])));
      } else {
        for (std::int64_t j = 0; j < embedding_dim; ++j) norm += std::pow(std::abs(static_cast<double>(row[j * cs])), p);
        norm = std::pow(norm, 1.0 / p);
      }
      if (norm > *max_norm) {
        const T scale = static_cast<T>(*max_norm / (norm + 1e-7));
        for (std::int64_t j = 0; j < embedding_dim; ++j) row[j * cs] *= scale;
      }
    }
  });
}

std::string Embedding::extra_repr() const {
  std::string s = fmt::format("{}, {}", num_embeddings, embedding_dim);
  if (padding_idx) s += fmt::format(", padding_idx={}", *padding_idx);
  if (max_norm) s += ", max_norm=" + detail::py_float(*max_norm);
  if (norm_type != 2.0) s += ", norm_type=" + detail::py_float(norm_type);
  return s;
}

}  // namespace ng::nn
