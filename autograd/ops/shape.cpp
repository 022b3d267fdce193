// Shape ops. Views (reshape of contiguous data, transpose, permute, expand, squeeze,
// unsqueeze, slice) share storage with their input and copy nothing; their backward maps
// the gradient back through the inverse view.
#include <algorithm>
#include <numeric>

#include "autograd/kernels.h"
#include "autograd/ops.h"

namespace ng {

namespace {

// Resolve a single -1 in a requested shape.
Shape infer_shape(const Shape& req, std::int64_t numel, const Shape& from, const char* op) {
  Shape s = req;
  int neg = -1;
  std::int64_t known = 1;
  for (int i = 0; i < s.ndim(); ++i) {
    const auto v = s[static_cast<std::size_t>(i)];
    if (v == -1) {
      if (neg >= 0) fail<ShapeError>("{}: only one dimension can be -1, got {}", op, req);
      neg = i;
    } else if (v < 0) {
      fail<ShapeError>("{}: invalid size {} in shape {}", op, v, req);
    } else {
      known *= v;
    }
  }
  if (neg >= 0) {
    if (known == 0 || numel % known != 0)
      fail<ShapeError>("{}: shape {} is invalid for input of shape {} ({} elements)", op, req, from, numel);
    s[static_cast<std::size_t>(neg)] = numel / known;
  }
  if (s.numel() != numel)
    fail<ShapeError>("{}: shape {} is invalid for input of shape {} ({} elements)", op, req, from, numel);
  return s;
}

}  // namespace

Tensor view(const Tensor& a, const Shape& req) {
  const Shape s = infer_shape(req, a.numel(), a.shape(), "view");
  if (!a.is_contiguous())
    fail<ShapeError>("view: input of shape {} is not contiguous; use reshape() (which copies)", a.shape());
  Tensor out = make_view(a, s, contiguous_strides(s), a.offset());
  // backward: view the gradient back to the input's shape
  return record("view", {a}, out, [in = a.shape()](BackwardContext&, const Tensor& g) -> Grads {
    return {reshape(g, in)};
  });
}

Tensor reshape(const Tensor& a, const Shape& req) {
  if (a.is_contiguous()) return view(a, req);
  infer_shape(req, a.numel(), a.shape(), "reshape");  // validate before copying
  return view(a.contiguous(), req);
}

Tensor flatten(const Tensor& a, std::int64_t start, std::int64_t end) {
  if (a.dim() == 0) return reshape(a, Shape{1});
  const int s = normalize_axis(start, a.dim(), "flatten"), e = normalize_axis(end, a.dim(), "flatten");
  if (s > e) fail<ValueError>("flatten: start_dim {} comes after end_dim {}", start, end);
  Shape out;
  for (int d = 0; d < s; ++d) out.push_back(a.shape()[static_cast<std::size_t>(d)]);
  std::int64_t m = 1;
  for (int d = s; d <= e; ++d) m *= a.shape()[static_cast<std::size_t>(d)];
  out.push_back(m);
  for (int d = e + 1; d < a.dim(); ++d) out.push_back(a.shape()[static_cast<std::size_t>(d)]);
  return reshape(a, out);
}

Tensor squeeze(const Tensor& a, std::int64_t axis) {
  const int d = normalize_axis(axis, a.dim(), "squeeze");
  if (a.dim() == 0 || a.shape()[static_cast<std::size_t>(d)] != 1) return a;  // PyTorch: no-op
  Shape s = a.shape();
  Strides st = a.strides();
  s.erase(static_cast<std::size_t>(d));
  st.erase(st.begin() + d);
  Tensor out = make_view(a, s, st, a.offset());
  return record("squeeze", {a}, out, [d](BackwardContext&, const Tensor& g) -> Grads { return {unsqueeze(g, d)}; });
}

Tensor unsqueeze(const Tensor& a, std::int64_t axis) {
  const int d = normalize_axis(axis, a.dim() + 1, "unsqueeze");
  Shape s = a.shape();
  Strides st = a.strides();
  const std::int64_t stride = d < a.dim() ? st[static_cast<std::size_t>(d)] * s[static_cast<std::size_t>(d)] : 1;
  s.insert(static_cast<std::size_t>(d), 1);
  st.insert(st.begin() + d, stride);
  Tensor out = make_view(a, s, st, a.offset());
  return record("unsqueeze", {a}, out, [d](BackwardContext&, const Tensor& g) -> Grads { return {squeeze(g, d)}; });
}

Tensor permute(const Tensor& a, const std::vector<std::int64_t>& order) {
  if (static_cast<int>(order.size()) != a.dim())
    fail<ShapeError>("permute: order [{}] has {} entries for a {}-d tensor of shape {}", fmt::join(order, ", "),
                     order.size(), a.dim(), a.shape());
  std::vector<int> p;
  for (auto o : order) p.push_back(normalize_axis(o, a.dim(), "permute"));
  std::vector<int> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < a.dim(); ++i)
    if (sorted[static_cast<std::size_t>(i)] != i)
      fail<ValueError>("permute: [{}] is not a permutation of the dims", fmt::join(order, ", "));
  Shape s;
  Strides st;
  std::vector<std::int64_t> inverse(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    s.push_back(a.shape()[static_cast<std::size_t>(p[i])]);
    st.push_back(a.strides()[static_cast<std::size_t>(p[i])]);
    inverse[static_cast<std::size_t>(p[i])] = static_cast<std::int64_t>(i);
  }
  Tensor out = make_view(a, s, st, a.offset());
  // backward: permute the gradient by the inverse permutation
  return record("permute", {a}, out, [inverse](BackwardContext&, const Tensor& g) -> Grads {
    return {permute(g, inverse)};
  });
}

