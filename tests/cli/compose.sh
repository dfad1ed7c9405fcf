#!/usr/bin/env bash
# End-to-end: `ebm compose` with the shipped attribute models, on a few short chains.
# Usage: compose.sh PATH/TO/ebm REPO_ROOT
set -uo pipefail
EBM=$1
# shellcheck source=lib/check.bash
source "$(dirname "$0")/lib/check.bash"
cd "$2" || exit 1

for c in compose "compose eval" "compose calibrate"; do
  # shellcheck disable=SC2086
  check "$c --help" 0 "$EBM" $c --help
done
has "compose --help teaches the language" "$T/out" "--not-weight"
check "parse error is a usage error" 2 "$EBM" compose --expr "digit=3 & " --n 2 --out "$T/g.png"
has "parse error names the column" "$T/err" "expected attribute value at column 11"
check "unknown attribute is a usage error" 2 "$EBM" compose --expr "colour=red" --n 2 --out "$T/g.png"
has "unknown attribute lists what exists" "$T/err" "available: digit=0|1|2|3|4|5|6|7|8|9, thickness=thin|medium|thick"
check "compose with the default models" 0 "$EBM" compose --expr "digit=3 & thick" --n 4 --steps 3 --out "$T/g.png" --save "$T/s.npy" --threads 1 -q
[ -s "$T/g.png" ] && [ -s "$T/s.npy" ] && echo "ok: grid and samples written" || { echo "FAIL: outputs"; fails=$((fails + 1)); }
has "the sidecar records the seed" "$T/g.json" '"seed"'
has "the sidecar records the calibration" "$T/g.json" '"temperature"'
has "the sidecar records how restarts were chosen" "$T/g.json" '"select": "expr"'
check "an unknown --select is a usage error" 2 "$EBM" compose --expr "digit=3" --n 2 --select judge --out "$T/g.png"
check "eval" 0 "$EBM" compose eval --expr "digit=3 | digit=8" --n 4 --steps 3 --json "$T/r.json" --threads 1 -q
has "eval reports success_rate" "$T/r.json" '"success_rate"'
has "eval reports per-term rates" "$T/r.json" '"per_term"'
has "eval reports diversity" "$T/r.json" '"ratio"'
has "eval reports the Fréchet ratio" "$T/r.json" '"frechet_ratio"'
check "eval grid with n < 10" 0 "$EBM" compose eval --expr "digit=3;digit=8" --n 4 --steps 2 --grid "$T/e.png" --threads 1 -q
# One row per expression and n = 4 columns: 4*28 + 5 pads wide, 2*28 + 3 pads high (pad 2).
size=$(od -An -tu1 -j16 -N8 "$T/e.png" | awk '{print $3*256+$4 "x" $7*256+$8}')
[ "$size" = "122x62" ] && echo "ok: eval grid is 2 rows of 4" || { echo "FAIL: eval grid is $size, want 122x62"; fails=$((fails + 1)); }
check "a judge that is a generator is refused" 2 "$EBM" compose eval --expr "digit=3" --n 2 --steps 1 --judge models/mnist-attr-digit --threads 1 -q
finish
