// ProcessGroup: a set of processes ("ranks" 0..size-1) that run the same program and meet in
// collectives. Every rank must call the same collectives in the same order with tensors of the
// same shape and dtype (PyTorch's rule); a collective returns when all ranks have called it.
//
//   barrier()             wait for every rank
//   all_reduce(t, op)     t <- op over the ranks of t   (in place; sum, mean, max, min)
//   all_gather(t)         [size, *t.shape]: every rank's t, stacked in rank order
//   broadcast(t, root)    t <- root's t                 (in place)
//
// Tensors may be float32, float64 or int64 (mean: floating only), any shape, any layout
// (a non-contiguous tensor goes through a contiguous copy). The data are written in place
// without autograd: collectives are not recorded on the tape.
//
// A backend implements the five virtual functions on contiguous buffers. Two exist:
// LocalGroup below (one process, world size 1: every collective is the identity) and the MPI
// backend (dist/mpi_group.cpp, built with NORMGRAD_WITH_MPI).
//
// Mismatched collectives. MPI cannot tell that rank 0 reduces [3, 4] floats while rank 1
// broadcasts [5] doubles: it may deadlock, fail deep inside, or return garbage. With
// check_collectives on (the default), every collective first all-gathers a 96-byte
// signature of each rank's call (which collective, reduce op, root, dtype, shape) and throws
// DistError on EVERY rank, listing each rank's call, if they differ. Cost: one extra small
// collective per call, i.e. one more network latency (a few microseconds on one machine,
// tens on a cluster); turn it off with set_check_collectives(false) or the environment
// variable NORMGRAD_DIST_CHECKS=0 once a program is known to be right. A rank that stops
// calling collectives altogether (it exited, or waits elsewhere) cannot be detected by its
// peers: they wait. Hence ng::dist::guarded_main (dist/dist.h): an uncaught exception on one
// rank ends the whole job with its message.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "autograd/error.h"
#include "autograd/tensor.h"

namespace ng::dist {

// A collective that cannot be done: ranks that disagree, a backend failure, a missing init.
struct DistError : Error {
  using Error::Error;
};

enum class ReduceOp : std::uint8_t { sum, mean, max, min };
const char* reduce_op_name(ReduceOp op);

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  ProcessGroup() = default;
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "local", "mpi"

  void barrier();
  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum);
  Tensor all_gather(const Tensor& t);
  void broadcast(Tensor& t, int root = 0);

  // Ends every process of the job now (MPI_Abort), after printing `reason` on stderr.
  [[noreturn]] virtual void abort(const std::string& reason, int code = 1) = 0;

  bool check_collectives() const { return check_; }
  void set_check_collectives(bool on) { check_ = on; }

  // What this rank has sent so far: collectives called and payload bytes it contributed
  // (a tensor of b bytes counts b for all_reduce, broadcast and all_gather alike; the
  // signature checks are not counted). A ring all-reduce moves about 2 (size-1)/size times
  // the payload over each rank's link (docs/distributed.md).
  struct Stats {
    std::int64_t collectives = 0;
    std::int64_t bytes = 0;
  };
  Stats stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  // The backend, on contiguous buffers of `count` elements of dtype d. do_all_reduce gets
  // sum, max or min (mean is a sum divided here). do_all_gather writes size * count
  // elements to `out`, rank r's at out + r * count.
  virtual void do_barrier() = 0;
  virtual void do_all_reduce(void* data, std::int64_t count, DType d, ReduceOp op) = 0;
  virtual void do_all_gather(const void* in, void* out, std::int64_t count, DType d) = 0;
  virtual void do_broadcast(void* data, std::int64_t count, DType d, int root) = 0;

 private:
  enum class Kind : std::int64_t { barrier = 1, all_reduce, all_gather, broadcast };
  // With check_collectives: all-gathers this call's signature and throws DistError on every
  // rank if the ranks disagree.
  void agree(Kind kind, const Tensor* t, ReduceOp op, int root, const char* name);
  void count(const Tensor& t) {
    ++stats_.collectives;
    stats_.bytes += t.numel() * static_cast<std::int64_t>(dtype_size(t.dtype()));
  }

  bool check_ = true;
  Stats stats_;
};

using ProcessGroupPtr = std::shared_ptr<ProcessGroup>;

// One process: rank 0 of a world of size 1. Every collective is the identity
// (all_gather adds a leading axis of size 1); abort() calls std::abort.
class LocalGroup : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  [[noreturn]] void abort(const std::string& reason, int code = 1) override;

 protected:
  void do_barrier() override {}
  void do_all_reduce(void*, std::int64_t, DType, ReduceOp) override {}
  void do_all_gather(const void* in, void* out, std::int64_t count, DType d) override;
  void do_broadcast(void*, std::int64_t, DType, int) override {}
};

}  // namespace ng::dist
