"""Tasks say how to score a model: the per-item loss, the per-item confidence and the metric."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class AccuracyMeter:
    def __init__(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        self.correct += int((logits.argmax(dim=1) == targets).sum())
        self.total += int(targets.numel())

    def compute(self) -> dict[str, float]:
        """{'accuracy': fraction correct in [0, 1]}."""
        return {"accuracy": self.correct / max(1, self.total)}


class ClassificationTask:
    name = "classification"
    metric = "accuracy"

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        self.num_classes = num_classes

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B,) cross-entropy per item, in nats."""
        return F.cross_entropy(logits.float(), targets, reduction="none")

    def confidence(self, probs: torch.Tensor) -> torch.Tensor:
        """(B,) top-1 posterior per item."""
        return probs.max(dim=1).values

    def meter(self) -> AccuracyMeter:
        return AccuracyMeter()


_TASKS = {"classification": ClassificationTask}


def register_task(name: str, cls) -> None:
    _TASKS[name] = cls


def make_task(name: str, num_classes: int, ignore_index: int | None = None):
    """The task object for a dataset's ``task`` name."""
    return _TASKS[name](num_classes, ignore_index)
