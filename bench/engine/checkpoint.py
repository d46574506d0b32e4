"""Checkpoint payloads that load with ``torch.load(weights_only=True)``.

Strategies hand over plain data that may hold NumPy arrays; those travel as tensors tagged so they
come back as arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_ND = "__ndarray__"


def encode(obj: Any) -> Any:
    """Replace NumPy arrays and scalars with weights_only-safe values, recursively."""
    if isinstance(obj, np.ndarray):
        return {_ND: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    return obj


def decode(obj: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(obj, dict):
        if set(obj) == {_ND}:
            return obj[_ND].numpy()
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj
