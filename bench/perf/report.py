#!/usr/bin/env python3
"""Assemble bench/perf/run.sh's measurements into results/bench/bench.{json,md}
and the cost-against-batch plot.
Usage: report.py RAWDIR MODEL SHA256 COMMAND OUTDIR
RAWDIR holds ebmkit-R.json and peer-R.json for rounds R = 1.., and purify.json.
Each side's rate is its median over the rounds; the ratio is the median of the
per-round ratios (each round runs ebmkit, then Python, minutes apart), shown
with the lowest and highest per-round ratio."""
import datetime
import glob
import json
import os
import re
import statistics
import sys

raw, model, sha, command, out = sys.argv[1:]
rounds = sorted(int(re.search(r"ebmkit-(\d+)", f).group(1)) for f in glob.glob(os.path.join(raw, "ebmkit-*.json")))
if not rounds:
    sys.exit(f"report.py: no ebmkit-R.json in {raw}")


def parse(gb):
    """Google Benchmark JSON -> ({(workload, batch, impl): row}, limit GFLOP/s or None)."""
    rows, limit = {}, None
    for b in gb["benchmarks"]:
        m = re.match(r"BM_(\w+?)(?:/(\d+))?(?:/(\d+))?/min_time", b["name"])
        if not m:
            continue
        kind = m.group(1)
        if kind == "MatmulLimit":
            limit = b["gflops"]  # bench_perf reports it as a rate counter already in GFLOP/s
            continue
        if kind == "Langevin":
            key = ("langevin", int(m.group(2)), "script" if m.group(3) == "1" else "native")
        elif kind == "Langevin64":
            key = ("langevin64", int(m.group(2)), "native")
        elif kind == "Score":
            key = ("score", 256, "script" if m.group(2) == "1" else "native")
        elif kind == "Purify":
            key = ("purify", int(m.group(2)), "batched draws" if m.group(3) == "1" else "draws one by one")
        else:
            key = ("pcd20", 64, "native")
        rows[key] = {"items_per_second": b["items_per_second"], "flops_per_item": b["flops_per_item"]}
    return rows, limit


per_round = []  # [(ebmkit rows, limit, peer {(name, batch): rate})]
for r in rounds:
    gb = json.load(open(os.path.join(raw, f"ebmkit-{r}.json")))
    peer = json.load(open(os.path.join(raw, f"peer-{r}.json")))
    rows_r, limit_r = parse(gb)
    per_round.append((rows_r, limit_r, {(x["name"], x["batch"]): x["items_per_second"] for x in peer["runs"]}))
limit = statistics.median(l for _, l, _ in per_round)
rows = {}
for key in per_round[0][0]:
    rates = [rr[key]["items_per_second"] for rr, _, _ in per_round if key in rr]
    py = [pr.get(key[:2]) for _, _, pr in per_round]
    ratios = [rr[key]["items_per_second"] / p for (rr, _, _), p in zip(per_round, py) if p and key in rr]
    rows[key] = {"items_per_second": statistics.median(rates), "flops_per_item": per_round[0][0][key]["flops_per_item"],
                 "python": statistics.median(p for p in py if p) if any(py) else None,
                 "ratio": statistics.median(ratios) if ratios else None,
                 "ratio_range": [min(ratios), max(ratios)] if ratios else None}
purify_path = os.path.join(raw, "purify.json")
if os.path.exists(purify_path):
    for key, v in parse(json.load(open(purify_path)))[0].items():
        rows[key] = {**v, "python": None, "ratio": None, "ratio_range": None}
prows = {k: statistics.median(pr[k] for _, _, pr in per_round if k in pr) for k in per_round[0][2]}
gb = json.load(open(os.path.join(raw, f"ebmkit-{rounds[0]}.json")))
peer = json.load(open(os.path.join(raw, f"peer-{rounds[0]}.json")))

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
table = []
for (name, batch, impl), r in sorted(rows.items()):
    gflops = r["items_per_second"] * r["flops_per_item"] / 1e9
    table.append({"workload": name, "batch": batch, "model": impl, "items_per_second": r["items_per_second"],
                  "python_items_per_second": r["python"], "ratio_vs_python": r["ratio"],
                  "ratio_range": r["ratio_range"], "gflops": gflops, "fraction_of_limit": gflops / limit})
report = {"date": datetime.date.today().isoformat(), "cpu": cpu, "threads": peer["threads"], "rounds": len(rounds),
          "command": command, "model": model, "model_sha256": sha, "torch": peer["torch"],
          "limit_gflops": limit, "limit_definition": "torch::mm 2048x2048 float32, same threads, median over the rounds",
          "flops": "counted from the architecture: forward convolutions and linear layers (2 MACs); a Langevin step "
                   "= forward + input-gradient backward = 2x forward; pcd20 = 20 steps + 2 forwards with parameter "
                   "backward (6x forward)",
          "items": "langevin: image-steps; score: images; pcd20: training images; purify: images purified and "
                   "classified (models/mnist-purifier, models/mnist-clf; no Python peer, one round)",
          "rows": table}
names = {"langevin": "Langevin step", "langevin64": "Langevin step, 64x64 images (layers scaled)", "score": "energy scoring (forward)", "pcd20": "PCD step, 20 SGLD steps",
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
      f"compute limit (torch::mm 2048², median over the rounds): {limit:.1f} GFLOP/s. Rates are medians over "
      f"{len(rounds)} rounds that alternate ebmkit and Python; the ratio is the median per-round ratio, with the "
      "lowest and highest in brackets.", "",
      "| workload | batch | model | ebmkit items/s | PyTorch-Python items/s | ratio | GFLOP/s | of the limit |",
      "|---|---|---|---|---|---|---|---|"]
for r in table:
    py = f"{r['python_items_per_second']:.1f}" if r["python_items_per_second"] else "-"
    ratio = (f"{r['ratio_vs_python']:.2f}x ({r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f})"
             if r["ratio_vs_python"] else "-")
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
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for impl, style in (("native", "o-"), ("script", "s--")):
        pts = sorted((b, r["items_per_second"]) for (n, b, i), r in rows.items() if n == "langevin" and i == impl)
        ax.plot([p[0] for p in pts], [1000 / p[1] for p in pts], style, label=f"ebmkit ({impl})")
    pts = sorted((b, v) for (n, b), v in prows.items() if n == "langevin")
    ax.plot([p[0] for p in pts], [1000 / p[1] for p in pts], "^:", label="PyTorch-Python")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("ms per image-step")
    ax.set_title(f"Langevin step cost, 28x28, {model}, {report['threads']} threads", fontsize=9)
    ax.legend()
    # Cost against image size: the same layers at 28x28 and 64x64.
    for size, name, style in ((28, "langevin", "o"), (64, "langevin64", "s")):
        pts = sorted((b, r["items_per_second"]) for (n, b, i), r in rows.items() if n == name and i == "native")
        ax2.plot([p[0] for p in pts], [1000 / p[1] for p in pts], style + "-", label=f"ebmkit, {size}x{size}")
        pts = sorted((b, v) for (n, b), v in prows.items() if n == name)
        ax2.plot([p[0] for p in pts], [1000 / p[1] for p in pts], style + ":", label=f"PyTorch-Python, {size}x{size}")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("batch size")
    ax2.set_ylabel("ms per image-step")
    ax2.set_title("against image size (conv-ebm width 32, layers scaled)", fontsize=9)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "batch.png"), dpi=100)
except ImportError:
    print("matplotlib missing: no plot", file=sys.stderr)
