#!/usr/bin/env bash
# End-to-end: `ebm export` writes TorchScript that plain PyTorch (Debian's
# python3-torch) loads, with the same energies as ebmkit on 64 test images, the
# card inside; and the exported file is a model for `ebm ood eval` again.
# Usage: export.sh PATH/TO/ebm REPO_ROOT
set -uo pipefail
EBM=$1
ROOT=$2
# shellcheck source=lib/check.bash
source "$(dirname "$0")/lib/check.bash"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3

check "export --help" 0 "$EBM" export --help
has "help shows the Python side" "$T/out" "torch.jit.load"
check "export without --out is a usage error" 2 "$EBM" export --model "$ROOT/models/mnist-dsm"
check "a combined-score detector does not export (PNG coder)" 2 "$EBM" export \
  --model "$ROOT/models/fmnist-ood.detector.json" --out "$T/e.pt"
has "... and says why" "$T/err" "PNG coder"
check "a missing model is an error" 1 "$EBM" export --model "$T/none" --out "$T/n.pt"

check "test images" 0 "$EBM" data export --data fashion-mnist --split test --n 64 --out "$T/x.npy" --quiet
for m in fmnist-eft fmnist-dsm; do
  check "export $m" 0 "$EBM" export --model "$ROOT/models/$m" --out "$T/$m.pt" --quiet
  # ebmkit's energies of the same 64 images: native, and through the exported file.
  for src in "$ROOT/models/$m" "$T/$m.pt"; do
    check "ood eval --scores-out on $(basename "$src")" 0 "$EBM" ood eval --model "$src" --in fashion-mnist --n-in 64 \
      --ood uniform --n-ood 8 --score energy --scores-out "$T/$(basename "$src").csv" --threads 1 -q
  done
  check "Python loads $m.pt and gets ebmkit's energies" 0 "$PY" - "$T/$m.pt" "$T/x.npy" "$T/$m.csv" "$T/$m.pt.csv" <<'PY'
import csv, json, sys
import numpy as np, torch
pt, xs, native_csv, script_csv = sys.argv[1:]
def energies(p):
    return np.array([float(r["energy"]) for r in csv.DictReader(open(p)) if r["set"].startswith("in:")])
native, through_script = energies(native_csv), energies(script_csv)
extra = {"card.json": ""}
m = torch.jit.load(pt, _extra_files=extra)
card = json.loads(extra["card.json"])
with torch.no_grad():
    out = m(torch.from_numpy(np.load(xs))).double()
# A classifier returns logits: its energy is the free energy at the card's temperature.
T = card.get("temperature", 1.0)
e = (-T * torch.logsumexp(out / T, 1) if out.dim() == 2 else out).numpy()
rel = np.abs(e - native) / np.maximum(np.abs(native), 1)
print(f"{card['exported_from']}: {len(e)} images, max relative difference python vs ebmkit {rel.max():.2e}, "
      f"exported-in-ebmkit vs native {np.abs(through_script - native).max():.2e}")
sys.exit(0 if len(e) == 64 and rel.max() <= 1e-5 and np.abs(through_script - native).max() <= 1e-5 else 1)
PY
  cat "$T/out"
done

# Detectors and ensembles: plain PyTorch gets `ebm ood predict`'s score, flag and p-value.
# Detector files name their model relative to the repository root, as users run them.
cd "$ROOT" || exit 1
check "mnist test images" 0 "$EBM" data export --data mnist --split test --n 48 --out "$T/m.npy" --quiet
check "uniform noise" 0 "$PY" -c "import numpy as np; np.save('$T/u.npy', np.random.default_rng(0).random((16,1,28,28), dtype=np.float32))"
check "48 digits + 16 noise" 0 "$PY" -c "import numpy as np; np.save('$T/mix.npy', np.concatenate([np.load('$T/m.npy'), np.load('$T/u.npy')]))"
for det in mnist-ood fmnist-eft; do
  check "export $det.detector.json" 0 "$EBM" export --model "$ROOT/models/$det.detector.json" --out "$T/$det-det.pt" --quiet
  check "ood predict with $det" 0 "$EBM" ood predict --detector "$ROOT/models/$det.detector.json" --input "$T/mix.npy" \
    --threads 1 --quiet
  cp "$T/out" "$T/$det.jsonl"
  check "Python runs the $det detector and agrees with ood predict" 0 "$PY" - "$T/$det-det.pt" "$T/mix.npy" "$T/$det.jsonl" <<'PY'
import json, sys
import numpy as np, torch
pt, xs, preds = sys.argv[1:]
want = [json.loads(l) for l in open(preds)]
extra = {"detector.json": "", "card.json": ""}
m = torch.jit.load(pt, _extra_files=extra)
det = json.loads(extra["detector.json"])
with torch.no_grad():
    s, flag, p = m(torch.from_numpy(np.load(xs)))
ws = np.array([w["energy"] for w in want])
rel = np.abs(s.numpy() - ws) / np.maximum(np.abs(ws), 1)
near = np.abs(ws - det["threshold"]) < 1e-4  # flags of scores within rounding of the threshold may differ
flags_ok = all(bool(f) == w["ood"] for f, w, n in zip(flag.tolist(), want, near) if not n)
p_ok = np.abs(p.numpy() - np.array([w["p_value"] for w in want])).max()
print(f"{pt}: {len(ws)} images, score max rel diff {rel.max():.2e}, flags agree {flags_ok}, "
      f"p-value max diff {p_ok:.2e}, flagged {int(flag.sum())}")
sys.exit(0 if len(ws) == 64 and rel.max() <= 1e-5 and flags_ok and p_ok <= 2.0 / (len(det["val_scores"]) + 1) else 1)
PY
  cat "$T/out"
done
check "export the mnist-ood ensemble" 0 "$EBM" export --model "$ROOT/models/mnist-ood" --out "$T/ens.pt" --quiet
check "ebmkit scores the exported ensemble as the native one" 0 "$EBM" ood eval --model "$T/ens.pt" --in mnist \
  --n-in 64 --ood uniform --n-ood 8 --score energy --scores-out "$T/ens-script.csv" --threads 1 -q
check "... native" 0 "$EBM" ood eval --model "$ROOT/models/mnist-ood" --in mnist \
  --n-in 64 --ood uniform --n-ood 8 --score energy --scores-out "$T/ens-native.csv" --threads 1 -q
check "64 mnist test images" 0 "$EBM" data export --data mnist --split test --n 64 --out "$T/m64.npy" --quiet
check "Python gets the ensemble's energies" 0 "$PY" - "$T/ens.pt" "$T/m64.npy" "$T/ens-native.csv" "$T/ens-script.csv" <<'PY'
import csv, sys
import numpy as np, torch
pt, xs, native_csv, script_csv = sys.argv[1:]
def energies(p):
    return np.array([float(r["energy"]) for r in csv.DictReader(open(p)) if r["set"].startswith("in:")])
native, script = energies(native_csv), energies(script_csv)
with torch.no_grad():
    py = torch.jit.load(pt)(torch.from_numpy(np.load(xs))).double().numpy()
tol = 1e-5 * max(1, np.abs(native).max())
print(f"ensemble: python vs native max diff {np.abs(py - native).max():.2e}, "
      f"ebmkit through the export vs native {np.abs(script - native).max():.2e}")
sys.exit(0 if len(native) == 64 and np.abs(py - native).max() <= tol and np.abs(script - native).max() <= tol else 1)
PY
cat "$T/out"
finish
