#include "autograd/tensor.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <type_traits>

#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "autograd/pool.h"
#include "autograd/random.h"
#include "autograd/tape.h"

namespace ng {

namespace {
std::atomic<std::int64_t> g_live_storages{0};
constexpr std::size_t kAlign = 64;  // cache line; lets the compiler use aligned vector loads

// The pooling switch and per-thread free lists of autograd/pool.h (see there for why).
constexpr int kClasses = 7;                     // 64, 128, ..., 4096 bytes
constexpr std::size_t kCacheBytes = 1 << 20;    // at most this much spare memory per class
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRecycle = false;
#else
constexpr bool kRecycle = true;
#endif

// Size class of a request: the smallest c with (kAlign << c) >= n.
std::size_t size_class(std::size_t n) {
  std::size_t c = 0;
  while ((kAlign << c) < n) ++c;
  return c;
}

struct FreeLists {
  struct Block {
    Block* next;
  };
  std::array<Block*, kClasses> head{};
  std::array<std::size_t, kClasses> count{};
  ~FreeLists();
};
// Set when this thread's lists are destroyed (thread exit): later frees bypass them. A plain
// bool has no destructor, so it stays readable during the rest of the thread's teardown.
thread_local bool t_lists_gone = false;
thread_local FreeLists t_lists;
FreeLists::~FreeLists() {
  for (Block* b : head)
    while (b) {
      Block* next = b->next;
      std::free(b);
      b = next;
    }
  t_lists_gone = true;
}
// ---- large blocks: a bounded cache of freed buffers, shared by all threads --------------
// A training loop allocates the same large activation and gradient buffers at every step.
// Handed back to malloc, blocks of megabytes go back to the kernel (munmap, heap trim), and
// the next step pays a page fault and a page clear for every 4 KiB it touches again: in the
// demo CNN that was about 15% of a step. Freed blocks above kPoolMax are kept here instead,
// keyed by their size rounded up to whole pages, and handed out again for the same size.
// At most kLargeCacheBytes are kept; beyond that a freed block goes back to malloc.
constexpr std::size_t kPage = 4096;
constexpr std::size_t kLargeCacheBytes = std::size_t{256} << 20;

std::size_t large_size(std::size_t n) {
  return (n + kPage - 1) / kPage * kPage;
}

struct LargeCache {
  std::mutex mu;
  std::multimap<std::size_t, void*> blocks;  // rounded size -> block
  std::size_t bytes = 0;
};
LargeCache& large_cache() {
  static LargeCache* cache = new LargeCache;  // never destroyed: frees may run during exit
  return *cache;
}

void* large_alloc(std::size_t n) {
  const std::size_t size = large_size(n);
  if (kRecycle) {
    LargeCache& c = large_cache();
    const std::lock_guard<std::mutex> lock(c.mu);
    if (auto it = c.blocks.find(size); it != c.blocks.end()) {
      void* p = it->second;
      c.blocks.erase(it);
      c.bytes -= size;
      return p;
    }
  }
  return std::aligned_alloc(kAlign, size);
}

void large_free(void* p, std::size_t n) {
  const std::size_t size = large_size(n);
  if (kRecycle) {
    LargeCache& c = large_cache();
    const std::lock_guard<std::mutex> lock(c.mu);
    if (c.bytes + size <= kLargeCacheBytes) {
      try {
        c.blocks.emplace(size, p);  // allocates a map node: may throw when memory is exhausted
        c.bytes += size;
        return;
      } catch (const std::bad_alloc&) {  // then simply free the block (frees must not throw)
      }
    }
  }
  std::free(p);
}
}  // namespace

void* detail::pool_alloc(std::size_t n) {
  if (n > kPoolMax) return large_alloc(n);
  // Always the full class size, so that any thread may later recycle the block.
  const std::size_t c = size_class(n);
  if (kRecycle && !t_lists_gone) {
    if (FreeLists::Block* b = t_lists.head[c]) {
      t_lists.head[c] = b->next;
      --t_lists.count[c];
      return b;
    }
  }
  return std::aligned_alloc(kAlign, kAlign << c);
}

void detail::pool_free(void* p, std::size_t n) {
  if (kRecycle && n <= kPoolMax && !t_lists_gone) {
    const std::size_t c = size_class(n);
    if (t_lists.count[c] < kCacheBytes / (kAlign << c)) {
      auto* b = static_cast<FreeLists::Block*>(p);
      b->next = t_lists.head[c];
      t_lists.head[c] = b;
      ++t_lists.count[c];
      return;
    }
  }
  if (n > kPoolMax) return large_free(p, n);
  std::free(p);
}

std::int64_t live_storage_count() { return g_live_storages.load(); }

namespace {
std::atomic<std::uint64_t> g_allocation_limit{std::uint64_t{1} << 47};
}  // namespace

std::uint64_t allocation_limit() { return g_allocation_limit.load(std::memory_order_relaxed); }
void set_allocation_limit(std::uint64_t bytes) { g_allocation_limit.store(bytes, std::memory_order_relaxed); }

std::size_t checked_nbytes(const Shape& s, std::size_t elem_size, const char* op) {
  const auto n = static_cast<std::uint64_t>(checked_numel(s, op));
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(n, elem_size, &bytes) || bytes > allocation_limit())
    fail<OutOfMemoryError>("{}: shape {} needs {} x {} bytes, more than the allocation limit of {} bytes "
                           "(ng::allocation_limit())",
                           op, s, n, elem_size, allocation_limit());
  return static_cast<std::size_t>(bytes);
}

