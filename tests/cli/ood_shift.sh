#!/usr/bin/env bash
# End-to-end: `ebm ood shift` on real data with the shipped MNIST classifier and
# a detector calibrated here (so that a retrained shipped detector cannot break
# it): the report's shape, the flag-error agreement's presence, and usage errors.
# Usage: ood_shift.sh PATH/TO/ebm REPO_ROOT
set -uo pipefail
EBM=$1
# shellcheck source=lib/check.bash
source "$(dirname "$0")/lib/check.bash"
M="$2/models/mnist-clf"

check "ood shift --help" 0 "$EBM" ood shift --help
has "help lists every family" "$T/out" "quantize"
has "help documents the flag-error agreement" "$T/out" "Flag-error agreement"
check "calibrate a detector on mnist val" 0 "$EBM" ood calibrate --model "$M" --in mnist --n 200 \
  --out "$T/det.json" --threads 1 -q
check "a tiny shift run" 0 "$EBM" ood shift --model "$M" --detector "$T/det.json" --in mnist --n 60 --levels 3 \
  --shifts noise,rotate,mix:fashion-mnist --score msp --json "$T/s.json" --plot "$T/s.png" --markdown "$T/s.md" \
  --threads 1 -q
has "the table has the summary" "$T/out" "all families pooled"
has "the Markdown carries the model hash" "$T/s.md" "$(sha256sum "$M/weights.pt" | cut -c1-64)"
[ -s "$T/s.png" ] && echo "ok: plot written" || { echo "FAIL: no plot"; fails=$((fails + 1)); }
python3 - "$T/s.json" <<'PY' && echo "ok: JSON shape and ranges" || { echo "FAIL: JSON"; fails=$((fails + 1)); }
import json, sys
r = json.load(open(sys.argv[1]))
assert r["model"].endswith("mnist-clf") and r["in"] == "mnist" and r["n"] == 60, r
assert [s["name"] for s in r["shifts"]] == ["noise", "rotate", "mix:fashion-mnist"]
assert r["scores"] == ["energy", "msp"], r["scores"]
for s in r["shifts"]:
    assert [l["severity"] for l in s["levels"]][0] == 0 and len(s["levels"]) == 3
    l0 = s["levels"][0]
    assert abs(l0["auroc"] - 0.5) < 1e-9, l0          # the clean set against itself
    for l in s["levels"]:
        for k in ("auroc", "fpr95", "accuracy", "flagged"):
            assert 0 <= l[k] <= 1, (k, l)
        assert set(l["scores"]) == {"energy", "msp"}
    assert 0 <= s["flag_error_auroc"] <= 1 and "msp" in s["by_score"]
assert r["shifts"][1]["levels"][2]["severity"] == 90
assert set(r["flag_error_auroc_pooled"]) == {"energy", "msp"}
assert r["command"].startswith("ebm ood shift") and len(r["model_sha256"]) == 64
PY
check "unknown family is a usage error" 2 "$EBM" ood shift --model "$M" --in mnist --shifts fog --n 10 -q
has "the error names it" "$T/err" "fog"
check "one level is a usage error" 2 "$EBM" ood shift --model "$M" --in mnist --levels 1 --n 10 -q
check "a detector for another dataset is a usage error" 2 "$EBM" ood shift --model "$M" --detector "$T/det.json" \
  --in fashion-mnist --n 10 -q
has "the error names both datasets" "$T/err" "calibrated on 'mnist'"
check "a detector for another model is refused" 1 "$EBM" ood shift --model "$2/models/mnist-eft" \
  --detector "$T/det.json" --in mnist --n 10 -q
finish
