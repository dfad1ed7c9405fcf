#!/usr/bin/env bash
# End-to-end: `ebm serve` as a process. A client written from the Open
# Inference Protocol spec agrees with /v1/score, every answer validates against
# docs/openapi.json, /v1/denoise equals `ebm denoise`, and SIGTERM lets a request in
# flight finish, then exits 0.
# Usage: serve.sh PATH/TO/ebm REPO_ROOT
set -uo pipefail
EBM=$1
ROOT=$2
# shellcheck source=lib/check.bash
source "$(dirname "$0")/lib/check.bash"

check "serve --help" 0 "$EBM" serve --help
has "help lists the endpoints" "$T/out" "/v2/models/NAME/infer"
check "serve without a model is a usage error" 2 "$EBM" serve
check "a missing detector is a runtime error" 1 "$EBM" serve --model "$ROOT/models/fmnist-ood" --detector "$T/none.json" --port 0

# Debian's python3 has python3-jsonschema (scripts/setup); prefer it over another python3 on PATH.
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3

start_server() {  # start_server LOG ARGS... -> sets pid and port
  "$EBM" serve "${@:2}" --port 0 --threads 1 2>"$1" &
  pid=$!
  port=""
  for _ in $(seq 150); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$1")
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break
    sleep 0.2
  done
  [ -n "$port" ] && echo "ok: ready on port $port" || { echo "FAIL: server not ready"; cat "$1"; fails=$((fails + 1)); }
}

start_server "$T/guard.err" --model "$ROOT/models/mnist-ood" --detector "$ROOT/models/mnist-ood.detector.json" \
  --classifier "$ROOT/models/mnist-clf" --purifier "$ROOT/models/mnist-purifier"
guard_pid=$pid
GUARD="http://127.0.0.1:$port"
start_server "$T/serve.err" --model "$ROOT/models/fmnist-ood" --detector "$ROOT/models/fmnist-ood.detector.json"
BASE="http://127.0.0.1:$port"

check "OIP client agrees with /v1/score" 0 python3 "$ROOT/tests/serve/oip_client.py" "$BASE" fmnist-ood
cat "$T/out"
check "every answer validates against docs/openapi.json" 0 "$PY" "$ROOT/tests/serve/openapi_check.py" \
  "$ROOT/docs/openapi.json" "$BASE" "$GUARD"
grep -E '^(BAD|FAIL)' "$T/out"
tail -1 "$T/out"
kill -TERM $guard_pid; wait $guard_pid
check "/v1/denoise equals ebm denoise" 0 python3 "$ROOT/tests/serve/denoise_vs_cli.py" "$EBM" "$BASE" "$ROOT/models/fmnist-ood" "$T"
cat "$T/out"

# A long denoise is in flight when SIGTERM arrives: it must still get its answer.
python3 - "$BASE" >"$T/slow.out" 2>&1 <<'PY' &
import json, sys, urllib.request
img = [[0.5] * 28 for _ in range(28)]
body = json.dumps({"images": [img], "solver": "gd", "steps": 2000}).encode()
r = urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/v1/denoise", data=body), timeout=120)
print(r.status, len(json.loads(r.read())["images"]))
PY
client=$!
for _ in $(seq 100); do
  curl -s "$BASE/metrics" | grep -q '^ebm_requests_in_flight 1' && break
  sleep 0.05
done
kill -TERM $pid
wait $client
has "the request in flight got its answer" "$T/slow.out" "^200 1"
wait $pid
rc=$?
[ "$rc" = 0 ] && echo "ok: SIGTERM exits 0" || { echo "FAIL: SIGTERM exit $rc"; fails=$((fails + 1)); }
has "the server said it stopped" "$T/serve.err" "stopped"
finish
