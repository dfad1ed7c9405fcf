#!/usr/bin/env bash
# The performance table (README "Performance"): ebmkit's workloads
# (build/bench/bench_perf, Google Benchmark) and the PyTorch-Python peer
# (bench/perf/peer.py) on the same TorchScript model, inputs, batch sizes,
# step counts and threads, plus the machine's compute limit (torch::mm 2048^2)
# measured in the same run.
#
# Why rounds: on a shared 2-core machine the same workload's rate moves by up
# to 2x between minutes, so one ebmkit pass followed by one Python pass can
# put the two sides in different weather. The script alternates them ROUNDS
# times (default 3); the report takes each side's median, the median of the
# per-round ratios, and shows the lowest and highest per-round ratio.
# Purification has no peer and runs once.
#
# Writes results/bench/bench.json, bench.md, batch.png, and the raw
# measurements in results/bench/raw/ (report.py redraws from them).
# Usage: bench/perf/run.sh [THREADS]   (default 2; ROUNDS=3: about 10 minutes)
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
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS: ebmkit (bench_perf, $THREADS threads)" >&2
  "$B/bench/bench_perf" --benchmark_filter='BM_(MatmulLimit|Langevin|Langevin64|Score|Pcd20)' \
    --benchmark_out="$OUT/raw/ebmkit-$r.json" --benchmark_out_format=json >&2
  echo "== round $r of $ROUNDS: PyTorch-Python peer ($THREADS threads)" >&2
  /usr/bin/python3 bench/perf/peer.py "$T/model.pt" "$THREADS" "$OUT/raw/peer-$r.json"
done
echo "== purification (no peer)" >&2
"$B/bench/bench_perf" --benchmark_filter='BM_Purify' --benchmark_out="$OUT/raw/purify.json" \
  --benchmark_out_format=json >&2
/usr/bin/python3 bench/perf/report.py "$OUT/raw" "$MODEL" "$(sha256sum "$MODEL/weights.pt" | cut -d' ' -f1)" \
  "bench/perf/run.sh $THREADS (ROUNDS=$ROUNDS)" "$OUT"
