// Shape ops. Views (reshape of contiguous data, transpose, permute, expand, squeeze,
// unsqueeze, slice) share storage with their input and copy nothing; their backward maps
// the gradient back through the inverse view.
#include <algorithm>
#include <numeric>
#include <tuple>

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
    } else if (!size_mul(known, v, known)) {
      // cannot equal numel (which fits int64) unless another size is 0
      if (std::find(req.begin(), req.end(), 0) == req.end())
        fail<ShapeError>("{}: shape {} is invalid for input of shape {} ({} elements): the product of its sizes "
                         "overflows int64",
                         op, req, from, numel);
      known = 0;
    }
  }
  if (neg >= 0) {
    if (known == 0 || numel % known != 0)
      fail<ShapeError>("{}: shape {} is invalid for input of shape {} ({} elements)", op, req, from, numel);
    s[static_cast<std::size_t>(neg)] = numel / known;
  }
  if (!shape_fits(s))  // [0, 2^62, 2^62] has numel 0, but its strides overflow
    fail<ShapeError>("{}: shape {} is too large: the product of its non-zero sizes overflows int64 (2^63 - 1)", op,
                     req);
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
  if (!shape_fits(out_s))
    fail<ShapeError>("expand: shape {} cannot be expanded to {}: the product of its sizes overflows int64 (2^63 - 1)",
                     a.shape(), out_s);
  if (out_s == a.shape()) return a;
  Tensor out = make_view(a, out_s, st, a.offset());
  // backward: sum the gradient over the broadcast dims
  return record("expand", {a}, out, [in = a.shape()](BackwardContext&, const Tensor& g) -> Grads {
    return {sum_to(g, in)};
  });
}

Tensor broadcast_to(const Tensor& a, const Shape& s) { return expand(a, s); }

// ---- slices, concatenation, indexing ---------------------------------------------------------
namespace {

std::size_t U(int d) { return static_cast<std::size_t>(d); }

// dst = src elementwise; both any-strided views of the same shape and dtype T.
template <class T>
void copy_strided(const Tensor& src, const Tensor& dst) {
  const Strides& ss = src.strides();
  const Strides& ds = dst.strides();
  const T* ps = src.data<T>();
  T* pd = dst.data<T>();
  const std::int64_t ls = src.dim() ? ss.back() : 1, ld = dst.dim() ? ds.back() : 1;
  detail::for_each_row<2>(src.shape(), {&ss, &ds}, [&](std::int64_t n, const std::array<std::int64_t, 2>& off, std::int64_t) {
    const T* s = ps + off[0];
    T* d = pd + off[1];
    for (std::int64_t i = 0; i < n; ++i) d[i * ld] = s[i * ls];
  });
}

void copy_into(const Tensor& src, const Tensor& dst) {
  dispatch_all(src.dtype(), [&](auto tag) { copy_strided<decltype(tag)>(src, dst); });
}

// Python slice rules for a positive step along a dim of size n: negative bounds count from the
// end, then both are clamped to [0, n]; the slice has ceil((end - start) / step) elements.
struct SliceRange {
  std::int64_t start, end, len;
};
SliceRange slice_range(std::int64_t n, std::int64_t start, std::int64_t end, std::int64_t step, const char* op) {
  if (step <= 0) fail<ValueError>("{}: step must be positive, got {}", op, step);
  auto clamp_bound = [n](std::int64_t v) { return std::clamp<std::int64_t>(v < 0 ? v + n : v, 0, n); };
  const std::int64_t s = clamp_bound(start), e = clamp_bound(end);
  return {s, e, e > s ? (e - s - 1) / step + 1 : 0};  // ceil((e - s) / step), no overflow for a huge step
}

// The view t[start : start + step*len : step] along dim d (no autograd).
Tensor slice_view(const Tensor& t, int d, std::int64_t start, std::int64_t len, std::int64_t step) {
  Shape s = t.shape();
  Strides st = t.strides();
  const std::int64_t offset = t.offset() + (len > 0 ? start * st[U(d)] : 0);
  s[U(d)] = len;
  // With len >= 2, step < size so stride * step fits; with len <= 1 the stride is never used
  // (and stride * a huge step could overflow).
  if (len > 1) st[U(d)] *= step;
  return make_view(t, s, st, offset);
}

void check_index_dtype(const Tensor& index, const char* op) {
  if (index.dtype() != DType::i64) fail<DTypeError>("{}: index must be int64, got {}", op, index.dtype());
}

// Every index value must lie in [0, n). Returns a contiguous copy (or the index itself).
Tensor checked_index(const Tensor& index, std::int64_t n, int d, const char* op) {
  check_index_dtype(index, op);
  Tensor idx = index.detach().contiguous();
  const std::int64_t* pi = idx.data<std::int64_t>();
  for (std::int64_t i = 0; i < idx.numel(); ++i)
    if (pi[i] < 0 || pi[i] >= n)
      fail<IndexError>("{}: index {} is out of range for dim {} of size {}", op, pi[i], d, n);
  return idx;
}

// Sizes of the dims before and after d (a tensor viewed as [outer, n, inner]).
std::pair<std::int64_t, std::int64_t> outer_inner(const Shape& s, int d) {
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < d; ++i) outer *= s[U(i)];
  for (int i = d + 1; i < s.ndim(); ++i) inner *= s[U(i)];
  return {outer, inner};
}

}  // namespace

Tensor slice(const Tensor& a, std::int64_t axis, std::int64_t start, std::int64_t end, std::int64_t step) {
  if (a.dim() == 0) fail<ShapeError>("slice: cannot slice a 0-d tensor");
  const int d = normalize_axis(axis, a.dim(), "slice");
  const SliceRange r = slice_range(a.shape()[U(d)], start, end, step, "slice");
  Tensor out = slice_view(a, d, r.start, r.len, step);
  // backward: the gradient written into a zero tensor of a's shape at the same positions
  return record("slice", {a}, out, [in = a.shape(), d, r, step](BackwardContext&, const Tensor& g) -> Grads {
    return {slice_backward(g, in, d, r.start, r.end, step)};
  });
}

Tensor slice_backward(const Tensor& src, const Shape& shape, std::int64_t axis, std::int64_t start,
                      std::int64_t end, std::int64_t step) {
  if (shape.ndim() == 0) fail<ShapeError>("slice_backward: cannot slice a 0-d shape");
  const int d = normalize_axis(axis, shape.ndim(), "slice_backward");
  const SliceRange r = slice_range(shape[U(d)], start, end, step, "slice_backward");
  Shape expect = shape;
  expect[U(d)] = r.len;
  if (src.shape() != expect)
    fail<ShapeError>("slice_backward: src shape does not match the slice of {}: {} vs {}", shape, expect, src.shape());
  Tensor out = zeros(shape, src.dtype());
  copy_into(src, slice_view(out, d, r.start, r.len, step));
  // out is linear in src; its adjoint reads the same slice back
  return record("slice_backward", {src}, out, [d, r, step](BackwardContext&, const Tensor& g) -> Grads {
    return {slice(g, d, r.start, r.end, step)};
  });
}

Tensor select(const Tensor& a, std::int64_t axis, std::int64_t index) {
  if (a.dim() == 0) fail<ShapeError>("select: cannot select from a 0-d tensor");
  const int d = normalize_axis(axis, a.dim(), "select");
  const std::int64_t n = a.shape()[U(d)];
  if (index < -n || index >= n) fail<IndexError>("select: index {} is out of range for dim {} of size {}", index, d, n);
  const std::int64_t i = index < 0 ? index + n : index;
  Shape s = a.shape();
  Strides st = a.strides();
  const std::int64_t offset = a.offset() + i * st[U(d)];
  s.erase(U(d));
  st.erase(st.begin() + d);
  Tensor out = make_view(a, s, st, offset);
  // backward: g put back as the slice [i, i+1) of a zero tensor
  return record("select", {a}, out, [in = a.shape(), d, i](BackwardContext&, const Tensor& g) -> Grads {
    return {slice_backward(unsqueeze(g, d), in, d, i, i + 1, 1)};
  });
}

