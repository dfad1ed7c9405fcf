#!/usr/bin/env python3
"""Validate `ebm serve`'s answers against docs/openapi.json.

Usage: openapi_check.py SPEC BASE_URL [GUARD_BASE_URL]

BASE_URL serves models/fmnist-ood with its detector; GUARD_BASE_URL (optional)
serves the MNIST guard (detector, classifier, purifier). Every documented
operation is called at least once with a good request, and the error classes
with bad ones. Each answer's status must be documented for its operation, and
its body must validate against that status's schema (python3-jsonschema, an
independent JSON Schema 2020-12 validator). The validator is also shown to
reject a broken answer, so the check can fail. Exit 0 when all pass.
"""
import base64
import json
import re
import struct
import sys
import urllib.error
import urllib.request
import zlib

import jsonschema

spec_path, base = sys.argv[1], sys.argv[2]
guard_base = sys.argv[3] if len(sys.argv) > 3 else None
spec = json.load(open(spec_path))
resolver = jsonschema.RefResolver.from_schema(spec)
failures = []
covered = set()  # (path template, method, status)


def validator(schema):
    return jsonschema.Draft202012Validator(schema, resolver=resolver)


def operation(path, method):
    """The spec's path template matching PATH, and its operation for METHOD."""
    for tmpl, ops in spec["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", tmpl), path) and method.lower() in ops:
            return tmpl, ops[method.lower()]
    return None, None


