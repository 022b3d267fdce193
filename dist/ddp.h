// DistributedDataParallel: data parallelism in the manner of torch.nn.parallel.
// DistributedDataParallel. Every rank holds a full replica of the model and trains on its
// own share of each global batch; after each backward the gradients are averaged over the
// ranks, so every replica takes the same optimizer step and the replicas stay identical.
//
//   auto ddp = std::make_shared<dist::DistributedDataParallel>(model);   // broadcasts rank 0's state
//   optim::SGD opt(ddp->parameters(), {...});
//   loss = cross_entropy((*ddp)(x), y);                   // x: this rank's share of the batch
//   loss.backward();                                      // ... gradients arrive averaged
//   opt.step();
//
// What happens, and when:
//  * Construction: rank 0's parameters and buffers are broadcast to every rank, so replicas
//    start identical whatever their seeds.
//  * forward(x) (training): if broadcast_buffers, rank 0's buffers (BatchNorm running
//    statistics) are broadcast first, as PyTorch does. Broadcasts are coalesced: one message
//    per dtype (float32 statistics, int64 counters), not one per tensor. The output carries a marker op; when a
//    backward reaches it, it queues a callback (ng::queue_callback) that runs when that
//    backward has finished, and averages the gradients.
//  * The average: the parameters that require grad are put, in reverse registration order
//    (roughly the order backward finishes them), into buckets of at most bucket_cap_mb
//    megabytes of one dtype; each bucket is copied into one flat buffer, all-reduced (sum),
//    scaled by 1/world_size and copied back into the .grad tensors. One all-reduce per bucket
//    instead of one per parameter: latency is paid per message (docs/distributed.md).
//    A parameter without a gradient on this rank contributes zeros (and then receives the
//    average, like every other).
//  * Not overlapped with the backward. PyTorch starts a bucket's all-reduce as soon as its
//    last gradient is ready (autograd hooks on every leaf) and lets it run while the backward
//    continues. normgrad's tape knows a leaf's gradient is final only when the whole walk has
//    ended (a leaf can receive several contributions), and overlap would need non-blocking
//    MPI calls progressed from the backward loop. The bucketed all-reduce after the backward
//    is simple, exact and deterministic; the cost of not overlapping is measured by the bench
//    row (docs/distributed.md).
//  * no_sync(): while the returned guard lives, forward passes do not mark their outputs, so
//    their backwards only accumulate local gradients (gradient accumulation); the first
//    backward after it averages everything accumulated, as in PyTorch.
//
// state_dict keys are the wrapped module's with a "module." prefix (PyTorch's).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "dist/process_group.h"
#include "layers/module.h"

namespace ng::dist {

struct DistributedDataParallelOptions {
  double bucket_cap_mb = 25.0;    // PyTorch's default
  bool broadcast_buffers = true;  // rank 0's buffers to every rank before each training forward
  ProcessGroupPtr process_group = nullptr;  // nullptr: the world (a world of 1 if dist is not initialized)
};

class DistributedDataParallel : public nn::Module {
 public:
  explicit DistributedDataParallel(nn::ModulePtr module, DistributedDataParallelOptions opt = {});

  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "DistributedDataParallel"; }

  // Averages the gradients now (what the end of a backward through forward()'s output does).
  void sync_gradients();

  // RAII guard returned by no_sync(): gradients accumulate locally while it lives.
  class NoSync {
   public:
    explicit NoSync(DistributedDataParallel& d) : d_(d), prev_(d.require_sync_) { d.require_sync_ = false; }
    ~NoSync() { d_.require_sync_ = prev_; }
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DistributedDataParallel& d_;
    bool prev_;
  };
  [[nodiscard]] NoSync no_sync() { return NoSync(*this); }

  nn::Module& module() const { return *module_; }
  const ProcessGroupPtr& process_group() const { return group_; }
  // Number of buckets, and the payload bytes one gradient average all-reduces.
  std::size_t num_buckets() const { return buckets_.size(); }
  std::int64_t bytes_per_sync() const;
  // Gradient averages done so far (one per backward outside no_sync).
  std::int64_t num_syncs() const { return syncs_; }

 private:
  struct Bucket {
    std::vector<Tensor> params;  // all of one dtype
    std::int64_t numel = 0;
    Tensor flat;                 // reused buffer of numel elements
  };
  void build_buckets();

  nn::ModulePtr module_;
  DistributedDataParallelOptions opt_;
  ProcessGroupPtr group_;
  std::vector<Bucket> buckets_;
  bool require_sync_ = true;
  std::int64_t syncs_ = 0;
};

}  // namespace ng::dist