Tensor cat(const std::vector<Tensor>& ts, std::int64_t axis) {
  if (ts.empty()) fail<ValueError>("cat: expected a non-empty list of tensors");
  const Tensor& t0 = ts[0];
  if (t0.dim() == 0) fail<ShapeError>("cat: 0-d tensors cannot be concatenated");
  const int d = normalize_axis(axis, t0.dim(), "cat");
  Shape os = t0.shape();
  std::vector<std::int64_t> sizes;  // each input's extent along d
  for (std::size_t k = 0; k < ts.size(); ++k) {
    const Tensor& t = ts[k];
    if (t.dtype() != t0.dtype())
      fail<DTypeError>("cat: tensor {} has a different dtype: {} vs {}", k, t0.dtype(), t.dtype());
    bool fits = t.dim() == t0.dim();
    for (int i = 0; fits && i < t.dim(); ++i) fits = i == d || t.shape()[U(i)] == t0.shape()[U(i)];
    if (!fits)
      fail<ShapeError>("cat: tensor {} must match tensor 0 in every dim except {}: {} vs {}", k, d, t0.shape(),
                       t.shape());
    sizes.push_back(t.shape()[U(d)]);
  }
  os[U(d)] = 0;
  for (std::int64_t n : sizes)
    if (!size_add(os[U(d)], n, os[U(d)])) os[U(d)] = -1;  // overflow: reported below
  if (os[U(d)] < 0 || !shape_fits(os))
    fail<ShapeError>("cat: tensors of shape like {} concatenated along dim {} (sizes [{}]): the result's size "
                     "overflows int64 (2^63 - 1)",
                     t0.shape(), d, fmt::join(sizes, ", "));
  Tensor out = empty(os, t0.dtype());
  std::int64_t at = 0;
  for (std::size_t k = 0; k < ts.size(); ++k) {
    copy_into(ts[k], slice_view(out, d, at, sizes[k], 1));
    at += sizes[k];
  }
  // backward: input k gets the slice of g it was copied into
  return record("cat", ts, out, [d, sizes](BackwardContext&, const Tensor& g) -> Grads {
    Grads gs;
    std::int64_t lo = 0;
    for (std::int64_t n : sizes) {
      gs.push_back(slice(g, d, lo, lo + n));
      lo += n;
    }
    return gs;
  });
}

// stack = unsqueeze each input at `axis`, then cat (so the backward is cat's).
Tensor stack(const std::vector<Tensor>& ts, std::int64_t axis) {
  if (ts.empty()) fail<ValueError>("stack: expected a non-empty list of tensors");
  const int d = normalize_axis(axis, ts[0].dim() + 1, "stack");
  std::vector<Tensor> us;
  for (std::size_t k = 0; k < ts.size(); ++k) {
    if (ts[k].shape() != ts[0].shape())
      fail<ShapeError>("stack: tensor {} has a different shape than tensor 0: {} vs {}", k, ts[0].shape(),
                       ts[k].shape());
    us.push_back(unsqueeze(ts[k], d));
  }
  return cat(us, d);
}

namespace {
// Each piece of split / chunk is a view with a header of its own: a count of pieces the
// arguments ask for (chunk(empty, 2^31), split(2^40 rows, 1)) is held to the allocation limit
// like any allocation, instead of building headers until memory runs out.
void check_piece_count(std::int64_t pieces, const char* op) {
  const std::uint64_t each = sizeof(TensorImpl) + sizeof(Tensor);
  if (static_cast<std::uint64_t>(pieces) > allocation_limit() / each)
    fail<OutOfMemoryError>("{}: {} pieces of {} bytes of header each exceed the allocation limit of {} bytes "
                           "(ng::allocation_limit()); ask for fewer, larger pieces",
                           op, pieces, each, allocation_limit());
}
}  // namespace

// Pieces are slice views, so each carries its own slice backward.
std::vector<Tensor> split(const Tensor& a, std::int64_t split_size, std::int64_t axis) {
  if (a.dim() == 0) fail<ShapeError>("split: cannot split a 0-d tensor");
  const int d = normalize_axis(axis, a.dim(), "split");
  const std::int64_t n = a.shape()[U(d)];
  if (split_size < 0 || (split_size == 0 && n != 0))
    fail<ValueError>("split: split_size must be positive for dim {} of size {}, got {}", d, n, split_size);
  std::vector<Tensor> out;
  if (n == 0) return {slice(a, d, 0, 0)};
  check_piece_count((n - 1) / split_size + 1, "split");  // ceil(n / split_size)
  for (std::int64_t lo = 0; lo < n; lo += split_size) out.push_back(slice(a, d, lo, std::min(n, lo + split_size)));
  return out;
}

std::vector<Tensor> split(const Tensor& a, const std::vector<std::int64_t>& sizes, std::int64_t axis) {
  if (a.dim() == 0) fail<ShapeError>("split: cannot split a 0-d tensor");
  const int d = normalize_axis(axis, a.dim(), "split");
  const std::int64_t n = a.shape()[U(d)];
  for (auto v : sizes)
    if (v < 0) fail<ValueError>("split: sizes must be non-negative, got [{}]", fmt::join(sizes, ", "));
  std::int64_t total = 0;
  for (auto v : sizes)
    if (!size_add(total, v, total))
      fail<ShapeError>("split: sizes [{}] must sum to the size of dim {} ({}), but their sum overflows int64",
                       fmt::join(sizes, ", "), d, n);
  if (total != n)
    fail<ShapeError>("split: sizes [{}] must sum to the size of dim {}: {} vs {}", fmt::join(sizes, ", "), d, n,
                     total);
  std::vector<Tensor> out;
  std::int64_t lo = 0;
  for (auto v : sizes) {
    out.push_back(slice(a, d, lo, lo + v));
    lo += v;
  }
  return out;
}

