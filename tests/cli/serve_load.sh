#!/usr/bin/env bash
# `ebm serve` under load: SIGHUP reloads the model from disk while 8 clients
# keep sending requests (none fails, every answer names the model that produced
# it, hashes switch once from old to new); 10,000 idle connections do not stall
# a valid request; SIGTERM under load answers every request in flight.
# Usage: serve_load.sh PATH/TO/ebm REPO_ROOT
set -uo pipefail
EBM=$1
ROOT=$2
# shellcheck source=lib/check.bash
source "$(dirname "$0")/lib/check.bash"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

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

# ---- reload under load: the served folder starts as fmnist-dsm and becomes mnist-dsm.
mkdir -p "$T/served"
cp "$ROOT/models/fmnist-dsm/card.json" "$ROOT/models/fmnist-dsm/weights.pt" "$T/served/"
OLD=$(sha256sum "$ROOT/models/fmnist-dsm/weights.pt" | cut -d' ' -f1)
NEW=$(sha256sum "$ROOT/models/mnist-dsm/weights.pt" | cut -d' ' -f1)
start_server "$T/reload.err" --model "served=$T/served"
BASE="http://127.0.0.1:$port"
"$PY" - "$BASE" "$T" >"$T/load.out" 2>&1 <<'PY' &
import http.client, json, sys, threading, time, os
base, tmp = sys.argv[1], sys.argv[2]
host, port = base.split("//")[1].split(":")
img = [[0.5] * 28 for _ in range(28)]
bodies = {"/v1/score": json.dumps({"images": [img]}),
          "/v2/models/served/infer": json.dumps({"inputs": [{"name": "x", "shape": [1, 784], "datatype": "UINT8", "data": [128] * 784}]})}
stop_at = [None]
results = [[] for _ in range(8)]
def client(k):
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    path = list(bodies)[k % 2]
    while stop_at[0] is None or time.time() < stop_at[0]:
        try:
            c.request("POST", path, bodies[path], {"Content-Type": "application/json"})
            r = c.getresponse()
            body = json.loads(r.read())
            h = r.getheader("X-Model-SHA256")
            b = body.get("model_sha256") or body.get("parameters", {}).get("model_sha256")
            e = body["results"][0]["energy"] if "results" in body else body["outputs"][0]["data"][0]
            results[k].append((r.status, h, b, e))
        except Exception as ex:  # a dropped request
            results[k].append((0, repr(ex), None, None))
            c = http.client.HTTPConnection(host, int(port), timeout=30)
ts = [threading.Thread(target=client, args=(k,)) for k in range(8)]
for t in ts: t.start()
open(tmp + "/load.started", "w").close()
while not os.path.exists(tmp + "/load.stop"): time.sleep(0.05)
stop_at[0] = time.time() + 1.0  # one more second on the new model
for t in ts: t.join()
json.dump(results, open(tmp + "/load.json", "w"))
print("requests", sum(map(len, results)))
PY
client=$!
for _ in $(seq 100); do [ -f "$T/load.started" ] && break; sleep 0.1; done
sleep 1.5
# Swap the folder's files (each by rename, so a reader sees whole files), then SIGHUP.
cp "$ROOT/models/mnist-dsm/weights.pt" "$T/served/weights.new" && mv "$T/served/weights.new" "$T/served/weights.pt"
cp "$ROOT/models/mnist-dsm/card.json" "$T/served/card.new" && mv "$T/served/card.new" "$T/served/card.json"
kill -HUP $pid
for _ in $(seq 100); do grep -q "reloaded" "$T/reload.err" && break; sleep 0.1; done
sleep 1
touch "$T/load.stop"
wait $client
cat "$T/load.out"
check "reload under load: no request failed, hashes switch once" 0 "$PY" - "$T/load.json" "$OLD" "$NEW" <<'PY'
import json, sys
res, old, new = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
flat = [r for rs in res for r in rs]
failed = [r for r in flat if r[0] != 200]
mismatch = [r for r in flat if r[1] != r[2]]
n_old = sum(r[1] == old for r in flat); n_new = sum(r[1] == new for r in flat)
monotone = all([r[1] for r in rs] == sorted([r[1] for r in rs], key=lambda h: h == new) for rs in res)
# Each model's answers agree with each other (one image per endpoint): no answer mixes models.
by = {}
for k, rs in enumerate(res):
    for r in rs: by.setdefault((k % 2, r[1]), set()).add(round(r[3], 3))
