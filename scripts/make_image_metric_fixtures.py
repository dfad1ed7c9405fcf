#!/usr/bin/python3
"""Reference PSNR / SSIM values from scikit-image, for tests/test_image_metrics.cpp.

Run with Debian's python3 (python3-skimage, python3-numpy):
    /usr/bin/python3 scripts/make_image_metric_fixtures.py
Writes tests/fixtures/image_metrics.json: pairs of 28x28 images (as flat lists)
and skimage's psnr(data_range=1) and structural_similarity(data_range=1) with
its defaults (7x7 uniform window, K1=0.01, K2=0.03, sample covariance).
"""
import json
import os

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

rng = np.random.default_rng(20261129)
cases = []


def add(name, ref, x):
    ref = ref.astype(np.float32)
    x = x.astype(np.float32)
    cases.append({
        "name": name,
        "ref": ref.ravel().tolist(),
        "x": x.ravel().tolist(),
        "psnr": float(peak_signal_noise_ratio(ref, x, data_range=1)),
        "ssim": float(structural_similarity(ref, x, data_range=1)),
    })


base = rng.random((28, 28))
smooth = np.clip(np.add.outer(np.linspace(0, 1, 28), np.linspace(0, 0.5, 28)), 0, 1)
digitlike = np.zeros((28, 28)); digitlike[6:22, 12:16] = 1.0; digitlike[6:10, 8:20] = 0.8
for sigma in (0.05, 0.1, 0.3):
    add(f"random+noise{sigma}", base, np.clip(base + sigma * rng.standard_normal((28, 28)), 0, 1))
    add(f"smooth+noise{sigma}", smooth, np.clip(smooth + sigma * rng.standard_normal((28, 28)), 0, 1))
    add(f"digit+noise{sigma}", digitlike, np.clip(digitlike + sigma * rng.standard_normal((28, 28)), 0, 1))
add("digit-shifted", digitlike, np.roll(digitlike, 2, axis=1))
add("constant-vs-digit", digitlike, np.full((28, 28), 0.5))
add("digit-scaled", digitlike, 0.5 * digitlike)

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "image_metrics.json")
with open(out, "w") as f:
    json.dump({"generator": "skimage " + __import__("skimage").__version__, "cases": cases}, f)
print(f"wrote {len(cases)} cases to {out}")
