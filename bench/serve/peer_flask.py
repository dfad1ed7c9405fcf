#!/usr/bin/python3
"""The Flask + PyTorch peer of `ebm serve` for the serving benchmark.

It is the same OOD-scoring service written the way a Python team would write
it: a plain Flask app over a plain torch.nn model. `POST /v1/score` takes
{"images": [...]} (base64 28x28 8-bit grey PNGs, or [28][28] / [1][28][28] /
flat-784 arrays of numbers in [0,1]) and answers like `ebm serve`:
{"model", "model_sha256", "score", "threshold",
 "results": [{"index", "energy", "score", "ood", "p_value"}]}.
`GET /health` answers 200 once the model is loaded.

bench/serve/run.sh starts it as
    /usr/bin/python3 bench/serve/peer_flask.py --port 18081 --threads 1
(Debian's python3-flask, python3-torch, python3-pil, python3-numpy; the pyenv
`python3` on PATH has no torch), waits for /health, and runs the same wrk load
against /v1/score as against `ebm serve`.

The model is the `conv-ebm` of src/core/models.cpp rebuilt in torch.nn. Its
weights come from the LibTorch archive models/<m>/weights.pt, which
torch.jit.load opens as a parameters-only module with no forward. The score is
the detector's "combined" rule of src/ood/scores.cpp. The PNG complexity uses
libpng's defaults (adaptive row filters, zlib level 6, Z_FILTERED, one sRGB
chunk), so the PNG lengths equal ebmkit's encode_png byte for byte.
"""
import argparse, base64, binascii, hashlib, io, json, math, os, zlib

import numpy as np
import torch
from flask import Flask, jsonify, request
from PIL import Image
from werkzeug.exceptions import HTTPException

MAX_IMAGES = 256  # as `ebm serve --max-images-per-request`
GATE = 1e6        # CombinedStats::kGate (include/ebm/ood/ood.h)


class ConvEBM(torch.nn.Module):
    """conv-ebm: 28 -> 14 -> 7 -> 4 convolutions, then an MLP head; one energy per image."""

    def __init__(self, w=32, c=1):
        super().__init__()
        nn = torch.nn
        # Same layer indices as the C++ Sequential, so the state_dict keys (body.0.weight, ...) match.
        self.body = nn.Sequential(nn.Conv2d(c, w, 3, 1, 1), nn.SiLU(), nn.Conv2d(w, 2 * w, 4, 2, 1), nn.SiLU(),
                                  nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.SiLU(), nn.Conv2d(4 * w, 4 * w, 3, 2, 1),
                                  nn.SiLU(), nn.Flatten(), nn.Linear(16 * 4 * w, 4 * w), nn.SiLU())
        self.head = nn.Linear(4 * w, 1)

    def forward(self, x):
        return self.head(self.body(x * 2 - 1)).squeeze(1)


def png_length(img):
    """Bytes of the PNG that libpng's png_image_write_to_memory writes for a [28,28] uint8 image."""
    prev = np.zeros(img.shape[1], np.int16)
    rows = []
    for r in img.astype(np.int16):
        left, upleft = np.r_[0, r[:-1]], np.r_[0, prev[:-1]]
        p = left + prev - upleft
        pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        # libpng's heuristic: the filter (none, sub, up, average, paeth) whose bytes, read as signed,
        # have the smallest sum of absolute values; ties go to the earlier filter.
        cands = [(c & 0xFF) for c in (r, r - left, r - prev, r - (left + prev) // 2, r - paeth)]
        cost = [int(np.minimum(c, 256 - c).sum()) for c in cands]
        best = cost.index(min(cost))
        rows.append(bytes([best]) + cands[best].astype(np.uint8).tobytes())
        prev = r
    z = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_FILTERED)  # libpng: Z_FILTERED when rows are filtered
    idat = z.compress(b"".join(rows)) + z.flush()
    return 8 + (12 + 13) + (12 + 1) + (12 + len(idat)) + 12  # signature, IHDR, sRGB, IDAT, IEND


def bad(msg, status=400):
    r = jsonify(error=msg)
    r.status_code = status
    return r


def parse_image(item, where):
    """One request image -> float32 [28,28] in [0,1]; ValueError with the reason if it is not acceptable."""
    if isinstance(item, str):
        try:
            data = base64.b64decode(item, validate=True)
            im = Image.open(io.BytesIO(data))  # reads the header only; the size is checked before decoding
        except (binascii.Error, ValueError, OSError) as e:
            raise ValueError(f"{where}: not a base64 PNG ({e})")
        if im.format != "PNG" or im.size != (28, 28) or im.mode != "L":
            raise ValueError(f"{where}: need a 28x28 8-bit grey PNG, got {im.format} {im.size[0]}x{im.size[1]} {im.mode}")
        try:
            return np.asarray(im, np.uint8).astype(np.float32) / np.float32(255)
        except OSError as e:
            raise ValueError(f"{where}: corrupt PNG ({e})")
    try:
        a = np.asarray(item)
    except ValueError:  # ragged nesting
        raise ValueError(f"{where}: expected [28][28], [1][28][28] or 784 numbers")
    if a.dtype.kind not in "iuf" or a.size != 784 or a.shape not in ((28, 28), (1, 28, 28), (784,)):
        raise ValueError(f"{where}: expected [28][28], [1][28][28] or 784 numbers, got shape {a.shape} of {a.dtype}")
    a = a.astype(np.float32).reshape(28, 28)  # checked as float32, as the C++ server does
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"{where}: values must be finite and in [0,1]")
    return a


