#!/usr/bin/python3
"""Fixture for tests/test_shift.cpp: the flag-error agreement and Spearman's rho
of `ebm ood shift` (include/ebm/ood/shift_eval.h, include/ebm/metrics/spearman.h)
against scikit-learn and SciPy.

Run with Debian's Python (python3-sklearn 1.2, python3-scipy, numpy); the
`python3` of a pyenv on PATH may lack them:

    /usr/bin/python3 scripts/make_shift_fixtures.py [--out tests/fixtures]

It writes tests/fixtures/shift_flag_error.json:
    {"sklearn", "scipy", "cases": [{"name", "note", "scores": [...], "correct": [0/1 ...],
                                    "flag_error_auroc"}],
     "spearman": [{"name", "a": [...], "b": [...], "rho"}]}
with exactly the definitions of the headers:

  flag_error_auroc = roc_auc_score(1 - correct, scores)   wrong = positive, ties count half
  rho              = scipy.stats.spearmanr(a, b).correlation   average ranks for ties

The C++ tests require agreement within 1e-9. Fixed numpy seeds: re-running it
reproduces the checked-in file.
"""
import argparse
import json
import os

import numpy as np
import scipy
import sklearn
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score


def flag_error_cases():
    r = np.random.RandomState(20240623)
    # A classifier that errs more on high scores: the realistic case.
    s = r.randn(300)
    correct = (r.rand(300) > 1 / (1 + np.exp(-(2 * s - 1.5)))).astype(int)
    yield "informative", "errors likelier at high scores", s, correct
    s = r.randn(200)
    yield "uninformative", "correctness independent of the score", s, (r.rand(200) > 0.3).astype(int)
    s = np.round(r.randn(250), 1)
    correct = (r.rand(250) > 1 / (1 + np.exp(-(s - 1)))).astype(int)
    yield "ties", "scores rounded to 0.1: many ties across the two classes", s, correct
    s = r.randint(0, 4, 120).astype(float)
    yield "heavy_ties", "four distinct scores", s, (r.rand(120) > 0.5).astype(int)
    s = r.randn(80)
    yield "inverted", "errors at the LOW scores: agreement below 0.5", s, (s > -0.5).astype(int)
    s = np.concatenate([r.rand(50), r.rand(7) + 3.0])
    yield "perfect", "every error scores above every correct image", s, np.r_[np.ones(50), np.zeros(7)].astype(int)
    s = -12.0 + r.randn(400) * 1e-3
    yield "energies", "energy-like magnitudes with tiny gaps, few errors", s, (r.rand(400) > 0.04).astype(int)


def spearman_cases():
    r = np.random.RandomState(7)
    a = r.randn(40)
    yield "continuous", a, a + r.randn(40)
    yield "ties", np.round(r.randn(60), 0), np.round(r.randn(60), 0)
    sev = np.linspace(0, 1, 6)
    yield "saturated_curve", sev, np.array([0.5, 0.9920, 0.9997, 1.0, 1.0, 1.0])
    yield "falling", sev, np.array([0.5, 0.7, 0.9, 0.95, 0.8, 0.6])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    d = {"sklearn": sklearn.__version__, "scipy": scipy.__version__, "cases": [], "spearman": []}
    for name, note, s, correct in flag_error_cases():
        v = float(roc_auc_score(1 - correct, s))
        d["cases"].append({"name": name, "note": note, "scores": [float(x) for x in s],
                           "correct": [int(x) for x in correct], "flag_error_auroc": v})
        print("%-14s flag-error AUROC %.6f  (%d images, %d wrong)" % (name, v, len(s), int((1 - correct).sum())))
    for name, x, y in spearman_cases():
        rho = float(spearmanr(x, y).correlation)
        d["spearman"].append({"name": name, "a": [float(v) for v in x], "b": [float(v) for v in y], "rho": rho})
        print("%-14s spearman %.6f" % (name, rho))
    path = os.path.join(a.out, "shift_flag_error.json")
    with open(path, "w") as f:
        json.dump(d, f, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
