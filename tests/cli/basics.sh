#!/usr/bin/env bash
# End-to-end: the `ebm` CLI on real data, as a user runs it.
# Usage: basics.sh PATH/TO/ebm REPO_ROOT
set -uo pipefail
EBM=$1
# shellcheck source=lib/check.bash
source "$(dirname "$0")/lib/check.bash"

check "--version" 0 "$EBM" --version
has "--version names the BLAS" "$T/out" "BLAS: OpenBLAS"
check "--help" 0 "$EBM" --help
for c in "data fetch" "data list" "data export" info sample denoise inpaint train; do
  # shellcheck disable=SC2086
  check "$c --help" 0 "$EBM" $c --help
done
check "no subcommand is a usage error" 2 "$EBM"
check "unknown flag is a usage error" 2 "$EBM" sample --model x --out y.png --bogus
check "bad value is a usage error" 2 "$EBM" train --task nope --out "$T/m"
check "missing model is a runtime error" 1 "$EBM" info --model "$T/none"
has "errors are one clear line" "$T/err" "does not exist"
[ "$(wc -l <"$T/err")" = 1 ] && echo "ok: one line" || { echo "FAIL: error spans lines"; fails=$((fails + 1)); }

# A tiny model trained on real data, then every restoration path on it.
check "train tiny dsm" 0 "$EBM" train --task dsm --data fashion-mnist --width 4 --steps 5 --batch 8 --eval-n 20 --out "$T/m" --threads 1 -q
check "info --json -" 0 "$EBM" info --model "$T/m" --json -
has "card has the command" "$T/out" '"command"'
check "export noisy" 0 "$EBM" data export --data fashion-mnist --n 4 --noise 0.2 --out "$T/noisy.npy" --seed 3
check "export clean png" 0 "$EBM" data export --data fashion-mnist --n 1 --out "$T/one.png"
check "denoise fixed" 0 "$EBM" denoise --model "$T/m" --input "$T/noisy.npy" --out "$T/den.npy" --steps 5 --threads 1
check "denoise tweedie (auto with --sigma)" 0 "$EBM" denoise --model "$T/m" --input "$T/noisy.npy" --sigma 0.2 --out "$T/tw.npy" --threads 1
has "auto picks tweedie with --sigma" "$T/out" "with tweedie"
check "map without sigma is a usage error" 2 "$EBM" denoise --model "$T/m" --input "$T/noisy.npy" --solver map --out "$T/x.npy"
check "denoise progressive to png" 0 "$EBM" denoise --model "$T/m" --input "$T/noisy.npy" --out "$T/den.png" --schedule progressive --threads 1
check "inpaint center" 0 "$EBM" inpaint --model "$T/m" --input "$T/noisy.npy" --mask center:10 --steps 5 --chains 2 --out "$T/inp.idx" --threads 1
check "inpaint single png" 0 "$EBM" inpaint --model "$T/m" --input "$T/one.png" --mask half --steps 5 --out "$T/inp.png" --threads 1
check "bad mask is a usage error" 2 "$EBM" inpaint --model "$T/m" --input "$T/noisy.npy" --mask center:99 --out "$T/x.npy"
check "sample" 0 "$EBM" sample --model "$T/m" --n 4 --steps 3 --out "$T/s.png" --save "$T/s.npy" --threads 1 -q
check "sample from data-fitted Gaussian starts" 0 "$EBM" sample --model "$T/m" --init gaussian --n 4 --steps 3 \
  --out "$T/g.png" --threads 1 -q
check "sample one class from the class-agnostic Gaussian" 0 "$EBM" sample --model "$2/models/fmnist-jem" \
  --class 7 --init gaussian-all --n 4 --steps 2 --step-size 0.3 --grad-clip 0 --out "$T/ga.png" --json "$T/ga.json" --threads 1 -q
has "the report names the class-agnostic starts" "$T/ga.json" '"init": "gaussian-all"'
# A card's "sampler" fills the flags the user did not give; given flags win.
cp -r "$2/models/fmnist-jem" "$T/jc" && rm -f "$T/jc/weights.pt" && ln -s "$(cd "$2/models/fmnist-jem" && pwd)/weights.pt" "$T/jc/weights.pt"
python3 - "$T/jc/card.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["sampler"] = {"init": "gaussian", "steps": 3, "step_size": 0.2, "grad_clip": 0}
open(sys.argv[1], "w").write(json.dumps(c))
PY
check "the card's sampler fills the flags not given" 0 "$EBM" sample --model "$T/jc" --class 1 --n 2 --steps 1 \
  --out "$T/jc.png" --json "$T/jc.json" --threads 1 -q
