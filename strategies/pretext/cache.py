"""On-disk cache of per-image pretext losses, shared by every run under one output root.

An entry is ``<root>/<key>.npz`` (pool losses, test losses, a JSON meta string) plus a readable
``<key>.json``; the key hashes everything that determines the losses. Entries are written
atomically. Runs that need the same entry at the same time (the seeds of a sweep, started together)
serialise on ``<key>.lock``: the first trains, the others wait and read its entry. What a run records
about the entry it used, and what reports charge it, follow :mod:`albench.cached`.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from albench.cached import entry_lock
from albench.records import atomic_write_bytes, atomic_write_text

CACHE_VERSION = 1  # bump when the loss computation changes, so old entries stop matching


def tensor_fingerprint(x: torch.Tensor) -> str:
    """sha256 of a CPU tensor's shape, dtype and bytes."""
    h = hashlib.sha256(f"{tuple(x.shape)}{x.dtype}".encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(fields: dict) -> str:
    """A 32-hex-digit key for a JSON-able mapping (order-independent)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:32]


class PretextCache:
    """Reads and writes loss entries under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def load(self, key: str) -> dict | None:
        """{'pool_loss', 'test_loss' (or None), 'meta'} of entry ``key``, or None when absent or unreadable."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                return {"pool_loss": z["pool_loss"].astype(np.float32),
                        "test_loss": z["test_loss"].astype(np.float32) if "test_loss" in z.files else None,
                        "meta": meta}
        except (OSError, ValueError, KeyError):
            return None  # a foreign or damaged file: recompute and overwrite it

    def store(self, key: str, pool_loss: np.ndarray, test_loss: np.ndarray | None, meta: dict) -> None:
        """Write entry ``key`` atomically (readers never see a partial file)."""
        arrays = {"pool_loss": np.asarray(pool_loss, dtype=np.float32), "meta": np.array(json.dumps(meta))}
        if test_loss is not None:
            arrays["test_loss"] = np.asarray(test_loss, dtype=np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.path(key), buf.getvalue())
        atomic_write_text(self.root / f"{key}.json", json.dumps(meta, indent=1, default=str) + "\n")

    def lock(self, key: str, *, log: Callable[[str], None] = print, timeout_s: float | None = None):
        """Hold ``<key>.lock`` while inside (see :func:`albench.cached.entry_lock`); yields True when held,
        False when ``timeout_s`` ran out waiting for another holder."""
        return entry_lock(self.root, key, log=log, timeout_s=timeout_s, what="pretext cache")
