#!/usr/bin/env bash
# The performance table (README "Performance"; docs/performance.md): ebmkit's
# workloads (build/bench/bench_perf, Google Benchmark) and the PyTorch-Python
# peer (bench/perf/peer.py) on the same TorchScript model, inputs, batch sizes,
# step counts and threads, in one run, plus the machine's compute limit
# (torch::mm 2048^2) measured in the same run. Writes results/bench/bench.json,
# results/bench/bench.md and results/bench/batch.png, and the raw measurements
# (results/bench/*.raw.json). Run on an idle machine.
# Usage: bench/perf/run.sh [THREADS]   (default 2; about 5 minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD:-build}
EBM=${EBM:-$B/ebm}
THREADS=${1:-2}
MODEL=models/mnist-dsm
OUT=results/bench
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$OUT"
"$EBM" export --model "$MODEL" --out "$T/model.pt" --quiet
echo "== ebmkit (bench_perf, $THREADS threads)" >&2
EBM_BENCH_MODEL=$MODEL EBM_BENCH_SCRIPT=$T/model.pt EBM_BENCH_THREADS=$THREADS OMP_NUM_THREADS=$THREADS \
  "$B/bench/bench_perf" --benchmark_out="$T/ebmkit.json" --benchmark_out_format=json >&2
echo "== PyTorch-Python peer ($THREADS threads)" >&2
OMP_NUM_THREADS=$THREADS /usr/bin/python3 bench/perf/peer.py "$T/model.pt" "$THREADS" "$T/peer.json"
# The raw measurements stay beside the table, so report.py can redraw it.
cp "$T/ebmkit.json" "$OUT/bench_perf.raw.json"
cp "$T/peer.json" "$OUT/peer.raw.json"
/usr/bin/python3 bench/perf/report.py "$OUT/bench_perf.raw.json" "$OUT/peer.raw.json" "$MODEL" "$(sha256sum "$MODEL/weights.pt" | cut -d' ' -f1)" \
  "bench/perf/run.sh $THREADS" "$OUT"
