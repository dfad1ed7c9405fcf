#!/usr/bin/env python3
"""Checks a soak run (bench/serve/soak.sh) and writes OUT.json and OUT.md.
Exit 0 only when every requirement holds (see soak.sh)."""
import argparse
import json
import math
import sys
from collections import defaultdict

ap = argparse.ArgumentParser()
for a in ("ref", "log", "expect", "wrk", "warm", "counts", "warm-counts", "rss-samples", "metrics", "hash", "command", "server", "out"):
    ap.add_argument("--" + a, required=True)
for a in ("rss-warm", "rss-end", "alive", "exit-code", "conns", "total"):
    ap.add_argument("--" + a, type=int, required=True)
a = ap.parse_args()

ref = [json.loads(l) for l in open(a.ref) if l.strip()]
wrk = json.loads(a.wrk)
warm = json.loads(a.warm)
expect = json.load(open(a.expect))
failures = []


def counts(d):
    """The wrk threads' counts-ID.txt files in folder d -> (status, sent)."""
    import glob
    st, se = defaultdict(int), defaultdict(int)
    for f in glob.glob(d + "/counts-*.txt"):
        for l in open(f):
            what, k, v = l.split()
            (st if what == "status" else se)[k] += int(v)
    return dict(st), dict(se)


wrk["status"], wrk["sent"] = counts(a.counts)
warm["status"], warm["sent"] = counts(a.warm_counts)

# ---- statuses: answers by status class, requests sent by kind
status = {int(k): v for k, v in wrk["status"].items()}
sent = wrk["sent"]
sent_valid = sum(v for k, v in sent.items() if k.startswith("valid-"))
sent_bad = sum(v for k, v in sent.items() if k.startswith("bad-"))
answered = sum(status.values())
n200 = status.get(200, 0)
n4xx = sum(v for k, v in status.items() if 400 <= k < 500)
n503 = status.get(503, 0)
n5xx_other = sum(v for k, v in status.items() if k >= 500 and k != 503)
other = sum(v for k, v in status.items() if not (k == 200 or 400 <= k < 600))
in_flight = sent_valid + sent_bad - answered  # sent, not yet answered when wrk stopped
expected_4xx = defaultdict(int)
for k, v in sent.items():
    if k.startswith("bad-"):
        expected_4xx[expect[k]] += v
socket_errors = wrk["errors_connect"] + wrk["errors_read"] + wrk["errors_write"] + wrk["errors_timeout"]
if answered < a.total:
    failures.append(f"only {answered} answers of {a.total}")
if n5xx_other:
    failures.append(f"{n5xx_other} answers 5xx other than 503")
if other:
    failures.append(f"{other} answers with an unexpected status")
if socket_errors:
    failures.append(f"{socket_errors} socket errors (connect/read/write/timeout)")
if not (0 <= in_flight <= a.conns):
    failures.append(f"{in_flight} requests sent and not answered (at most {a.conns}, one per connection, may be in flight at the stop)")
# Each bad request answered 4xx and each valid one 200, up to those in flight at the stop.
if abs(n4xx - sent_bad) > a.conns or abs(n200 + n503 - sent_valid) > a.conns:
    failures.append(f"4xx {n4xx} vs malformed sent {sent_bad}; 200+503 {n200 + n503} vs valid sent {sent_valid}")
for code, n in expected_4xx.items():
    got = status.get(code, 0)
    if abs(got - n) > a.conns:
        failures.append(f"{got} answers {code}, {n} requests that expect it")

# ---- every valid answer against the CLI (`ebm ood predict` on the same images)
lines = [l.split() for l in open(a.log) if l.strip()]
if len(lines) != n200:
    failures.append(f"{len(lines)} valid answers logged, {n200} answers 200")
bad_answers, wrong_hash = [], 0
energies = defaultdict(list)
for kind, ident, e, s, o, p, sha in lines:
    i = int(ident.split("-")[1]) if ident.startswith("img-") else -1
    if sha != a.hash:
        wrong_hash += 1
    try:
        e, s, p = float(e), float(s), float(p)
    except ValueError:
        bad_answers.append((kind, ident, "unparsable"))
        continue
    r = ref[i]
    ok = (abs(s - r["energy"]) <= 1e-5 * max(1.0, abs(r["energy"])) and (o == "true") == r["ood"]
          and abs(p - r["p_value"]) <= 1e-12 and math.isfinite(e))
    if not ok:
        bad_answers.append((kind, ident, f"served score {s} ood {o} p {p}; CLI {r['energy']} {r['ood']} {r['p_value']}"))
    energies[i].append(e)
spread = max((max(v) - min(v)) / max(1.0, abs(v[0])) for v in energies.values()) if energies else float("nan")
if bad_answers:
    failures.append(f"{len(bad_answers)} valid answers differ from the CLI, e.g. {bad_answers[:3]}")
