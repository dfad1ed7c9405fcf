#!/usr/bin/env bash
# The soak (make soak; never in ctest): TOTAL requests (default 100,000) from
# CONNS (default 32) keep-alive connections with wrk against `ebm serve` on
# models/fmnist-ood, a fixed mix of valid and malformed requests
# (bench/serve/soak_bodies.py, bench/serve/soak.lua). Checked
# (bench/serve/soak_check.py), and the run fails otherwise:
#   - the server is alive at the end and answers readiness;
#   - no 5xx other than 503 back-pressure; every malformed request got its 4xx;
#   - every valid answer (all of them, not a sample) has the score, OOD flag and
#     p-value that `ebm ood predict` gives on the same image, and the model hash;
#   - VmRSS at the end within 10% of VmRSS after a warm-up run of the same mix.
# Usage: bench/serve/soak.sh [TOTAL] [CONNS]  -> results/serve/soak.{json,md}
set -euo pipefail
cd "$(dirname "$0")/../.."
TOTAL=${1:-100000}
CONNS=${2:-32}
WARM=${EBM_SOAK_WARMUP:-10000}
EBM=${EBM:-build/ebm}
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
PORT=${EBM_SOAK_PORT:-18090}
OUT=${EBM_SOAK_OUT:-results/serve}
MODEL=models/fmnist-ood
DET=models/fmnist-ood.detector.json
TMP=$(mktemp -d)
SERVE=""
cleanup() {
  [ -n "$SERVE" ] && kill -TERM "$SERVE" 2>/dev/null || true
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$OUT" "$TMP/bodies"
ulimit -n 4096

"$EBM" data export --data fashion-mnist --split test --n 64 --out "$TMP/test.npy" --quiet
"$PY" bench/serve/soak_bodies.py "$TMP/test.npy" "$TMP/bodies" fmnist-ood 65536 4
"$EBM" ood predict --threads 1 --quiet --detector "$DET" --model "$MODEL" --input "$TMP/bodies/ref.npy" >"$TMP/ref.jsonl"

SERVE_CMD=("$EBM" serve --model "$MODEL" --detector "$DET" --port "$PORT" --threads 1
           --max-body-bytes 65536 --max-images-per-request 4)
"${SERVE_CMD[@]}" 2>"$TMP/serve.err" &
SERVE=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null || { cat "$TMP/serve.err"; exit 1; }
# The model's hash as the server reports it (ebm::model_hash): every answer must carry it.
HASH=$(curl -s "http://127.0.0.1:$PORT/v2/models/fmnist-ood" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["parameters"]["sha256"])')
rss() { awk '/^VmRSS/ {print $2}' "/proc/$SERVE/status"; }

# run_wrk DIR N: N answers of the mix; prints wrk's EBM_SOAK line.
run_wrk() {
  local dir=$1 n=$2
  mkdir -p "$dir"
  cp "$TMP"/bodies/* "$dir"/
  EBM_SOAK_DIR=$dir EBM_SOAK_TOTAL=$n EBM_SOAK_THREADS=2 \
    wrk -t2 -c"$CONNS" -d3600s --timeout 30s -s bench/serve/soak.lua "http://127.0.0.1:$PORT" >"$dir/wrk.out" 2>&1 &
  local w=$!
  # wrk runs for its whole duration; each thread marks its share answered, then wrk is stopped.
  until [ -f "$dir/done-1" ] && [ -f "$dir/done-2" ]; do
    kill -0 "$SERVE" 2>/dev/null || { echo "the server died" >&2; break; }
    kill -0 "$w" 2>/dev/null || break
    sleep 0.2
  done
  kill -INT "$w" 2>/dev/null || true
  wait "$w" || true
  sed -n 's/^EBM_SOAK //p' "$dir/wrk.out"
}

echo "soak: warm-up, $WARM requests" >&2
WARM_RES=$(run_wrk "$TMP/warm" "$WARM")
sleep 1
RSS_WARM=$(rss)
echo "soak: $TOTAL requests from $CONNS connections (VmRSS after warm-up ${RSS_WARM} kB)" >&2
( while kill -0 "$SERVE" 2>/dev/null; do rss >>"$TMP/rss.txt" 2>/dev/null || true; sleep 1; done ) &
SAMPLER=$!
MAIN_RES=$(run_wrk "$TMP/main" "$TOTAL")
sleep 1
RSS_END=$(rss || echo 0)
kill "$SAMPLER" 2>/dev/null || true
ALIVE=0
kill -0 "$SERVE" 2>/dev/null && curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null && ALIVE=1
curl -s "http://127.0.0.1:$PORT/metrics" >"$TMP/metrics.txt" || true
kill -TERM "$SERVE"
set +e
wait "$SERVE"
SERVE_RC=$?
set -e
SERVE=""
cat "$TMP"/main/valid-*.log >"$TMP/valid.log"
"$PY" bench/serve/soak_check.py --ref "$TMP/ref.jsonl" --log "$TMP/valid.log" --expect "$TMP/bodies/expect.json" \
  --wrk "$MAIN_RES" --warm "$WARM_RES" --counts "$TMP/main" --warm-counts "$TMP/warm" --rss-warm "$RSS_WARM" --rss-end "$RSS_END" --rss-samples "$TMP/rss.txt" \
  --alive "$ALIVE" --exit-code "$SERVE_RC" --metrics "$TMP/metrics.txt" --hash "$HASH" --conns "$CONNS" --total "$TOTAL" \
  --command "bench/serve/soak.sh $TOTAL $CONNS" --server "${SERVE_CMD[*]}" --out "$OUT/soak"
