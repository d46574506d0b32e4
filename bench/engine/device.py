"""Device choice and the CPU determinism settings."""

from __future__ import annotations

import os

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """CUDA when present and ``name`` is 'auto', else the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from albench.errors import ConfigError

        raise ConfigError("device", "asks for CUDA but no GPU is visible", "set device: auto or cpu", name)
    return dev


def configure_torch(device: torch.device, threads: int | None) -> int:
    """Fix thread count and determinism; returns the number of CPU threads in use.

    On CPU the same thread count gives bit-identical numbers run to run. On CUDA, cuDNN autotuning is
    allowed (fast, but not bit-reproducible); queried indices stay seeded.
    """
    if threads is None:
        threads = max(1, (os.cpu_count() or 1))
    torch.set_num_threads(int(threads))
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return int(threads)


def use_amp(device: torch.device, mode: str) -> bool:
    """Whether to autocast to bf16: 'auto' means on CUDA only."""
    if mode == "off":
        return False
    if mode == "bf16":
        return True
    return device.type == "cuda"
