#!/usr/bin/env python3
"""A client written only from the Open Inference Protocol (KServe V2) REST
specification, with Python's standard library: it reads the model's metadata,
builds an FP32 infer request from it, and checks that the energies equal those
of ebmkit's own /v1/score for the same images.

Usage: oip_client.py BASE_URL MODEL   (exit 0 when they agree to 1e-5 relative)
"""
import json
import random
import sys
import urllib.request


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def main():
    base, model = sys.argv[1], sys.argv[2]
    assert call(base + "/v2/health/ready") is not None
    meta = call(f"{base}/v2/models/{model}")
    inp = meta["inputs"][0]
    shape = [4] + inp["shape"][1:]  # -1 is the batch dimension
    n = 1
    for d in shape:
        n *= d
    rnd = random.Random(7)
    flat = [rnd.random() for _ in range(n)]
    req = {"id": "oip-check", "inputs": [{"name": inp["name"], "shape": shape, "datatype": "FP32", "data": flat}]}
    res = call(f"{base}/v2/models/{model}/infer", req)
    assert res["model_name"] == model and res["id"] == "oip-check", res
    energy = next(o for o in res["outputs"] if o["name"] == "energy")
    assert energy["shape"] == [4], energy["shape"]
    # The same images through the simple JSON API, as flat arrays.
    per = n // 4
    v1 = call(base + "/v1/score", {"model": model, "images": [flat[i * per:(i + 1) * per] for i in range(4)]})
    worst = 0.0
    for a, b in zip(energy["data"], (r["energy"] for r in v1["results"])):
        worst = max(worst, abs(a - b) / max(1.0, abs(b)))
    print(f"oip vs v1 energies: max relative difference {worst:.3g}")
    sys.exit(0 if worst <= 1e-5 else 1)


if __name__ == "__main__":
    main()
