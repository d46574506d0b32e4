"""The state of one run between cycles, and its checkpoint layout (one place writes and reads it).

A :class:`LoopState` is everything the cycle loop needs to continue a run exactly where it stopped:
the labeled set, the records so far, the previous cycle's weights, the strategy's own state and,
when it stopped mid-training, the cycle in progress. :meth:`LoopState.to_checkpoint` gives the
payload ``checkpoint.pt`` holds (loadable with ``torch.load(weights_only=True)``) and
:meth:`LoopState.from_checkpoint` reads it back; a payload of another layout version is refused,
never silently restarted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from albench.engine import checkpoint as codec
from albench.errors import RecordError

# Version 1: the layout below, unchanged since checkpoints were introduced. Bump it (and say why in
# the commit) whenever a key is added, removed or changes meaning; old versions are then refused.
CHECKPOINT_VERSION = 1


class CheckpointVersionError(RecordError):
    """A checkpoint was written with a layout this albench does not read."""

    def __init__(self, source: str | Path, found: object) -> None:
        self.source = str(source)
        self.found = found
        super().__init__(
            f"{source}: checkpoint version {found!r}, but this albench reads version {CHECKPOINT_VERSION} only; "
            f"fix: delete {source} to restart that run from its first cycle (its finished cycles are rerun), "
            "or resume it with the albench version that wrote it")


def _empty_indices() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class PartialCycle:
    """A cycle stopped mid-training: its query is made, its training is under way."""

    cycle: int
    new: np.ndarray  # int64 pool indices queried at this cycle
    labeled: np.ndarray  # int64 pool indices labeled, ``new`` included
    seconds: dict[str, float]  # the cycle's phase times so far (seconds)
    trainer: dict  # Trainer.state() after the last finished epoch

    def to_checkpoint(self) -> dict:
        return {"cycle": int(self.cycle), "new": torch.from_numpy(self.new.astype(np.int64)),
                "labeled": torch.from_numpy(self.labeled.astype(np.int64)), "seconds": dict(self.seconds),
                "trainer": self.trainer}

    @classmethod
    def from_checkpoint(cls, p: dict) -> PartialCycle:
        return cls(cycle=int(p["cycle"]), new=p["new"].numpy().astype(np.int64),
                   labeled=p["labeled"].numpy().astype(np.int64), seconds=dict(p["seconds"]), trainer=p["trainer"])


@dataclass
class LoopState:
    """Where a run stands at a cycle boundary (or, with ``partial``, inside a cycle)."""

    next_cycle: int = 0  # the first cycle not yet recorded
    labeled: np.ndarray = field(default_factory=_empty_indices)  # int64 pool indices, in acquisition order
    rows: list[dict] = field(default_factory=list)  # one cycles.csv row per finished cycle
    queries: dict[int, list[int]] = field(default_factory=dict)  # cycle -> train-set indices queried
    test_losses: dict[int, np.ndarray] = field(default_factory=dict)  # cycle -> float32 per-test-item loss (nats)
    extra_metrics: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # cycle -> name -> float64
    prev: dict | None = None  # the last finished cycle's weights: {"model", "aux"} CPU state dicts
    strategy: dict = field(default_factory=dict)  # Strategy.state_dict() (plain data, NumPy arrays allowed)
    resumes: int = 0  # how often this run was resumed
    partial: PartialCycle | None = None  # the cycle in progress when the checkpoint was written

    def to_checkpoint(self) -> dict:
        """The ``checkpoint.pt`` payload: tensors, numbers, strings, lists and dicts only."""
        return {
            "version": CHECKPOINT_VERSION, "next_cycle": int(self.next_cycle),
            "labeled": torch.from_numpy(self.labeled.astype(np.int64)), "rows": list(self.rows),
            "queries": {str(c): torch.tensor(q, dtype=torch.long) for c, q in self.queries.items()},
            "test_losses": {str(c): torch.from_numpy(v) for c, v in self.test_losses.items()},
            "extra_metrics": {str(c): {k: torch.from_numpy(v) for k, v in m.items()}
                              for c, m in self.extra_metrics.items()},
            "prev": self.prev, "strategy": codec.encode(self.strategy),
            "partial": None if self.partial is None else self.partial.to_checkpoint(),
            "resumes": int(self.resumes),
        }

    @classmethod
    def from_checkpoint(cls, payload: dict, *, source: str | Path = "checkpoint.pt") -> LoopState:
        """The state a :meth:`to_checkpoint` payload holds. CheckpointVersionError (naming ``source``,
        the version found and the one expected) for a payload of any other layout version."""
        found = payload.get("version") if isinstance(payload, dict) else None
        if found != CHECKPOINT_VERSION:
            raise CheckpointVersionError(source, found)
        partial = payload.get("partial")
        return cls(
            next_cycle=int(payload["next_cycle"]),
            labeled=payload["labeled"].numpy().astype(np.int64),
            rows=list(payload["rows"]),
            queries={int(c): q.tolist() for c, q in payload["queries"].items()},
            test_losses={int(c): v.numpy() for c, v in payload["test_losses"].items()},
            extra_metrics={int(c): {k: v.numpy() for k, v in m.items()}
                           for c, m in payload.get("extra_metrics", {}).items()},
            prev=payload["prev"],
            strategy=codec.decode(payload["strategy"]),
            resumes=int(payload.get("resumes", 0)),
            partial=None if partial is None else PartialCycle.from_checkpoint(partial),
        )
