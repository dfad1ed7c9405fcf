#!/usr/bin/env bash
# The bad-input corpus: every case of cases.tsv run against the `ebm` binary.
# Usage: run.sh PATH/TO/ebm REPO_ROOT [ID_REGEX]
#
# make_corpus.py first writes the malformed files into a scratch folder. Each
# case then runs in the repository root (the shipped models' relative paths)
# with a fresh folder $W, under `timeout 60`, and passes when:
#   - it ends by itself (no timeout) and not by a signal (exit < 128);
#   - its exit code is the expected one (0 success, 1 runtime error, 2 usage error);
#   - a failing case prints exactly one line on stderr, starting "ebm: ", that
#     matches the case's regex (a passing case: the regex matches stdout or stderr);
#   - nothing anywhere looks like a stack trace or a crash report;
#   - a file placed beforehand at the case's "keep" path is byte-identical
#     afterwards, and no temp file of an atomic write is left in $W.
# Variables a command may use: $EBM, $R (repo), $M ($R/models), $C (the corpus),
# $W (the case's scratch folder), $OK (a valid [2,28,28] float32 NPY file).
# CORPUS_JOBS cases run at once (default 4: most of a case is process start-up);
# CORPUS_VERBOSE=1 also shows what each passing case printed on stderr.
set -uo pipefail
EBM=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
R=$(cd "$2" && pwd)
FILTER=${3:-.}
JOBS=${CORPUS_JOBS:-4}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3  # the system Python: numpy and torch come from Debian packages
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
C=$T/corpus
M=$R/models
OK=$C/ok/two.npy
export EBM R M C OK T
export OMP_NUM_THREADS=1 EBM_DATA=${EBM_DATA:-$R/data}

if ! "$PY" "$HERE/make_corpus.py" "$C" "$R" >"$T/make.log" 2>&1; then
  echo "FAIL: make_corpus.py"
  cat "$T/make.log"
  exit 1
fi

# run_case ID WANT REGEX KEEP CMD: run one case, write its verdict to $T/res/ID.
run_case() {
  local id=$1 want=$2 regex=$3 keep=$4 cmd=$5
  local crash_re='Exception raised from|frame #[0-9]|terminate called|Traceback|Segmentation fault|core dumped|Aborted|what\(\):|AddressSanitizer|runtime error:'
  W=$T/w/$id
  export W
  mkdir -p "$W"
  local keep_path="" out=$T/out/$id.out err=$T/out/$id.err
  if [ "$keep" != "-" ]; then
    keep_path=$(eval "printf '%s' \"$keep\"")
    printf 'a file that was here before: corpus case %s\n' "$id" >"$keep_path"
    cp "$keep_path" "$T/out/$id.before"
  fi
  local t0 rc secs why="" nlines
  t0=$(date +%s.%N)
  timeout -k 5 60 bash -c "$cmd" >"$out" 2>"$err"
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  nlines=$(wc -l <"$err")
  if [ "$rc" = 124 ] || awk -v s="$secs" 'BEGIN { exit !(s >= 59) }'; then
    why="hung (killed after 60 s)"
  elif [ "$rc" -ge 128 ]; then
    why="died by signal $((rc - 128))"
  elif [ "$rc" != "$want" ]; then
    why="exit $rc, want $want"
  elif grep -Eq "$crash_re" "$err" "$out"; then
    why="stack trace or crash text in the output"
  elif [ "$want" != 0 ] && [ "$nlines" != 1 ]; then
    why="stderr has $nlines lines, want 1"
  elif [ "$want" != 0 ] && ! grep -q '^ebm: ' "$err"; then
    why="stderr does not start with 'ebm: '"
  elif [ "$want" != 0 ] && ! grep -Eq -- "$regex" "$err"; then
    why="stderr does not match /$regex/"
  elif [ "$want" = 0 ] && [ "$nlines" -gt 1 ]; then
    why="stderr has $nlines lines"
  elif [ "$want" = 0 ] && ! cat "$out" "$err" | grep -Eq -- "$regex"; then
    why="output does not match /$regex/"
  elif [ -n "$keep_path" ] && ! cmp -s "$T/out/$id.before" "$keep_path"; then
    why="the existing file $keep_path was changed or removed"
  elif [ -n "$(find "$W" -name '*.tmp.*' 2>/dev/null)" ]; then
    why="a temp file was left behind: $(find "$W" -name '*.tmp.*' | head -1)"
  fi
  {
    if [ -n "$why" ]; then
      printf 'FAIL %-36s %s (%ss)\n' "$id" "$why" "$secs"
      printf '     $ %s\n' "$cmd"
      head -c 600 "$err" | sed 's/^/     | /'
      echo
    else
      printf 'ok   %-36s exit %s (%ss)\n' "$id" "$rc" "$secs"
      [ -n "${CORPUS_VERBOSE:-}" ] && head -c 300 "$err" | sed 's/^/     | /'
      true
    fi
  } >"$T/res/$id"
  rm -rf "$W"
}
export -f run_case

mkdir -p "$T/res" "$T/out" "$T/w"
cd "$R" || exit 1
ids=()
declare -A cat_of
start_all=$(date +%s)
while IFS=$'\t' read -r id cat want regex keep cmd; do
  [[ -z "$id" || "$id" == \#* ]] && continue
  [[ "$id" =~ $FILTER ]] || continue
  [ -n "${cat_of[$id]:-}" ] && { echo "FAIL: case id $id appears twice in cases.tsv"; exit 1; }
  ids+=("$id")
  cat_of[$id]=$cat
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  run_case "$id" "$want" "$regex" "$keep" "$cmd" </dev/null &
done <"$HERE/cases.tsv"
wait

fails=0
declare -A per_cat per_cat_fail
for id in "${ids[@]}"; do
  cat=${cat_of[$id]}
  per_cat[$cat]=$((${per_cat[$cat]:-0} + 1))
  if [ ! -f "$T/res/$id" ]; then
    echo "FAIL $id: no verdict (the runner itself failed)"
    fails=$((fails + 1))
    per_cat_fail[$cat]=$((${per_cat_fail[$cat]:-0} + 1))
    continue
  fi
  cat "$T/res/$id"
  if grep -q '^FAIL' "$T/res/$id"; then
    fails=$((fails + 1))
    per_cat_fail[$cat]=$((${per_cat_fail[$cat]:-0} + 1))
  fi
done
echo
echo "cases per category:"
for cat in $(printf '%s\n' "${!per_cat[@]}" | sort); do
  printf '  %-12s %4d  (%d failed)\n' "$cat" "${per_cat[$cat]}" "${per_cat_fail[$cat]:-0}"
done
echo "${#ids[@]} case(s), $fails failed, $(($(date +%s) - start_all)) s with $JOBS at a time"
[ "${#ids[@]}" -gt 0 ] && [ "$fails" = 0 ]
