#!/usr/bin/env bash
# End-to-end: `ebm denoise eval` and `ebm inpaint eval` on a tiny model, real data.
set -uo pipefail
EBM=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$EBM" train --task dsm --data mnist --width 4 --steps 4 --batch 8 --dsm-sigmas 0.1,0.6 --eval-n 20 --out "$T/m" --threads 1 -q >/dev/null 2>&1 \
  || fail "train tiny dsm"
"$EBM" denoise eval --model "$T/m" --data mnist --sigma 0.3 --n 6 --n-val 4 --threads 1 -q \
  --json "$T/d.json" --grid "$T/d.png" >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "denoise eval"; }
for name in noisy ebm-reference ebm-progressive ebm-map ebm-tweedie opencv-nlmeans opencv-tvl1 opencv-gaussian opencv-median; do
  grep -q "\"$name\"" "$T/d.json" || fail "denoise report lacks $name"
  grep -q "^$name " "$T/out" || fail "denoise table lacks $name"
done
grep -q '"clipped": true' "$T/d.json" || fail "denoise report must say the input is clipped"
[ -s "$T/d.png" ] || fail "no grid png"
"$EBM" inpaint eval --model "$T/m" --data mnist --mask center:14 --n 4 --n-val 3 --methods reference --threads 1 -q \
  --json "$T/i.json" >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "inpaint eval"; }
for name in masked ebm-reference opencv-telea opencv-ns; do
  grep -q "\"$name\"" "$T/i.json" || fail "inpaint report lacks $name"
done
grep -q '"psnr_masked"' "$T/i.json" || fail "inpaint report lacks psnr_masked"
# ebm-tweedie starts at the model's largest training sigma unless told otherwise.
sigma_max() {
  "$EBM" inpaint eval --model "$T/m" --data mnist --mask center:14 --n 2 --methods tweedie --no-baselines \
    --threads 1 -q --json - "$@" 2>/dev/null |
    python3 -c "import json,sys; print([m for m in json.load(sys.stdin)['methods'] if m['name']=='ebm-tweedie'][0]['params']['sigma_max'])"
}
[ "$(sigma_max)" = "0.6" ] || fail "tweedie sigma_max should come from the card (0.6), got $(sigma_max)"
[ "$(sigma_max --sigma-max 0.3)" = "0.3" ] || fail "--sigma-max 0.3 not honoured"
"$EBM" inpaint eval --model "$T/m" --data mnist --methods bogus --n 2 -q >/dev/null 2>"$T/err"
[ $? = 2 ] || fail "unknown method must be a usage error"
grep -q "known: reference, annealed" "$T/err" || fail "unknown method error must list the known ones"
echo "restore eval: 0 failure(s)"