if wrong_hash:
    failures.append(f"{wrong_hash} answers without the model's hash in X-Model-SHA256")
if not energies or spread > 1e-4:
    failures.append(f"raw energies of one image differ between answers by {spread:.3g} (relative)")

# ---- memory and liveness
samples = [int(x) for x in open(a.rss_samples).read().split()] if a.rss_samples else []
drift = (a.rss_end - a.rss_warm) / a.rss_warm if a.rss_warm else float("nan")
if not (abs(drift) <= 0.10):
    failures.append(f"VmRSS drift {drift:+.1%} (warm-up {a.rss_warm} kB, end {a.rss_end} kB)")
if not a.alive:
    failures.append("the server was not alive and ready at the end")
if a.exit_code != 0:
    failures.append(f"the server exited {a.exit_code} on SIGTERM")
metrics = {}
for l in open(a.metrics):
    if l.startswith("ebm_requests_total{") or l.startswith("ebm_connections_closed_total{"):
        k, v = l.rsplit(" ", 1)
        metrics[k] = float(v)

res = {
    "command": a.command,
    "server": a.server,
    "requests": {"answered": answered, "target": a.total, "connections": a.conns, "seconds": wrk["seconds"],
                 "per_second": round(answered / wrk["seconds"], 1), "p50_ms": wrk["p50_ms"], "p99_ms": wrk["p99_ms"],
                 "max_ms": wrk["max_ms"], "sent_valid": sent_valid, "sent_malformed": sent_bad,
                 "in_flight_at_stop": in_flight},
    "status": {str(k): v for k, v in sorted(status.items())},
    "errors": {"5xx_other_than_503": n5xx_other, "503": n503, "socket": socket_errors, "crashes": 0 if a.alive else 1},
    "sent_by_kind": dict(sorted(sent.items())),
    "expected_status_by_kind": expect,
    "valid_checked": {"answers": len(lines), "differ_from_cli": len(bad_answers), "wrong_hash": wrong_hash,
                      "images": len(energies), "max_energy_spread_rel": spread},
    "rss_kb": {"after_warmup": a.rss_warm, "end": a.rss_end, "drift": round(drift, 4),
               "max_during": max(samples) if samples else None, "min_during": min(samples) if samples else None},
    "warmup": {"answered": sum(int(v) for v in warm["status"].values()), "status": warm["status"]},
    "server_exit_on_sigterm": a.exit_code,
    "server_metrics": metrics,
    "failures": failures,
    "passed": not failures,
}
json.dump(res, open(a.out + ".json", "w"), indent=1)
fmt = lambda n: f"{n:,}"
md = [
    "# Soak: `ebm serve` under a mix of valid and malformed requests", "",
    f"`{a.command}` (`make soak`): {fmt(answered)} answers from {a.conns} keep-alive `wrk` connections on loopback, "
    f"{wrk['seconds']:.1f} s ({answered / wrk['seconds']:.0f} requests/s, p50 {wrk['p50_ms']:.1f} ms, p99 {wrk['p99_ms']:.1f} ms), "
    f"after a warm-up of {fmt(res['warmup']['answered'])} answers of the same mix.", "",
    f"Server: `{a.server}`", "",
    "| | count |", "|---|---|",
    f"| valid requests sent | {fmt(sent_valid)} |",
    f"| malformed requests sent | {fmt(sent_bad)} |",
] + [f"| answers {k} | {fmt(v)} |" for k, v in sorted(status.items())] + [
    f"| 5xx other than 503 | {n5xx_other} |",
    f"| socket errors | {socket_errors} |",
    f"| sent, still in flight when wrk stopped | {in_flight} |",
    f"| valid answers checked against `ebm ood predict` | {fmt(len(lines))} ({len(bad_answers)} differ, {wrong_hash} with a wrong hash) |",
    "", "Memory (VmRSS from /proc/PID/status):", "",
    f"| after warm-up | end | drift | min..max during |", "|---|---|---|---|",
    f"| {fmt(a.rss_warm)} kB | {fmt(a.rss_end)} kB | {drift:+.2%} | {fmt(min(samples)) if samples else '-'}..{fmt(max(samples)) if samples else '-'} kB |",
    "",
    "Each valid answer's score, OOD flag and p-value equal `ebm ood predict` on the same image (score to 1e-5 relative, "
    f"p-value exactly); raw energies of one image agree across answers to {spread:.2g} (relative) whatever the batch.",
    "Malformed kinds and their expected status: " + ", ".join(f"`{k}` {v}" for k, v in expect.items()) + ".",
    "", "Result: " + ("**passed**" if not failures else "**FAILED**: " + "; ".join(failures)), "",
]
open(a.out + ".md", "w").write("\n".join(md))
print("\n".join(md))
sys.exit(0 if not failures else 1)
