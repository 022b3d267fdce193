// ng::dist: training across processes, in the vocabulary of torch.distributed.
//
//   int main(int argc, char** argv) {
//     return ng::dist::guarded_main([&] {
//       ng::dist::init();                          // from mpirun's environment
//       int r = ng::dist::rank(), n = ng::dist::world_size();
//       ng::Tensor g = ...;
//       ng::dist::all_reduce(g, ng::dist::ReduceOp::mean);
//       return 0;
//     });
//   }
//   $ mpirun -np 2 ./prog                        (as root: mpirun --allow-run-as-root ...)
//
// init() picks the backend: MPI when the program was started by mpirun/mpiexec (their
// environment variables are set) and normgrad was built with NORMGRAD_WITH_MPI; otherwise a
// world of one process (LocalGroup), where every collective is the identity, so the same
// program runs unchanged without mpirun. The free functions act on that world group; layers
// that communicate (SyncBatchNorm, DistributedDataParallel) take an optional group and use the
// world by default.
//
// Failures end the job instead of hanging it: init() installs a std::terminate handler that
// prints the uncaught exception with this rank's number and calls MPI_Abort, and
// guarded_main() does the same for an exception leaving main's body (a rank that merely
// returned would leave its peers waiting in their next collective forever).
#pragma once
#include <functional>
#include <string>

#include "dist/process_group.h"

namespace ng::dist {

enum class Backend { automatic, mpi, local };

// Whether this build has the MPI backend (NORMGRAD_WITH_MPI).
bool mpi_available();
// Whether mpirun/mpiexec (Open MPI, MPICH, PMIx launchers) started this process.
bool launched_by_mpirun();

// Creates the world group (once; a second call with the same backend does nothing, another
// backend throws DistError). Backend::mpi without NORMGRAD_WITH_MPI throws DistError.
// Also reads NORMGRAD_DIST_CHECKS=0 (turns off the collective signature checks) and installs
// the terminate handler. MPI is finalized by finalize() or, if never called, at exit.
void init(Backend backend = Backend::automatic);
bool is_initialized();
// Releases the world group and finalizes MPI (no further MPI use in this process).
void finalize();

// The world group; DistError if init() was not called.
ProcessGroupPtr world();
// A group given explicitly, else the world if initialized, else nullptr (no communication):
// what SyncBatchNorm and DistributedDataParallel use.
ProcessGroupPtr group_or_world(const ProcessGroupPtr& group);

int rank();
int world_size();
void barrier();
void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum);
Tensor all_gather(const Tensor& t);
void broadcast(Tensor& t, int root = 0);

// Prints "[rank r/n] reason" on stderr and ends every process of the job (MPI_Abort); in a
// single process, std::abort.
[[noreturn]] void abort_job(const std::string& reason, int code = 1);

// Runs body and returns its exit code (finalizing dist). If body throws: in a world of more
// than one process, prints the message with the rank and ends the whole job (abort_job);
// otherwise prints it and returns 1.
int guarded_main(const std::function<int()>& body);

}  // namespace ng::dist
