#include "layers/positional.h"

#include <cmath>

#include "layers/init.h"

namespace ng::nn {

namespace {

// (L) positions of x, checked against the module's size; returns L.
std::int64_t check_positions(const Tensor& x, std::int64_t d_model, std::int64_t max_len, bool batch_first,
                             const char* name) {
  if (x.dim() != 3 || x.size(-1) != d_model)
    fail<ShapeError>("{}: input must be {} with d = {}, got {}", name, batch_first ? "(N, L, d)" : "(L, N, d)", d_model,
                     x.shape());
  const std::int64_t L = x.size(batch_first ? 1 : 0);
  if (L > max_len)
    fail<ValueError>("{}: sequence length {} exceeds max_len {} (construct it with a larger max_len)", name, L,
                     max_len);
  return L;
}

// (L, d) -> broadcastable to x: (1, L, d) batch-first, (L, 1, d) otherwise.
Tensor for_layout(const Tensor& t, bool batch_first) {
  return unsqueeze(t, batch_first ? 0 : 1);
}

}  // namespace

SinusoidalPositionalEncoding::SinusoidalPositionalEncoding(std::int64_t d, std::int64_t n, bool bf)
    : d_model(d), max_len(n), batch_first(bf) {
  if (d <= 0 || n <= 0)
    fail<ValueError>("SinusoidalPositionalEncoding: d_model and max_len must be positive, got {} and {}", d, n);
}

Tensor SinusoidalPositionalEncoding::table(std::int64_t L, DType dt) const {
  std::vector<double> pe(static_cast<std::size_t>(L * d_model));
  for (std::int64_t pos = 0; pos < L; ++pos)
    for (std::int64_t c = 0; c < d_model; ++c) {
      const double freq = std::pow(10000.0, -static_cast<double>(c - c % 2) / static_cast<double>(d_model));
      pe[static_cast<std::size_t>(pos * d_model + c)] = c % 2 == 0 ? std::sin(pos * freq) : std::cos(pos * freq);
    }
  return from_vector(pe, {L, d_model}, dt);
}

Tensor SinusoidalPositionalEncoding::forward(const Tensor& x) {
  const std::int64_t L = check_positions(x, d_model, max_len, batch_first, "SinusoidalPositionalEncoding");
  return add(x, for_layout(table(L, x.dtype()), batch_first));
}

std::string SinusoidalPositionalEncoding::extra_repr() const {
  return fmt::format("d_model={}, max_len={}", d_model, max_len);
}

LearnedPositionalEmbedding::LearnedPositionalEmbedding(std::int64_t n, std::int64_t d, bool bf, Generator* gen,
                                                       DType dtype)
    : max_len(n), d_model(d), batch_first(bf) {
  if (d <= 0 || n <= 0)
    fail<ValueError>("LearnedPositionalEmbedding: max_len and d_model must be positive, got {} and {}", n, d);
  weight = register_parameter("weight", empty({n, d}, dtype));
  init::normal_(weight, 0.0, 0.02, gen);
}

Tensor LearnedPositionalEmbedding::forward(const Tensor& x) {
  const std::int64_t L = check_positions(x, d_model, max_len, batch_first, "LearnedPositionalEmbedding");
  return add(x, for_layout(slice(weight, 0, 0, L), batch_first));
}

std::string LearnedPositionalEmbedding::extra_repr() const {
  return fmt::format("{}, {}", max_len, d_model);
}

}  // namespace ng::nn