def create_app(args):
    torch.set_num_threads(args.threads)
    name = os.path.basename(os.path.normpath(args.model))
    weights = os.path.join(args.model, "weights.pt")
    card = json.load(open(os.path.join(args.model, "card.json")))
    assert card["arch"]["type"] == "conv-ebm", "the peer only rebuilds conv-ebm models"
    model = ConvEBM(card["arch"].get("width", 32), card["arch"].get("channels", 1))
    # torch::save(module) in C++ writes a TorchScript archive of parameters only (no forward): copy them over.
    model.load_state_dict(torch.jit.load(weights, map_location="cpu").state_dict(), strict=True)
    model.eval()
    sha = hashlib.sha256(open(weights, "rb").read()).hexdigest()

    det = json.load(open(args.detector))
    assert det["model_hash"] == sha, "the detector was calibrated on another model"
    assert det["score"] == "combined", "the peer implements the 'combined' score only"
    st = det["combined_stats"]
    e_max, e_mean, e_sd = st["energy"]["max"], st["energy"]["mean"], st["energy"]["sd"]
    c_mean, c_sd = st["energy-complexity"]["mean"], st["energy-complexity"]["sd"]
    threshold = det["threshold"]
    val = np.sort(np.asarray(det["val_scores"], np.float64))

    with torch.inference_mode():  # warm-up: the first call allocates and picks kernels
        model(torch.full((1, 1, 28, 28), 0.5))

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 8 << 20  # as --max-body-bytes; werkzeug answers 413

    @app.errorhandler(HTTPException)
    def http_error(e):  # 404, 405, 413 as JSON, like every other error
        return bad(e.description, e.code)

    @app.get("/health")
    def health():
        return jsonify(ok=True)

    @app.post("/v1/score")
    def score():
        body = request.get_json(force=True, silent=True)  # like ebm serve, whatever the Content-Type
        if not isinstance(body, dict):
            return bad("the body must be a JSON object")
        if body.get("model", name) != name:
            return bad(f"unknown model '{body['model']}' (served: {name})", 404)
        images = body.get("images")
        if not isinstance(images, list) or not images:
            return bad("'images' must be a non-empty list of images")
        if len(images) > MAX_IMAGES:
            return bad(f"'images' has {len(images)} images; the limit is {MAX_IMAGES} per request", 413)
        try:
            x = torch.from_numpy(np.stack([parse_image(im, f"images[{i}]") for i, im in enumerate(images)]))
        except ValueError as e:
            return bad(str(e))
        x = x.unsqueeze(1)  # [N,1,28,28]
        with torch.inference_mode():
            energy = model(x).double().numpy()
        if not np.isfinite(energy).all():
            return bad("the model returned a non-finite energy", 500)
        # Complexity (Serra et al. 2020): PNG bits of the 8-bit image, in nats; rounded the way scores.cpp does.
        u8 = x[:, 0].mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
        complexity = np.array([png_length(im) * 8.0 * math.log(2.0) for im in u8])
        ec = energy - complexity
        # Energies above every validation energy are gated above any z-score of energy-complexity.
        s = np.where(energy > e_max, GATE + (energy - e_mean) / e_sd, (ec - c_mean) / c_sd)
        ge = len(val) - np.searchsorted(val, s, side="left")  # #{val_scores >= s}
        p = (1.0 + ge) / (len(val) + 1.0)
        results = [{"index": i, "energy": float(energy[i]), "score": float(s[i]), "ood": bool(s[i] > threshold),
                    "p_value": float(p[i])} for i in range(len(s))]
        r = jsonify(model=name, model_sha256=sha, score=det["score"], threshold=threshold, results=results)
        r.headers["X-Model-SHA256"] = sha
        return r

    return app


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18081)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--model", default="models/fmnist-ood")
    ap.add_argument("--detector", default="models/fmnist-ood.detector.json")
    args = ap.parse_args()
    # Flask's built-in threaded server (one thread per connection), as a Python team would first
    # deploy it; no gunicorn, no batching. Requests share the one model under torch's own threads.
    create_app(args).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
