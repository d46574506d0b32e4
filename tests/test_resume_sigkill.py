"""A local sweep killed with SIGKILL at several points, then rerun with the same command, resumes
and ends equal to an uninterrupted sweep; a run that completed is never rewritten.

One sweep of two runs (random, then margin; one worker, so they run in that order) is killed three
times: mid-training of run A's cycle 0, right after A's cycle-0 boundary, and mid-training of run
B's last cycle (A complete by then). The kill points are found by polling the checkpoint the engine
writes after every epoch (``train.checkpoint_every: 1``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from albench.records import read_artifact, read_cycles, read_status

REPO = Path(__file__).resolve().parent.parent
SAME = ("cycle", "n_labeled", "metric", "value", "test_loss", "epochs", "selected_epoch")
CONFIG = {
    "name": "kill",
    "dataset": {"name": "digits"},
    # batch 4 and width 16 make an epoch last ~0.1-0.5 s: long enough to land a kill inside one
    "model": {"name": "small-cnn", "params": {"width": 16}},
    "train": {"epochs": 4, "batch_size": 4, "checkpoint_every": 1, "optimizer": {"lr": 0.02},
              "schedule": {"name": "constant"}},
    "al": {"initial": 40, "budget": 40, "cycles": 3},
    "strategies": ["random", "margin"],
    "seeds": [0],
    "threads": 1,  # bit-reproducible CPU numbers
    "record": {"embeddings": 32},
    "executor": {"name": "local", "workers": 1},
}
LAUNCH_TIMEOUT_S = 300


def _peek(run_dir: Path) -> tuple[int, int | None, int | None] | None:
    """(next_cycle, cycle in training or None, epochs trained in it) from the run's checkpoint."""
    import torch

    try:
        state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    except (FileNotFoundError, EOFError, RuntimeError):
        return None
    partial = state.get("partial")
    if partial is None:
        return int(state["next_cycle"]), None, None
    return int(state["next_cycle"]), int(partial["cycle"]), int(partial["trainer"]["epoch"])


class Sweep:
    def __init__(self, tmp_path: Path) -> None:
        self.cfg = tmp_path / "kill.yaml"
        self.cfg.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
        self.out = tmp_path / "results"
        self.logs = tmp_path
        self.launches = 0

    def run_dir(self, strategy: str) -> Path:
        return self.out / "kill" / "digits" / strategy / "seed-0"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "albench.cli", "run", str(self.cfg), "--out", str(self.out), "--quiet"]

    def launch(self) -> subprocess.Popen:
        self.launches += 1
        log = open(self.logs / f"launch-{self.launches}.log", "w")
        return subprocess.Popen(self.command(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def log_tail(self) -> str:
        return (self.logs / f"launch-{self.launches}.log").read_text()[-2000:]

    def kill_when(self, strategy: str, reached) -> tuple:
        """Launch the sweep, SIGKILL it as soon as ``reached(peek)`` holds; returns the state it died in."""
        proc = self.launch()
        ckpt = self.run_dir(strategy) / "checkpoint.pt"
        deadline = time.monotonic() + LAUNCH_TIMEOUT_S
        last = None
        try:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"the sweep exited (rc {proc.returncode}) before the kill point:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the kill point was not reached in {LAUNCH_TIMEOUT_S} s:\n{self.log_tail()}")
                try:
                    stamp = ckpt.stat().st_mtime_ns, ckpt.stat().st_ino
                except FileNotFoundError:
                    stamp = None
                if stamp is not None and stamp != last:  # read only a checkpoint that changed
                    last = stamp
                    seen = _peek(ckpt.parent)
                    if seen is not None and reached(seen):
                        proc.send_signal(signal.SIGKILL)
                        break
                time.sleep(0.005)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        return _peek(ckpt.parent)


def _files(run_dir: Path) -> dict:
    return {p.relative_to(run_dir): (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.rglob("*") if p.is_file()}


def _final(run_dir: Path) -> dict:
    return {
        "queries": json.loads((run_dir / "queries.json").read_text()),
        "rows": [{k: r[k] for k in SAME} for r in read_cycles(run_dir)],
        **{k: read_artifact(run_dir, k) for k in ("labeled_targets", "test_loss", "embeddings")},
    }


def _assert_same(got: dict, want: dict) -> None:
    assert got["queries"] == want["queries"]
    assert got["rows"] == want["rows"]
    for key in ("labeled_targets", "test_loss", "embeddings"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.mark.slow
def test_sigkill_at_several_points_then_rerun_resumes_and_matches(tmp_path):
    from albench.cli import main

    base = tmp_path / "uninterrupted"
    base.mkdir()
    baseline = Sweep(base)
    assert main(["run", str(baseline.cfg), "--out", str(baseline.out), "--quiet"]) == 0

    sweep = Sweep(tmp_path)
    a, b = sweep.run_dir("random"), sweep.run_dir("margin")

    # 1. mid-training of A's cycle 0 (at least one epoch trained, three left)
    died = sweep.kill_when("random", lambda s: s[1] == 0)
    assert died[:2] == (0, 0) and 1 <= died[2] < 4, died
    assert read_status(a)["state"] == "running" and not (a / "cycles.csv").exists()

    # 2. right after A's cycle-0 boundary (the kill is sent on seeing the boundary checkpoint; on a
    # loaded machine it may land an epoch or two into cycle 1, never past its end)
    died = sweep.kill_when("random", lambda s: s[0] == 1 and s[1] is None)
    assert died[0] == 1 and died[1] in (None, 1), died
    assert "resume digits/random/seed-0 at cycle 0" in (a / "run.log").read_text()

    # 3. mid-training of B's last cycle; A finished in this launch
    died = sweep.kill_when("margin", lambda s: s[1] == 2)
    assert died[:2] == (2, 2), died
    assert read_status(a)["state"] == "complete"
    assert read_status(b)["state"] == "running"
    a_files = _files(a)

    # the same command again finishes the sweep
    proc = sweep.launch()
    assert proc.wait(timeout=LAUNCH_TIMEOUT_S) == 0, sweep.log_tail()
    assert "1 already complete" in sweep.log_tail()

    assert _files(a) == a_files, "a complete run's files were rewritten"
    for strategy, run_dir, resumes in (("random", a, 2), ("margin", b, 1)):
        status = read_status(run_dir)
        assert status["state"] == "complete" and status["resumes"] == resumes
        assert not (run_dir / "checkpoint.pt").exists()
        _assert_same(_final(run_dir), _final(baseline.run_dir(strategy)))
