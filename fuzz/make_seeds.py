#!/usr/bin/python3
"""Write the seed corpora fuzz/corpus/<target>/seed-* (standard library only).

Seeds are small valid inputs plus the classic near-misses, so that the fuzzer
starts past the magic numbers. Regression inputs (regress-*) are added by hand
from findings and are never touched here. Run from anywhere:
    /usr/bin/python3 fuzz/make_seeds.py
"""
import base64
import json
import os
import struct
import zlib
import gzip

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- IDX
def idx(dtype, dims, payload):
    return bytes([0, 0, dtype, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


u8 = bytes(range(0, 256, 16))
put("idx", "u8-4x4", idx(0x08, [4, 4], u8))
put("idx", "u8-1x4x4", idx(0x08, [1, 4, 4], u8))
put("idx", "u8-2x1x2x2", idx(0x08, [2, 1, 2, 2], bytes([0, 64, 128, 255] * 2)))
put("idx", "f32-2x2", idx(0x0D, [2, 2], struct.pack(">4f", 0.0, 0.25, 0.5, 1.0)))
put("idx", "f32-nan", idx(0x0D, [1, 2], struct.pack(">2f", float("nan"), 0.5)))
put("idx", "f32-out-of-range", idx(0x0D, [1, 2], struct.pack(">2f", 2.0, -1.0)))
put("idx", "u8-labels", idx(0x08, [5], bytes([1, 2, 3, 4, 5])))
put("idx", "gz-u8-4x4", gzip.compress(idx(0x08, [4, 4], u8), mtime=0))
put("idx", "truncated", idx(0x08, [4, 4], u8[:7]))
put("idx", "huge-dims", idx(0x08, [0xFFFFFFFF, 0xFFFFFFFF, 2], b""))
put("idx", "float64", idx(0x0E, [1], struct.pack(">d", 0.5)))
put("idx", "gz-truncated", gzip.compress(idx(0x08, [4, 4], u8), mtime=0)[:20])

# ---------------------------------------------------------------- NPY
def npy(descr, shape, payload, version=1, fortran=False, pad=True):
    sh = "(" + "".join(f"{d}, " for d in shape).rstrip(" ") + ")" if len(shape) != 1 else f"({shape[0]},)"
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, "True" if fortran else "False", sh)
    pre = 10 if version == 1 else 12
    if pad:
        h += " " * ((64 - (pre + len(h) + 1) % 64) % 64)
    h += "\n"
    hl = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + hl + h.encode("latin1") + payload


put("npy", "u1-4x4", npy("|u1", [4, 4], u8))
put("npy", "f4-1x1x2x2", npy("<f4", [1, 1, 2, 2], struct.pack("<4f", 0, 0.25, 0.5, 1)))
put("npy", "f8-2x2", npy("<f8", [2, 2], struct.pack("<4d", 0, 0.25, 0.5, 1)))
put("npy", "v2-u1-3x2", npy("|u1", [3, 2], bytes(6), version=2))
put("npy", "v3-f4-2", npy("<f4", [2], struct.pack("<2f", 0.5, 0.5), version=3))
put("npy", "fortran", npy("<f4", [2, 2], bytes(16), fortran=True))
put("npy", "big-endian", npy(">f4", [2], bytes(8)))
put("npy", "scalar", npy("<f4", [], struct.pack("<f", 0.5)))
put("npy", "int64", npy("<i8", [2], bytes(16)))
put("npy", "truncated", npy("<f4", [4, 4], bytes(10)))
put("npy", "overflow", npy("|u1", [99999999999, 99999999999], b""))
put("npy", "unpadded", npy("|u1", [2, 2], bytes(4), pad=False))

# ---------------------------------------------------------------- PNG
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png(w, h, depth=8, color=0, rows=None, interlace=0, extra=b"", plte=None):
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    rowbytes = (w * ch * depth + 7) // 8
    if rows is None:
        rows = b"".join(b"\x00" + bytes((x * 37 + y * 11) & 0xFF for x in range(rowbytes)) for y in range(h))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, interlace))
    if plte is not None:
        out += chunk(b"PLTE", plte)
    return out + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


put("png", "gray8-4x4", png(4, 4))
put("png", "gray8-28x28", png(28, 28))
put("png", "rgb8-3x2", png(3, 2, color=2))
put("png", "rgba8-2x2", png(2, 2, color=6))
put("png", "gray16-2x2", png(2, 2, depth=16))
put("png", "gray1-8x2", png(8, 2, depth=1))
put("png", "palette-2x2", png(2, 2, depth=8, color=3, plte=bytes([0, 0, 0, 255, 255, 255]),
                              rows=b"\x00\x00\x01\x00\x01\x00"))
