"""Reading ebmkit's tensor files in Python: IDX (optionally gzipped) and NPY."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import torch

# IDX type codes -> big-endian numpy dtypes.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """An IDX file (.idx, ubyte, or either gzipped) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"'{path}': not an IDX file (bad magic)")
    code, rank = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"'{path}': unknown IDX element type 0x{code:02x}")
    shape = struct.unpack(f">{rank}I", raw[4:4 + 4 * rank])
    dtype = np.dtype(_IDX_TYPES[code])
    count = int(np.prod(shape)) if rank else 1
    offset = 4 + 4 * rank
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"'{path}': {len(raw) - offset} data bytes for shape {shape}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def read_images(path: str) -> torch.Tensor:
    """Images as float32 [N,C,H,W] in [0,1] from IDX or NPY: uint8 is divided
    by 255, [N,H,W] gets a channel axis."""
    a = np.load(path) if path.endswith(".npy") else read_idx(path)
    t = torch.from_numpy(np.ascontiguousarray(a))
    t = t.to(torch.float32).div_(255.0) if t.dtype == torch.uint8 else t.to(torch.float32)
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4:
        raise ValueError(f"'{path}': images must be [N,H,W] or [N,C,H,W], got {tuple(t.shape)}")
    return t
