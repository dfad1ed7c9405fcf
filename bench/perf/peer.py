#!/usr/bin/env python3
"""The PyTorch-Python peer of bench_perf (bench/perf/run.sh): the same
workloads, on the same TorchScript model, inputs, batch sizes, step counts and
threads, written as the reference document (ebm-applications.md) writes its loops.
The 64x64 rows run the same layers scaled to that size (ConvEBM below), untrained,
as bench_perf's BM_Langevin64 does.

Usage: peer.py MODEL.pt THREADS OUT.json [NAME:BATCH]
With NAME:BATCH (e.g. langevin:64, score:256, pcd20:64) only that workload runs,
so that run.sh can time each workload beside ebmkit's within seconds.
Prints nothing but progress on stderr; OUT.json holds one record per workload:
{"name", "batch", "items", "seconds", "items_per_second"} (items = image-steps,
images scored, or images trained on)."""
import json
import sys
import time

import torch

STEP, NOISE = 0.01, 0.005  # the reference's denoise/inpaint/sample constants


def langevin(model, x, steps):
    # sample() of the reference's composition class: the loop users copy.
    for _ in range(steps):
        x.requires_grad_(True)
        energy = model(x)
        grad = torch.autograd.grad(energy.sum(), x)[0]
        noise = torch.randn_like(x) * NOISE
        x = x.detach() - STEP * grad + noise
        x = x.clamp(0, 1)
    return x


class ConvEBM(torch.nn.Module):
    """ebmkit's conv-ebm (src/core/models.cpp) with image_size = size: S -> S/2
    -> S/4 -> ceil(S/8), SiLU, a linear layer, then the scalar head."""

    def __init__(self, size: int, width: int = 32):
        super().__init__()
        nn, w, s = torch.nn, width, (size // 4 + 1) // 2
        self.body = nn.Sequential(nn.Conv2d(1, w, 3, 1, 1), nn.SiLU(), nn.Conv2d(w, 2 * w, 4, 2, 1), nn.SiLU(),
                                  nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.SiLU(), nn.Conv2d(4 * w, 4 * w, 3, 2, 1),
                                  nn.SiLU(), nn.Flatten(), nn.Linear(s * s * 4 * w, 4 * w), nn.SiLU())
        self.head = nn.Linear(4 * w, 1)

    def forward(self, x):
        return self.head(self.body(x * 2 - 1)).squeeze(1)


def score(model, x):
    with torch.no_grad():
        return model(x)


def pcd_step(model, opt, buffer, data, sgld_steps, gen_idx):
    # One persistent-CD step: chains from the buffer, SGLD, the CD loss, Adam.
    idx = torch.randint(buffer.size(0), (data.size(0),), generator=gen_idx)
    neg = langevin(model, buffer[idx], sgld_steps).detach()
    buffer[idx] = neg
    e_pos, e_neg = model(data), model(neg)
    loss = e_pos.mean() - e_neg.mean() + 0.1 * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    opt.zero_grad()
    loss.backward()
    opt.step()


def timed(fn, min_seconds=2.0, warmup=3):
    # TorchScript's profiling executor optimises a graph on its second call;
    # three calls keep that (and oneDNN's first-call setup) out of the timing.
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        t = time.perf_counter() - t0
        if t >= min_seconds:
            return n, t


def main():
    path, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    only = sys.argv[4] if len(sys.argv) > 4 else None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch.jit.load(path).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    rec = []

    def add(name, batch, items_per_call, fn):
        if only and only != f"{name}:{batch}":
            return
        n, t = timed(fn)
        rec.append({"name": name, "batch": batch, "items": n * items_per_call, "seconds": t,
                    "items_per_second": n * items_per_call / t})
        print(f"peer {name} b{batch}: {rec[-1]['items_per_second']:.1f}/s", file=sys.stderr)

    steps = 10
    for b in (1, 4, 8, 16, 64, 256):
        x = torch.rand(b, 1, 28, 28)
        add("langevin", b, b * steps, lambda x=x: langevin(model, x, steps))
    # 64x64 images through the same layers scaled to that size (bench_perf's
    # BM_Langevin64): the architecture rebuilt here, untrained, scripted.
    big = torch.jit.script(ConvEBM(64)).eval()
    for p in big.parameters():
        p.requires_grad_(False)
    for b in (1, 16, 64):
        x = torch.rand(b, 1, 64, 64)
        add("langevin64", b, b * steps, lambda x=x: langevin(big, x, steps))
    x = torch.rand(256, 1, 28, 28)
    add("score", 256, 256, lambda: score(model, x))
    # Training: parameters trainable again, Adam as ebm train uses it.
    train_model = torch.jit.load(path).train()
    for p in train_model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(train_model.parameters(), lr=1e-4, betas=(0.0, 0.999))
    buffer = torch.rand(1000, 1, 28, 28)
    data = torch.rand(64, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    add("pcd20", 64, 64, lambda: pcd_step(train_model, opt, buffer, data, 20, g))
    json.dump({"threads": threads, "torch": torch.__version__, "runs": rec}, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