// PyTorch's chunk: pieces of ceil(n / chunks) elements, the last one smaller, so there may be
// fewer than `chunks` pieces (n = 5, chunks = 4 gives 2, 2, 1). An empty dim gives `chunks`
// empty pieces.
std::vector<Tensor> chunk(const Tensor& a, std::int64_t chunks, std::int64_t axis) {
  if (chunks <= 0) fail<ValueError>("chunk: number of chunks must be positive, got {}", chunks);
  if (a.dim() == 0) fail<ShapeError>("chunk: cannot chunk a 0-d tensor");
  const int d = normalize_axis(axis, a.dim(), "chunk");
  const std::int64_t n = a.shape()[U(d)];
  if (n == 0) {
    check_piece_count(chunks, "chunk");
    return split(a, std::vector<std::int64_t>(static_cast<std::size_t>(chunks), 0), d);
  }
  return split(a, (n - 1) / chunks + 1, d);  // ceil(n / chunks), without overflow for huge chunks
}

// out[o, i, j] = a[o, index[i], j] with a viewed as [outer, n, inner] around the axis.
Tensor index_select(const Tensor& a, std::int64_t axis, const Tensor& index) {
  check_index_dtype(index, "index_select");
  if (index.dim() > 1) fail<ShapeError>("index_select: index must be 1-d, got shape {}", index.shape());
  if (a.dim() == 0) fail<ShapeError>("index_select: input must have at least one dim");
  const int d = normalize_axis(axis, a.dim(), "index_select");
  const std::int64_t n = a.shape()[U(d)], k = index.numel();
  Tensor idx = checked_index(index, n, d, "index_select").reshape(Shape{k});
  Shape os = a.shape();
  os[U(d)] = k;
  Tensor out = empty(os, a.dtype());
  // plain variables, not a structured binding: clang < 16 cannot use those inside OpenMP regions
  std::int64_t outer = 0, inner = 0;
  std::tie(outer, inner) = outer_inner(a.shape(), d);
  const Tensor ac = a.detach().contiguous();
  const std::int64_t* pi = idx.data<std::int64_t>();
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* pa = ac.data<T>();
    T* po = out.data<T>();
    detail::parallel_for(outer, outer * k * inner > detail::kParallelGrain, [&](std::int64_t o) {
      for (std::int64_t i = 0; i < k; ++i) std::copy_n(pa + (o * n + pi[i]) * inner, inner, po + (o * k + i) * inner);
    });
  });
  // backward: each picked row's gradient added back where it came from (repeats accumulate)
  return record("index_select", {a}, out, [in = a.shape(), d, idx](BackwardContext&, const Tensor& g) -> Grads {
    return {index_add(in, d, idx, g)};
  });
}

// out = zeros(shape); out[o, index[i], j] += src[o, i, j]: the adjoint of index_select.
Tensor index_add(const Shape& shape, std::int64_t axis, const Tensor& index, const Tensor& src) {
  check_index_dtype(index, "index_add");
  if (index.dim() > 1) fail<ShapeError>("index_add: index must be 1-d, got shape {}", index.shape());
  if (shape.ndim() == 0) fail<ShapeError>("index_add: shape must have at least one dim");
  const int d = normalize_axis(axis, shape.ndim(), "index_add");
  const std::int64_t n = shape[U(d)], k = index.numel();
  Shape expect = shape;
  expect[U(d)] = k;
  if (src.shape() != expect)
    fail<ShapeError>("index_add: src must have the shape of {} with dim {} of size {}: {} vs {}", shape, d, k, expect,
                     src.shape());
  Tensor idx = checked_index(index, n, d, "index_add").reshape(Shape{k});
  Tensor out = zeros(shape, src.dtype());
  // plain variables, not a structured binding: clang < 16 cannot use those inside OpenMP regions
  std::int64_t outer = 0, inner = 0;
  std::tie(outer, inner) = outer_inner(shape, d);
  const Tensor sc = src.detach().contiguous();
  const std::int64_t* pi = idx.data<std::int64_t>();
  dispatch_all(src.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* ps = sc.data<T>();
    T* po = out.data<T>();
    // each o writes only its own [n, inner] block, so the outer loop is race-free
    detail::parallel_for(outer, outer * k * inner > detail::kParallelGrain, [&](std::int64_t o) {
      for (std::int64_t i = 0; i < k; ++i) {
        const T* s = ps + (o * k + i) * inner;
        T* t = po + (o * n + pi[i]) * inner;
        for (std::int64_t j = 0; j < inner; ++j) t[j] += s[j];
      }
    });
  });
  return record("index_add", {src}, out, [d, idx](BackwardContext&, const Tensor& g) -> Grads {
    return {index_select(g, d, idx)};
  });
}

