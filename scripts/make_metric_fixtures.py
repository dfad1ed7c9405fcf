#!/usr/bin/python3
"""Metric fixtures for tests/test_metrics.cpp: ebm::metrics vs scikit-learn.

Run with Debian's Python (python3-sklearn 1.2, numpy); the `python3` of a
pyenv on PATH may lack them:

    /usr/bin/python3 scripts/make_metric_fixtures.py [--out tests/fixtures]

It writes tests/fixtures/metrics_<case>.json, one per case, each
    {"name", "note", "in": [...], "ood": [...],          scores, higher = more OOD
     "auroc", "aupr_in", "aupr_out", "fpr95", "detection_error",
     "roc": {"fpr", "tpr", "thresholds"}}                 roc_curve with OOD positive
Every number is computed here by scikit-learn (or from its roc_curve), with
exactly the definitions written in include/ebm/metrics.h:

  y_ood = 1 for OOD, 0 for in-distribution; s = the scores
  auroc           = roc_auc_score(y_ood, s)                       (ties count half)
  aupr_out        = average_precision_score(y_ood, s)             (OOD positive)
  aupr_in         = average_precision_score(1 - y_ood, -s)        (in-distribution positive)
  fpr, tpr, _     = roc_curve(1 - y_ood, -s, drop_intermediate=False)
  fpr95           = fpr[first index where tpr >= 0.95]            (Hendrycks/Liu convention)
  detection_error = min(0.5 * (1 - tpr) + 0.5 * fpr)
  roc             = roc_curve(y_ood, s, drop_intermediate=False), thresholds[1:]
                    (thresholds[0] is max(s)+1 in sklearn 1.2 and +inf in >= 1.3;
                     ebm::roc_curve uses +inf, and the fixture leaves it out)

The C++ tests require agreement within 1e-9. The script is deterministic
(fixed numpy seeds), so re-running it reproduces the checked-in files.
"""
import argparse
import json
import os

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def metrics(s_in, s_ood):
    s_in = np.asarray(s_in, dtype=np.float64)
    s_ood = np.asarray(s_ood, dtype=np.float64)
    s = np.concatenate([s_in, s_ood])
    y_ood = np.concatenate([np.zeros(len(s_in), dtype=int), np.ones(len(s_ood), dtype=int)])
    fpr_i, tpr_i, _ = roc_curve(1 - y_ood, -s, drop_intermediate=False)
    k = int(np.argmax(tpr_i >= 0.95))  # tpr ends at 1, so some index qualifies
    fpr, tpr, thr = roc_curve(y_ood, s, drop_intermediate=False)
    return {
        "auroc": float(roc_auc_score(y_ood, s)),
        "aupr_in": float(average_precision_score(1 - y_ood, -s)),
        "aupr_out": float(average_precision_score(y_ood, s)),
        "fpr95": float(fpr_i[k]),
        "detection_error": float(np.min(0.5 * (1 - tpr_i) + 0.5 * fpr_i)),
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr[1:].tolist()},
    }


def cases():
    r = np.random.RandomState(20240601)
    yield "continuous", "balanced, continuous, overlapping", r.randn(60), r.randn(60) + 1.0
    yield "heavy_ties", "integer scores 0..3: almost every value tied across classes", \
        r.randint(0, 3, 80).astype(float), r.randint(1, 4, 50).astype(float)
    yield "binary_ties", "only two distinct values", \
        r.randint(0, 2, 40).astype(float), r.randint(0, 2, 40).astype(float)
    yield "constant", "every score equal: AUROC 0.5, FPR95 1", np.full(30, 2.5), np.full(20, 2.5)
    yield "constant_in", "in-distribution constant, OOD spread around it", \
        np.full(25, 0.0), np.round(r.randn(25), 1)
    yield "tiny_1_1", "one image per class", np.array([0.3]), np.array([0.7])
    yield "tiny_1_1_tied", "one image per class, tied", np.array([0.5]), np.array([0.5])
    yield "tiny_2_3", "two in, three OOD, inverted ranking", np.array([2.0, 1.0]), np.array([0.0, 1.0, -1.0])
    yield "unbalanced_in", "200 in vs 7 OOD", r.randn(200), r.randn(7) + 0.5
    yield "unbalanced_ood", "5 in vs 300 OOD", r.randn(5), r.randn(300) + 0.5
    yield "perfect", "perfect separation: AUROC 1, FPR95 0", r.rand(40), r.rand(30) + 2.0
    yield "inverted", "OOD scored lower than every in-distribution image: AUROC 0", \
        r.rand(40) + 2.0, r.rand(30)
    # 20 in-distribution images: tpr hits exactly 19/20 = 0.95, and the 19th
    # in-distribution value is tied with OOD values (all of them are accepted).
    s_in20 = np.arange(20, dtype=float)
    yield "boundary_95", "tpr = 0.95 exactly, OOD tied at the threshold", \
        s_in20, np.array([18.0, 18.0, 18.5, 19.0, 25.0, 3.0])
    yield "rounded", "continuous rounded to 1 decimal: many ties, 300 vs 120", \
        np.round(r.randn(300), 1), np.round(r.randn(120) * 1.5 + 0.8, 1)
    yield "large_scale", "large magnitudes with small gaps (energies ~ -1e3)", \
        -1000.0 + r.randn(150) * 1e-3, -1000.0 + r.randn(90) * 1e-3 + 5e-4


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name, note, s_in, s_ood in cases():
        d = {"name": name, "note": note, "sklearn": sklearn.__version__,
             "in": [float(v) for v in s_in], "ood": [float(v) for v in s_ood]}
        d.update(metrics(s_in, s_ood))
        path = os.path.join(a.out, "metrics_%s.json" % name)
        with open(path, "w") as f:
            json.dump(d, f, indent=None, separators=(",", ":"))
            f.write("\n")
        print("%-16s auroc %.4f aupr_in %.4f aupr_out %.4f fpr95 %.4f det_err %.4f  (%d in, %d ood)"
              % (name, d["auroc"], d["aupr_in"], d["aupr_out"], d["fpr95"], d["detection_error"],
                 len(s_in), len(s_ood)))


if __name__ == "__main__":
    main()
