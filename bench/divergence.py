"""Divergence: a non-finite training loss, logits or strategy score fails the run, naming the
phase, the cycle and the value, instead of being recorded (or ranked) as if it were a number.

The cycle loop says which cycle it is in (:func:`at_cycle`); the checks in the trainer, in the
inference passes and in the strategies' ranking helpers raise :class:`Diverged` through
:func:`check_finite`, which adds the cycle.
"""

from __future__ import annotations

import contextvars
import math

import numpy as np
import torch

from albench.errors import AlbenchError

_CYCLE: contextvars.ContextVar[int | None] = contextvars.ContextVar("albench_cycle", default=None)
FIX = "lower train.optimizer.lr (or check the data and the model); nothing of this cycle was recorded"


class Diverged(AlbenchError):
    """A loss, an output or a score is NaN or infinite. ``phase``, ``cycle`` (None before cycle 0),
    ``what`` and ``value`` (the first non-finite value) say where."""

    def __init__(self, phase: str, what: str, value: float, detail: str = "", cycle: int | None = None) -> None:
        self.phase, self.what, self.value, self.cycle = phase, what, value, cycle
        when = f"cycle {cycle}" if cycle is not None else "before cycle 0"
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{what} is {value} in the {phase} phase of {when}{extra}; the run diverged: {FIX}")


def at_cycle(cycle: int | None) -> None:
    """Tell the checks which cycle the run is in (the cycle loop calls it once per cycle)."""
    _CYCLE.set(cycle)


def current_cycle() -> int | None:
    return _CYCLE.get()


def first_bad(values: torch.Tensor | np.ndarray | float) -> float | None:
    """The first NaN or infinite value of ``values``, or None when all are finite."""
    if isinstance(values, torch.Tensor):
        if values.is_floating_point() or values.is_complex():
            bad = ~torch.isfinite(values.detach())
            if bool(bad.any()):
                return float(values.detach().reshape(-1)[bad.reshape(-1)][0])
        return None
    if isinstance(values, (float, int)):
        return None if math.isfinite(values) else float(values)
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.floating):
        return None
    bad = ~np.isfinite(arr)
    return float(arr.reshape(-1)[bad.reshape(-1)][0]) if bad.any() else None


def check_finite(values, *, phase: str, what: str, detail: str = "") -> None:
    """Raise :class:`Diverged` when ``values`` (a number, array or tensor) holds NaN or infinity."""
    bad = first_bad(values)
    if bad is not None:
        if not isinstance(values, (float, int)):
            n = int((~np.isfinite(np.asarray(values.detach().float().cpu() if isinstance(values, torch.Tensor)
                                              else values, dtype=np.float64))).sum())
            size = values.numel() if isinstance(values, torch.Tensor) else np.asarray(values).size
            detail = f"{n} of {size} values" + (f"; {detail}" if detail else "")
        raise Diverged(phase, what, bad, detail, current_cycle())
