#!/usr/bin/env python3
"""Request bodies of the soak (bench/serve/soak.sh), from exported test images.

usage: soak_bodies.py IMAGES.npy OUT_DIR MODEL_NAME MAX_BODY_BYTES MAX_IMAGES
Writes OUT_DIR/requests.txt ("KIND METHOD PATH WEIGHT FILE" per line), the
body files, and OUT_DIR/ref.npy: the valid images exactly as the server sees
them (uint8 / 255 in float32), for `ebm ood predict`.
"""
import base64
import json
import struct
import sys
import zlib

import numpy as np

src, out, model, max_body, max_images = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
x = np.load(src)
u8 = np.clip(np.round(x[:, 0] * 255), 0, 255).astype(np.uint8)  # [N,28,28]
n = u8.shape[0]
np.save(out + "/ref.npy", (u8.astype(np.float32) / np.float32(255))[:, None])


def png(px, w=28, h=28):
    rows = b"".join(b"\0" + px[r * w:(r + 1) * w] for r in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


lines = []


def add(kind, method, path, weight, body):
    name = f"{kind}.body"
    with open(f"{out}/{name}", "wb") as f:
        f.write(body if isinstance(body, bytes) else body.encode())
    lines.append(f"{kind} {method} {path} {weight} {name}")


infer = f"/v2/models/{model}/infer"
oip = lambda data, shape=(1, 784), dt="UINT8", **kw: json.dumps(
    {"inputs": [{"name": "input", "shape": list(shape), "datatype": dt, "data": data}], **kw})
# Valid: every image through the Open Inference Protocol (its id names it), and
# image 0 as a base64 PNG through /v1/score. About 55% of all requests.
for i in range(n):
    add(f"valid-oip-{i}", "POST", infer, 4, oip(u8[i].reshape(-1).tolist(), id=f"img-{i}"))
add("valid-score-0", "POST", "/v1/score", 4 * n // 8, json.dumps({"images": [base64.b64encode(png(u8[0].tobytes())).decode()]}))

img = (u8[0] / 255.0).round(4).tolist()
flat = [0.5] * 784
bad = {
    # malformed JSON
    "bad-json-truncated": ("/v1/score", '{"images": [[0.5, 0.5'),
    "bad-json-nan": ("/v1/score", '{"images": [[' + ",".join(["NaN"] * 784) + "]]}"),
    "bad-json-inf": ("/v1/score", '{"images": [[' + ",".join(["Infinity"] * 784) + "]]}"),
    "bad-json-overflow": ("/v1/score", '{"images": [[' + ",".join(["1e999"] * 784) + "]]}"),
    "bad-json-empty": ("/v1/score", ""),
    "bad-json-garbage": ("/v1/score", "\x00\xff\xfe not json at all"),
    "bad-json-nested": ("/v1/score", '{"images": ' + "[" * 2000 + "]" * 2000 + "}"),
    "bad-json-toplevel-array": ("/v1/score", "[1,2,3]"),
    "bad-oip-json": (infer, '{"inputs": [{"name": "input", "shape": [1,784], '),
    # wrong shapes and datatypes
    "bad-shape-2x2": ("/v1/score", json.dumps({"images": [[[1, 2], [3, 4]]]})),
    "bad-shape-783": ("/v1/score", json.dumps({"images": [flat[:783]]})),
    "bad-type-string-pixels": ("/v1/score", json.dumps({"images": [["a"] * 784]})),
    "bad-type-images-object": ("/v1/score", json.dumps({"images": {"a": 1}})),
    "bad-range-1.5": ("/v1/score", json.dumps({"images": [[1.5] * 784]})),
    "bad-range-negative": ("/v1/score", json.dumps({"images": [[-0.1] * 784]})),
    "bad-base64": ("/v1/score", json.dumps({"images": ["@@@not base64@@@"]})),
    "bad-png-truncated": ("/v1/score", json.dumps({"images": [base64.b64encode(png(u8[0].tobytes())[:60]).decode()]})),
    "bad-png-size": ("/v1/score", json.dumps({"images": [base64.b64encode(png(bytes(32 * 32), 32, 32)).decode()]})),
    "bad-oip-datatype": (infer, oip([0] * 784, dt="INT64")),
    "bad-oip-shape": (infer, oip([0] * 785, shape=(1, 785))),
    "bad-oip-count": (infer, oip([0] * 784, shape=(2, 784))),
    "bad-oip-uint8-300": (infer, oip([300] * 784)),
    "bad-oip-fp32-string": (infer, oip(["x"] * 784, dt="FP32")),
    "bad-oip-no-inputs": (infer, json.dumps({"inputs": []})),
    # unknown model
    "bad-model-oip": ("/v2/models/nope/infer", oip([0] * 784)),
    "bad-model-score": ("/v1/score", json.dumps({"images": [img], "model": "nope"})),
    # over the limits
    "bad-too-many-images": ("/v1/score", json.dumps({"images": [img] * (max_images + 1)})),
    "bad-oversized": ("/v1/score", '{"images": [' + " " * (max_body + 1024) + "]}"),
}
for k, (path, body) in bad.items():
    add(k, "POST", path, 6, body)


# Whole requests, head included: request framing the server's connection parker
# decides on (chunked bodies, framing headers it refuses).
def add_raw(kind, weight, head, body=b""):
    name = f"{kind}.raw"
    with open(f"{out}/{name}", "wb") as f:
        f.write(("POST /v1/score HTTP/1.1\r\nHost: soak\r\n" + head + "\r\n").encode() + body)
    lines.append(f"{kind} POST /v1/score {weight} {name}")


def chunks(data, size=1000):
    parts = [data[i:i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in parts) + b"0\r\n\r\n"


score0 = json.dumps({"images": [base64.b64encode(png(u8[0].tobytes())).decode()]}).encode()
add_raw("valid-score-chunked", 2 * n // 8, "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n", chunks(score0))
raw_bad = {
    "bad-framing-cl-and-te": ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", 400),
    "bad-framing-te-gzip": ("Transfer-Encoding: gzip\r\n", b"", 400),
    "bad-framing-chunk-size": ("Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n", 400),
    "bad-framing-expect": ("Expect: a-miracle\r\nContent-Length: 2\r\n", b"{}", 417),
    "bad-framing-oversized-chunked": ("Transfer-Encoding: chunked\r\n", chunks(b" " * (max_body + 1024), 8192), 413),
}
for k, (head, body, _) in raw_bad.items():
    add_raw(k, 3, head, body)
with open(out + "/requests.txt", "w") as f:
    f.write("\n".join(lines) + "\n")
expect = {k: (404 if "model" in k else 413 if k in ("bad-too-many-images", "bad-oversized") else 400) for k in bad}
expect.update({k: status for k, (_, _, status) in raw_bad.items()})
json.dump(expect, open(out + "/expect.json", "w"), indent=1)
print(f"{len(lines)} kinds, {n} images", file=sys.stderr)