put("png", "graya-2x2", png(2, 2, color=4))
put("png", "interlaced-5x5", png(5, 5, interlace=1,
                                 rows=b"".join(b"\x00" + bytes(n) for n in [1, 1, 1, 2, 1, 3, 2, 5])))
put("png", "bomb-claims-65535x65535", png(65535, 65535, rows=b"\x00" * 10))
put("png", "truncated", png(4, 4)[:40])
put("png", "gamma-text", png(2, 2, extra=chunk(b"gAMA", struct.pack(">I", 45455)) + chunk(b"tEXt", b"k\x00v")))

# ---------------------------------------------------------------- expressions
for i, e in enumerate([
    "digit=3", "digit=3 & thick", "digit=3 & !thick", "(digit=1 | digit=7) & thin",
    "2*digit=3 & 0.5*!thick", "model:models/mnist-dsm & digit=4", "!!thin", "-1.5e2 * (a | b | c) & d",
    "thickness=thin|thickness=thick", "((((digit=0))))", "digit=", "a & & b", "(digit=3", "",
    "0x10*a", "inf*a", "model:", "digit=3 | model:x)", "  \t digit_name.v-1 = x.y-z  ",
]):
    put("expr", f"{i:02d}", e)

# ---------------------------------------------------------------- detectors
det = {
    "format": "ebmkit-ood-detector", "version": 1, "model": "models/mnist-eft",
    "model_hash": "0" * 64, "score": "energy", "temperature": 1.0, "threshold": 0.5,
    "percentile": 95.0, "n_val": 4, "in": "mnist", "split": "val",
    "rule": "ood = score > threshold", "val_scores": [-1.0, 0.0, 0.5, 2.0],
}
put("detector", "energy", json.dumps(det, indent=1))
put("detector", "combined", json.dumps(dict(det, score="combined", combined_stats={
    "energy": {"mean": -10.0, "sd": 2.0}, "complexity": {"mean": 300.0, "sd": 50.0}, "fitted_on": "mnist/val"})))
put("detector", "msp", json.dumps(dict(det, score="msp", temperature=2.0)))
put("detector", "unsorted", json.dumps(dict(det, val_scores=[1.0, 0.0])))
put("detector", "missing-threshold", json.dumps({k: v for k, v in det.items() if k != "threshold"}))
put("detector", "wrong-types", json.dumps(dict(det, version="1", n_val="4", temperature="1")))
put("detector", "empty-scores", json.dumps(dict(det, val_scores=[], n_val=0)))
put("detector", "not-object", "[1, 2, 3]")
put("detector", "truncated", json.dumps(det)[:60])
put("detector", "big-numbers", json.dumps(dict(det, version=1e300, n_val=1e300, percentile=-1e308)))

# ---------------------------------------------------------------- cards
member = {"model": "../native", "weight": 1.0, "shift": -1.0, "scale": 2.0, "hash": "@HASH@"}
put("card", "native-match", json.dumps({"format": "native", "arch": {"type": "conv-ebm", "width": 2}}))
put("card", "native-classifier", json.dumps({"arch": {"type": "conv-classifier", "width": 2, "num_classes": 3,
                                                      "activation": "leaky_relu", "dropout": 0.1}, "temperature": 2.0}))
put("card", "native-no-arch", json.dumps({"format": "native"}))
put("card", "native-rgb", json.dumps({"arch": {"type": "conv-ebm", "width": 2, "channels": 3}}))
put("card", "native-unknown-type", json.dumps({"arch": {"type": "mlp"}}))
put("card", "ensemble-one", json.dumps({"format": "ensemble", "members": [member], "default_score": "energy"}))
put("card", "ensemble-two", json.dumps({"format": "ensemble", "members": [member, dict(member, weight=0.5)]}))
put("card", "ensemble-stale-hash", json.dumps({"format": "ensemble", "members": [dict(member, hash="0" * 64)]}))
put("card", "ensemble-missing-scale", json.dumps({"format": "ensemble",
                                                  "members": [{k: v for k, v in member.items() if k != "scale"}]}))
put("card", "ensemble-self", json.dumps({"format": "ensemble", "members": [dict(member, model=".")]}))
put("card", "ensemble-empty", json.dumps({"format": "ensemble", "members": []}))
put("card", "torchscript-format", json.dumps({"format": "torchscript"}))
put("card", "unknown-format", json.dumps({"format": "onnx"}))
put("card", "format-number", json.dumps({"format": 3}))
put("card", "invalid-json", '{"format": "native", "arch": {')

