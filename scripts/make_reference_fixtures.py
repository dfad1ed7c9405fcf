#!/usr/bin/python3
"""Reference fixtures for tests/test_restore.cpp (ReferenceEquivalence).

Run with Debian's Python, which has torch 1.13 (the same LibTorch the C++
library links) and numpy:

    /usr/bin/python3 scripts/make_reference_fixtures.py [--out tests/fixtures]

It writes, all small and deterministic:
  ref_energy.pt                  TorchScript energy: forward(x[B,1,28,28]) -> [B]
  ref_noisy.npy                  float32 [4,1,28,28] in [0,1], the noisy input
  ref_denoised_fixed.npy         denoise_with_ebm(net, noisy)        (100 steps, 0.01, lambda 10)
  ref_denoised_progressive.npy   progressive_denoising(net, noisy)   (50 steps at 1, .5, .25, .1)

The two functions below are the reference semantics from the specification
(reference/ebm-applications.md), copied verbatim. ebm::denoise must match them
to 1e-5 (max abs).
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- reference (verbatim semantics)
def denoise_with_ebm(energy_net, noisy_image, n_steps=100, step_size=0.01, data_weight=10.0):
    x = noisy_image.clone().requires_grad_(True)
    for _ in range(n_steps):
        energy = energy_net(x)
        energy_grad = torch.autograd.grad(energy.sum(), x)[0]
        data_grad = 2 * data_weight * (x - noisy_image)
        total_grad = energy_grad + data_grad
        x = x.detach() - step_size * total_grad
        x = x.clamp(0, 1)
        x.requires_grad_(True)
    return x.detach()


def progressive_denoising(energy_net, noisy_image, noise_levels=[1.0, 0.5, 0.25, 0.1]):
    x = noisy_image.clone()
    for data_weight in noise_levels:
        x = denoise_with_ebm(energy_net, x, n_steps=50, data_weight=data_weight)
    return x


# ---------------------------------------------------------------- the fixture energy
class TinyEnergy(nn.Module):
    """A small smooth conv energy: 28x28 -> 14x14 -> 7x7, SiLU, linear head -> [B].

    The weights come from torch.manual_seed and are then scaled so the
    per-pixel energy gradient is O(1): large enough that denoising moves the
    image materially (the C++ test asserts max |out - noisy| > 0.01), small
    enough that the chain stays smooth and well inside float32 precision.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        h = F.silu(self.conv1(x * 2.0 - 1.0))
        h = F.silu(self.conv2(h))          # [B,8,7,7]
        h = h.sum(dim=(2, 3))              # [B,8]
        # A quadratic pull towards mid-grey keeps the energy bounded below.
        prior = 0.5 * ((x - 0.5) ** 2).flatten(1).sum(1)
        return self.head(h).squeeze(1) + prior


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    torch.set_num_threads(1)
    torch.manual_seed(1234)
    net = TinyEnergy()
    with torch.no_grad():
        net.head.weight.mul_(15.0)
    net.eval()
    scripted = torch.jit.script(net)
    ts_path = os.path.join(args.out, "ref_energy.pt")
    torch.jit.save(scripted, ts_path)
    # Run the reference through the saved file, exactly what the C++ side loads.
    energy_net = torch.jit.load(ts_path)
    energy_net.eval()

    # Noisy input: smooth blobs plus Gaussian noise, clipped to [0,1].
    g = torch.Generator().manual_seed(99)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    clean = []
    for i in range(4):
        cy, cx = 8.0 + 4 * i, 20.0 - 3 * i
        clean.append(torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (3.0 + i) ** 2)))
    clean = torch.stack(clean).unsqueeze(1)
    noisy = (clean + 0.2 * torch.randn(clean.shape, generator=g)).clamp(0, 1).float().contiguous()

    fixed = denoise_with_ebm(energy_net, noisy)
    prog = progressive_denoising(energy_net, noisy)

    np.save(os.path.join(args.out, "ref_noisy.npy"), noisy.numpy())
    np.save(os.path.join(args.out, "ref_denoised_fixed.npy"), fixed.numpy())
    np.save(os.path.join(args.out, "ref_denoised_progressive.npy"), prog.numpy())

    x = noisy.clone().requires_grad_(True)
    grad = torch.autograd.grad(energy_net(x).sum(), x)[0]
    print(f"energies {energy_net(noisy).detach().numpy()}")
    print(f"|grad E| mean {grad.abs().mean():.3f} max {grad.abs().max():.3f}")
    for name, out in (("fixed", fixed), ("progressive", prog)):
        d = (out - noisy).abs()
        sat = ((out == 0) | (out == 1)).float().mean()
        print(f"{name}: max|out-noisy| {d.max():.4f} mean {d.mean():.4f}; saturated fraction {sat:.3f}")


if __name__ == "__main__":
    main()