Storage::Storage(std::size_t n) : nbytes(n) {
  data = detail::pool_alloc(n);
  if (!data) fail<OutOfMemoryError>("out of memory allocating {} bytes", n);
  ++g_live_storages;
}
Storage::~Storage() {
  detail::pool_free(data, nbytes);
  --g_live_storages;
}

void Tensor::fail_undefined_() { fail<Error>("Tensor: operation on an undefined tensor"); }

void Tensor::check_dtype_(DType d) const {
  if (impl().dtype != d)
    fail<DTypeError>("Tensor::data: requested {} but the tensor is {}", dtype_name(d), dtype_name(dtype()));
}

std::int64_t Tensor::size(std::int64_t axis) const {
  if (dim() == 0) fail<IndexError>("Tensor::size: a 0-d tensor has no dimensions (asked for dim {})", axis);
  return shape()[static_cast<std::size_t>(normalize_axis(axis, dim(), "Tensor::size"))];
}

bool Tensor::is_contiguous() const {
  const auto& s = shape();
  const auto& st = strides();
  std::int64_t expect = 1;
  for (int i = s.ndim() - 1; i >= 0; --i) {
    const auto iu = static_cast<std::size_t>(i);
    if (s[iu] != 1 && st[iu] != expect) return false;
    expect *= s[iu];
  }
  return true;
}

double Tensor::item() const {
  if (numel() != 1)
    fail<ValueError>("item: only one-element tensors can be converted to a number, got shape {}", shape());
  return dispatch_all(dtype(), [&](auto tag) -> double {
    using T = decltype(tag);
    return static_cast<double>(*data<T>());
  });
}

double Tensor::at(const std::vector<std::int64_t>& index) const {
  if (static_cast<int>(index.size()) != dim())
    fail<IndexError>("at: {} indices for a {}-d tensor of shape {}", index.size(), dim(), shape());
  std::int64_t off = 0;
  for (std::size_t i = 0; i < index.size(); ++i) {
    std::int64_t k = index[i] < 0 ? index[i] + shape()[i] : index[i];
    if (k < 0 || k >= shape()[i])
      fail<IndexError>("at: index {} out of range for dim {} of size {}", index[i], i, shape()[i]);
    off += k * strides()[i];
  }
  return dispatch_all(dtype(), [&](auto tag) -> double {
    using T = decltype(tag);
    return static_cast<double>(data<T>()[off]);
  });
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> out(static_cast<std::size_t>(numel()));
  dispatch_all(dtype(), [&](auto tag) {
    using T = decltype(tag);
    detail::unary_map<T>(*this, out.data(), [](T v) { return static_cast<double>(v); });
  });
  return out;
}

