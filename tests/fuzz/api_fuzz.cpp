// libFuzzer target for the whole API (tests/fuzz/api_harness.h): each input is a sequence of
// calls over the public ops and layers; every call must throw an ng::Error subclass or return
// a result that passes the harness's checks. A broken contract aborts with its description
// (libFuzzer saves the input as a crash); ASan and UBSan catch memory errors and undefined
// behaviour underneath. scripts/fuzz.sh runs it.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "tests/fuzz/api_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    ng::fuzz::run_api_input(data, size);
  } catch (const ng::fuzz::ApiViolation& e) {
    std::fprintf(stderr, "api_fuzz: contract broken: %s\n", e.what());
    std::abort();
  }
  return 0;
}
