"""Where data lives and how weights are copied off the device."""

from __future__ import annotations

import torch
from torch import nn

# keep a dataset (or a strategy's pool) on the GPU when its uint8 pixels fit in this many bytes;
# above it batches are indexed on the CPU and copied over one at a time
DEVICE_DATA_LIMIT = 4 << 30


def data_device(device: torch.device, images: torch.Tensor) -> torch.device:
    """The device to hold uint8 ``images`` on while training on ``device``: ``device`` itself for
    CUDA when they are smaller than :data:`DEVICE_DATA_LIMIT` bytes, else the CPU. Where the data
    lives changes speed and memory only, never the numbers."""
    if device.type == "cuda" and images.numel() * images.element_size() < DEVICE_DATA_LIMIT:
        return device
    return torch.device("cpu")


def cpu_state(module: nn.Module | None) -> dict[str, torch.Tensor] | None:
    """A detached CPU copy of ``module``'s state dict (None for None): a snapshot later steps on the
    device cannot change, loadable with ``weights_only=True``."""
    if module is None:
        return None
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA only), so wall-clock times include it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