Tensor& Tensor::requires_grad_(bool on) {
  if (on && !is_floating(dtype()))
    fail<DTypeError>("requires_grad_: only floating tensors can require gradients, got {}", dtype());
  if (!on && !is_leaf())
    fail<AutogradError>("requires_grad_: cannot turn off requires_grad of a non-leaf (op '{}'); use detach()",
                        grad_fn()->op);
  impl().requires_grad = on;
  return *this;
}

void Tensor::set_grad(const Tensor& g) {
  if (g.defined() && (g.shape() != shape() || g.dtype() != dtype()))
    fail<ShapeError>("set_grad: gradient {} {} does not match tensor {} {}", g.shape(), g.dtype(), shape(),
                     dtype());
  impl().grad = g.impl_ptr();
}

void Tensor::backward(const Tensor& g, bool retain_graph, bool create_graph) const {
  ng::backward(*this, g, BackwardOptions{retain_graph, create_graph});
}

Tensor make_view(const Tensor& t, const Shape& s, const Strides& st, std::int64_t offset) {
  // Ops check the shapes they compute with their own names; this is the backstop.
  if (!shape_fits(s) || st.size() != s.size()) [[unlikely]]
    fail<ShapeError>("make_view: invalid view shape {} with strides [{}]", s, fmt::join(st, ", "));
  auto impl = detail::make_pooled<TensorImpl>();
  impl->storage = t.impl().storage;
  impl->offset = offset;
  impl->shape = s;
  impl->strides = st;
  impl->dtype = t.dtype();
  return Tensor(std::move(impl));
}

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype());
  dispatch_all(dtype(), [&](auto tag) {
    using T = decltype(tag);
    detail::copy_to_contiguous<T>(*this, out.data<T>());
  });
  return record("clone", {*this}, out, [](BackwardContext&, const Tensor& g) -> Grads { return {g}; });
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::to(DType d) const { return d == dtype() ? *this : cast(*this, d); }

Tensor cast(const Tensor& a, DType d) {
  if (a.requires_grad() && grad_enabled() && !is_floating(d))
    fail<DTypeError>("to: cannot cast a tensor that requires grad to {}", d);
  Tensor out = empty(a.shape(), d);
  dispatch_all(a.dtype(), [&](auto ta) {
    using A = decltype(ta);
    dispatch_all(d, [&](auto tb) {
      using B = decltype(tb);
      if constexpr (std::is_floating_point_v<A> && std::is_integral_v<B>) {
        // float -> int64 truncates towards 0; NaN, inf and values beyond 2^63 have no int64 value
        // (the C++ cast is undefined behaviour): refused, naming the first such element
        const Tensor ac = a.detach().contiguous();
        const A* p = ac.data<A>();
        for (std::int64_t i = 0; i < ac.numel(); ++i)
          if (!(p[i] >= A(-0x1p63) && p[i] < A(0x1p63))) [[unlikely]]
            fail<ValueError>("to: element {} of shape {} is {}, which has no {} value (NaN, infinite or beyond 2^63); "
                             "replace such values first (e.g. with where or clamp)",
                             i, a.shape(), p[i], d);
      }
      detail::unary_map<A>(a, out.data<B>(), [](A v) { return static_cast<B>(v); });
    });
  });
  const DType from = a.dtype();
  return record("to", {a}, out, [from](BackwardContext&, const Tensor& g) -> Grads { return {cast(g, from)}; });
}