namespace {
// Shared checks of gather/scatter_add: int64 index of the same rank as `shape`, no larger than
// it in the dims other than d, values in [0, shape[d]). Returns the index made contiguous.
Tensor check_gather_index(const Shape& shape, int d, const Tensor& index, const char* op) {
  check_index_dtype(index, op);
  if (index.dim() != shape.ndim())
    fail<ShapeError>("{}: index must have as many dims as the input {}: {} vs {}", op, shape, shape.ndim(),
                     index.dim());
  for (int i = 0; i < shape.ndim(); ++i)
    if (i != d && index.shape()[U(i)] > shape[U(i)])
      fail<ShapeError>("{}: index shape {} exceeds input shape {} at dim {}: {} vs {}", op, index.shape(), shape, i,
                       shape[U(i)], index.shape()[U(i)]);
  return checked_index(index, shape[U(d)], d, op);
}
}  // namespace

// out[p] = a[p with its coordinate along axis replaced by index[p]]   (torch.gather); out has
// index's shape.
Tensor gather(const Tensor& a, std::int64_t axis, const Tensor& index) {
  if (a.dim() == 0) fail<ShapeError>("gather: input must have at least one dim");
  const int d = normalize_axis(axis, a.dim(), "gather");
  const Tensor idx = check_gather_index(a.shape(), d, index, "gather");
  Tensor out = empty(index.shape(), a.dtype());
  // Walk index's shape with a's strides, the stride along d zeroed: index[p] supplies that part.
  Strides sa = a.strides();
  const std::int64_t ad = sa[U(d)];
  sa[U(d)] = 0;
  const std::int64_t la = sa.back();
  const std::int64_t* pi = idx.data<std::int64_t>();
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* pa = a.data<T>();
    T* po = out.data<T>();
    detail::for_each_row<1>(idx.shape(), {&sa}, [&](std::int64_t m, const std::array<std::int64_t, 1>& off, std::int64_t o) {
      for (std::int64_t i = 0; i < m; ++i) po[o + i] = pa[off[0] + i * la + pi[o + i] * ad];
    });
  });
  // backward: each output's gradient added back to the element it was read from
  return record("gather", {a}, out, [in = a.shape(), d, idx](BackwardContext&, const Tensor& g) -> Grads {
    return {scatter_add(in, d, idx, g)};
  });
}

// out = zeros(shape); out[p with coordinate d replaced by index[p]] += src[p], p over index's
// shape: gather's adjoint. Unlike torch.scatter_add, src must have exactly index's shape.
Tensor scatter_add(const Shape& shape, std::int64_t axis, const Tensor& index, const Tensor& src) {
  if (shape.ndim() == 0) fail<ShapeError>("scatter_add: shape must have at least one dim");
  const int d = normalize_axis(axis, shape.ndim(), "scatter_add");
  const Tensor idx = check_gather_index(shape, d, index, "scatter_add");
  if (src.shape() != index.shape())
    fail<ShapeError>("scatter_add: src must have the index's shape: {} vs {}", index.shape(), src.shape());
  Tensor out = zeros(shape, src.dtype());
  Strides so = contiguous_strides(shape);
  const std::int64_t od = so[U(d)];
  so[U(d)] = 0;
  const std::int64_t lo = so.back();
  const Tensor sc = src.detach().contiguous();
  const std::int64_t* pi = idx.data<std::int64_t>();
  dispatch_all(src.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* ps = sc.data<T>();
    T* po = out.data<T>();
    // serial: repeated indices add into the same element
    detail::for_each_row<1>(idx.shape(), {&so}, [&](std::int64_t m, const std::array<std::int64_t, 1>& off, std::int64_t o) {
      for (std::int64_t i = 0; i < m; ++i) po[off[0] + i * lo + pi[o + i] * od] += ps[o + i];
    });
  });
  return record("scatter_add", {src}, out, [d, idx](BackwardContext&, const Tensor& g) -> Grads {
    return {gather(g, d, idx)};
  });
}

}  // namespace ng