Tensor transpose(const Tensor& a, std::int64_t a0, std::int64_t a1) {
  const int d0 = normalize_axis(a0, a.dim(), "transpose"), d1 = normalize_axis(a1, a.dim(), "transpose");
  std::vector<std::int64_t> order(static_cast<std::size_t>(a.dim()));
  std::iota(order.begin(), order.end(), 0);
  if (a.dim() == 0) return a;
  std::swap(order[static_cast<std::size_t>(d0)], order[static_cast<std::size_t>(d1)]);
  return permute(a, order);
}

Tensor expand(const Tensor& a, const Shape& s) {
  if (s.ndim() < a.dim())
    fail<ShapeError>("expand: cannot expand shape {} to fewer dims {}", a.shape(), s);
  const int lead = s.ndim() - a.dim();
  Shape out_s = s;
  Strides st(s.size(), 0);
  for (int d = 0; d < s.ndim(); ++d) {
    const auto du = static_cast<std::size_t>(d);
    if (d < lead) {
      if (s[du] < 0) fail<ShapeError>("expand: -1 not allowed in new leading dim of {}", s);
      continue;
    }
    const std::int64_t have = a.shape()[static_cast<std::size_t>(d - lead)];
    std::int64_t want = s[du] == -1 ? have : s[du];
    out_s[du] = want;
    if (have == want) st[du] = a.strides()[static_cast<std::size_t>(d - lead)];
    else if (have == 1) st[du] = 0;
    else fail<ShapeError>("expand: shape {} cannot be expanded to {}: size {} vs {} at dim {}", a.shape(), s, have, want, d);
  }
  if (out_s == a.shape()) return a;
  Tensor out = make_view(a, out_s, st, a.offset());
  // backward: sum the gradient over the broadcast dims
  return record("expand", {a}, out, [in = a.shape()](BackwardContext&, const Tensor& g) -> Grads {
    return {sum_to(g, in)};
  });
}

Tensor broadcast_to(const Tensor& a, const Shape& s) { return expand(a, s); }

}  // namespace ng
