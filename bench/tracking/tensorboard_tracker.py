"""TensorBoard event files, one folder per run: ``<run dir>/tensorboard`` (``tensorboard --logdir
<output>/<sweep>`` shows every run of a sweep). Needs ``pip install 'albench[tensorboard]'``."""

from __future__ import annotations

import shutil
from pathlib import Path

from albench.tracking import Tracker, cycle_scalars

FOLDER = "tensorboard"
TRAIN_LOSS = "train/loss"


def logged_steps(log_dir: Path) -> dict[str, set[int]]:
    """{tag: steps} of the scalars already in ``log_dir``'s event files (read with TensorBoard's reader)."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    if not log_dir.is_dir():
        return {}
    acc = EventAccumulator(str(log_dir), size_guidance={SCALARS: 0})  # 0: keep every point
    acc.Reload()
    return {tag: {e.step for e in acc.Scalars(tag)} for tag in acc.Tags()[SCALARS]}


class TensorBoardTracker(Tracker):
    def __init__(self, setting: bool, *, run_dir: Path, sweep: str, run_id: str) -> None:
        self.log_dir = run_dir / FOLDER
        self.writer = None
        self.seen: dict[str, set[int]] = {}

    def open(self, *, config: dict, identity: dict, rows: list[dict], resumed: bool) -> dict:
        from torch.utils.tensorboard import SummaryWriter

        if not resumed and self.log_dir.exists():
            # a fresh start rewrites the run's records from cycle 0, so events of an earlier attempt go too
            shutil.rmtree(self.log_dir)
        self.seen = logged_steps(self.log_dir) if resumed else {}
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        for row in rows:
            self.cycle(row)
        self.writer.flush()
        return {"tensorboard": FOLDER}

    def _add(self, tag: str, value: float, step: int) -> None:
        steps = self.seen.setdefault(tag, set())
        if step in steps:  # logged before a resume
            return
        self.writer.add_scalar(tag, value, global_step=step)
        steps.add(step)

    def epoch(self, *, cycle: int, epoch: int, step: int, loss: float) -> None:
        self._add(TRAIN_LOSS, loss, step)
        # on disk before the engine may checkpoint this epoch: a resume never trains it again
        self.writer.flush()

    def cycle(self, row: dict) -> None:
        for tag, value in cycle_scalars(row).items():
            self._add(tag, value, int(row["cycle"]))
        self.writer.flush()  # a cycle is the unit a dashboard shows: make it visible now

    def finish(self, run_dir: Path) -> None:
        self._close()

    def fail(self, error: str) -> None:
        self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
