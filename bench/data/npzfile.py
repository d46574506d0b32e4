"""Reading image arrays from ``.npz`` files (the shared CIFAR-10 copy and bring-your-own data)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in an npz, read from the headers without loading the data."""
    shapes = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, _ = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, _, _ = np.lib.format.read_array_header_2_0(fh)
            shapes[info.filename[:-4]] = shape
    return shapes


def to_nchw_uint8(x: np.ndarray, what: str) -> torch.Tensor:
    """uint8 (N, C, H, W) tensor from an (N, H, W), (N, H, W, C) or (N, C, H, W) uint8 array."""
    if x.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 images in 0..255, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = x.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"{what} must have 3 or 4 dimensions, got shape {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x))


def load_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an npz in the documented layout (x_train, y_train, x_test, y_test, [classes])."""
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in REQUIRED if k not in data.files]
        if missing:
            raise ValueError(f"{path} lacks the arrays {missing}; the layout needs {list(REQUIRED)} "
                             "(and optionally 'classes')")
        return {k: data[k] for k in data.files}
