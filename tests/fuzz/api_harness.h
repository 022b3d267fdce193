// The API fuzzer's harness (tests/fuzz/api_harness.cpp), shared by the libFuzzer target
// tests/fuzz/api_fuzz.cpp and the corpus replay in tests/test_api_fuzz_corpus.cpp.
//
// An input is a byte string decoded into a sequence of calls over normgrad's public ops and
// layers (one table in api_harness.cpp, one line per op). Each call must either throw an
// ng::Error subclass or return a result that passes the checks: its shape and strides are
// valid and every element it can address lies inside its storage, it agrees with the op's
// reference form where one exists (the op on contiguous copies of its inputs, ng::reference
// for the norms, plain compositions for matmul, linear, softmax, mean and var), and its
// gradients (first order, and second order under create_graph) have the inputs' shapes.
// Anything else -- another exception type, a disagreement -- is an ApiViolation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ng::fuzz {

// A broken contract: not an ng::Error, so nothing in the harness swallows it.
struct ApiViolation : std::logic_error {
  using std::logic_error::logic_error;
};

// The allocation limit the harness sets (ng::set_allocation_limit) while it runs an input:
// "huge" shapes become OutOfMemoryError instead of allocating (16 MiB).
inline constexpr std::uint64_t kFuzzAllocationLimit = std::uint64_t{16} << 20;

// Runs one input. Throws ApiViolation (naming the op and what went wrong) on a broken
// contract; returns normally otherwise. Restores the allocation limit, grad mode and
// anomaly mode it changed.
void run_api_input(const std::uint8_t* data, std::size_t size);

// The names of the ops and layers in the harness's table, in table order (for the docs).
std::vector<std::string> api_op_names();

}  // namespace ng::fuzz