# ---------------------------------------------------------------- server requests
def b64png(w, h):
    return base64.b64encode(png(w, h)).decode()


flat = [round((i % 7) / 7, 3) for i in range(6)]
put("serve_v1", "png", json.dumps({"images": [b64png(28, 28)], "format": "png"}))
put("serve_v1", "png-2x3", json.dumps({"images": [b64png(3, 2), b64png(3, 2)]}))
put("serve_v1", "flat", json.dumps({"images": [flat], "steps": 10, "sigma": 0.2, "seed": 1}))
put("serve_v1", "nested-hw", json.dumps({"images": [[flat[:3], flat[3:]]], "format": "array", "chains": 4}))
put("serve_v1", "nested-chw", json.dumps({"images": [[[[0, 1], [0.5, 0.5]]] * 3], "allow_ood": True}))
put("serve_v1", "options", json.dumps({"images": [flat], "solver": "tweedie", "schedule": "cosine", "mask": "left:3",
                                       "step_size": 0.01, "data_weight": 10, "noise": 0.005, "model": "mnist-dsm"}))
put("serve_v1", "bad-values", json.dumps({"images": [[2, -1, 0, 0, 0, 0]], "steps": 1.5, "sigma": "x"}))
put("serve_v1", "bad-b64", json.dumps({"images": ["iVBORw0K!!!="]}))
put("serve_v1", "too-many", json.dumps({"images": [flat] * 9}))
put("serve_v1", "empty", "{}")
put("serve_v1", "not-object", "[]")
put("serve_v1", "malformed", '{"images": [0.5, ')
put("serve_v1", "big-number", '{"images": [[1e400]], "steps": 1e400}')

put("serve_oip", "fp32-nchw", json.dumps({"inputs": [{"name": "x", "shape": [1, 1, 2, 3], "datatype": "FP32",
                                                      "data": flat}], "outputs": [{"name": "energy"}]}))
put("serve_oip", "fp32-nested", json.dumps({"inputs": [{"name": "x", "shape": [1, 1, 2, 3], "datatype": "FP32",
                                                        "data": [[[flat[:3], flat[3:]]]]}]}))
put("serve_oip", "uint8-nhw", json.dumps({"inputs": [{"name": "x", "shape": [2, 2, 3], "datatype": "UINT8",
                                                      "data": [0, 1, 2, 3, 4, 255] * 2}]}))
put("serve_oip", "fp32-flat-nc", json.dumps({"inputs": [{"name": "x", "shape": [1, 12], "datatype": "FP32",
                                                         "data": [0.5] * 12}], "outputs": [{"name": "is_ood"}, {"name": "p_value"}]}))
put("serve_oip", "fp32-28", json.dumps({"inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32",
                                                    "data": [0.0] * 784}]}))
put("serve_oip", "fp64", json.dumps({"inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP64", "data": flat}]}))
put("serve_oip", "wrong-count", json.dumps({"inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP32", "data": [0.5]}]}))
put("serve_oip", "two-inputs", json.dumps({"inputs": [{}, {}]}))
put("serve_oip", "huge-shape", json.dumps({"inputs": [{"name": "x", "shape": [9223372036854775807, 6], "datatype": "UINT8", "data": []}]}))
put("serve_oip", "unknown-output", json.dumps({"inputs": [], "outputs": [{"name": "logits"}]}))
put("serve_oip", "malformed", '{"inputs": [{"shape": [1, 6], "data": [0.5, ')
# ---------------------------------------------------------------- HTTP framing (raw request bytes)
post = "POST /v1/score HTTP/1.1\r\nHost: x\r\n"
put("http_framing", "content-length", post + "Content-Length: 5\r\n\r\nhello")
put("http_framing", "pipelined", post + "Content-Length: 2\r\n\r\n{}GET /v2 HTTP/1.1\r\n\r\n")
put("http_framing", "get", "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
put("http_framing", "chunked", post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n")
put("http_framing", "chunked-trailer", post + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Sum: 1\r\n\r\n")
put("http_framing", "chunked-partial", post + "Transfer-Encoding: chunked\r\n\r\n10\r\nabc")
put("http_framing", "expect", post + "Expect: 100-continue\r\nContent-Length: 4\r\n\r\n")
put("http_framing", "expect-other", post + "Expect: nothing\r\n\r\n")
put("http_framing", "both", post + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc")
put("http_framing", "two-lengths", post + "Content-Length: 3\r\ncontent-length: 4\r\n\r\nabcd")
put("http_framing", "over", post + "Content-Length: 99999\r\n\r\n")
put("http_framing", "long-head", post + "X: " + "a" * 1100)
print("seeds written under", ROOT)