// -- in-place updates ----------------------------------------------------------------------
namespace {
void check_inplace(const Tensor& t, const char* op) {
  if (grad_enabled() && t.requires_grad())
    fail<AutogradError>("{}: in-place update of a tensor that requires grad while recording; wrap it in "
                        "NoGradGuard (as optimizers do)",
                        op);
}
}  // namespace

// Where a write may land, as PyTorch decides it (ATen's MemOverlap):
//  * internal overlap: two elements of the destination share one memory location (an
//    expanded view, stride 0 on a dim of size > 1). Writing through it is ambiguous: refused.
//  * partial overlap: the source and the destination share part of their memory but are not
//    the same view. PyTorch refuses it when both are non-overlapping and dense (a shifted
//    contiguous view) and lets the "too hard to tell" cases through; here those are read from a
//    snapshot of the source, so the result is always the elementwise meaning.
namespace {
// Elements of t (strides >= 0) are pairwise distinct iff, with the dims of size > 1 sorted by
// stride, each stride exceeds the span of the dims before it: stride_k > sum_{j<k} (n_j - 1) stride_j.
bool has_internal_overlap(const Tensor& t) {
  std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // (stride, size)
  for (int d = 0; d < t.dim(); ++d)
    if (t.shape()[static_cast<std::size_t>(d)] > 1)
      dims.emplace_back(t.strides()[static_cast<std::size_t>(d)], t.shape()[static_cast<std::size_t>(d)]);
  std::sort(dims.begin(), dims.end());
  std::int64_t span = 0;  // largest offset reachable with the dims so far
  for (const auto& [stride, size] : dims) {
    if (stride <= span) return true;
    span += (size - 1) * stride;
  }
  return false;
}

void check_no_internal_overlap(const Tensor& dst, const char* op) {
  if (dst.numel() > 1 && has_internal_overlap(dst))
    fail<ValueError>("{}: more than one element of the written-to tensor refers to a single memory location (shape "
                     "{}, strides [{}], e.g. an expanded view); clone() it before writing to it",
                     op, dst.shape(), fmt::join(dst.strides(), ", "));
}

// [first, last] element offsets of t in its storage (t non-empty, strides >= 0).
std::pair<std::int64_t, std::int64_t> extent(const Tensor& t) {
  std::int64_t last = t.offset();
  for (int d = 0; d < t.dim(); ++d)
    last += (t.shape()[static_cast<std::size_t>(d)] - 1) * t.strides()[static_cast<std::size_t>(d)];
  return {t.offset(), last};
}

// The source to read: src itself, or a snapshot of it when it shares memory with dst without
// being the very same view (see above). Refuses PyTorch's "partial overlap" case.
Tensor readable_source(const Tensor& src, const Tensor& dst, const char* op) {
  if (src.numel() == 0 || dst.numel() == 0 || src.impl().storage != dst.impl().storage) return src;
  const auto [s0, s1] = extent(src);
  const auto [d0, d1] = extent(dst);
  if (s1 < d0 || d1 < s0) return src;  // disjoint ranges
  if (src.offset() == dst.offset() && src.shape() == dst.shape() && src.strides() == dst.strides()) return src;
  if (src.is_contiguous() && dst.is_contiguous())
    fail<ValueError>("{}: the source and the written-to tensor partly share memory (offsets {} and {} of one "
                     "storage); clone() the source first",
                     op, src.offset(), dst.offset());
  NoGradGuard no_grad;
  return src.detach().clone();
}
}  // namespace