def call(method, url_base, path, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url_base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def check(what, method, path, body=None, want=200, url_base=None, raw=None):
    """Call, then validate the answer against the documented schema of its status."""
    status, headers, payload = call(method, url_base or base, path, body, raw)
    tmpl, op = operation(path, method)
    if op is None:
        failures.append(f"{what}: {method} {path} is not in the spec")
        return None
    if status != want:
        failures.append(f"{what}: status {status}, want {want}: {payload[:200]!r}")
    documented = op["responses"].get(str(status))
    if documented is None:
        failures.append(f"{what}: status {status} is not documented for {method} {tmpl}")
        return None
    covered.add((tmpl, method.lower(), status))
    ctype = next(iter(documented["content"]))
    if not headers.get("Content-Type", "").startswith(ctype.split(";")[0]):
        failures.append(f"{what}: Content-Type {headers.get('Content-Type')}, documented {ctype}")
    if ctype != "application/json":
        return payload.decode()
    doc = json.loads(payload)
    errors = sorted(validator(documented["content"][ctype]["schema"]).iter_errors(doc), key=str)
    for e in errors[:3]:
        failures.append(f"{what}: {method} {path} -> {status}: {e.message} at {list(e.absolute_path)}")
    if "X-Model-SHA256" in documented.get("headers", {}) and status == 200 and "X-Model-SHA256" not in headers:
        failures.append(f"{what}: no X-Model-SHA256 header")
    print(("ok  " if not errors and status == want else "BAD ") + f"{status} {method} {path} ({what})")
    return doc


def png(pixels, w=28, h=28):
    """An 8-bit grey PNG from a bytes object of w*h pixels (stdlib only)."""
    rows = b"".join(b"\0" + pixels[r * w:(r + 1) * w] for r in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


shirt = bytes(min(255, max(0, 200 - abs(c - 14) * 12)) if 4 < r < 24 else 0 for r in range(28) for c in range(28))
img_png = base64.b64encode(png(shirt)).decode()
img_arr = [[v / 255 for v in shirt[r * 28:(r + 1) * 28]] for r in range(28)]

# --- the validator can fail: a broken answer must not validate
score_schema = spec["paths"]["/v1/score"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
good = {"model": "m", "model_sha256": "0" * 64, "results": [{"index": 0, "energy": -1.0}]}
bad = {"model": "m", "model_sha256": "0" * 64, "results": [{"index": 0}]}
if list(validator(score_schema).iter_errors(good)) or not list(validator(score_schema).iter_errors(bad)):
    failures.append("self-test: the validator accepts a result without its energy, or rejects a good one")
else:
    print("ok  the validator rejects a result without its energy")

# --- Open Inference Protocol
check("server metadata", "GET", "/v2")
check("live", "GET", "/v2/health/live")
check("ready", "GET", "/v2/health/ready")
check("model metadata", "GET", "/v2/models/fmnist-ood")
check("model ready", "GET", "/v2/models/fmnist-ood/ready")
check("unknown model metadata", "GET", "/v2/models/nope", want=404)
check("unknown model ready", "GET", "/v2/models/nope/ready", want=404)
flat = [v / 255 for v in shirt]
check("infer FP32", "POST", "/v2/models/fmnist-ood/infer",
      {"id": "q1", "inputs": [{"name": "input", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": flat + flat}]})
check("infer UINT8, one output", "POST", "/v2/models/fmnist-ood/infer",
      {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "UINT8", "data": list(shirt)}], "outputs": [{"name": "ood"}]})
check("infer bad datatype", "POST", "/v2/models/fmnist-ood/infer",
      {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "INT8", "data": list(shirt)}]}, want=400)
check("infer wrong shape", "POST", "/v2/models/fmnist-ood/infer",
      {"inputs": [{"name": "input", "shape": [1, 27, 28], "datatype": "FP32", "data": flat[:756]}]}, want=400)
check("infer unknown model", "POST", "/v2/models/nope/infer",
      {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": flat}]}, want=404)

# --- the JSON API
check("score PNG and array", "POST", "/v1/score", {"images": [img_png, img_arr]})
check("score malformed JSON", "POST", "/v1/score", raw=b"{\"images\": [", want=400)
check("score bad base64", "POST", "/v1/score", {"images": ["not base64!"]}, want=400)
check("score NaN", "POST", "/v1/score", raw=b"{\"images\": [[" + b",".join([b"NaN"] * 784) + b"]]}", want=400)
check("score out of range", "POST", "/v1/score", {"images": [[2.0] * 784]}, want=400)
check("score too many images", "POST", "/v1/score", {"images": [[0] * 784] * 257}, want=413)
check("score unknown model", "POST", "/v1/score", {"images": [img_arr], "model": "nope"}, want=404)
check("denoise, array", "POST", "/v1/denoise", {"images": [img_arr], "sigma": 0.1, "steps": 5})
check("denoise, png", "POST", "/v1/denoise", {"images": [img_png], "sigma": 0.1, "steps": 5, "format": "png"})
check("denoise bad solver", "POST", "/v1/denoise", {"images": [img_arr], "solver": "magic"}, want=400)
check("inpaint, generated mask", "POST", "/v1/inpaint", {"images": [img_arr], "mask": "center:12", "steps": 5, "chains": 2})
check("inpaint, array mask", "POST", "/v1/inpaint",
      {"images": [img_png], "mask": [[1 if 10 <= c < 18 else 0 for c in range(28)] for r in range(28)], "steps": 5,
       "format": "png"})
check("inpaint file mask refused", "POST", "/v1/inpaint", {"images": [img_arr], "mask": "/etc/passwd"}, want=400)
check("models", "GET", "/v1/models")
check("guard not configured", "POST", "/v1/guard", {"images": [img_arr]}, want=404)
metrics = check("metrics", "GET", "/metrics")
if metrics is not None and "ebm_requests_total" not in metrics:
    failures.append("metrics: no ebm_requests_total")

if guard_base:
    digit = bytes(255 if 6 <= r < 22 and 12 <= c < 16 else 0 for r in range(28) for c in range(28))  # a '1'
    noise = bytes((r * 131 + c * 71 + r * c * 17) % 256 for r in range(28) for c in range(28))
    d_png = base64.b64encode(png(digit)).decode()
    n_png = base64.b64encode(png(noise)).decode()
    check("guard, allow_ood", "POST", "/v1/guard", {"images": [d_png, n_png], "allow_ood": True}, url_base=guard_base)
    check("guard refuses noise", "POST", "/v1/guard", {"images": [n_png]}, want=422, url_base=guard_base)
    check("guard models", "GET", "/v1/models", url_base=guard_base)

# --- every documented operation answered 200 at least once
for tmpl, ops in spec["paths"].items():
    for method in ops:
        if (tmpl, method, 200) not in covered and not (tmpl == "/v1/guard" and not guard_base):
            failures.append(f"{method.upper()} {tmpl} never answered 200")

for f in failures:
    print("FAIL:", f)
print(f"{len(covered)} (operation, status) pairs validated, {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