print(f"answers {len(flat)}: old hash {n_old}, new hash {n_new}, failed {len(failed)}, header != body {len(mismatch)}, "
      f"monotone {monotone}, energies per (endpoint, model) {sorted((k[0], k[1][:8], sorted(v)) for k, v in by.items())}")
ok = not failed and not mismatch and n_old > 0 and n_new > 0 and n_old + n_new == len(flat) and monotone \
     and all(len(v) == 1 for v in by.values())
sys.exit(0 if ok else 1)
PY
cat "$T/out"
has "the server logged the reload with the new hash" "$T/reload.err" "reloaded in .* served=${NEW:0:12} (new)"
# A broken file: the reload fails, the old (now mnist-dsm) model keeps serving.
head -c 1000 /dev/urandom >"$T/served/weights.pt"
kill -HUP $pid
for _ in $(seq 100); do grep -q "reload failed" "$T/reload.err" && break; sleep 0.1; done
has "a failed reload says so" "$T/reload.err" "reload failed, still serving the old models"
curl -s -D "$T/h.txt" "$BASE/v1/score" -d '{"images":[['"$("$PY" -c 'print(",".join(["0.5"]*784))')"']]}' >/dev/null
has "after a failed reload the last good model answers" "$T/h.txt" "X-Model-SHA256: $NEW"
curl -s "$BASE/metrics" >"$T/metrics.txt"
has "reloads are counted" "$T/metrics.txt" 'ebm_reloads_total{result="failed"} 1'
kill -TERM $pid; wait $pid

# ---- 10,000 idle connections (half of them stopped mid-request line): a valid
# request on a new connection is still answered within 3 s.
start_server "$T/flood.err" --model "$ROOT/models/fmnist-ood" --detector "$ROOT/models/fmnist-ood.detector.json"
BASE="http://127.0.0.1:$port"
N=10000
[ "$(ulimit -n)" -gt 10100 ] || N=$(( $(ulimit -n) - 200 ))
check "$N idle connections do not stall a valid request" 0 "$PY" "$ROOT/bench/serve/idle_flood.py" "127.0.0.1:$port" "$N" --limit 3
cat "$T/out"

# ---- SIGTERM under load: 8 long requests in flight plus 8 clients sending
# short ones; every long one gets its answer, short ones get 200 or 503 (stopping).
"$PY" - "$BASE" >"$T/term.out" 2>&1 <<'PY' &
import http.client, json, sys, threading, time
host, port = sys.argv[1].split("//")[1].split(":")
img = [[0.5] * 28 for _ in range(28)]
long_body = json.dumps({"images": [img], "solver": "gd", "steps": 1500})
short_body = json.dumps({"images": [img]})
out = {"long": [], "short": []}
def long_req():
    c = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        c.request("POST", "/v1/denoise", long_body); r = c.getresponse(); r.read(); out["long"].append(r.status)
    except Exception as e:
        out["long"].append(repr(e))
def short_loop():
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    while True:
        try:
            c.request("POST", "/v1/score", short_body); r = c.getresponse(); r.read(); out["short"].append(r.status)
            if r.status == 503: return
        except Exception:  # refused or closed once the server stopped accepting
            return
ts = [threading.Thread(target=long_req) for _ in range(8)] + [threading.Thread(target=short_loop) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print("long", out["long"])
print("short", len(out["short"]), sorted(set(out["short"])))
PY
client=$!
for _ in $(seq 200); do
  n=$(curl -s "$BASE/metrics" | sed -n 's/^ebm_requests_in_flight \([0-9]*\).*/\1/p')
  [ "${n:-0}" -ge 8 ] && break
  sleep 0.05
done
kill -TERM $pid
wait $client
cat "$T/term.out"
has "all 8 long requests in flight were answered 200" "$T/term.out" "^long \[200, 200, 200, 200, 200, 200, 200, 200\]"
has "short requests under load got 200 or 503 only" "$T/term.out" "^short [0-9]* \[200\(, 503\)\?\]"
wait $pid
rc=$?
[ "$rc" = 0 ] && echo "ok: SIGTERM under load exits 0" || { echo "FAIL: SIGTERM exit $rc"; fails=$((fails + 1)); }
finish