namespace {
// dst[p] = f(dst[p], src[p]) over dst's shape, for any strides of dst (no internal overlap) and a
// source broadcast to dst's shape.
template <class T, class F>
void update_strided(Tensor& dst, const Tensor& src, F f) {
  T* pd = dst.data<T>();
  const T* ps = src.data<T>();
  const std::int64_t n = dst.numel();
  if (dst.is_contiguous() && src.is_contiguous() && src.shape() == dst.shape()) {
    for (std::int64_t i = 0; i < n; ++i) pd[i] = f(pd[i], ps[i]);
    return;
  }
  const Strides sd = dst.strides(), ss = detail::broadcast_strides(src, dst.shape());
  const std::int64_t ld = dst.dim() ? sd.back() : 1, ls = dst.dim() ? ss.back() : 0;
  detail::for_each_row<2>(dst.shape(), {&sd, &ss}, [&](std::int64_t m, const std::array<std::int64_t, 2>& off, std::int64_t) {
    T* rd = pd + off[0];
    const T* rs = ps + off[1];
    for (std::int64_t i = 0; i < m; ++i) rd[i * ld] = f(rd[i * ld], rs[i * ls]);
  });
}

// PyTorch's in-place rule: the source broadcasts to the destination's shape, never the reverse.
void check_broadcasts_to(const Tensor& src, const Tensor& dst, const char* op) {
  const int ns = src.dim(), nd = dst.dim();
  bool ok = ns <= nd;
  for (int k = 1; ok && k <= ns; ++k) {
    const std::int64_t a = src.shape()[static_cast<std::size_t>(ns - k)], b = dst.shape()[static_cast<std::size_t>(nd - k)];
    ok = a == b || a == 1;
  }
  if (!ok)
    fail<ShapeError>("{}: source shape {} does not broadcast to the destination's shape {}", op, src.shape(),
                     dst.shape());
}
}  // namespace

// Every element of the view set to v. Unlike copy_ / add_ / mul_, an overlapping view is fine
// (one value everywhere: no ambiguity), but each memory location is written once: a dim of
// stride 0 (an expanded view) is walked as size 1, so that fill_ on a view of 2^40 copies of
// one element writes one element instead of looping 2^40 times.
Tensor& Tensor::fill_(double v) {
  check_inplace(*this, "fill_");
  dispatch_all(dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T value = value_as<T>(v, "fill_");
    T* p = data<T>();
    if (is_contiguous()) {
      std::fill(p, p + numel(), value);
    } else {
      Strides st = strides();
      Shape distinct = shape();
      for (std::size_t d = 0; d < st.size(); ++d)
        if (st[d] == 0) distinct[d] = std::min<std::int64_t>(distinct[d], 1);
      detail::for_each_row<1>(distinct, {&st}, [&](std::int64_t m, const std::array<std::int64_t, 1>& off, std::int64_t) {
        const std::int64_t s = dim() ? st.back() : 1;
        for (std::int64_t i = 0; i < m; ++i) p[off[0] + i * s] = value;
      });
    }
  });
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  check_broadcasts_to(src, *this, "copy_");
  check_no_internal_overlap(*this, "copy_");
  Tensor s = src.dtype() == dtype() ? readable_source(src, *this, "copy_") : src.detach().to(dtype());
  dispatch_all(dtype(), [&](auto tag) {
    using T = decltype(tag);
    update_strided<T>(*this, s, [](T, T v) { return v; });
  });
  return *this;
}

Tensor& Tensor::add_(const Tensor& o, double alpha) {
  check_inplace(*this, "add_");
  if (o.dtype() != dtype())
    fail<DTypeError>("add_: {} cannot be added in place to {}; cast it with .to() first", o.dtype(), dtype());
  check_broadcasts_to(o, *this, "add_");
  check_no_internal_overlap(*this, "add_");
  const Tensor q = readable_source(o, *this, "add_");
  dispatch_float(dtype(), "add_", [&](auto tag) {
    using T = decltype(tag);
    const T al = static_cast<T>(alpha);
    update_strided<T>(*this, q, [al](T p, T v) { return p + al * v; });
  });
  return *this;
}

