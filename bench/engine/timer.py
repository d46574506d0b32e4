"""Wall-clock per phase, synchronising CUDA so GPU work is charged to the phase that queued it."""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

from albench.records import PHASES  # the phase list is part of the records schema (run.json, cycles.csv)

__all__ = ["PHASES", "PhaseTimer"]


class PhaseTimer:
    """Accumulates seconds per phase name."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device
        self.seconds: dict[str, float] = {p: 0.0 for p in PHASES}
        self._open: list[tuple[str, float]] = []  # phases entered and not yet left: (name, start)

    def so_far(self) -> dict[str, float]:
        """Seconds per phase including the time spent so far in the phases still open, e.g. for a
        checkpoint written mid-training (``seconds`` only counts a phase once it ends)."""
        now = time.perf_counter()
        out = dict(self.seconds)
        for name, start in self._open:
            out[name] = out.get(name, 0.0) + now - start
        return out

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def phase(self, name: str):
        self._sync()
        start = time.perf_counter()
        self._open.append((name, start))
        try:
            yield
        finally:
            self._sync()
            self._open.remove((name, start))
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
