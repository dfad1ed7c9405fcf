#!/bin/sh
# fuzz/run.sh [TARGET...]: configure and build the clang fuzz tree, then run each
# harness (all by default) for $FUZZ_SECONDS (600) seconds, one at a time.
#   FUZZ_BUILD    the build tree            (default: build-fuzz)
#   FUZZ_SECONDS  seconds per harness       (default: 600)
#   FUZZ_JOBS     build jobs                (default: 2)
#   FUZZ_ARGS     extra libFuzzer flags     (e.g. -max_len=20000)
# New inputs go to $FUZZ_BUILD/corpus/<target> (the checked-in fuzz/corpus/<target>
# is read, never written); crashes to $FUZZ_BUILD/artifacts/<target>/. A finding
# is fixed in the library and its input copied to fuzz/corpus/<target>/regress-<name>.
set -u
cd "$(dirname "$0")/.."
BUILD=${FUZZ_BUILD:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-600}
TARGETS=${*:-"idx npy png expr card detector serve_v1 serve_oip http_framing"}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DEBM_FUZZ=ON -DEBM_BUILD_TESTS=OFF -DEBM_BUILD_BENCH=OFF || exit 1
fi
cmake --build "$BUILD" -j"${FUZZ_JOBS:-2}" --target $(for t in $TARGETS; do printf 'fuzz_%s ' "$t"; done) || exit 1

failed=""
for t in $TARGETS; do
  mkdir -p "$BUILD/corpus/$t" "$BUILD/artifacts/$t"
  dict=""
  [ -f "fuzz/dict/$t.dict" ] && dict="-dict=fuzz/dict/$t.dict"
  echo "== fuzz_$t for ${SECONDS_EACH}s"
  # shellcheck disable=SC2086
  if ! nice -n 10 "$BUILD/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
       -artifact_prefix="$BUILD/artifacts/$t/" $dict ${FUZZ_ARGS:-} "$BUILD/corpus/$t" "fuzz/corpus/$t" \
       2> "$BUILD/artifacts/$t/log.txt"; then
    failed="$failed $t"
  fi
  grep -E 'DONE|^Done|stat::peak_rss_mb|FINDING|ERROR|SUMMARY|Test unit written' "$BUILD/artifacts/$t/log.txt" | cut -c1-200
done
if [ -n "$failed" ]; then
  echo "findings in:$failed (inputs and logs under $BUILD/artifacts/)"
  exit 1
fi
echo "no findings"
