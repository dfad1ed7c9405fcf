#!/usr/bin/python3
"""Write the bad-input corpus (tests/corpus/cases.tsv uses it) into OUT.

Usage: make_corpus.py OUT REPO

Everything is generated deterministically (no randomness without a fixed
seed), so the repository holds no binaries: malformed IDX, NPY and PNG files
(truncated, wrong magic, overflowing or mismatched dims, bad NPY headers,
Fortran order, unsupported dtypes, 16-bit / RGB / palette PNGs, PNGs and gzip
streams that decompress to far more than they should), broken model folders
(built from the shipped models in REPO/models), TorchScript files with the wrong
output (needs python3-torch), broken detector JSON and ensemble cards, and a
few valid files the cases feed alongside the broken one.
"""
import gzip
import hashlib
import json
import os
import random
import shutil
import struct
import sys
import zlib

OUT, REPO = sys.argv[1], os.path.abspath(sys.argv[2])
MODELS = os.path.join(REPO, "models")
rng = random.Random(20240522)


def path(*p):
    full = os.path.join(OUT, *p)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    return full


def write(rel, data):
    with open(path(rel), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def rand_bytes(n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def sha256(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ------------------------------------------------------------------ valid inputs
# 2 Fashion-MNIST-sized images, float32 in [0,1]: the "good" input beside a bad one.
def npy_bytes(descr, shape, payload, fortran=False, version=1, header=None):
    if header is None:
        shp = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
        header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, "True" if fortran else "False", shp)
    pre = 10 if version == 1 else 12
    h = header + " " * ((64 - (pre + len(header) + 1) % 64) % 64) + "\n"
    lenfield = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + lenfield + h.encode("latin1") + payload


def f32(values):
    return struct.pack("<%df" % len(values), *values)


good_pixels = [((i * 37) % 256) / 255.0 for i in range(2 * 28 * 28)]
write("ok/two.npy", npy_bytes("<f4", (2, 28, 28), f32(good_pixels)))
write("ok/one.npy", npy_bytes("<f4", (1, 28, 28), f32(good_pixels[:784])))


# ------------------------------------------------------------------ IDX
def idx(dtype, dims, payload=b""):
    return bytes([0, 0, dtype, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


u8img = bytes((i * 7) % 256 for i in range(2 * 28 * 28))
write("idx/empty.idx", b"")
write("idx/three-bytes.idx", b"\x00\x00\x08")
write("idx/wrong-magic.idx", b"\x01\x02" + idx(8, [2, 28, 28], u8img)[2:])
write("idx/text.idx", "P5\n28 28\n255\n" + "x" * 784)
write("idx/rank0.idx", idx(8, []))
write("idx/rank5.idx", idx(8, [1, 1, 1, 28, 28], u8img[:784]))
write("idx/header-cut.idx", idx(8, [2, 28, 28])[:10])
write("idx/payload-cut.idx", idx(8, [2, 28, 28], u8img[:1000]))
write("idx/extra-bytes.idx", idx(8, [2, 28, 28], u8img + b"\x00" * 17))
write("idx/dims-overflow.idx", idx(8, [0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], u8img))
write("idx/huge-claim.idx", idx(8, [100000, 28, 28], u8img))
write("idx/float-huge-claim.idx", idx(0x0D, [0x7FFFFFFF, 28, 28], b"\0" * 64))
for code, name in [(0x09, "sbyte"), (0x0B, "short"), (0x0C, "int"), (0x0E, "float64"), (0x42, "unknown")]:
    write("idx/dtype-%s.idx" % name, idx(code, [2, 28, 28], u8img))
be_f32 = lambda vals: struct.pack(">%df" % len(vals), *vals)
write("idx/float-nan.idx", idx(0x0D, [1, 28, 28], be_f32([0.5] * 100 + [float("nan")] + [0.5] * 683)))
write("idx/float-inf.idx", idx(0x0D, [1, 28, 28], be_f32([float("inf")] + [0.5] * 783)))
write("idx/float-range.idx", idx(0x0D, [1, 28, 28], be_f32([0.5] * 10 + [2.5] + [0.5] * 773)))
write("idx/float-negative.idx", idx(0x0D, [1, 28, 28], be_f32([-0.25] + [0.5] * 783)))
write("idx/rank1.idx", idx(8, [784], u8img[:784]))
write("idx/zero-images.idx", idx(8, [0, 28, 28]))
write("idx/size-32.idx", idx(8, [2, 32, 32], bytes(2 * 32 * 32)))
write("idx/three-channels.idx", idx(8, [1, 3, 28, 28], bytes(3 * 784)))
good_idx = idx(8, [2, 28, 28], u8img)
gz = gzip.compress(good_idx, mtime=0)
write("idx/gz-cut.idx.gz", gz[: len(gz) // 2])
write("idx/gz-garbage.idx.gz", b"\x1f\x8b" + rand_bytes(300))
write("idx/gz-bad-crc.idx.gz", gz[:-8] + b"\xde\xad\xbe\xef" + gz[-4:])
write("idx/gz-empty-stream.idx.gz", gzip.compress(b"", mtime=0))


def deflate_repeat(prefix, chunk, repeats):
    """A raw deflate stream of prefix + chunk * repeats, built by repeating one
    compressed block: after Z_FULL_FLUSH the compressor forgets its history, so
    every copy of `chunk` compresses to the same bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix + chunk) + c.flush(zlib.Z_FULL_FLUSH)
    one = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    two = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    assert one == two, "full-flush blocks differ; cannot build the bomb by repetition"
    tail = c.flush(zlib.Z_FINISH)
    return head + one * (repeats - 1) + tail


def gzip_repeat(prefix, chunk, repeats):
    body = deflate_repeat(prefix, chunk, repeats)
    size = (len(prefix) + len(chunk) * repeats) & 0xFFFFFFFF
    # The CRC is left 0: a reader must stop long before it could check it.
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + struct.pack("<II", 0, size)


MB = 1 << 20
# A gzip bomb: the header says 1 image of 28x28 (800 bytes in all), the stream
# inflates to 2 GiB of zeros (2 MB on disk).
write("idx/bomb-small-header.idx.gz", gzip_repeat(idx(8, [1, 28, 28]), bytes(MB), 2048))
# A bomb whose header is honest: 2048 x 1024 x 1024 bytes (2 GiB) of zeros.
write("idx/bomb-honest-header.idx.gz", gzip_repeat(idx(8, [2048, 1024, 1024]), bytes(MB), 2048))

# ------------------------------------------------------------------ NPY
write("npy/empty.npy", b"")
write("npy/wrong-magic.npy", b"\x93NUMPX\x01\x00" + npy_bytes("<f4", (1, 28, 28), f32(good_pixels[:784]))[8:])
write("npy/text.npy", "just some text, no numpy here\n")
write("npy/version9.npy", b"\x93NUMPY\x09\x00" + npy_bytes("<f4", (1, 28, 28), f32(good_pixels[:784]))[8:])
write("npy/v2-cut.npy", b"\x93NUMPY\x02\x00\x10\x00\x00")  # version 2's 4-byte length, cut
write("npy/header-len-beyond.npy", b"\x93NUMPY\x01\x00\xff\xff{'descr': '<f4'")
write("npy/no-descr.npy", npy_bytes(None, None, f32(good_pixels[:784]), header="{'fortran_order': False, 'shape': (1, 28, 28), }"))
write("npy/no-shape.npy", npy_bytes(None, None, f32(good_pixels[:784]), header="{'descr': '<f4', 'fortran_order': False, }"))
write("npy/not-a-dict.npy", npy_bytes(None, None, f32(good_pixels[:784]), header="hello world"))
write("npy/fortran.npy", npy_bytes("<f4", (1, 28, 28), f32(good_pixels[:784]), fortran=True))
for descr, name, size in [("<i4", "int32", 4), ("<i8", "int64", 8), (">f4", "float32-big-endian", 4),
                          ("<f2", "float16", 2), ("|b1", "bool", 1), ("<c8", "complex64", 8),
                          ("|O", "object", 8), ("<U3", "unicode", 12), ("|V4", "void", 4)]:
    write("npy/dtype-%s.npy" % name, npy_bytes(descr, (1, 28, 28), bytes(784 * size)))
write("npy/dims-overflow.npy", npy_bytes("<f4", (99999999999, 99999999999, 28), b""))
write("npy/dim-13-digits.npy", npy_bytes("<f4", (1234567890123, 1), b""))
write("npy/negative-dim.npy", npy_bytes(None, None, f32(good_pixels[:784]), header="{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 28, 28), }"))
write("npy/shape-garbage.npy", npy_bytes(None, None, f32(good_pixels[:784]), header="{'descr': '<f4', 'fortran_order': False, 'shape': (a, b), }"))
write("npy/payload-cut.npy", npy_bytes("<f4", (2, 28, 28), f32(good_pixels)[:3000]))
write("npy/extra-bytes.npy", npy_bytes("<f4", (1, 28, 28), f32(good_pixels[:784]) + b"\0" * 8))
write("npy/nan.npy", npy_bytes("<f4", (1, 28, 28), f32([0.5] * 783 + [float("nan")])))
write("npy/inf-f8.npy", npy_bytes("<f8", (1, 28, 28), struct.pack("<784d", *([float("-inf")] + [0.5] * 783))))
write("npy/range.npy", npy_bytes("<f4", (1, 28, 28), f32([0.5] * 500 + [255.0] + [0.5] * 283)))
write("npy/scalar.npy", npy_bytes("<f4", (), f32([0.5])))
write("npy/rank5.npy", npy_bytes("<f4", (1, 1, 1, 28, 28), f32(good_pixels[:784])))
write("npy/zero-images.npy", npy_bytes("<f4", (0, 28, 28), b""))
write("npy/size-27.npy", npy_bytes("<f4", (1, 27, 27), f32([0.5] * 729)))
write("npy/labels-as-images.npy", npy_bytes("|u1", (10,), bytes(range(10))))


# ------------------------------------------------------------------ PNG
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, bit_depth, color_type, raw, interlace=0, extra=b"", idat=None):
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    body = chunk(b"IHDR", ihdr) + extra
    body += chunk(b"IDAT", zlib.compress(raw, 9) if idat is None else idat)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def rows(width, height, bytes_per_pixel, value=lambda x, y: (x * 9 + y * 3) % 256):
    out = bytearray()
    for y in range(height):
        out.append(0)  # filter: none
        for x in range(width):
            out += bytes([value(x, y)] * bytes_per_pixel)
    return bytes(out)


gray28 = png(28, 28, 8, 0, rows(28, 28, 1))
write("ok/one.png", gray28)
write("png/empty.png", b"")
write("png/wrong-magic.png", b"\x89PNX\r\n\x1a\n" + gray28[8:])
write("png/text.png", "<svg xmlns='http://www.w3.org/2000/svg'/>\n")
write("png/header-only.png", gray28[:20])
write("png/idat-cut.png", gray28[: len(gray28) - 30])
bad_crc = bytearray(gray28)
bad_crc[29] ^= 0xFF  # a byte of IHDR's CRC
write("png/ihdr-bad-crc.png", bytes(bad_crc))
write("png/idat-garbage.png", png(28, 28, 8, 0, b"", idat=rand_bytes(200)))
write("png/idat-short.png", png(28, 28, 8, 0, rows(28, 10, 1)))
write("png/no-iend.png", gray28[:-12])
write("png/zero-width.png", png(0, 28, 8, 0, b""))
write("png/width-2pow31.png", png(0x7FFFFFFF, 1, 8, 0, b"\0"))
write("png/bad-bit-depth.png", png(28, 28, 7, 0, rows(28, 28, 1)))
write("png/bad-color-type.png", png(28, 28, 8, 5, rows(28, 28, 1)))
write("png/claims-100000x100000.png", png(100000, 100000, 8, 0, b"", idat=zlib.compress(b"\0" * 100001)))
# A decompression bomb within the pixel limit: 16384 x 16384 grey zeros, 256 MiB
# of pixels from ~0.3 MB of file.
row = bytes(16385)
write("png/bomb-16384.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16384, 16384, 8, 0, 0, 0, 0))
      + chunk(b"IDAT", b"\x78\xda" + deflate_repeat(b"", row * 64, 256)
              + struct.pack(">I", ((16384 * 16385 % 65521) << 16) | 1))  # Adler-32 of that many zeros
      + chunk(b"IEND", b""))
# The same ramp as 8-bit grey, 16-bit grey and 8-bit RGB: all three must read
# as the same pixels (16-bit samples are code values, not linear light).
ramp = [(x * 9) % 256 for x in range(28)]
write("png/ramp-gray8.png", png(28, 1, 8, 0, b"\0" + bytes(ramp)))
write("png/ramp-gray16.png", png(28, 1, 16, 0, b"\0" + b"".join(struct.pack(">H", v * 257) for v in ramp)))
write("png/ramp-rgb8.png", png(28, 1, 8, 2, b"\0" + b"".join(bytes([v, v, v]) for v in ramp)))
# Formats the reader converts to 8-bit grey (image_io.h: "read as grayscale").
write("png/rgb8.png", png(28, 28, 8, 2, rows(28, 28, 3)))
write("png/rgba8.png", png(28, 28, 8, 6, rows(28, 28, 4)))
write("png/gray16.png", png(28, 28, 16, 0, rows(28, 28, 2)))
write("png/rgb16.png", png(28, 28, 16, 2, rows(28, 28, 6)))
write("png/palette.png", png(28, 28, 8, 3, rows(28, 28, 1, lambda x, y: (x + y) % 4),
                             extra=chunk(b"PLTE", bytes([0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255]))))
write("png/gray1bit.png", png(28, 28, 1, 0, b"".join(b"\0" + b"\xaa\xaa\xaa\xa0" for _ in range(28))))
write("png/rgb16-30x30.png", png(30, 30, 16, 2, rows(30, 30, 6)))
write("png/gray-100x50.png", png(100, 50, 8, 0, rows(100, 50, 1)))

# ------------------------------------------------------------------ model folders
def model_dir(name, card=None, weights=None, card_text=None):
    d = path("models", name, "x")[:-2]
    if card_text is not None:
        write("models/%s/card.json" % name, card_text)
    elif card is not None:
        write("models/%s/card.json" % name, json.dumps(card, indent=1))
    if weights is not None:
        write("models/%s/weights.pt" % name, weights)
    return d


def load_json(p):
    with open(p) as f:
        return json.load(f)


dsm_card = load_json(os.path.join(MODELS, "mnist-dsm", "card.json"))
clf_card = load_json(os.path.join(MODELS, "mnist-clf", "card.json"))
with open(os.path.join(MODELS, "mnist-dsm", "weights.pt"), "rb") as f:
    dsm_weights = f.read()
with open(os.path.join(MODELS, "mnist-clf", "weights.pt"), "rb") as f:
    clf_weights = f.read()


def with_arch(card, **arch):
    c = json.loads(json.dumps(card))
    c["arch"].update(arch)
    return c


os.makedirs(path("models", "empty-folder", "x")[:-2], exist_ok=True)
model_dir("card-invalid-json", card_text='{"arch": {"type": "conv-ebm", ', weights=dsm_weights)
model_dir("card-array", card_text="[1, 2, 3]", weights=dsm_weights)
model_dir("card-empty", card_text="", weights=dsm_weights)
model_dir("card-deep-nesting", card_text="[" * 100000 + "]" * 100000, weights=dsm_weights)
model_dir("card-unknown-format", card=dict(dsm_card, format="onnx"), weights=dsm_weights)
model_dir("card-no-arch", card={k: v for k, v in dsm_card.items() if k != "arch"}, weights=dsm_weights)
model_dir("card-arch-not-object", card=dict(dsm_card, arch="conv-ebm"), weights=dsm_weights)
model_dir("card-unknown-arch", card=with_arch(dsm_card, type="transformer"), weights=dsm_weights)
model_dir("card-width-zero", card=with_arch(dsm_card, width=0), weights=dsm_weights)
model_dir("card-width-negative", card=with_arch(dsm_card, width=-8), weights=dsm_weights)
model_dir("card-width-string", card=with_arch(dsm_card, width="wide"), weights=dsm_weights)
model_dir("card-width-huge", card=with_arch(dsm_card, width=10 ** 12), weights=dsm_weights)
model_dir("card-width-mismatch", card=with_arch(dsm_card, width=16), weights=dsm_weights)
model_dir("card-type-mismatch", card=with_arch(dsm_card, type="conv-classifier", num_classes=10), weights=dsm_weights)
model_dir("card-classes-mismatch", card=with_arch(clf_card, num_classes=5), weights=clf_weights)
model_dir("card-channels-mismatch", card=with_arch(dsm_card, channels=3), weights=dsm_weights)
model_dir("card-bad-activation", card=with_arch(clf_card, activation="gelu"), weights=clf_weights)
model_dir("card-temperature-string", card=dict(clf_card, temperature="hot"), weights=clf_weights)
model_dir("weights-random", card=dsm_card, weights=rand_bytes(4096))
model_dir("weights-empty", card=dsm_card, weights=b"")
model_dir("weights-truncated", card=dsm_card, weights=dsm_weights[: len(dsm_weights) // 2])
# A zip archive that is not a torch archive (built by hand, deterministic).
import io
import zipfile
zbuf = io.BytesIO()
with zipfile.ZipFile(zbuf, "w") as z:
    info = zipfile.ZipInfo("archive/data.pkl", date_time=(2020, 1, 1, 0, 0, 0))
    z.writestr(info, b"not a pickle")
model_dir("weights-zip-junk", card=dsm_card, weights=zbuf.getvalue())
model_dir("weights-missing", card=dsm_card)
d = model_dir("weights-is-folder", card=dsm_card)
os.makedirs(os.path.join(d, "weights.pt"), exist_ok=True)


def symlink(target, link):
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(target, link)


# Symlinks that leave the model folder. Shipped models share weights this way
# (models/mnist-purifier/weights.pt -> ../mnist-dsm-wide/weights.pt), so the
# link itself is allowed; what it points to must still be valid weights.
d = model_dir("link-dangling", card=dsm_card)
symlink("../../nowhere/weights.pt", os.path.join(d, "weights.pt"))
d = model_dir("link-dev-zero", card=dsm_card)
symlink("/dev/zero", os.path.join(d, "weights.pt"))
d = model_dir("link-outside-text", card=dsm_card)
symlink(os.path.join(REPO, "README.md"), os.path.join(d, "weights.pt"))
d = model_dir("link-outside-other-weights", card=dsm_card)
symlink(os.path.join(MODELS, "mnist-clf", "weights.pt"), os.path.join(d, "weights.pt"))
d = model_dir("link-loop", card=dsm_card)
symlink("weights.pt", os.path.join(d, "weights.pt"))
d = model_dir("link-card-urandom", weights=dsm_weights)
symlink("/dev/urandom", os.path.join(d, "card.json"))
d = model_dir("link-card-outside", weights=dsm_weights)
symlink(os.path.join(MODELS, "mnist-clf", "card.json"), os.path.join(d, "card.json"))
symlink("/", path("models", "link-root"))
write("models/random-bytes.pt", rand_bytes(2048))
write("models/empty.pt", b"")

# Ensembles (cards only; members are referenced by path relative to the folder).
ens = load_json(os.path.join(MODELS, "mnist-ood", "card.json"))
for m in ens["members"]:
    m["model"] = os.path.relpath(os.path.join(MODELS, "mnist-ood", m["model"]), path("models", "e", "x")[:-2])


def ensemble(name, mutate):
    c = json.loads(json.dumps(ens))
    mutate(c)
    model_dir(name, card=c)


ensemble("ens-ok", lambda c: None)
ensemble("ens-hash-changed", lambda c: c["members"][1].update(hash="0" * 64))
ensemble("ens-no-members", lambda c: c.pop("members"))
ensemble("ens-members-empty", lambda c: c.update(members=[]))
ensemble("ens-member-no-hash", lambda c: c["members"][0].pop("hash"))
ensemble("ens-member-missing", lambda c: c["members"][0].update(model="../does-not-exist"))
ensemble("ens-member-escapes", lambda c: c["members"][0].update(model="../../../../../../../../etc"))
ensemble("ens-member-number", lambda c: c["members"][0].update(model=42))
ensemble("ens-weight-string", lambda c: c["members"][0].update(weight="1"))
ensemble("ens-member-self", lambda c: c["members"][0].update(model="."))
# A member replaced in place (same path, other weights): the pinned hash catches it.
d = model_dir("swapped-member", card=dsm_card, weights=dsm_weights)
ensemble("ens-member-swapped", lambda c: c["members"][0].update(model="../swapped-member", hash=sha256(os.path.join(d, "weights.pt"))))
with open(os.path.join(d, "weights.pt"), "r+b") as f:  # one byte of the stored weights changes after the fit
    f.seek(len(dsm_weights) - 100)
    b = f.read(1)
    f.seek(len(dsm_weights) - 100)
    f.write(bytes([b[0] ^ 1]))

# ------------------------------------------------------------------ detector JSON
det = load_json(os.path.join(MODELS, "mnist-ood.detector.json"))
det["model"] = os.path.join(MODELS, "mnist-ood")


def detector(name, mutate=None, text=None):
    if text is None:
        d = json.loads(json.dumps(det))
        mutate(d)
        text = json.dumps(d)
    write("det/%s.json" % name, text)


detector("ok", lambda d: None)
detector("invalid-json", text='{"format": "ebmkit-ood-detector", "threshold": ')
detector("empty", text="")
detector("array", text="[]")
detector("deep-nesting", text="[" * 100000 + "]" * 100000)
detector("wrong-format", lambda d: d.update(format="sklearn-pipeline"))
detector("format-number", lambda d: d.update(format=7))
detector("version-2", lambda d: d.update(version=2))
for key in ["model", "model_hash", "score", "temperature", "threshold", "percentile", "val_scores"]:
    detector("missing-" + key.replace("_", "-"), lambda d, k=key: d.pop(k))
detector("threshold-string", lambda d: d.update(threshold="2.3"))
detector("model-hash-number", lambda d: d.update(model_hash=12345))
detector("val-scores-empty", lambda d: d.update(val_scores=[]))
detector("val-scores-unsorted", lambda d: d.update(val_scores=list(reversed(d["val_scores"]))))
detector("val-scores-string", lambda d: d["val_scores"].insert(3, "x"))
detector("unknown-score", lambda d: d.update(score="vibes"))
detector("temperature-zero", lambda d: d.update(temperature=0))
detector("combined-no-stats", lambda d: d.update(score="combined"))
detector("n-val-mismatch", lambda d: d.update(n_val=d["n_val"] + 1))
detector("wrong-model-hash", lambda d: d.update(model_hash="f" * 64))
detector("model-missing-path", lambda d: d.update(model="no/such/model"))
detector("model-dev-zero", lambda d: d.update(model="/dev/zero"))
detector("model-other", lambda d: d.update(model=os.path.join(MODELS, "mnist-dsm")))
detector("threshold-overflow", text=json.dumps(det).replace('"threshold": %s' % json.dumps(det["threshold"]), '"threshold": 1e999'))

# ------------------------------------------------------------------ TorchScript
# Needs python3-torch (scripts/setup installs it); small files, made here.
import torch  # noqa: E402


def script(name, body):
    # TorchScript compiles from source files, so each module is written as one.
    import importlib.util
    src = path("ts", "src", name.replace("-", "_") + ".py")
    with open(src, "w") as f:
        f.write("import torch\n\n\nclass M(torch.nn.Module):\n    def forward(self, x: torch.Tensor):\n" +
                "".join("        " + line + "\n" for line in body.splitlines()))
    spec = importlib.util.spec_from_file_location("corpus_" + name.replace("-", "_"), src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.jit.save(torch.jit.script(mod.M()), path("ts", name + ".pt"))


script("ok-energy", "return x.flatten(1).sum(1)")
script("out-3d", "return x.flatten(1)[:, :6].reshape(x.shape[0], 2, 3)")
script("out-scalar", "return x.sum()")
script("out-wrong-batch", "return torch.zeros(x.shape[0] + 1)")
script("out-tuple", "return (x.sum(1), x.sum(1))")
script("raises", "raise RuntimeError('this model refuses every input')")
script("needs-rgb", "return torch.nn.functional.conv2d(x, torch.ones(1, 3, 3, 3)).flatten(1).sum(1)")
script("nan-energy", "return x.flatten(1).sum(1) * float('nan')")
script("inf-logits", "return torch.full([x.shape[0], 10], float('inf'))")
# A TorchScript file where a native model's weights.pt belongs.
d = model_dir("weights-torchscript", card=dsm_card)
shutil.copy(path("ts", "ok-energy.pt"), os.path.join(d, "weights.pt"))
# A TorchScript file cut in half.
with open(path("ts", "ok-energy.pt"), "rb") as f:
    ts = f.read()
write("ts/truncated.pt", ts[: len(ts) // 2])

# ------------------------------------------------------------------ datasets ($EBM_DATA)
os.makedirs(path("data", "empty", "x")[:-2], exist_ok=True)
write("data/labels-mismatch/mnist/images.idx", idx(8, [3, 28, 28], bytes(3 * 784)))
write("data/labels-mismatch/mnist/labels.idx", idx(8, [2], b"\x01\x02"))
write("data/labels-rank2/mnist/images.idx", idx(8, [2, 28, 28], bytes(2 * 784)))
write("data/labels-rank2/mnist/labels.idx", idx(8, [2, 1], b"\x01\x02"))
write("data/labels-nan/mnist/images.idx", idx(8, [2, 28, 28], bytes(2 * 784)))
write("data/labels-nan/mnist/labels.idx", idx(0x0D, [2], be_f32([1.0, float("nan")])))
write("data/fashion-bomb/fashion-mnist/t10k-images-idx3-ubyte.gz", gzip_repeat(idx(8, [10000, 28, 28]), bytes(MB), 1024))
write("data/fashion-bomb/fashion-mnist/t10k-labels-idx1-ubyte.gz", gzip.compress(idx(8, [10000], bytes(10000)), mtime=0))
write("data/fashion-cut/fashion-mnist/t10k-images-idx3-ubyte.gz", gz[:100])
write("data/fashion-cut/fashion-mnist/t10k-labels-idx1-ubyte.gz", gzip.compress(idx(8, [2], b"\x01\x02"), mtime=0))

# ------------------------------------------------------------------ odds and ends
os.mkfifo(path("misc", "fifo.npy")) if not os.path.exists(path("misc", "fifo.npy")) else None
symlink("/dev/zero", path("misc", "dev-zero.npy"))
symlink("/dev/zero", path("misc", "dev-zero.json"))
write("misc/not-a-folder", "a file where a folder is expected\n")
print("corpus written to", OUT)
