// The MPI backend: each collective is the MPI call of the same name on a duplicate of
// MPI_COMM_WORLD. normgrad's dtypes map to MPI_FLOAT, MPI_DOUBLE and MPI_INT64_T; counts
// above INT_MAX (MPI's int) are sent in pieces (all_gather refuses them).
#include "dist/mpi_group.h"

#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>

namespace ng::dist::detail {

namespace {

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i64: return MPI_INT64_T;
  }
  return MPI_BYTE;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
    default: return MPI_SUM;  // mean is a sum divided by the caller
  }
}

void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  fail<DistError>("{} failed: {}", call, std::string(text, static_cast<std::size_t>(len)));
}

bool mpi_running() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

class MpiGroup : public ProcessGroup {
 public:
  MpiGroup() {
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiGroup() override {
    if (mpi_running()) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  [[noreturn]] void abort(const std::string& reason, int code) override { mpi_abort(reason, code); }

 protected:
  void do_barrier() override { check(MPI_Barrier(comm_), "MPI_Barrier"); }
  void do_all_reduce(void* data, std::int64_t count, DType d, ReduceOp op) override {
    const std::size_t bytes = dtype_size(d);
    for (std::int64_t done = 0; done < count;) {
      const int n = static_cast<int>(std::min<std::int64_t>(count - done, INT_MAX));
      check(MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + static_cast<std::size_t>(done) * bytes, n,
                          mpi_type(d), mpi_op(op), comm_),
            "MPI_Allreduce");
      done += n;
    }
  }
  void do_all_gather(const void* in, void* out, std::int64_t count, DType d) override {
    if (count > INT_MAX)
      fail<DistError>("all_gather: {} elements per rank is more than one MPI call takes ({}); gather in pieces",
                      count, INT_MAX);
    check(MPI_Allgather(in, static_cast<int>(count), mpi_type(d), out, static_cast<int>(count), mpi_type(d), comm_),
          "MPI_Allgather");
  }
  void do_broadcast(void* data, std::int64_t count, DType d, int root) override {
    const std::size_t bytes = dtype_size(d);
    for (std::int64_t done = 0; done < count;) {
      const int n = static_cast<int>(std::min<std::int64_t>(count - done, INT_MAX));
      check(MPI_Bcast(static_cast<char*>(data) + static_cast<std::size_t>(done) * bytes, n, mpi_type(d), root, comm_),
            "MPI_Bcast");
      done += n;
    }
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

}  // namespace

void mpi_init() {
  int init = 0;
  MPI_Initialized(&init);
  if (init) return;
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
}

ProcessGroupPtr mpi_world() { return std::make_shared<MpiGroup>(); }

void mpi_finalize() {
  if (mpi_running()) MPI_Finalize();
}

void mpi_abort(const std::string& reason, int code) {
  std::fprintf(stderr, "%s\n", reason.c_str());
  std::fflush(stderr);
  if (mpi_running()) MPI_Abort(MPI_COMM_WORLD, code);
  std::abort();
}

}  // namespace ng::dist::detail
