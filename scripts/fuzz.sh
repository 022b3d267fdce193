#!/bin/sh
# Fuzzes the file readers and the whole API with libFuzzer: builds tests/fuzz/*_fuzz with
# clang (-fsanitize=fuzzer,address,undefined; the library with address,undefined,
# fuzzer-no-link) in build/fuzz, then runs each target for SECONDS_PER_TARGET seconds
# (default 60), single job, from its committed seed corpus tests/fuzz/corpus/<target>/. New
# interesting inputs go to build/fuzz/corpus/<target>/ (not committed); a crash, leak,
# timeout or over-allocation leaves build/fuzz/crash-* or leak-* / oom-* / timeout-* files
# and makes the script fail. Not part of CI (too slow); tests/test_fuzz_corpus.cpp and
# tests/test_api_fuzz_corpus.cpp replay the committed corpora in CI.
#
#   sh scripts/fuzz.sh                 # every target (idx, safetensors, text, api), 60 s each
#   SECONDS_PER_TARGET=600 sh scripts/fuzz.sh api
#   MERGE=1 sh scripts/fuzz.sh api     # no fuzzing: minimize build/fuzz/corpus/api plus the
#                                      # committed corpus into tests/fuzz/corpus/api (-merge=1);
#                                      # then copy back the regression_* inputs (see docs/reliability.md)
#
# Targets: idx, safetensors and text (the file readers: tests/fuzz/{idx,safetensors,text}_fuzz.cpp) and
# api (tests/fuzz/api_fuzz.cpp: sequences of calls over every public op and layer, checked by
# tests/fuzz/api_harness*.cpp).
#
# Developer tools, not needed by CI or to build normgrad (so not in scripts/deps.sh):
#   apt-get install --no-install-recommends clang-14 libclang-rt-14-dev libomp-14-dev
set -e
cd "$(dirname "$0")/.."
SECS="${SECONDS_PER_TARGET:-60}"
CXX="${FUZZ_CXX:-clang++-14}"
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (apt-get install clang-14 libclang-rt-14-dev)"; exit 1; }
TARGETS="${*:-idx safetensors text api}"

cmake -S . -B build/fuzz -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=Fuzz \
  -DCMAKE_CXX_FLAGS_FUZZ="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined" \
  -DCMAKE_EXE_LINKER_FLAGS_FUZZ="-fsanitize=address,undefined" \
  -DNORMGRAD_BUILD_FUZZ=ON -DNORMGRAD_BUILD_TESTS=OFF -DNORMGRAD_BUILD_EXAMPLES=OFF \
  -DNORMGRAD_INSTALL=OFF -DNORMGRAD_NATIVE=OFF >/dev/null
for t in $TARGETS; do cmake --build build/fuzz --target "${t}_fuzz" -j"${FUZZ_JOBS:-2}"; done

if [ -n "$MERGE" ]; then
  # Keep only inputs that add coverage: the committed corpus plus the new inputs, minimized
  # into a fresh directory that replaces the committed one.
  for t in $TARGETS; do
    rm -rf "build/fuzz/merged/$t" && mkdir -p "build/fuzz/merged/$t" "build/fuzz/corpus/$t"
    # -use_counters=0: an input is kept for the edges it reaches, not for new hit counts on
    # edges already reached (the api corpus: 1,401 inputs instead of 6,272, the same edges).
    ( cd build/fuzz && ASAN_OPTIONS=detect_leaks=0 ./bin/"${t}_fuzz" -merge=1 -use_counters=0 -rss_limit_mb=2048 \
        "merged/$t" "../../tests/fuzz/corpus/$t" "corpus/$t" )
    rm -f "tests/fuzz/corpus/$t"/* && cp "build/fuzz/merged/$t"/* "tests/fuzz/corpus/$t/"
    echo "fuzz.sh: tests/fuzz/corpus/$t now holds $(ls "tests/fuzz/corpus/$t" | wc -l) inputs"
  done
  exit 0
fi

status=0
for t in $TARGETS; do
  mkdir -p "build/fuzz/corpus/$t"
  echo "fuzz.sh: running ${t}_fuzz for ${SECS} s"
  if [ "$t" = api ]; then
    # The harness caps tensors at 16 MiB (ng::set_allocation_limit), so a "huge" shape is an
    # OutOfMemoryError from the library, never a real allocation; any single allocation over
    # 64 MB is therefore a bug, as for the readers. Inputs of 4 KB hold ~24 calls.
    LIMITS="-max_len=4096 -rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10"
  else
    # -malloc_limit_mb: one allocation over 64 MB is a bug (every input is at most 16 KB; a
    # gzip file inflates at most ~1000x). -rss_limit_mb bounds the whole process.
    LIMITS="-max_len=16384 -rss_limit_mb=1024 -malloc_limit_mb=64 -timeout=10"
  fi
  # shellcheck disable=SC2086 # LIMITS is a list of options
  ( cd build/fuzz && ASAN_OPTIONS=detect_leaks=1 OMP_NUM_THREADS=1 ./bin/"${t}_fuzz" -max_total_time="$SECS" \
      $LIMITS -print_final_stats=1 "corpus/$t" "../../tests/fuzz/corpus/$t" ) || status=1
done
exit $status
