#!/bin/sh
# Fuzzes the file readers with libFuzzer: builds tests/fuzz/*_fuzz with clang
# (-fsanitize=fuzzer,address; the library with address,fuzzer-no-link) in build/fuzz, then
# runs each target for SECONDS seconds (default 60) from its committed seed corpus
# tests/fuzz/corpus/<target>/. New interesting inputs go to build/fuzz/corpus/<target>/
# (not committed); a crash, leak, timeout or over-allocation leaves build/fuzz/crash-* or
# leak-* / oom-* files and makes the script fail. Not part of CI (too slow).
#
#   sh scripts/fuzz.sh            # every target (idx, safetensors, text), 60 s each
#   SECONDS_PER_TARGET=600 sh scripts/fuzz.sh idx
#
# Needs clang-14 and its runtime: apt-get install clang-14 libclang-rt-14-dev libomp-14-dev
set -e
cd "$(dirname "$0")/.."
SECS="${SECONDS_PER_TARGET:-60}"
CXX="${FUZZ_CXX:-clang++-14}"
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (apt-get install clang-14 libclang-rt-14-dev)"; exit 1; }
TARGETS="${*:-idx safetensors text}"

cmake -S . -B build/fuzz -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=Fuzz \
  -DCMAKE_CXX_FLAGS_FUZZ="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined" \
  -DCMAKE_EXE_LINKER_FLAGS_FUZZ="-fsanitize=address,undefined" \
  -DNORMGRAD_BUILD_FUZZ=ON -DNORMGRAD_BUILD_TESTS=OFF -DNORMGRAD_BUILD_EXAMPLES=OFF \
  -DNORMGRAD_INSTALL=OFF -DNORMGRAD_NATIVE=OFF >/dev/null
for t in $TARGETS; do cmake --build build/fuzz --target "${t}_fuzz" -j"${FUZZ_JOBS:-2}"; done

status=0
for t in $TARGETS; do
  mkdir -p "build/fuzz/corpus/$t"
  echo "fuzz.sh: running ${t}_fuzz for ${SECS} s"
  # -malloc_limit_mb: one allocation over 64 MB is a bug (every input is at most 16 KB; a
  # gzip file inflates at most ~1000x). -rss_limit_mb bounds the whole process.
  ( cd build/fuzz && ASAN_OPTIONS=detect_leaks=1 ./bin/"${t}_fuzz" -max_total_time="$SECS" -max_len=16384 \
      -rss_limit_mb=1024 -malloc_limit_mb=64 -timeout=10 -print_final_stats=1 \
      "corpus/$t" "../../tests/fuzz/corpus/$t" ) || status=1
done
exit $status
