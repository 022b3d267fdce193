// The MPI backend of ng::dist (dist/mpi_group.cpp, compiled only with NORMGRAD_WITH_MPI).
// Used by dist/dist.cpp; programs use ng::dist::init() instead.
#pragma once
#include <string>

#include "dist/process_group.h"

namespace ng::dist::detail {

// MPI_Init_thread(MPI_THREAD_FUNNELED) unless MPI is already initialized: only the thread
// that called init makes MPI calls (OpenMP threads never do).
void mpi_init();
// A process group over all ranks of the job (its own duplicate of MPI_COMM_WORLD, with
// errors returned as DistError instead of aborting inside MPI).
ProcessGroupPtr mpi_world();
// MPI_Finalize, if initialized and not yet finalized.
void mpi_finalize();
// MPI_Abort(MPI_COMM_WORLD) after printing reason (if MPI is running), else std::abort.
[[noreturn]] void mpi_abort(const std::string& reason, int code);

}  // namespace ng::dist::detail
