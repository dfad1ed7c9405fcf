"""The built-in architectures of ebmkit (src/core/models.cpp) as nn.Modules.

Parameter names match the C++ modules (``body.<i>.weight``, ``head.bias``), so
a native model's ``weights.pt`` loads with ``load_state_dict(strict=True)``.
Inputs are x[B,C,28,28] with pixels in [0,1]; every network sees ``x * 2 - 1``.

The noise-conditional ones ("conv-ebm-nc", "unet-ebm-nc") are energies
E(x, sigma): ``energy_at(x, sigma)`` at a level (sigma a [B] tensor or a float),
``energy(x)`` and ``forward(x)`` at the card's ``sigma_min``.
"""

import math
import numbers

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


def sigma_plane(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The noise-level input plane [B,1,28,28] of both noise-conditional
    architectures: 1 + log(sigma)/log(100) (0 at sigma 0.01, 1 at sigma 1)."""
    return (1.0 + sigma.to(x.dtype).log() / math.log(100.0)).view(-1, 1, 1, 1).expand(x.size(0), 1, 28, 28)


def _levels(x: torch.Tensor, sigma) -> torch.Tensor:
    """sigma as a [B] tensor of x's dtype: a float, a 0-dim tensor or a [B] tensor."""
    if isinstance(sigma, numbers.Real):
        return torch.full((x.size(0),), float(sigma), dtype=x.dtype, device=x.device)
    sigma = torch.as_tensor(sigma, device=x.device)
    if sigma.dim() == 0:
        sigma = sigma.expand(x.size(0))
    return sigma


def _check_sigma(x: torch.Tensor, sigma: torch.Tensor, who: str) -> None:
    if sigma.dim() != 1 or sigma.size(0) != x.size(0):
        raise ValueError(who + " expects sigma [B] with B = " + str(x.size(0)) + ", got " + str(sigma.shape))


class _NoiseConditional(Energy):
    """Common part of the noise-conditional architectures: energy(x) is
    energy_at(x, sigma_min); subclasses implement _energy(x, sigma[B])."""

    noise_conditional: bool = True

    def __init__(self, channels: int, width: int, sigma_min: float):
        super().__init__()
        if width <= 0 or channels <= 0:
            raise ValueError(type(self).__name__ + ": width and channels must be > 0")
        if not 0 < sigma_min < 100:
            raise ValueError(f"sigma_min must be in (0, 100), got {sigma_min}")
        self.channels = channels
        self.width = width
        self.sigma_min = float(sigma_min)

    def _energy(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def energy_at(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """E(x, sigma): sigma a float (every row) or a [B] tensor, > 0."""
        return self._energy(x, _levels(x, sigma))

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return self._energy(x, torch.full([x.size(0)], self.sigma_min, dtype=x.dtype, device=x.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy(x)


class NoiseConditionalEBM(_NoiseConditional):
    """Noise-conditional conv energy ("conv-ebm-nc", NCSN-style): a ConvEBM
    ``net`` on the image plus one plane holding sigma_plane(sigma), its output
    divided by sigma (NCSNv2's scaling). E(x, sigma) = net([x, plane]) / sigma."""

    def __init__(self, channels: int = 1, width: int = 32, sigma_min: float = 0.01):
        super().__init__(channels, width, sigma_min)
        self.net = ConvEBM(channels + 1, width)

    def _energy(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.channels, "NoiseConditionalEBM")
        _check_sigma(x, sigma, "NoiseConditionalEBM")
        # ConvEBM maps its whole input v to 2v - 1, the plane included.
        return self.net(torch.cat([x, sigma_plane(x, sigma)], 1)) / sigma.to(x.dtype)


class UNetEnergy(_NoiseConditional):
    """Energy of a denoiser ("unet-ebm-nc", Salimans & Ho 2021): a small U-Net
    D (28 -> 14 -> 7 -> 14 -> 28, skips, SiLU) reads [2x-1, 2*plane-1] and
    estimates the clean image; E(x, sigma) = ||x - D(x, sigma)||^2 / (2 sigma^2)."""

    def __init__(self, channels: int = 1, width: int = 32, sigma_min: float = 0.01):
        super().__init__(channels, width, sigma_min)
        w, c = width, channels
        self.in1 = nn.Sequential(_conv(c + 1, w, 3, 1, 1), nn.SiLU(), _conv(w, w, 3, 1, 1), nn.SiLU())
        self.down1 = nn.Sequential(_conv(w, 2 * w, 4, 2, 1), nn.SiLU(), _conv(2 * w, 2 * w, 3, 1, 1), nn.SiLU())
        self.down2 = nn.Sequential(_conv(2 * w, 2 * w, 4, 2, 1), nn.SiLU(), _conv(2 * w, 2 * w, 3, 1, 1), nn.SiLU())
        self.up2 = nn.ConvTranspose2d(2 * w, 2 * w, 4, stride=2, padding=1)
        self.mid2 = nn.Sequential(nn.SiLU(), _conv(4 * w, 2 * w, 3, 1, 1), nn.SiLU())
        self.up1 = nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1)
        self.mid1 = nn.Sequential(nn.SiLU(), _conv(2 * w, w, 3, 1, 1), nn.SiLU())
        self.out = _conv(w, c, 3, 1, 1)

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.channels, "UNetEnergy")
        _check_sigma(x, sigma, "UNetEnergy")
        h1 = self.in1(torch.cat([x * 2 - 1, sigma_plane(x, sigma) * 2 - 1], 1))  # [B,w,28,28]
        h2 = self.down1(h1)                                                       # [B,2w,14,14]
        h3 = self.down2(h2)                                                       # [B,2w,7,7]
        u2 = self.mid2(torch.cat([self.up2(h3), h2], 1))                          # [B,2w,14,14]
        u1 = self.mid1(torch.cat([self.up1(u2), h1], 1))                          # [B,w,28,28]
        return (self.out(u1) + 1) / 2                                             # [B,C,28,28]

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The denoiser's clean-image estimate D(x, sigma) [B,C,28,28]."""
        return self._denoise(x, _levels(x, sigma))

    def _energy(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = sigma.to(x.dtype).pow(2)
        return (x - self._denoise(x, sigma)).pow(2).flatten(1).sum(1) / (2 * s2)


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


ARCHITECTURES = ("conv-ebm", "conv-ebm-nc", "unet-ebm-nc", "conv-classifier")


def build(arch: dict) -> Energy:
    """An untrained model from a card's "arch", e.g. {"type": "conv-ebm",
    "width": 32}, {"type": "conv-ebm-nc", "sigma_min": 0.01} or
    {"type": "conv-classifier", "num_classes": 10}; the same defaults as
    NativeModel (channels 1, width 32, sigma_min 0.01, 10 classes, silu, no dropout)."""
    kind = arch.get("type", "")
    ch, width = int(arch.get("channels", 1)), int(arch.get("width", 32))
    if kind == "conv-ebm":
        return ConvEBM(ch, width)
    if kind in ("conv-ebm-nc", "unet-ebm-nc"):
        sigma_min = arch.get("sigma_min", 0.01)
        if isinstance(sigma_min, bool) or not isinstance(sigma_min, numbers.Real):
            raise ValueError(f'architecture "sigma_min" must be a number, got {sigma_min!r}')
        cls = NoiseConditionalEBM if kind == "conv-ebm-nc" else UNetEnergy
        return cls(ch, width, float(sigma_min))
    if kind == "conv-classifier":
        return ConvClassifier(ch, width, int(arch.get("num_classes", 10)),
                              arch.get("activation", "silu"), float(arch.get("dropout", 0.0)))
    raise ValueError(f"unknown architecture type '{kind}' (known: {', '.join(ARCHITECTURES)})")
