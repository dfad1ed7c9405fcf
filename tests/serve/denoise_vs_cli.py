#!/usr/bin/env python3
"""`/v1/denoise` equals `ebm denoise` on the same images (stdlib only).

Usage: denoise_vs_cli.py EBM BASE_URL MODEL TMPDIR
The request goes out as urllib sends it by default (form-urlencoded, over
8 KiB), as `curl -d` would. Writes two images as NPY, denoises them with the CLI (gd, 20 steps, and
tweedie at sigma 0.2) and through the server, and compares pixel by pixel
(at most 1e-5). Exit 0 when both agree.
"""
import json, struct, subprocess, sys, urllib.error, urllib.request

ebm, base, model, tmp = sys.argv[1:]


def write_npy(path, images):  # images: list of [28][28] -> float32 [N,1,28,28]
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, 1, 28, 28), }" % len(images)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    flat = [v for img in images for row in img for v in row]
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%df" % len(flat), *flat))


def read_npy(path):  # float32 little-endian, C order -> flat list
    data = open(path, "rb").read()
    assert data[:6] == b"\x93NUMPY" and "'<f4'" in data[10:10 + struct.unpack("<H", data[8:10])[0]].decode()
    off = 10 + struct.unpack("<H", data[8:10])[0]
    return list(struct.unpack("<%df" % ((len(data) - off) // 4), data[off:]))


# Two deterministic "noisy" images: a bar and a ring, plus a fixed pseudo-random texture.
def img(k):
    return [[min(1.0, max(0.0, (0.8 if (k == 0 and 10 <= c < 18) or (k == 1 and 6 <= abs(complex(r - 14, c - 14)) < 10) else 0.1)
                     + 0.15 * (((r * 37 + c * 11 + k * 5) % 17) / 16 - 0.5))) for c in range(28)] for r in range(28)]


images = [img(0), img(1)]
write_npy(f"{tmp}/noisy.npy", images)
worst = 0.0
for opts in ({"solver": "gd", "steps": 20}, {"solver": "tweedie", "sigma": 0.2}):
    flags = [f"--{k}={v}" for k, v in opts.items()]
    subprocess.run([ebm, "denoise", "--model", model, "--input", f"{tmp}/noisy.npy", "--out", f"{tmp}/clean.npy",
                    "--threads", "1", "--quiet"] + flags, check=True)
    cli = read_npy(f"{tmp}/clean.npy")
    body = json.dumps(dict(opts, images=images)).encode()
    try:
        served = json.loads(urllib.request.urlopen(urllib.request.Request(base + "/v1/denoise", data=body), timeout=120).read())
    except urllib.error.HTTPError as e:
        sys.exit(f"/v1/denoise answered {e.code}: {e.read().decode()}")
    flat = [v for im in served["images"] for ch in im for row in ch for v in row]
    assert len(flat) == len(cli), (len(flat), len(cli))
    diff = max(abs(a - b) for a, b in zip(flat, cli))
    print(f"{opts['solver']}: max |served - cli| = {diff:.3g} over {len(cli)} pixels")
    worst = max(worst, diff)
sys.exit(0 if worst <= 1e-5 else 1)
