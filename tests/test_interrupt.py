"""Interrupting a local sweep with --workers 2 (real processes and signals): Ctrl-C stops it within
seconds, starts nothing more, marks nothing failed, and the rerun resumes to the same records as an
uninterrupted sweep; SIGKILL to the main process takes its workers with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from albench.cli import main
from albench.records import read_cycles, read_status

REPO = Path(__file__).resolve().parent.parent
CONFIG = {
    "name": "int",
    "dataset": {"name": "digits"},
    # batch 4: a run lasts a few seconds, long enough to land a signal inside it
    "model": {"name": "small-cnn", "params": {"width": 8}},
    "train": {"epochs": 3, "batch_size": 4, "checkpoint_every": 1, "optimizer": {"lr": 0.02},
              "schedule": {"name": "constant"}},
    "al": {"initial": 32, "budget": 32, "cycles": 2},
    "strategies": ["random", "margin", "entropy", "least-confidence", "coreset"],
    "seeds": [0],
    "threads": 1,
    "record": {"embeddings": 16},
}
WAIT_S = 240
SAME = ("cycle", "n_labeled", "value", "test_loss", "epochs")


def _launch(cfg: Path, out: Path, log: Path) -> subprocess.Popen:
    # its own session: a signal to its process group is what a terminal's Ctrl-C does
    return subprocess.Popen([sys.executable, "-m", "albench.cli", "run", str(cfg), "--out", str(out), "--quiet",
                             "--workers", "2"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                            preexec_fn=_as_from_a_terminal)


def _as_from_a_terminal() -> None:
    # A terminal's foreground job takes Ctrl-C with SIGINT's default action; a test suite started in
    # the background of a non-interactive shell (`cmd &`) inherits SIGINT ignored, which would pass
    # to the sweep and leave it nothing to interrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not reaped yet) is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _two_runs_training(sweep: Path, proc: subprocess.Popen, log: Path) -> list[int]:
    """Wait until two runs have a checkpoint; returns their worker pids."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (rc {proc.returncode}) too early:\n{log.read_text()[-2000:]}")
        busy = [d for d in sweep.glob("digits/*/seed-0") if (d / "checkpoint.pt").exists()]
        if len(busy) >= 2:
            return [read_status(d)["pid"] for d in busy]
        time.sleep(0.05)
    pytest.fail("two runs never trained at once")


def _wait_dead(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _records(sweep: Path) -> dict:
    return {d.parent.name: (json.loads((d / "queries.json").read_text()),
                            [{k: r[k] for k in SAME} for r in read_cycles(d)])
            for d in sorted(sweep.glob("digits/*/seed-0"))}


def test_ctrl_c_stops_workers_and_the_rerun_resumes_identical(tmp_path, one_torch_thread):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    out, log = tmp_path / "results", tmp_path / "a.log"
    sweep = out / "int"
    proc = _launch(cfg, out, log)
    try:
        pids = _two_runs_training(sweep, proc, log)
        started = {d.parent.parent.name for d in sweep.glob("digits/*/seed-0/status.json")}
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=20) == 130, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _wait_dead(pids, 5) == []
    err = log.read_text()
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err
    # nothing started after the interrupt, nothing marked failed
    time.sleep(1.0)  # an orphaned worker would go on writing
    assert {d.parent.parent.name for d in sweep.glob("digits/*/seed-0/status.json")} == started
    states = {d.parent.name: read_status(d)["state"] for d in sweep.glob("digits/*/seed-0")
              if (d / "status.json").exists()}
    assert "failed" not in states.values(), states
    assert list(states.values()).count("running") >= 2
    # the rerun resumes and ends equal to an uninterrupted sweep
    again = _launch(cfg, out, tmp_path / "b.log")
    assert again.wait(timeout=WAIT_S) == 0, (tmp_path / "b.log").read_text()[-2000:]
    # the interrupted runs, uninterrupted and serial (runs are independent of each other)
    cut = sorted(name for name, state in states.items() if state == "running")
    assert main(["run", str(cfg), "--out", str(tmp_path / "whole"), "--quiet", "--set",
                 f"strategies={','.join(cut)}"]) == 0
    resumed, reference = _records(sweep), _records(tmp_path / "whole" / "int")
    assert len(resumed) == 5 and {k: resumed[k] for k in cut} == reference


def test_workers_die_with_a_killed_main_process(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    out, log = tmp_path / "results", tmp_path / "a.log"
    proc = _launch(cfg, out, log)
    try:
        pids = _two_runs_training(out / "int", proc, log)
        proc.send_signal(signal.SIGKILL)  # the main process only
        proc.wait(timeout=20)
        assert _wait_dead(pids, 10) == [], "workers outlived their parent"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
