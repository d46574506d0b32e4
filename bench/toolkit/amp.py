"""Mixed precision: one autocast context for training, inference and strategy-owned networks."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def autocast(device: torch.device, amp: bool) -> AbstractContextManager:
    """A bf16 autocast context on ``device``'s type when ``amp`` is true, else a no-op context."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else nullcontext()
