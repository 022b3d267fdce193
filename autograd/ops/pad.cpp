// Padding as torch.nn.functional.pad: (before, after) pairs listed from the LAST dim.
//
// constant: out = full(padded shape, value) with the input written into its interior; the
//   backward is the interior of the gradient (a slice per padded dim). Negative widths first
//   crop the input with slice.
// reflect / replicate / circular: along each padded dim the output is a gather of input rows,
//   out[.., o, ..] = in[.., src(o - before), ..] for o in [0, n + before + after), with
//     reflect    src(i) = -i for i < 0,  2(n-1) - i for i >= n   (the edge is not repeated)
//     replicate  src(i) = clamp(i, 0, n-1)
//     circular   src(i) = i mod n
//   so each padded dim is one index_select, whose backward (index_add: the gradient of every
//   copy summed into its source row) and double backward come with it.
#include <algorithm>

#include "autograd/ops.h"

namespace ng {

const char* to_string(PadMode m) {
  switch (m) {
    case PadMode::constant: return "constant";
    case PadMode::reflect: return "reflect";
    case PadMode::replicate: return "replicate";
    case PadMode::circular: return "circular";
  }
  return "?";
}

namespace {

std::size_t U(int d) { return static_cast<std::size_t>(d); }

// Source index of output position i (already shifted by `before`) along a dim of size n.
std::int64_t source_index(PadMode m, std::int64_t i, std::int64_t n) {
  switch (m) {
    case PadMode::reflect: return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
    case PadMode::replicate: return std::clamp<std::int64_t>(i, 0, n - 1);
    case PadMode::circular: return ((i % n) + n) % n;
    case PadMode::constant: break;
  }
  return i;
}

// The non-constant modes' rules (PyTorch's): pad the last 1-3 dims of a tensor with one or two
// more dims; reflect needs each width < size, circular each width <= size; output sizes >= 1.
void check_non_constant(const Tensor& a, const std::vector<std::int64_t>& pad, PadMode mode) {
  const char* name = to_string(mode);
  const int pairs = static_cast<int>(pad.size() / 2);
  if (pairs < 1 || pairs > 3)
    fail<ShapeError>("pad: mode '{}' pads the last 1, 2 or 3 dims: {} pairs given; use mode constant for more", name,
                     pairs);
  if (a.dim() != pairs + 1 && a.dim() != pairs + 2)
    fail<ShapeError>("pad: mode '{}' with {} pair(s) expects a {}-d (unbatched) or {}-d (batched) input, got shape {}",
                     name, pairs, pairs + 1, pairs + 2, a.shape());
  for (int k = 0; k < pairs; ++k) {
    const int d = a.dim() - 1 - k;
    const std::int64_t n = a.shape()[U(d)], before = pad[U(2 * k)], after = pad[U(2 * k + 1)];
    if (n == 0)
      fail<ShapeError>("pad: mode '{}' has nothing to copy from the empty dim {} of shape {}; only the batch dim may "
                       "be empty",
                       name, d, a.shape());
    if (mode == PadMode::reflect && (before >= n || after >= n))
      fail<ValueError>("pad: reflect padding must be smaller than the size of the dim it pads: ({}, {}) for dim {} of "
                       "size {} in shape {}",
                       before, after, d, n, a.shape());
    if (mode == PadMode::circular && (before > n || after > n))
      fail<ValueError>("pad: circular padding wraps around more than once: ({}, {}) for dim {} of size {} in shape {}",
                       before, after, d, n, a.shape());
    if (before < -n || after < -n)  // (a deeper crop has no rows to take; o - before could overflow)
      fail<ValueError>("pad: mode '{}' crops at most the whole dim: ({}, {}) for dim {} of size {} in shape {}", name,
                       before, after, d, n, a.shape());
    if (n + before + after < 1)
      fail<ShapeError>("pad: mode '{}' leaves dim {} of shape {} with size {}: ({}, {}); the output must have size >= 1",
                       name, d, a.shape(), n + before + after, before, after);
  }
}

// Constant padding with non-negative widths: full(value), input copied to the interior.
Tensor pad_constant(const Tensor& a, const std::vector<std::int64_t>& pad, double value) {
  const int pairs = static_cast<int>(pad.size() / 2);
  Shape os = a.shape();
  Tensor out;
  {
    NoGradGuard no_grad;  // the fill and the interior copy are not ops of the tape
    for (int k = 0; k < pairs; ++k) os[U(a.dim() - 1 - k)] += pad[U(2 * k)] + pad[U(2 * k + 1)];
    out = full(os, value, a.dtype());
    Tensor interior = out;
    for (int k = 0; k < pairs; ++k) {
      const int d = a.dim() - 1 - k;
      interior = slice(interior, d, pad[U(2 * k)], pad[U(2 * k)] + a.shape()[U(d)]);
    }
    if (a.numel() > 0) interior.copy_(a.detach());
  }
  // backward: the interior of g (one slice per padded dim); slice is differentiable again
  return record("pad", {a}, out, [pad, pairs](BackwardContext& ctx, const Tensor& g) -> Grads {
    Tensor gi = g;
    const Shape& in = ctx.input_shape(0);
    const int nd = in.ndim();
    for (int k = 0; k < pairs; ++k) {
      const int d = nd - 1 - k;
      if (pad[U(2 * k)] != 0 || pad[U(2 * k + 1)] != 0)
        gi = slice(gi, d, pad[U(2 * k)], pad[U(2 * k)] + in[U(d)]);
    }
    return {gi};
  });
}

}  // namespace

Tensor pad(const Tensor& a, const std::vector<std::int64_t>& pad, PadMode mode, std::optional<double> value) {
  if (pad.size() % 2 != 0)
    fail<ValueError>("pad: the padding list must hold (before, after) pairs, got {} numbers", pad.size());
  if (static_cast<int>(pad.size() / 2) > a.dim())
    fail<ShapeError>("pad: {} (before, after) pairs for a {}-d input of shape {}; at most one pair per dim, listed "
                     "from the last dim",
                     pad.size() / 2, a.dim(), a.shape());
  const int pairs = static_cast<int>(pad.size() / 2);
  // Padded sizes n + before + after without int64 overflow, and a padded shape whose element
  // count fits (checked before anything is allocated, index lists included).
  Shape out_shape = a.shape();
  for (int k = 0; k < pairs; ++k) {
    const int d = a.dim() - 1 - k;
    std::int64_t size = 0;
    if (!size_add(a.shape()[U(d)], pad[U(2 * k)], size) || !size_add(size, pad[U(2 * k + 1)], size))
      fail<ShapeError>("pad: padding dim {} of shape {} by ({}, {}) overflows int64 (2^63 - 1)", d, a.shape(),
                       pad[U(2 * k)], pad[U(2 * k + 1)]);
    out_shape[U(d)] = std::max<std::int64_t>(size, 0);
  }
  if (!shape_fits(out_shape))
    fail<ShapeError>("pad: shape {} padded to {}: the product of its sizes overflows int64 (2^63 - 1)", a.shape(),
                     out_shape);
  checked_nbytes(out_shape, dtype_size(a.dtype()), "pad");
  if (mode != PadMode::constant) {
    if (value.has_value() && *value != 0.0)
      fail<ValueError>("pad: mode '{}' takes no fill value (got {}); the value is for mode constant", to_string(mode),
                       *value);
    check_non_constant(a, pad, mode);
    Tensor out = a;
    bool padded = false;
    for (int k = 0; k < pairs; ++k) {
      const int d = a.dim() - 1 - k;
      const std::int64_t n = a.shape()[U(d)], before = pad[U(2 * k)], after = pad[U(2 * k + 1)];
      if (before == 0 && after == 0) continue;
      // the index list has the padded size, which the output's byte check does not bound when
      // another dim is 0 (replicate takes any width): check it before allocating
      checked_nbytes(Shape{n + before + after}, sizeof(std::int64_t), "pad");
      std::vector<std::int64_t> idx(static_cast<std::size_t>(n + before + after));
      for (std::size_t o = 0; o < idx.size(); ++o)
        idx[o] = source_index(mode, static_cast<std::int64_t>(o) - before, n);
      out = index_select(out, d, from_vector(idx, Shape{static_cast<std::int64_t>(idx.size())}));
      padded = true;
    }
    return padded ? out : a.clone();
  }
  // constant: crop the negative widths (slice), then pad the positive ones
  Tensor x = a;
  std::vector<std::int64_t> grow(pad.size(), 0);
  bool any_grow = false;
  for (int k = 0; k < pairs; ++k) {
    const int d = a.dim() - 1 - k;
    const std::int64_t n = a.shape()[U(d)], before = pad[U(2 * k)], after = pad[U(2 * k + 1)];
    if (n + before + after < 0)
      fail<ShapeError>("pad: negative padding ({}, {}) on dim {} of shape {} leaves a negative size {}", before, after,
                       d, a.shape(), n + before + after);
    // out[o] = in[o - before] for o in [0, n + before + after): keep the input's rows
    // [start, end) = [max(0, -before), n - max(0, -after)) (empty when the crops meet), which
    // land at output row max(0, before), and fill the rest. When nothing is kept, the output is
    // all value: the growth is clamped to the output size (a crop of one side can then exceed
    // the input: n = 2 padded by (3, -3) is 2 rows of the value, as PyTorch).
    const std::int64_t out_size = n + before + after;
    // (crops clamped to n first: -before overflows for before = INT64_MIN)
    const std::int64_t start = before < 0 ? (before < -n ? n : -before) : 0;
    const std::int64_t end = std::max(start, n - (after < 0 ? (after < -n ? n : -after) : 0));
    if (before < 0 || after < 0) x = slice(x, d, start, end);
    const std::int64_t grow_before = std::min(std::max<std::int64_t>(0, before), out_size);
    grow[U(2 * k)] = grow_before;
    grow[U(2 * k + 1)] = out_size - grow_before - (end - start);
    any_grow = any_grow || grow[U(2 * k)] > 0 || grow[U(2 * k + 1)] > 0;
  }
  // like PyTorch, the result never aliases the input (a crop alone is copied out)
  return any_grow ? pad_constant(x, grow, value.value_or(0.0)) : x.clone();
}

}  // namespace ng
