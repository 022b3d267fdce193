#include "dist/ddp.h"

#include <algorithm>
#include <cstring>

#include "autograd/tape.h"
#include "dist/dist.h"

namespace ng::dist {

namespace {

std::size_t nbytes(const Tensor& t) { return static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype()); }
char* bytes_of(const Tensor& t) {
  return static_cast<char*>(t.impl().storage->data) + static_cast<std::size_t>(t.offset()) * dtype_size(t.dtype());
}

// Broadcasts rank 0's values of these tensors: one message per dtype (the tensors of a dtype
// are packed into one flat buffer), not one per tensor: latency is paid per message.
void broadcast_coalesced(ProcessGroup& group, const std::vector<Tensor>& tensors) {
  for (DType d : {DType::f32, DType::f64, DType::i64}) {
    std::int64_t numel = 0;
    for (const Tensor& t : tensors)
      if (t.dtype() == d) {
        if (!t.is_contiguous())
          fail<ValueError>("DistributedDataParallel: parameters and buffers must be contiguous (shape {})", t.shape());
        numel += t.numel();
      }
    if (numel == 0) continue;
    Tensor flat = empty(Shape{numel}, d);
    std::size_t at = 0;
    for (const Tensor& t : tensors)
      if (t.dtype() == d) {
        std::memcpy(bytes_of(flat) + at, bytes_of(t), nbytes(t));
        at += nbytes(t);
      }
    group.broadcast(flat, 0);
    at = 0;
    for (const Tensor& t : tensors)
      if (t.dtype() == d) {
        std::memcpy(bytes_of(t), bytes_of(flat) + at, nbytes(t));
        at += nbytes(t);
      }
  }
}

}  // namespace

DistributedDataParallel::DistributedDataParallel(nn::ModulePtr module, DistributedDataParallelOptions opt)
    : module_(std::move(module)), opt_(std::move(opt)) {
  if (!module_) fail<ValueError>("DistributedDataParallel: the module is null");
  if (!(opt_.bucket_cap_mb > 0))
    fail<ValueError>("DistributedDataParallel: bucket_cap_mb must be > 0: got {}", opt_.bucket_cap_mb);
  group_ = group_or_world(opt_.process_group);
  if (!group_) group_ = std::make_shared<LocalGroup>();
  add_child("module", module_);
  // Every replica starts from rank 0's state.
  std::vector<Tensor> state;
  for (auto& [name, t] : module_->state_dict()) state.push_back(t);
  broadcast_coalesced(*group_, state);
  build_buckets();
}

void DistributedDataParallel::build_buckets() {
  const auto cap = static_cast<std::int64_t>(opt_.bucket_cap_mb * 1024 * 1024);
  std::vector<Tensor> params = module_->parameters();
  std::reverse(params.begin(), params.end());  // backward finishes the last layers first
  for (DType d : {DType::f32, DType::f64}) {
    Bucket b;
    std::int64_t bytes = 0;
    for (const Tensor& p : params) {
      if (!p.requires_grad() || p.dtype() != d) continue;
      const auto pb = static_cast<std::int64_t>(nbytes(p));
      if (!b.params.empty() && bytes + pb > cap) {
        buckets_.push_back(std::move(b));
        b = Bucket();
        bytes = 0;
      }
      b.params.push_back(p);
      b.numel += p.numel();
      bytes += pb;
    }
    if (!b.params.empty()) buckets_.push_back(std::move(b));
  }
}

std::int64_t DistributedDataParallel::bytes_per_sync() const {
  std::int64_t b = 0;
  for (const auto& bucket : buckets_)
    b += bucket.numel * static_cast<std::int64_t>(dtype_size(bucket.params.front().dtype()));
  return b;
}

Tensor DistributedDataParallel::forward(const Tensor& x) {
  if (is_training() && opt_.broadcast_buffers && group_->size() > 1) broadcast_coalesced(*group_, module_->buffers());
  Tensor out = module_->forward(x);
  if (!require_sync_ || !out.requires_grad()) return out;
  // The marker: an identity whose backward queues the gradient average for the end of the
  // backward pass. (A view of out, so no data is copied.)
  Tensor alias = make_view(out, out.shape(), out.strides(), out.offset());
  return record(
      "ddp_sync", {out}, alias,
      [this](BackwardContext&, const Tensor& g) -> Grads {
        queue_callback([this] { sync_gradients(); });
        return {g};
      });
}

void DistributedDataParallel::sync_gradients() {
  ++syncs_;
  if (group_->size() == 1) return;
  NoGradGuard no_grad;
  const double scale = 1.0 / group_->size();
  for (Bucket& b : buckets_) {
    const DType d = b.params.front().dtype();
    if (!b.flat.defined()) b.flat = empty(Shape{b.numel}, d);
    // Flatten: each gradient (zeros where a parameter has none) into its slice of the buffer.
    std::size_t at = 0;
    char* flat = bytes_of(b.flat);
    for (const Tensor& p : b.params) {
      const std::size_t n = nbytes(p);
      Tensor g = p.grad();
      if (g.defined()) std::memcpy(flat + at, bytes_of(g.contiguous()), n);
      else std::memset(flat + at, 0, n);
      at += n;
    }
    group_->all_reduce(b.flat, ReduceOp::sum);
    b.flat.mul_(scale);
    // Back into the gradients (a parameter without one gets a new tensor).
    at = 0;
    for (const Tensor& p : b.params) {
      const std::size_t n = nbytes(p);
      Tensor g = p.grad();
      if (!g.defined() || !g.is_contiguous()) {
        g = empty(p.shape(), d);
        Tensor(p).set_grad(g);
      }
      std::memcpy(bytes_of(g), flat + at, n);
      at += n;
    }
  }
}

}  // namespace ng::dist
