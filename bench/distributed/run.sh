#!/usr/bin/env bash
# Data-parallel throughput on this machine (docs/distributed.md): the same
# training (global batch 64) as 1 rank x 1 thread, 1 rank x 2 threads, and
# 2 ranks x 1 thread (`ebm launch -n 2`), for clf and dsm on MNIST. Reads
# images/s and the all-reduce time per step from each run's card and writes
# results/distributed/bench.{json,md}.
# Usage: bench/distributed/run.sh [STEPS]   (default 300; about 10 minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
EBM=${EBM:-build/ebm}
STEPS=${1:-300}
OUT=results/distributed
# Scratch models in a repository-relative folder (gitignored), so the commands
# the cards record, and bench.json repeats, can be run again as they stand.
T=out/distributed
rm -rf "$T"
mkdir -p "$T"
mkdir -p "$OUT"
runs=()
for task in clf dsm; do
  common=(train --task "$task" --data mnist --batch 64 --steps "$STEPS" --seed 1 --eval-n 50 --checkpoint-every 100000 --quiet)
  echo "== $task: 1 rank x 1 thread" >&2
  "$EBM" "${common[@]}" --threads 1 --out "$T/$task-1x1" >/dev/null
  echo "== $task: 1 rank x 2 threads" >&2
  "$EBM" "${common[@]}" --threads 2 --out "$T/$task-1x2" >/dev/null
  echo "== $task: 2 ranks x 1 thread" >&2
  "$EBM" launch -n 2 -- ebm "${common[@]}" --threads 1 --out "$T/$task-2x1" >/dev/null
  runs+=("$task-1x1" "$task-1x2" "$task-2x1")
done
/usr/bin/python3 - "$T" "$OUT" "$STEPS" "${runs[@]}" <<'PY'
import datetime, json, os, platform, sys
tmp, out, steps, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
rows = []
for r in runs:
    card = json.load(open(os.path.join(tmp, r, "card.json")))
    task, shape = r.split("-")
    ranks, threads = (int(v) for v in shape.split("x"))
    d = card.get("distributed", {})
    ips = card["images_per_second"]
    step_s = 64 / ips
    ar = d.get("gradient_allreduce_seconds_per_step", 0.0)
    rows.append({"task": task, "ranks": ranks, "threads_per_rank": threads, "images_per_second": ips,
                 "seconds_per_step": step_s, "allreduce_seconds_per_step": ar,
                 "allreduce_share": ar / step_s if ranks > 1 else 0.0, "command": card["command"]})
# Gradient bytes per step: the parameter count of the trained architecture (float32).
def nparams(task):
    import torch
    m = torch.jit.load(os.path.join(tmp, f"{task}-1x1", "weights.pt"))
    return sum(p.numel() for p in m.parameters())
for row in rows:
    row["gradient_bytes"] = 4 * nparams(row["task"])
report = {"command": f"bench/distributed/run.sh {steps}", "date": datetime.date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(), "steps": steps,
          "global_batch": 64, "backend": "c10d ProcessGroupGloo over loopback TCP", "runs": rows}
json.dump(report, open(os.path.join(out, "bench.json"), "w"), indent=1)
md = [f"command: bench/distributed/run.sh {steps}", "models: none (each run trains from a fresh initialisation, seed 1)", "",
      f"Data-parallel training, MNIST, global batch 64, {steps} steps; {report['date']}, {cpu}, {report['cores']} cores.",
      "", "| task | ranks x threads | images/s | s/step | all-reduce s/step | all-reduce share |",
      "|---|---|---|---|---|---|"]
for r in rows:
    md.append(f"| {r['task']} | {r['ranks']} x {r['threads_per_rank']} | {r['images_per_second']:.0f} | "
              f"{r['seconds_per_step']:.4f} | {r['allreduce_seconds_per_step']:.5f} | {100 * r['allreduce_share']:.1f}% |")
md.append("")
for task in ("clf", "dsm"):
    one = next(r for r in rows if r["task"] == task and r["ranks"] == 1 and r["threads_per_rank"] == 1)
    two = next(r for r in rows if r["task"] == task and r["ranks"] == 2)
    # A second machine: each rank keeps its compute time per step (that of 1 rank x 1 thread on half
    # the batch, measured here as 2 ranks' step time minus the all-reduce), and the all-reduce moves
    # 2 (W-1)/W x gradient bytes per rank over the network instead of loopback.
    compute = two["seconds_per_step"] - two["allreduce_seconds_per_step"]
    gbe = 2 * 0.5 * two["gradient_bytes"] / 117e6  # 1 GbE at ~117 MB/s of payload
    md.append(f"- {task}: 2 ranks give {two['images_per_second'] / one['images_per_second']:.2f}x one single-threaded "
              f"rank on this 2-core machine; the all-reduce ({two['gradient_bytes'] / 1e6:.2f} MB of gradients) takes "
              f"{100 * two['allreduce_share']:.1f}% of a step. On two machines of this kind over 1 GbE the all-reduce "
              f"would take about {1000 * gbe:.1f} ms, so 2 ranks would give about "
              f"{64 / (compute + gbe):.0f} images/s ({(64 / (compute + gbe)) / one['images_per_second']:.2f}x one rank), "
              f"an estimate from the measured compute time, not a measurement.")
md.append("")
md.append("Commands: see bench.json (each run's card command); script: bench/distributed/run.sh.")
open(os.path.join(out, "bench.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
