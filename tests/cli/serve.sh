#!/usr/bin/env bash
# End-to-end: `ebm serve` as a process. A client written from the Open
# Inference Protocol spec agrees with /v1/score, and SIGTERM lets a request in
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

"$EBM" serve --model "$ROOT/models/fmnist-ood" --detector "$ROOT/models/fmnist-ood.detector.json" \
  --port 0 --threads 1 2>"$T/serve.err" &
pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$T/serve.err")
  [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break
  sleep 0.2
done
[ -n "$port" ] && echo "ok: ready on port $port" || { echo "FAIL: server not ready"; cat "$T/serve.err"; fails=$((fails + 1)); }
BASE="http://127.0.0.1:$port"

check "OIP client agrees with /v1/score" 0 python3 "$ROOT/tests/serve/oip_client.py" "$BASE" fmnist-ood
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
