"""The fingerprint of a set of images: a cache-key part for anything computed from them."""

from __future__ import annotations

import hashlib

import torch


def pool_fingerprint(images: torch.Tensor) -> str:
    """sha256 (64 hex digits) of uint8 ``images``' shape and pixels: ``sha256(str(tuple(shape)) +
    the C-order bytes)``, e.g. for a NumPy array ``x`` of the same (N, C, H, W) layout,
    ``hashlib.sha256(str(x.shape).encode() + np.ascontiguousarray(x).tobytes()).hexdigest()``."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    images = images.contiguous()
    for start in range(0, images.shape[0], 256):  # row blocks: a memory-mapped pool is never copied whole
        h.update(images[start:start + 256].numpy())
    return h.hexdigest()
