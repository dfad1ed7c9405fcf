#!/usr/bin/env bash
# The performance table (README "Performance"): ebmkit's workloads
# (build/bench/bench_perf, Google Benchmark) and the PyTorch-Python peer
# (bench/perf/peer.py) on the same TorchScript model, inputs, batch sizes,
# step counts and threads, plus the machine's compute limit (torch::mm 2048^2)
# measured in the same run.
#
# Why this order: on this shared 2-core machine the same workload's rate moves
# by up to 3.7x between minutes (measured: ebmkit's batch-64 Langevin step ran
# at 2,250 and then 614 image-steps/s ten minutes apart), so a whole ebmkit pass
# followed by a whole Python pass can put the two sides in different weather.
# Each workload is therefore timed on both sides back to back, seconds apart,
# with the side that goes first alternating between rounds; ROUNDS (default 3)
# rounds run. The report takes each side's median, the median of the
# per-round ratios, and shows the lowest and highest per-round ratio.
# Purification has no peer and runs once.
#
# Writes results/bench/bench.json, bench.md, batch.png, and the raw
# measurements in results/bench/raw/ (report.py redraws from them).
# Usage: bench/perf/run.sh [THREADS]   (default 2; ROUNDS=3: about 12 minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD:-build}
EBM=${EBM:-$B/ebm}
THREADS=${1:-2}
ROUNDS=${ROUNDS:-3}
MODEL=models/mnist-dsm
OUT=results/bench
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
rm -rf "$OUT/raw"
mkdir -p "$OUT/raw"
"$EBM" export --model "$MODEL" --out "$T/model.pt" --quiet
export EBM_BENCH_MODEL=$MODEL EBM_BENCH_SCRIPT=$T/model.pt EBM_BENCH_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
# workload: bench_perf filter | peer NAME:BATCH
WORKLOADS=(
  "BM_Langevin/1/|langevin:1" "BM_Langevin/4/|langevin:4" "BM_Langevin/8/|langevin:8"
  "BM_Langevin/16/|langevin:16" "BM_Langevin/64/|langevin:64" "BM_Langevin/256/|langevin:256"
  "BM_Langevin64/1/|langevin64:1" "BM_Langevin64/16/|langevin64:16" "BM_Langevin64/64/|langevin64:64"
  "BM_Score/|score:256" "BM_Pcd20/|pcd20:64"
)
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS ($THREADS threads)" >&2
  "$B/bench/bench_perf" --benchmark_filter='BM_MatmulLimit' --benchmark_out="$T/limit-$r.json" \
    --benchmark_out_format=json >&2
  i=0
  for w in "${WORKLOADS[@]}"; do
    i=$((i + 1))
    ours() {
      "$B/bench/bench_perf" --benchmark_filter="${w%%|*}" --benchmark_out="$T/ebmkit-$r-$i.json" \
        --benchmark_out_format=json >&2
    }
    theirs() { /usr/bin/python3 bench/perf/peer.py "$T/model.pt" "$THREADS" "$T/peer-$r-$i.json" "${w##*|}"; }
    if (((r + i) % 2)); then ours; theirs; else theirs; ours; fi
  done
  # One file per side and round, as report.py reads them.
  /usr/bin/python3 - "$T" "$r" "$OUT/raw" <<'PY'
import glob, json, sys
t, r, out = sys.argv[1:]
parts = [json.load(open(f)) for f in sorted(glob.glob(f"{t}/limit-{r}.json") + glob.glob(f"{t}/ebmkit-{r}-*.json"))]
json.dump({**parts[0], "benchmarks": [b for p in parts for b in p["benchmarks"]]}, open(f"{out}/ebmkit-{r}.json", "w"),
          indent=1)
peers = [json.load(open(f)) for f in sorted(glob.glob(f"{t}/peer-{r}-*.json"))]
json.dump({**peers[0], "runs": [x for p in peers for x in p["runs"]]}, open(f"{out}/peer-{r}.json", "w"), indent=1)
PY
done
echo "== purification (no peer)" >&2
"$B/bench/bench_perf" --benchmark_filter='BM_Purify' --benchmark_out="$OUT/raw/purify.json" \
  --benchmark_out_format=json >&2
/usr/bin/python3 bench/perf/report.py "$OUT/raw" "$MODEL" "$(sha256sum "$MODEL/weights.pt" | cut -d' ' -f1)" \
  "bench/perf/run.sh $THREADS (ROUNDS=$ROUNDS)" "$OUT"