Tensor& Tensor::mul_(double s) {
  check_inplace(*this, "mul_");
  check_no_internal_overlap(*this, "mul_");
  dispatch_float(dtype(), "mul_", [&](auto tag) {
    using T = decltype(tag);
    T* p = data<T>();
    const T sv = static_cast<T>(s);
    if (is_contiguous()) {
      const std::int64_t n = numel();
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) p[i] *= sv;
      return;
    }
    const Strides st = strides();
    const std::int64_t l = dim() ? st.back() : 1;
    detail::for_each_row<1>(shape(), {&st}, [&](std::int64_t m, const std::array<std::int64_t, 1>& off, std::int64_t) {
      for (std::int64_t i = 0; i < m; ++i) p[off[0] + i * l] *= sv;
    });
  });
  return *this;
}

Tensor& Tensor::mul_(const Tensor& o) {
  check_inplace(*this, "mul_");
  if (o.dtype() != dtype())
    fail<DTypeError>("mul_: {} cannot multiply {} in place; cast it with .to() first", o.dtype(), dtype());
  check_broadcasts_to(o, *this, "mul_");
  check_no_internal_overlap(*this, "mul_");
  const Tensor q = readable_source(o, *this, "mul_");
  dispatch_float(dtype(), "mul_", [&](auto tag) {
    using T = decltype(tag);
    update_strided<T>(*this, q, [](T p, T v) { return p * v; });
  });
  return *this;
}

// -- method forwards ------------------------------------------------------------------------
Tensor Tensor::reshape(const Shape& s) const { return ng::reshape(*this, s); }
Tensor Tensor::view(const Shape& s) const { return ng::view(*this, s); }
Tensor Tensor::flatten(std::int64_t s, std::int64_t e) const { return ng::flatten(*this, s, e); }
Tensor Tensor::transpose(std::int64_t a, std::int64_t b) const { return ng::transpose(*this, a, b); }
Tensor Tensor::t() const {
  if (dim() != 2) fail<ShapeError>("t: expected a 2-d tensor, got shape {}", shape());
  return ng::transpose(*this, 0, 1);
}
Tensor Tensor::permute(const std::vector<std::int64_t>& o) const { return ng::permute(*this, o); }
Tensor Tensor::unsqueeze(std::int64_t a) const { return ng::unsqueeze(*this, a); }
Tensor Tensor::squeeze(std::int64_t a) const { return ng::squeeze(*this, a); }
Tensor Tensor::expand(const Shape& s) const { return ng::expand(*this, s); }
Tensor Tensor::sum(const std::vector<std::int64_t>& a, bool k) const { return ng::sum(*this, a, k); }
Tensor Tensor::mean(const std::vector<std::int64_t>& a, bool k) const { return ng::mean(*this, a, k); }
Tensor Tensor::pow(double p) const { return ng::pow(*this, p); }
Tensor Tensor::exp() const { return ng::exp(*this); }
Tensor Tensor::log() const { return ng::log(*this); }
Tensor Tensor::sqrt() const { return ng::sqrt(*this); }
Tensor Tensor::abs() const { return ng::abs(*this); }
Tensor Tensor::matmul(const Tensor& o) const { return ng::matmul(*this, o); }

// -- factories ------------------------------------------------------------------------------
namespace {
// Every tensor with storage of its own is made here: the shape is checked (sizes >= 0, no
// int64 overflow, see checked_numel) and the byte count capped before allocating.
Tensor allocate(const Shape& s, DType d, const char* op) {
  const std::size_t nbytes = checked_nbytes(s, dtype_size(d), op);
  // Header and storage from the pool (autograd/pool.h): both are small and short-lived.
  auto impl = detail::make_pooled<TensorImpl>();
  impl->storage = detail::make_pooled<Storage>(nbytes);
  impl->shape = s;
  impl->strides = contiguous_strides(s);
  impl->dtype = d;
  return Tensor(std::move(impl));
}

Tensor filled(const Shape& s, double value, DType d, const char* op) {
  Tensor t = allocate(s, d, op);
  dispatch_all(d, [&](auto tag) {
    using T = decltype(tag);
    std::fill(t.data<T>(), t.data<T>() + t.numel(), value_as<T>(value, op));
  });
  return t;
}
}  // namespace

Tensor empty(const Shape& s, DType d) { return allocate(s, d, "empty"); }
Tensor full(const Shape& s, double value, DType d) { return filled(s, value, d, "full"); }
Tensor zeros(const Shape& s, DType d) {
  Tensor t = allocate(s, d, "zeros");
  std::memset(t.impl().storage->data, 0, t.impl().storage->nbytes);
  return t;
}
Tensor ones(const Shape& s, DType d) { return filled(s, 1.0, d, "ones"); }
Tensor scalar(double value, DType d) { return full(Shape{}, value, d); }

Tensor arange(double start, double end, double step, DType d) {
  if (step == 0.0) fail<ValueError>("arange: step must be nonzero");
  if (!std::isfinite(start) || !std::isfinite(end) || !std::isfinite(step))
    fail<ValueError>("arange: start, end and step must be finite, got {}, {}, {}", start, end, step);
  const double n = std::ceil((end - start) / step);
  // 2^62 and more elements cannot be allocated anyway; the bound keeps the cast defined
  if (n >= 0x1p62)
    fail<OutOfMemoryError>("arange: [{}, {}) with step {} has {} elements, too many to allocate", start, end, step, n);
  const auto count = static_cast<std::int64_t>(std::max(0.0, n));
  Tensor t = allocate(Shape{count}, d, "arange");
  dispatch_all(d, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (std::int64_t i = 0; i < count; ++i) p[i] = static_cast<T>(start + static_cast<double>(i) * step);
  });
  return t;
}
Tensor arange(std::int64_t n, DType d) { return arange(0.0, static_cast<double>(n), 1.0, d); }

namespace {
template <class V>
Tensor from_values(const std::vector<V>& values, const Shape& s, DType d) {
  const std::int64_t n = checked_numel(s, "from_vector");
  if (static_cast<std::int64_t>(values.size()) != n)
    fail<ShapeError>("from_vector: {} values cannot fill shape {} ({} elements)", values.size(), s, n);
  Tensor t = allocate(s, d, "from_vector");
  dispatch_all(d, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (std::size_t i = 0; i < values.size(); ++i) {
      if constexpr (std::is_same_v<T, V>)
        p[i] = values[i];  // exact (int64 beyond 2^53 must not pass through double)
      else
        p[i] = value_as<T>(static_cast<double>(values[i]), "from_vector");
    }
  });
  return t;
}
}  // namespace

Tensor from_vector(const std::vector<double>& v, const Shape& s, DType d) { return from_values(v, s, d); }
Tensor from_vector(const std::vector<float>& v, const Shape& s) { return from_values(v, s, DType::f32); }
Tensor from_vector(const std::vector<std::int64_t>& v, const Shape& s) { return from_values(v, s, DType::i64); }
Tensor tensor(std::initializer_list<double> v, const Shape& s, DType d) {
  return from_values(std::vector<double>(v), s, d);
}
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, t.dtype()); }

namespace {
template <class G>
Tensor random_fill(const Shape& s, DType d, Generator* gen, G draw) {
  if (!is_floating(d)) fail<DTypeError>("random: expected a floating dtype, got {}", d);
  Generator& g = gen ? *gen : default_generator();
  Tensor t = allocate(s, d, "random");
  dispatch_float(d, "random", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(draw(g));
  });
  return t;
}
}  // namespace

