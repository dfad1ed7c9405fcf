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
check "an ensemble does not export" 2 "$EBM" export --model "$ROOT/models/mnist-ood" --out "$T/e.pt"
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
finish
