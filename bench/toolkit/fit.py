"""An epoch loop that keeps the weights of its best-scoring epoch (model selection).

The engine's :class:`~albench.engine.train.Trainer` (best on validation, or flagged, on test) and the
pretext training (best pretext score on the pool) select epochs the same way: score after every
epoch, keep a CPU copy of the weights when the score beats every earlier one (ties keep the
earlier epoch), and load the kept weights back at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from albench.toolkit.device import cpu_state


@dataclass
class FitResult:
    epochs: int  # epochs trained
    selected_epoch: int | None  # 1-based epoch whose weights were kept (None: the final ones)
    selected_score: float | None


class BestEpoch:
    """The best epoch so far of the named ``modules`` (a None module is kept as None).

    ``best`` is plain data, ``{"score", "epoch", <module name>: CPU state dict, **extras}``, so it
    can travel in a checkpoint and be handed back to continue a fit.
    """

    def __init__(self, modules: dict[str, nn.Module | None], best: dict | None = None) -> None:
        self.modules = modules
        self.best = best

    def offer(self, score: float, epoch: int, **extras: Any) -> bool:
        """Keep the modules' weights (and ``extras``) when ``score`` beats the best so far; returns
        whether it did. ``epoch`` is 1-based."""
        if self.best is not None and not score > self.best["score"]:
            return False
        self.best = {"score": score, "epoch": epoch, **{k: cpu_state(m) for k, m in self.modules.items()}, **extras}
        return True

    def restore(self) -> bool:
        """Load the kept weights into the modules; False (nothing loaded) when no epoch was offered."""
        if self.best is None:
            return False
        for name, module in self.modules.items():
            if module is not None and self.best.get(name) is not None:
                module.load_state_dict(self.best[name])
        return True


Score = Callable[[], "float | tuple[float, dict]"]


def fit_with_selection(train_epoch: Callable[[int], Any], *, epochs: int, start: int = 0,
                       score: Score | None = None, keeper: BestEpoch | None = None,
                       on_epoch: Callable[[int], Any] | None = None) -> FitResult:
    """Run ``train_epoch(e)`` for the 0-based epochs ``start .. epochs - 1``.

    With ``score`` (higher is better; it may also return ``(score, extras)``, extras kept with the
    best epoch's weights) and ``keeper``, each epoch is offered to ``keeper`` and the best one's
    weights are restored at the end. ``on_epoch(e)`` runs after each epoch with the number of
    epochs done (checkpointing, logging). Returns what was trained and which epoch was kept.
    """
    if score is not None and keeper is None:
        raise ValueError("fit_with_selection: a score needs a BestEpoch keeper to hold the best weights")
    for epoch in range(start, epochs):
        train_epoch(epoch)
        if score is not None:
            value = score()
            value, extras = value if isinstance(value, tuple) else (value, {})
            keeper.offer(float(value), epoch + 1, **extras)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    done = max(start, epochs)
    if score is not None and keeper.restore():
        return FitResult(done, int(keeper.best["epoch"]), float(keeper.best["score"]))
    return FitResult(done, None, None)
