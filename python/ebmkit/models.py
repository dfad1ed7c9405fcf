"""The built-in architectures of ebmkit (src/core/models.cpp) as nn.Modules.

Parameter names match the C++ modules (``body.<i>.weight``, ``head.bias``), so
a native model's ``weights.pt`` loads with ``load_state_dict(strict=True)``.
Inputs are x[B,C,28,28] with pixels in [0,1]; both networks see ``x * 2 - 1``.
"""

import torch
from torch import nn

from .energy import Energy, free_energy


def _conv(cin: int, cout: int, k: int, stride: int, pad: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=pad)


def _check_input(x: torch.Tensor, channels: int, who: str) -> None:
    if x.dim() != 4 or x.size(1) != channels or x.size(2) != 28 or x.size(3) != 28:
        raise ValueError(who + " expects x [B," + str(channels) + ",28,28], got " + str(x.shape))


class ConvEBM(Energy):
    """Unconditional conv energy ("conv-ebm"): 28 -> 14 -> 7 -> 4, SiLU, a
    linear head to one scalar. forward(x[B,C,28,28]) -> energies [B]."""

    def __init__(self, channels: int = 1, width: int = 32):
        super().__init__()
        if width <= 0 or channels <= 0:
            raise ValueError("ConvEBM: width and channels must be > 0")
        w = width
        self.channels = channels
        self.width = width
        self.body = nn.Sequential(
            _conv(channels, w, 3, 1, 1), nn.SiLU(),       # 28
            _conv(w, 2 * w, 4, 2, 1), nn.SiLU(),          # 14
            _conv(2 * w, 4 * w, 4, 2, 1), nn.SiLU(),      # 7
            _conv(4 * w, 4 * w, 3, 2, 1), nn.SiLU(),      # 4
            nn.Flatten(), nn.Linear(16 * 4 * w, 4 * w), nn.SiLU())
        self.head = nn.Linear(4 * w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.channels, "ConvEBM")
        return self.head(self.body(x * 2 - 1)).squeeze(1)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class ConvClassifier(Energy):
    """Conv classifier ("conv-classifier"). forward(x) -> logits [B,K];
    energy(x) = -T*logsumexp(logits/T) with T = ``temperature`` (the card's)."""

    def __init__(self, channels: int = 1, width: int = 32, num_classes: int = 10,
                 activation: str = "silu", dropout: float = 0.0, temperature: float = 1.0):
        super().__init__()
        if width <= 0 or num_classes <= 1:
            raise ValueError("ConvClassifier: width must be > 0 and num_classes > 1")
        if activation not in ("silu", "leaky_relu"):
            raise ValueError(f"unknown activation '{activation}' (use silu or leaky_relu)")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")

        def act() -> nn.Module:
            return nn.SiLU() if activation == "silu" else nn.LeakyReLU(0.2)

        w = width
        layers = [
            _conv(channels, w, 3, 1, 1), act(),           # 28
            _conv(w, 2 * w, 4, 2, 1), act(),              # 14
            _conv(2 * w, 2 * w, 3, 1, 1), act(),          # 14
            _conv(2 * w, 4 * w, 4, 2, 1), act(),          # 7
            _conv(4 * w, 4 * w, 3, 1, 1), act(),          # 7
            nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(4 * w, num_classes)
        self.channels = channels
        self.width = width
        self.num_classes = num_classes
        self.activation = activation
        self.temperature = float(temperature)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [B,4*width] (after global pooling)."""
        _check_input(x, self.channels, "ConvClassifier")
        return self.body(x * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return free_energy(self.forward(x), self.temperature)


ARCHITECTURES = ("conv-ebm", "conv-classifier")


def build(arch: dict) -> Energy:
    """An untrained model from a card's "arch", e.g. {"type": "conv-ebm",
    "width": 32} or {"type": "conv-classifier", "num_classes": 10}; the same
    defaults as NativeModel (channels 1, width 32, 10 classes, silu, no dropout)."""
    kind = arch.get("type", "")
    ch, width = int(arch.get("channels", 1)), int(arch.get("width", 32))
    if kind == "conv-ebm":
        return ConvEBM(ch, width)
    if kind == "conv-classifier":
        return ConvClassifier(ch, width, int(arch.get("num_classes", 10)),
                              arch.get("activation", "silu"), float(arch.get("dropout", 0.0)))
    raise ValueError(f"unknown architecture type '{kind}' (known: {', '.join(ARCHITECTURES)})")
