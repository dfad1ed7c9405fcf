#!/usr/bin/env bash
# The serving benchmark (make bench; never in ctest): `ebm serve` under wrk
# against the Flask + PyTorch peer on the same model and request, plus ebmkit's
# offline batched scoring throughput on the same model, all in one run.
# Then a load sweep (10 s at each connection count) for the latency-vs-load plot.
# Usage: bench/serve/run.sh [SECONDS] [CONNECTIONS]   -> results/serve/score.{json,md}, latency.png
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-60}
CONNS=${2:-16}
EBM=${EBM:-build/ebm}
OUT=results/serve
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
MODEL=models/fmnist-ood
DET=models/fmnist-ood.detector.json

# One request body: a Fashion-MNIST test image as a base64 PNG; the 10,000 test images as NPY for the offline run.
"$EBM" data export --data fashion-mnist --split test --n 10000 --out "$TMP/test.npy" --quiet
/usr/bin/python3 - "$TMP" <<'PY'
import base64, json, struct, sys, zlib
import numpy as np
x = np.load(sys.argv[1] + "/test.npy")
px = np.clip(np.round(x[0, 0] * 255), 0, 255).astype(np.uint8).tobytes()
def png(px, w=28, h=28):
    rows = b"".join(b"\0" + px[r * w:(r + 1) * w] for r in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
json.dump({"images": [base64.b64encode(png(px)).decode()]}, open(sys.argv[1] + "/body.json", "w"))
PY

wait_ready() {  # URL
  for _ in $(seq 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done
  echo "not ready: $1" >&2; return 1
}
run_wrk() {  # URL [CONNS SECS] -> the EBM_WRK json line
  local c=${2:-$CONNS} d=${3:-$SECS}
  EBM_BODY="$TMP/body.json" wrk -t$((c < 2 ? 1 : 2)) -c"$c" -d"${d}s" --timeout 10s -s bench/serve/score.lua "$1" |
    sed -n 's/^EBM_WRK //p'
}
sweep() {  # URL CONNS... -> {"C": EBM_WRK json, ...}
  local url=$1 first=1; shift
  printf '{'
  for c in "$@"; do
    [ $first = 1 ] || printf ','
    first=0
    printf '"%s":%s' "$c" "$(run_wrk "$url" "$c" 10)"
  done
  printf '}'
}

"$EBM" serve --model "$MODEL" --detector "$DET" --port 18080 --quiet 2>"$TMP/serve.err" &
SERVE=$!
wait_ready http://127.0.0.1:18080/v2/health/ready
echo "ebm serve: ${SECS} s at $CONNS connections" >&2
EBM_RES=$(run_wrk http://127.0.0.1:18080/v1/score)
BATCH=$(curl -s http://127.0.0.1:18080/metrics | grep -E '^ebm_batch_size_(sum|count) ' | awk '{print $2}' | paste -sd' ')
echo "ebm serve: load sweep" >&2
EBM_SWEEP=$(sweep http://127.0.0.1:18080/v1/score 1 2 4 8 16 32 64)
kill -TERM $SERVE; wait $SERVE

PEER_RES=null
PEER_SWEEP=null
if [ -f bench/serve/peer_flask.py ]; then
  /usr/bin/python3 bench/serve/peer_flask.py --port 18081 --threads 1 >"$TMP/peer.log" 2>&1 &
  PEER=$!
  wait_ready http://127.0.0.1:18081/health
  echo "Flask peer: ${SECS} s at $CONNS connections, then a load sweep" >&2
  PEER_RES=$(run_wrk http://127.0.0.1:18081/v1/score)
  PEER_SWEEP=$(sweep http://127.0.0.1:18081/v1/score 1 4 16 64)
  kill $PEER; wait $PEER 2>/dev/null || true
fi

# Offline: the same scoring through `ebm ood predict`, batches of 256, 1 thread, model load excluded
# by timing two runs (1 image and 10,000) and taking the difference.
t() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
/usr/bin/python3 -c "import numpy as np; np.save('$TMP/one.npy', np.load('$TMP/test.npy')[:1])"
T1=$(t "$EBM" ood predict --detector "$DET" --input "$TMP/one.npy" --threads 1 --quiet)
TN=$(t "$EBM" ood predict --detector "$DET" --input "$TMP/test.npy" --threads 1 --quiet)

/usr/bin/python3 - "$OUT" "$EBM_RES" "$PEER_RES" "$T1" "$TN" "$BATCH" "$SECS" "$CONNS" "$EBM_SWEEP" "$PEER_SWEEP" <<'PY'
import hashlib, json, sys, time
out, ebm, peer, t1, tn, batch, secs, conns, ebm_sweep, peer_sweep = sys.argv[1:]
ebm = json.loads(ebm); peer = json.loads(peer)
ebm_sweep = json.loads(ebm_sweep); peer_sweep = json.loads(peer_sweep)
def rps(r): return r["requests"] / r["seconds"]
offline = 9999 / (float(tn) - float(t1))
bsum, bcount = (float(v) for v in batch.split())
sha = hashlib.sha256(open("models/fmnist-ood/weights.pt", "rb").read()).hexdigest()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rep = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu, "cores": 2, "model": "models/fmnist-ood", "model_sha256": sha,
       "command": f"bench/serve/run.sh {secs} {conns}", "connections": int(conns), "seconds": int(secs),
       "ebmkit": dict(ebm, requests_per_second=rps(ebm), mean_batch=bsum / bcount),
       "offline_images_per_second": offline,
       "served_over_offline": rps(ebm) / offline}
rep["ebmkit_sweep"] = ebm_sweep
if peer:
    rep["flask_peer"] = dict(peer, requests_per_second=rps(peer))
    rep["ebmkit_over_peer"] = rps(ebm) / rps(peer)
    rep["flask_peer_sweep"] = peer_sweep
json.dump(rep, open(out + "/score.json", "w"), indent=1)
errs = lambda r: r["errors_status"] + r["errors_connect"] + r["errors_read"] + r["errors_timeout"]
md = [f"# Serving `/v1/score` (models/fmnist-ood, single 28x28 PNG per request)", "",
      f"command: `{rep['command']}`  ", f"models: models/fmnist-ood {sha}  ",
      f"{rep['date']}, {cpu}, 2 cores; wrk -t2 -c{conns} -d{secs}s on the same machine", "",
      "| server | requests/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|",
      f"| ebm serve (1 model thread) | {rps(ebm):.0f} | {ebm['p50_ms']:.1f} | {ebm['p99_ms']:.1f} | {errs(ebm)} |"]
if peer:
    md.append(f"| Flask + PyTorch peer (1 thread) | {rps(peer):.0f} | {peer['p50_ms']:.1f} | {peer['p99_ms']:.1f} | {errs(peer)} |")
md += ["", f"- offline batched scoring (`ebm ood predict`, batch 256, 1 thread): {offline:.0f} images/s",
       f"- served / offline: {rep['served_over_offline']:.2f}; mean batch {bsum / bcount:.1f} rows"]
if peer: md.append(f"- ebm serve / Flask peer: {rep['ebmkit_over_peer']:.1f}x")
md += ["", "Latency against offered load (10 s per connection count): [latency.png](latency.png)", "",
       "| server | connections | requests/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|"]
for name, sw in (("ebm serve", ebm_sweep), ("Flask peer", peer_sweep or {})):
    for c, r in sw.items():
        md.append(f"| {name} | {c} | {rps(r):.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {errs(r)} |")
open(out + "/score.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
for name, sw, col in (("ebm serve", ebm_sweep, "tab:blue"), ("Flask + PyTorch", peer_sweep or {}, "tab:red")):
    if not sw: continue
    x = [rps(r) for r in sw.values()]
    ax.plot(x, [r["p50_ms"] for r in sw.values()], "o-", color=col, label=f"{name} p50")
    ax.plot(x, [r["p99_ms"] for r in sw.values()], "s--", color=col, label=f"{name} p99")
    for c, r in sw.items(): ax.annotate(c, (rps(r), r["p99_ms"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("throughput (requests/s); labels = open connections"); ax.set_ylabel("latency (ms)")
ax.set_title("/v1/score, one 28x28 PNG per request, models/fmnist-ood", fontsize=9)
ax.grid(True, which="both", alpha=0.3); ax.legend(fontsize=8)
fig.tight_layout(); fig.savefig(out + "/latency.png")
PY
