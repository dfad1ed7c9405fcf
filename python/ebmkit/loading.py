"""ebmkit.load(path): the Python twin of ebmkit's model registry (models.cpp).

A model is a path:
  * a folder with card.json whose "format" is "native" (default): an "arch"
    from models.py, the weights in weights.pt (a torch::serialize archive,
    which torch.jit.load reads), the card's "temperature" for classifiers;
  * a folder with "format": "ensemble" (core/ensemble.h): members referenced
    by paths relative to the folder and pinned by SHA-256, each standardised,
    E = sum_i w_i * (E_i - shift_i) / scale_i;
  * a single file: TorchScript (torch.jit.save, or `ebm export`); forward
    returns [B] energies or [B,K] logits, whose energy is -logsumexp (T = 1,
    as ebmkit's ScriptModel does, whatever card the file carries).
"""

import hashlib
import json
import os
import warnings
from typing import Callable, Dict

import torch
from torch import nn

from .energy import Affine, Energy, Sum, free_energy
from .models import build


class ScriptEnergy(Energy):
    """A TorchScript module as an energy. One probe forward on x[2,C,H,W] = 0.5
    decides energies [B] versus logits [B,K], as ScriptModel does."""

    def __init__(self, module, probe_shape=(1, 28, 28)):
        super().__init__()
        self.module = module
        self.module.eval()
        with torch.no_grad():
            out = self.module(torch.full((2,) + tuple(probe_shape), 0.5))
        if out.dim() == 2 and out.size(0) == 2:
            self.num_classes = int(out.size(1))
        elif out.dim() == 1 and out.size(0) == 2:
            self.num_classes = 0
        else:
            raise ValueError("TorchScript forward must return [B] energies or [B,K] logits; got "
                             f"{tuple(out.shape)} for B=2")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        if self.num_classes > 0:
            return free_energy(out, 1.0)
        return out


def load_card(path: str) -> dict:
    """card.json of a folder, or {"format": "torchscript", "path": path} for a file."""
    if os.path.isdir(path):
        cp = os.path.join(path, "card.json")
        if not os.path.isfile(cp):
            raise ValueError(f"'{path}' is a folder without card.json: not an ebmkit model")
        with open(cp) as f:
            return json.load(f)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model '{path}' does not exist")
    return {"format": "torchscript", "path": path}


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ formats

def _load_native(path: str, card: dict) -> Energy:
    if "arch" not in card:
        raise ValueError(f"'{path}/card.json' has no \"arch\"")
    m = build(card["arch"])
    wp = os.path.join(path, "weights.pt")
    if not os.path.isfile(wp):
        raise FileNotFoundError(f"model '{path}' has no weights.pt")
    state = torch.jit.load(wp, map_location="cpu").state_dict()
    m.load_state_dict(state, strict=True)
    if m.num_classes > 0:
        m.temperature = float(card.get("temperature", 1.0))
    return m


def _load_torchscript(path: str, card: dict) -> Energy:
    if os.path.isdir(path):
        raise ValueError(f"'{path}': the torchscript format is a single file (torch.jit.save), not a folder")
    return ScriptEnergy(torch.jit.load(path, map_location="cpu"))


def _load_ensemble(path: str, card: dict) -> Energy:
    members = card.get("members")
    if not isinstance(members, list) or not members:
        raise ValueError(f"ensemble '{path}': card.json has no \"members\"")
    terms = []
    for mj in members:
        for key in ("model", "weight", "shift", "scale", "hash"):
            if key not in mj:
                raise ValueError(f"ensemble '{path}': a member has no \"{key}\"")
        mp = os.path.normpath(os.path.join(path, mj["model"]))
        h = model_hash(mp)
        if h != mj["hash"]:
            raise ValueError(f"ensemble '{path}': member '{mp}' changed since the ensemble was fitted "
                             f"(hash {h}, fitted {mj['hash']}); refit it with `ebm ood ensemble`")
        terms.append((float(mj["weight"]), Affine(load(mp), float(mj["shift"]), float(mj["scale"]))))
    return Sum(terms, flatten=False)


# name -> (loader(path, card) -> Energy, content_file(path) -> file identifying the model)
_FORMATS: Dict[str, tuple] = {
    "native": (_load_native, lambda p: os.path.join(p, "weights.pt")),
    "torchscript": (_load_torchscript, lambda p: p),
    "ensemble": (_load_ensemble, lambda p: os.path.join(p, "card.json")),
}


def register_format(name: str, loader: Callable[[str, dict], nn.Module],
                    content_file: Callable[[str], str]) -> None:
    """Add (or replace) a model format, as register_model_format() in C++."""
    if not name or loader is None or content_file is None:
        raise ValueError("a format needs a name, a loader and a content file")
    _FORMATS[name] = (loader, content_file)


def formats():
    return sorted(_FORMATS)


def _find_format(path: str, card: dict):
    name = card.get("format", "native")
    if name not in _FORMATS:
        raise ValueError(f"model '{path}' has format '{name}', which is not registered "
                         f"(known: {', '.join(sorted(_FORMATS))})")
    return _FORMATS[name]


def load(path: str) -> Energy:
    """Load any ebmkit model (native folder, ensemble folder, TorchScript file)
    in eval mode, with its card as ``.card``."""
    path = os.fspath(path)
    card = load_card(path)
    m = _find_format(path, card)[0](path, card)
    m.card = card
    m.eval()
    return m


def model_hash(path: str) -> str:
    """SHA-256 of the file that identifies a model (model_hash in C++)."""
    path = os.fspath(path)
    return sha256_file(_find_format(path, load_card(path))[1](path))


def save_torchscript(model: nn.Module, path: str, card: dict = None, method: str = "script") -> None:
    """Save an energy (or classifier) as a TorchScript file that ebmkit loads as
    a model (`ebm ood eval --model FILE`, `ebm sample --model FILE`, ...).

    forward must return [B] energies or [B,K] logits. ebmkit reads logits with
    T = 1, so a classifier with another temperature is refused: save its energy
    instead (``1.0 * model`` is a Sum whose forward is the energy). ``card`` is
    stored as the extra file card.json. ``method``: "script" or "trace"
    (tracing on a [2,1,28,28] example input)."""
    if getattr(model, "num_classes", 0) > 0 and float(getattr(model, "temperature", 1.0)) != 1.0:
        raise ValueError("ebmkit reads TorchScript logits at temperature 1; this classifier has "
                         f"temperature {model.temperature}: save `1.0 * model` (its energy) instead")
    model.eval()
    if method == "script":
        sm = torch.jit.script(model)
    elif method == "trace":
        with warnings.catch_warnings():  # the input-shape checks are constants in a trace, as intended
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            sm = torch.jit.trace(model, torch.full((2, 1, 28, 28), 0.5), check_trace=False)
    else:
        raise ValueError(f"method must be 'script' or 'trace', got '{method}'")
    extra = {"card.json": json.dumps(card if card is not None else getattr(model, "card", {}) or {}, indent=2)}
    tmp = f"{path}.tmp{os.getpid()}"
    sm.save(tmp, _extra_files=extra)
    os.replace(tmp, path)
