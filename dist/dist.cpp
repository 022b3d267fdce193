#include "dist/dist.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>

#ifdef NORMGRAD_WITH_MPI
#include "dist/mpi_group.h"
#endif

namespace ng::dist {

namespace {

ProcessGroupPtr g_world;
Backend g_backend = Backend::local;
bool g_finalized = false;

[[noreturn]] void on_terminate() {
  std::string what = "unknown exception";
  if (auto e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
    }
  } else {
    what = "std::terminate called without an active exception";
  }
  abort_job("terminate: " + what);
}

[[maybe_unused]] void finalize_at_exit() { finalize(); }

}  // namespace

bool mpi_available() {
#ifdef NORMGRAD_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

void init(Backend backend) {
  if (backend == Backend::automatic) backend = mpi_available() && launched_by_mpirun() ? Backend::mpi : Backend::local;
  if (g_world) {
    if (backend != g_backend)
      fail<DistError>("dist::init: already initialized with the {} backend; cannot switch to {}", g_world->backend(),
                      backend == Backend::mpi ? "mpi" : "local");
    return;
  }
  if (g_finalized) fail<DistError>("dist::init: called after dist::finalize() (MPI cannot be initialized twice)");
  if (backend == Backend::mpi) {
#ifdef NORMGRAD_WITH_MPI
    detail::mpi_init();
    g_world = detail::mpi_world();
    std::atexit(finalize_at_exit);
#else
    fail<DistError>("dist::init: normgrad was built without MPI (NORMGRAD_WITH_MPI=OFF); install libopenmpi-dev "
                    "(scripts/deps.sh) and reconfigure, or use Backend::local");
#endif
  } else {
    g_world = std::make_shared<LocalGroup>();
  }
  g_backend = backend;
  if (const char* c = std::getenv("NORMGRAD_DIST_CHECKS"); c && std::string_view(c) == "0")
    g_world->set_check_collectives(false);
  std::set_terminate(on_terminate);
}

bool is_initialized() { return g_world != nullptr; }

void finalize() {
  if (!g_world) return;
  const bool mpi = g_backend == Backend::mpi;
  g_world.reset();
  g_finalized = true;
#ifdef NORMGRAD_WITH_MPI
  if (mpi) detail::mpi_finalize();
#else
  (void)mpi;
#endif
}

ProcessGroupPtr world() {
  if (!g_world) fail<DistError>("dist: the world group is not initialized; call ng::dist::init() first");
  return g_world;
}

ProcessGroupPtr group_or_world(const ProcessGroupPtr& group) { return group ? group : g_world; }

int rank() { return world()->rank(); }
int world_size() { return world()->size(); }
void barrier() { world()->barrier(); }
void all_reduce(Tensor& t, ReduceOp op) { world()->all_reduce(t, op); }
Tensor all_gather(const Tensor& t) { return world()->all_gather(t); }
void broadcast(Tensor& t, int root) { world()->broadcast(t, root); }

void abort_job(const std::string& reason, int code) {
  const std::string msg =
      g_world ? fmt::format("[rank {}/{}] {}", g_world->rank(), g_world->size(), reason) : reason;
  if (g_world) g_world->abort(msg, code);
#ifdef NORMGRAD_WITH_MPI
  detail::mpi_abort(msg, code);
#else
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::abort();
#endif
}

int guarded_main(const std::function<int()>& body) {
  try {
    const int rc = body();
    finalize();
    return rc;
  } catch (const std::exception& e) {
    if (g_world && g_world->size() > 1) abort_job(fmt::format("error: {}", e.what()));
    std::fprintf(stderr, "error: %s\n", e.what());
    finalize();
    return 1;
  }
}

}  // namespace ng::dist
