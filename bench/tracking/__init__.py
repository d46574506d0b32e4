"""Optional experiment trackers (TensorBoard, MLflow) fed by the cycle loop.

The engine calls one :class:`Tracker` at fixed points of a run: when it starts or resumes
(:meth:`Tracker.open`), after every training epoch (:meth:`Tracker.epoch`), after every recorded
cycle (:meth:`Tracker.cycle`) and when the run completes or fails. Trackers only mirror what the
records hold; the records stay the truth.

Steps. Cycle scalars (the task metric, ``n_labeled``, the test loss and each phase's seconds) are
logged at step = the cycle index (0 = the initial labeled set); the train loss at step = the global
epoch: the epochs trained in earlier cycles + the 0-based epoch (``cycle * train.epochs + epoch``
unless ``train.min_steps`` lengthened a cycle). Each (tag, step) is logged at most once: on a
resume a tracker reads back the steps it already holds, logs the finished cycles it is missing (a
crash between the checkpoint and the tracker) and skips the epochs a mid-cycle resume trains again.

Backends register in :data:`TRACKERS` (a name in ``tracking:`` -> its class); each is imported only
when asked for, so neither library is needed unless a config turns it on.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Backend:
    """A tracker backend: where its class lives and the package (and extra) it needs."""

    module: str  # albench.tracking.<module>, imported only when the backend is used
    cls: str
    package: str  # the importable package it needs
    extra: str  # the albench extra that installs it


TRACKERS: dict[str, Backend] = {
    "tensorboard": Backend("tensorboard_tracker", "TensorBoardTracker", "tensorboard", "tensorboard"),
    "mlflow": Backend("mlflow_tracker", "MLflowTracker", "mlflow", "mlflow"),
}


def missing_package(name: str) -> str | None:
    """The pip command that installs backend ``name``'s package, or None when it is importable."""
    b = TRACKERS[name]
    if importlib.util.find_spec(b.package) is not None:
        return None
    return f"pip install 'albench[{b.extra}]'"


def cycle_scalars(row: dict) -> dict[str, float]:
    """The scalars of one cycles.csv row, by tag: ``cycle/<metric>``, ``cycle/n_labeled``,
    ``cycle/test_loss`` (nats) and ``seconds/<phase>`` (wall seconds, ``seconds/total`` included)."""
    out = {f"cycle/{row['metric']}": float(row["value"]), "cycle/n_labeled": float(row["n_labeled"])}
    if row.get("test_loss") is not None:
        out["cycle/test_loss"] = float(row["test_loss"])
    for key, value in row.items():
        if key.startswith("seconds_"):
            out[f"seconds/{key[len('seconds_'):]}"] = float(value)
    return out


class Tracker:
    """One run's tracker. The base class tracks nothing (tracking off)."""

    def open(self, *, config: dict, identity: dict, rows: list[dict], resumed: bool) -> dict:
        """Start (``resumed`` False) or take up the run; log every finished cycle of ``rows`` not yet
        logged. Returns plain data to record in run.json under ``tracking`` (may be empty)."""
        return {}

    def epoch(self, *, cycle: int, epoch: int, step: int, loss: float) -> None:
        """The mean train loss (nats) of 0-based ``epoch`` of ``cycle``; ``step`` is its global epoch."""

    def cycle(self, row: dict) -> None:
        """A finished cycle's cycles.csv row."""

    def finish(self, run_dir: Path) -> None:
        """The run completed: attach its records and close."""

    def fail(self, error: str) -> None:
        """The run failed (it may be resumed later): close, keeping what was logged."""


class MultiTracker(Tracker):
    """Several trackers as one, called in order."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def open(self, **kw: Any) -> dict:
        out: dict = {}
        for t in self.trackers:
            out.update(t.open(**kw))
        return out

    def epoch(self, **kw: Any) -> None:
        for t in self.trackers:
            t.epoch(**kw)

    def cycle(self, row: dict) -> None:
        for t in self.trackers:
            t.cycle(row)

    def finish(self, run_dir: Path) -> None:
        for t in self.trackers:
            t.finish(run_dir)

    def fail(self, error: str) -> None:
        for t in self.trackers:
            t.fail(error)


def make_tracker(tracking, *, run_dir: Path, sweep: str, run_id: str) -> Tracker:
    """The tracker the ``tracking`` config (a TrackingConfig) asks for; a do-nothing Tracker when off."""
    chosen = []
    for name, backend in TRACKERS.items():
        setting = getattr(tracking, name)
        if setting in (None, False):
            continue
        cls = getattr(importlib.import_module(f"albench.tracking.{backend.module}"), backend.cls)
        chosen.append(cls(setting, run_dir=Path(run_dir), sweep=sweep, run_id=run_id))
    if not chosen:
        return Tracker()
    return chosen[0] if len(chosen) == 1 else MultiTracker(chosen)