python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
assert r["steps"] == 1 and r["step_size"] == 0.2 and r["init"] == "gaussian", r
assert r["sampler_from_card"] == ["step_size", "grad_clip", "init"], r["sampler_from_card"]' "$T/jc.json" &&
  echo "ok: card values applied, --steps kept" || { echo "FAIL: card sampler precedence"; fails=$((fails + 1)); }
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["sampler"] = {"init": "sideways"}; open(sys.argv[1], "w").write(json.dumps(c))' "$T/jc/card.json"
check "a malformed card sampler is a clear error" 1 "$EBM" sample --model "$T/jc" --n 2 --out "$T/jc.png" --threads 1 -q
has "the error names the bad init" "$T/err" "sideways"
check "unknown --init is a usage error" 2 "$EBM" sample --model "$T/m" --init bogus --out "$T/g.png"
# A noise-conditional energy: `ebm sample` anneals over its levels by default.
check "train tiny noise-conditional dsm" 0 "$EBM" train --task dsm --arch conv-ebm-nc --dsm-sigmas 0.05,0.3,1 --data mnist \
  --width 4 --steps 3 --batch 8 --eval-n 20 --out "$T/nc" --threads 1 -q
check "sample a noise-conditional model" 0 "$EBM" sample --model "$T/nc" --n 4 --levels 3 --steps-per-level 2 \
  --out "$T/nc.png" --json "$T/nc.json" --threads 1 -q
python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
assert r["sampler"] == "annealed" and r["levels"] == 3 and len(r["sigmas"]) == 3, r
assert r["energy_evaluations"] == 3 * 2 + 1, r' "$T/nc.json" &&
  echo "ok: annealed by default, 3 levels x 2 steps + the Tweedie step" || { echo "FAIL: annealed sample report"; fails=$((fails + 1)); }
check "--sampler langevin keeps the one-temperature path" 0 "$EBM" sample --model "$T/nc" --sampler langevin --n 2 --steps 2 \
  --out "$T/ncl.png" --json "$T/ncl.json" --threads 1 -q
has "... and says so" "$T/ncl.json" '"sampler": "langevin"'
check "mala on a sigma-blind model reports its acceptance" 0 "$EBM" sample --model "$T/m" --sampler annealed --corrector mala \
  --n 2 --levels 2 --steps-per-level 2 --out "$T/ma.png" --json "$T/ma.json" --threads 1 -q
has "... acceptance rate" "$T/ma.json" '"acceptance_rate"'
check "sigma-min above sigma-max is a usage error" 2 "$EBM" sample --model "$T/nc" --sigma-min 2 --n 2 --out "$T/x.png" -q
has "... naming the value" "$T/err" "sigma_max"
check "sample one class from its Gaussian, read by an independent judge" 0 "$EBM" sample --model "$2/models/fmnist-jem" \
  --class 1 --init gaussian --n 8 --steps 2 --step-size 1 --grad-clip 0 --judge "$2/models/mnist-judge" --out "$T/j.png" --json "$T/j.json" --threads 1 -q
has "the judge reads the starts" "$T/j.json" '"judged_starts"'
has "the judge reports agreement with --class" "$T/j.json" '"agreement"'
"$EBM" sample --model "$2/models/fmnist-jem" --n 2 --steps 1 --judge "$2/models/mnist-judge" --out "$T/j.png" --json - \
  --threads 1 -q >"$T/j-stdout.json" 2>/dev/null
python3 -c 'import json, sys; json.load(open(sys.argv[1]))["judged_samples"]' "$T/j-stdout.json" &&
  echo "ok: --judge with --json - keeps stdout pure JSON" || { echo "FAIL: --json - stdout is not JSON"; fails=$((fails + 1)); }
check "the sampled model cannot judge itself" 2 "$EBM" sample --model "$2/models/fmnist-jem" --n 2 --steps 1 \
  --judge "$2/models/fmnist-jem" --out "$T/j.png" --threads 1 -q
check "a judge must be a classifier" 2 "$EBM" sample --model "$T/m" --n 2 --steps 1 --judge "$T/m" --out "$T/j.png" --threads 1 -q

# A failing command leaves an existing output untouched.
printf 'keep' >"$T/keep.npy"
printf 'garbage' >"$T/bad.npy"
check "corrupt input is a runtime error" 1 "$EBM" denoise --model "$T/m" --input "$T/bad.npy" --out "$T/keep.npy"
has "existing output intact" "$T/keep.npy" "keep"
has "error names the file" "$T/err" "bad.npy"

# Same seed, same bytes.
"$EBM" sample --model "$T/m" --n 2 --steps 3 --out "$T/a.png" --save "$T/a.npy" --seed 9 --threads 1 -q >/dev/null 2>&1
"$EBM" sample --model "$T/m" --n 2 --steps 3 --out "$T/b.png" --save "$T/b.npy" --seed 9 --threads 1 -q >/dev/null 2>&1
cmp -s "$T/a.npy" "$T/b.npy" && echo "ok: seed determinism" || { echo "FAIL: same seed differs"; fails=$((fails + 1)); }

echo "cli basics: $fails failure(s)"
[ "$fails" = 0 ]
