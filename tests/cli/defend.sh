#!/usr/bin/env bash
# End-to-end: `ebm defend eval` on the shipped models, a few real MNIST test
# images, tiny attacks (a few seconds). Deterministic: the same seed twice
# gives the same report.
# Usage: defend.sh PATH/TO/ebm REPO_ROOT
set -uo pipefail
EBM=$1
ROOT=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
CLF=$ROOT/models/mnist-clf
PUR=$ROOT/models/mnist-purifier
common=(--classifier "$CLF" --ebm "$PUR" --data mnist --threads 1 -q)

# Undefended + grey-box PGD, with sanity checks and the plot.
"$EBM" defend eval "${common[@]}" --attack pgd --eps 0.3 --attack-steps 8 --attack-step-size 0.05 \
  --purify-steps 0,2 --n 8 --sanity-n 4 --seed 3 --json "$T/a.json" --plots "$T/plots" >"$T/out" 2>"$T/err" \
  || { cat "$T/err"; fail "defend eval pgd"; }
for k in '"attack": "pgd"' '"eps": 0.3' '"n": 8' '"clean_accuracy"' '"robust_accuracy"' '"purify_steps"' \
         '"threat": "undefended"' '"threat": "grey-box"' '"sanity_checks"' '"sanity_failed"' '"eps_monotone"' \
         '"unbounded"' '"steps_monotone"'; do
  grep -q -- "$k" "$T/a.json" || fail "pgd report lacks $k"
done
[ -s "$T/plots/defend-pgd.png" ] || fail "no curve png"
grep -q "^undefended " "$T/out" || fail "no table on stdout"
# Undefended PGD at eps 0.3 must beat the bare classifier on these images.
python3 -c "import json,sys; r=json.load(open('$T/a.json'))['results']; u=[x for x in r if x['threat']=='undefended'][0]; sys.exit(0 if u['robust_accuracy']<=0.25 else 1)" \
  || fail "undefended PGD did not work"

# Same seed, same numbers.
"$EBM" defend eval "${common[@]}" --attack pgd --eps 0.3 --attack-steps 8 --attack-step-size 0.05 \
  --purify-steps 0,2 --n 8 --sanity-n 4 --seed 3 --json "$T/b.json" >/dev/null 2>&1 || fail "second run"
python3 -c "
import json, sys
strip = lambda f: [{k: v for k, v in r.items() if k != 'seconds'} for r in json.load(open(f))['results']]
sys.exit(0 if strip('$T/a.json') == strip('$T/b.json') else 1)" \
  || fail "same seed gave different results"

# Adaptive BPDA+EOT rows.
"$EBM" defend eval "${common[@]}" --attack bpda-eot --eot 2 --attack-steps 3 --attack-step-size 0.1 \
  --purify-steps 0,2 --n 4 --no-sanity --json "$T/c.json" >/dev/null 2>"$T/err" || { cat "$T/err"; fail "bpda-eot"; }
grep -q '"threat": "adaptive"' "$T/c.json" || fail "bpda report lacks the adaptive row"
grep -q '"eot": 2' "$T/c.json" || fail "bpda report lacks eot"

# --split val attacks held-out validation digits (for tuning), says so in the
# report, and refuses training splits.
"$EBM" defend eval "${common[@]}" --split val --attack fgsm --purify-steps 0 --n 4 --no-sanity --json "$T/v.json" \
  >/dev/null 2>&1 || fail "--split val"
grep -q '"split": "val"' "$T/v.json" || fail "val report does not name its split"
"$EBM" defend eval "${common[@]}" --split train --n 2 >/dev/null 2>"$T/err"
[ $? = 2 ] && grep -q "train" "$T/err" || fail "--split train must be a usage error"

# FGSM and CW rows.
"$EBM" defend eval "${common[@]}" --attack fgsm --purify-steps 0,2 --n 4 --sanity-n 2 --json "$T/d.json" >/dev/null 2>&1 \
  || fail "fgsm"
"$EBM" defend eval "${common[@]}" --attack cw --cw-steps 5 --cw-search 1 --purify-steps 0,2 --n 4 --json "$T/e.json" \
  >/dev/null 2>&1 || fail "cw"
grep -q '"median_l2"' "$T/e.json" || fail "cw report lacks median_l2"

# Bad input: usage errors (exit 2) that name the bad value.
"$EBM" defend eval "${common[@]}" --attack bogus --n 2 >/dev/null 2>"$T/err"
[ $? = 2 ] && grep -q "bogus" "$T/err" || fail "unknown attack must be a usage error naming it"
"$EBM" defend eval "${common[@]}" --eps 2 --n 2 >/dev/null 2>"$T/err"
[ $? = 2 ] && grep -q "eps" "$T/err" || fail "eps 2 must be a usage error"
"$EBM" defend eval --classifier "$PUR" --ebm "$PUR" --n 2 -q >/dev/null 2>"$T/err"
[ $? = 2 ] && grep -q "not a classifier" "$T/err" || fail "an energy as --classifier must be a usage error"
"$EBM" defend eval "${common[@]}" --purify-steps 0,-3 --n 2 >/dev/null 2>"$T/err"
[ $? = 2 ] && grep -q -- "-3" "$T/err" || fail "negative purify steps must be a usage error"
"$EBM" defend eval --help >"$T/help" 2>&1 || fail "--help exits non-zero"
grep -q "grey-box" "$T/help" && grep -q "BPDA" "$T/help" || fail "--help must explain the threat models"
echo "defend: 0 failure(s)"