Tensor rand(const Shape& s, DType d, Generator* gen) {
  return random_fill(s, d, gen, [](Generator& g) { return g.uniform(); });
}
Tensor randn(const Shape& s, DType d, Generator* gen) {
  return random_fill(s, d, gen, [](Generator& g) { return g.normal(); });
}
Tensor uniform(const Shape& s, double lo, double hi, DType d, Generator* gen) {
  if (!(hi >= lo)) fail<ValueError>("uniform: expected lo <= hi, got {} and {}", lo, hi);
  return random_fill(s, d, gen, [=](Generator& g) { return g.uniform(lo, hi); });
}
Tensor normal(const Shape& s, double m, double sd, DType d, Generator* gen) {
  if (!(sd >= 0)) fail<ValueError>("normal: expected stddev >= 0, got {}", sd);
  return random_fill(s, d, gen, [=](Generator& g) { return m + sd * g.normal(); });
}
Tensor randint(const Shape& s, std::int64_t lo, std::int64_t hi, Generator* gen) {
  if (hi <= lo) fail<ValueError>("randint: empty range [{}, {})", lo, hi);  // also for an empty shape
  Generator& g = gen ? *gen : default_generator();
  Tensor t = allocate(s, DType::i64, "randint");
  auto* p = t.data<std::int64_t>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = g.randint(lo, hi);
  return t;
}

}  // namespace ng

// -- printing ------------------------------------------------------------------------------
namespace {
// Prints a tensor the way PyTorch does: rows of a dim separated by ",\n" plus one blank line
// per further enclosing dim, nested rows indented under their opening bracket, and (for
// more than 1000 elements) each dim longer than 6 cut to its first and last 3 entries around
// "...". Two passes: the first only measures the widest printed element, so that the columns
// line up over exactly the elements shown.
struct Printer {
  const ng::Tensor& t;
  bool summarize;
  bool integral;
  bool measuring = true;
  std::size_t width = 1;
  std::string out;
  static constexpr std::int64_t kEdge = 3;
  static constexpr int kPrecision = 4;

  void element(double v) {
    const std::string s = integral ? fmt::format("{}", static_cast<long long>(v)) : fmt::format("{:.{}f}", v, kPrecision);
    if (measuring) width = std::max(width, s.size());
    else out += fmt::format("{:>{}}", s, width);
  }
  void rec(std::vector<std::int64_t>& idx, int d, int indent) {
    const auto n = t.shape()[static_cast<std::size_t>(d)];
    const bool last = d == t.dim() - 1;
    // between rows of dim d: a newline per remaining dim (a blank line between matrices),
    // then the indent of the rows' opening brackets
    const std::string sep = last ? ", " : "," + std::string(static_cast<std::size_t>(t.dim() - d - 1), '\n') +
                                              std::string(static_cast<std::size_t>(indent + 1), ' ');
    out += '[';
    for (std::int64_t i = 0; i < n; ++i) {
      if (summarize && n > 2 * kEdge && i == kEdge) {
        out += last ? " ..." : "...";
        out += sep;
        i = n - kEdge - 1;
        continue;
      }
      idx[static_cast<std::size_t>(d)] = i;
      if (last) element(t.at(idx));
      else rec(idx, d + 1, indent + 1);
      if (i + 1 < n) out += sep;
    }
    out += ']';
  }
};
}  // namespace

fmt::format_context::iterator fmt::formatter<ng::Tensor>::format(const ng::Tensor& t, format_context& ctx) const {
  if (!t.defined()) return fmt::format_to(ctx.out(), "tensor(undefined)");
  std::string tail = fmt::format("shape={}, dtype={}", t.shape(), t.dtype());
  if (t.grad_fn()) tail += fmt::format(", grad_fn={}", t.grad_fn()->op);
  else if (t.requires_grad()) tail += ", requires_grad=true";
  if (summary_only) return fmt::format_to(ctx.out(), "tensor({})", tail);
  const bool integral = t.dtype() == ng::DType::i64;
  Printer p{t, t.numel() > 1000, integral, true, 1, {}};
  if (t.dim() == 0) {
    p.measuring = false;
    p.element(t.item());
  } else if (t.numel() == 0) {
    p.out = "[]";
  } else {
    std::vector<std::int64_t> idx(static_cast<std::size_t>(t.dim()), 0);
    p.rec(idx, 0, 7);  // measure
    p.out.clear();
    p.measuring = false;
    p.rec(idx, 0, 7);  // 7 = strlen("tensor(")
  }
  return fmt::format_to(ctx.out(), "tensor({},\n       {})", p.out, tail);
}
