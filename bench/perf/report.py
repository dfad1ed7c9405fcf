#!/usr/bin/env python3
"""Assemble bench/perf/run.sh's two measurements into results/bench/bench.{json,md}
and the cost-against-batch plot. Usage: report.py EBMKIT.json PEER.json MODEL SHA256 COMMAND OUTDIR"""
import datetime
import json
import os
import re
import sys

ebm_path, peer_path, model, sha, command, out = sys.argv[1:]
gb = json.load(open(ebm_path))
peer = json.load(open(peer_path))

# bench_perf reports the limit as a rate counter already in GFLOP/s.
limit = next(b["gflops"] for b in gb["benchmarks"] if b["name"].startswith("BM_MatmulLimit"))
rows = {}
for b in gb["benchmarks"]:
    m = re.match(r"BM_(\w+?)(?:/(\d+))?(?:/(\d+))?/min_time", b["name"])
    if not m or m.group(1) == "MatmulLimit":
        continue
    kind = m.group(1)
    if kind == "Langevin":
        key = ("langevin", int(m.group(2)), "script" if m.group(3) == "1" else "native")
    elif kind == "Score":
        key = ("score", 256, "script" if m.group(2) == "1" else "native")
    elif kind == "Purify":
        key = ("purify", int(m.group(2)), "batched draws" if m.group(3) == "1" else "draws one by one")
    else:
        key = ("pcd20", 64, "native")
    rows[key] = {"items_per_second": b["items_per_second"], "flops_per_item": b["flops_per_item"]}
prows = {(r["name"], r["batch"]): r["items_per_second"] for r in peer["runs"]}

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
table = []
for (name, batch, impl), r in sorted(rows.items()):
    py = prows.get((name, batch))
    gflops = r["items_per_second"] * r["flops_per_item"] / 1e9
    table.append({"workload": name, "batch": batch, "model": impl, "items_per_second": r["items_per_second"],
                  "python_items_per_second": py, "ratio_vs_python": r["items_per_second"] / py if py else None,
                  "gflops": gflops, "fraction_of_limit": gflops / limit})
report = {"date": datetime.date.today().isoformat(), "cpu": cpu, "threads": peer["threads"],
          "command": command, "model": model, "model_sha256": sha, "torch": peer["torch"],
          "limit_gflops": limit, "limit_definition": "torch::mm 2048x2048 float32, same threads, same run",
          "flops": "counted from the architecture: forward convolutions and linear layers (2 MACs); a Langevin step "
                   "= forward + input-gradient backward = 2x forward; pcd20 = 20 steps + 2 forwards with parameter "
                   "backward (6x forward)",
          "items": "langevin: image-steps; score: images; pcd20: training images; purify: images purified and "
                   "classified (models/mnist-purifier, models/mnist-clf; no Python peer)",
          "rows": table}
json.dump(report, open(os.path.join(out, "bench.json"), "w"), indent=1)

names = {"langevin": "Langevin step", "score": "energy scoring (forward)", "pcd20": "PCD step, 20 SGLD steps",
         "purify": "purification, 10 steps x 4 draws, then the classifier"}
models_used = {model: sha}
if any(n == "purify" for (n, _, _) in rows):
    import hashlib
    for m in ("models/mnist-purifier", "models/mnist-clf"):
        models_used[m] = hashlib.sha256(open(os.path.join(m, "weights.pt"), "rb").read()).hexdigest()
report["models"] = models_used
json.dump(report, open(os.path.join(out, "bench.json"), "w"), indent=1)
md = [f"command: {command}", "models: " + ", ".join(f"{m} {h}" for m, h in models_used.items()), "",
      f"{report['date']}, {cpu}, {report['threads']} threads, PyTorch {report['torch']} (Debian) for both sides; "
      f"compute limit (torch::mm 2048², same run): {limit:.1f} GFLOP/s.", "",
      "| workload | batch | model | ebmkit items/s | PyTorch-Python items/s | ratio | GFLOP/s | of the limit |",
      "|---|---|---|---|---|---|---|---|"]
for r in table:
    py = f"{r['python_items_per_second']:.1f}" if r["python_items_per_second"] else "-"
    ratio = f"{r['ratio_vs_python']:.2f}x" if r["ratio_vs_python"] else "-"
    md.append(f"| {names[r['workload']]} | {r['batch']} | {r['model']} | {r['items_per_second']:.1f} | {py} | {ratio} | "
              f"{r['gflops']:.1f} | {r['fraction_of_limit']:.2f} |")
md += ["", "Items: Langevin image-steps, images scored, images trained on, images purified and classified. `native`: "
       "ebmkit's built-in module; `script`: the same weights as the TorchScript file the Python peer runs. "
       "Purification runs the shipped models/mnist-purifier and models/mnist-clf with the purifier card's settings; "
       "`draws one by one` is the plain path, `batched draws` purified_logits()."]
if gb.get("context", {}).get("library_build_type") == "debug":
    md += ["", "Debian's Google Benchmark library reports a debug build; that affects its timing loop, not "
           "LibTorch's kernels, which both sides share."]
open(os.path.join(out, "bench.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for impl, style in (("native", "o-"), ("script", "s--")):
        pts = sorted((b, r["items_per_second"]) for (n, b, i), r in rows.items() if n == "langevin" and i == impl)
        ax.plot([p[0] for p in pts], [1000 / p[1] for p in pts], style, label=f"ebmkit ({impl})")
    pts = sorted((b, v) for (n, b), v in prows.items() if n == "langevin")
    ax.plot([p[0] for p in pts], [1000 / p[1] for p in pts], "^:", label="PyTorch-Python")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("ms per image-step")
    ax.set_title(f"Langevin step cost, {model}, {report['threads']} threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "batch.png"), dpi=100)
except ImportError:
    print("matplotlib missing: no plot", file=sys.stderr)
