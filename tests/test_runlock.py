"""One writer per run: a run folder's lock is held by the process writing it; another process skips
that run and says so; a lock whose owner is gone is taken over. Real processes throughout."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from albench import runlock
from albench.records import read_status
from tests.conftest import TINY

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 240


def _config(tmp_path: Path, **al) -> Path:
    raw = json.loads(json.dumps(TINY))
    raw["strategies"] = ["random", "least-confidence"]
    raw["al"].update(al)
    raw["output"] = str(tmp_path / "results")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _albench(cfg: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "albench.cli", "run", str(cfg), "--quiet"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _starts(run_dir: Path) -> int:
    return sum(1 for ln in (run_dir / "run.log").read_text().splitlines() if " start " in ln or " resume " in ln)


def test_a_run_held_by_a_live_process_is_skipped_and_said_so(tmp_path):
    cfg = _config(tmp_path)
    sweep = tmp_path / "results" / "tiny" / "digits"
    held = sweep / "random" / "seed-0"
    # the holder is another real process: a python that takes the lock and waits
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from bench import runlock\n"
        f"with runlock.hold({str(held)!r}) as lk:\n"
        "    print(lk.held, flush=True); time.sleep(120)")],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "True"
        proc = _albench(cfg, tmp_path / "b.log")
        assert proc.wait(TIMEOUT_S) == 0
        err = (tmp_path / "b.log").read_text()
        assert f"skipped digits/random/seed-0: another albench process is writing it (pid {holder.pid} on " \
               f"{socket.gethostname()}" in err
        assert sorted(p.name for p in held.iterdir()) == [".lock"]  # nothing written into the held run
        assert read_status(sweep / "least-confidence" / "seed-0")["state"] == "complete"
    finally:
        holder.kill()
        holder.wait()
    # its owner is gone: the lock is stale, and the next rerun takes it over and runs it
    assert (held / ".lock").exists()
    proc = _albench(cfg, tmp_path / "c.log")
    assert proc.wait(TIMEOUT_S) == 0, (tmp_path / "c.log").read_text()
    assert read_status(held)["state"] == "complete"
    assert not (held / ".lock").exists()


def test_two_sweeps_at_once_train_every_run_once(tmp_path):
    cfg = _config(tmp_path, cycles=3)
    a = _albench(cfg, tmp_path / "a.log")
    time.sleep(0.5)
    b = _albench(cfg, tmp_path / "b.log")
    assert a.wait(TIMEOUT_S) == 0, (tmp_path / "a.log").read_text()
    assert b.wait(TIMEOUT_S) == 0, (tmp_path / "b.log").read_text()
    sweep = tmp_path / "results" / "tiny" / "digits"
    for strategy in ("random", "least-confidence"):
        run_dir = sweep / strategy / "seed-0"
        assert read_status(run_dir)["state"] == "complete"
        assert _starts(run_dir) == 1, (run_dir / "run.log").read_text()  # trained once, by one of them
        assert not (run_dir / ".lock").exists()
    both = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "holds a complete run" not in both and "Traceback" not in both


def test_lock_rules(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    with runlock.hold(run_dir) as lk:
        assert lk.held
        info = json.loads((run_dir / runlock.LOCK).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert runlock.live_holder(run_dir) is None  # our own lock never blocks us
    assert not (run_dir / runlock.LOCK).exists()
    lock = run_dir / runlock.LOCK
    # another host's lock is live while its heartbeat is fresh, stale after STALE_S
    lock.write_text(json.dumps({"pid": 1, "host": "node-7", "time": time.time()}))
    assert runlock.live_holder(run_dir)["host"] == "node-7"
    with runlock.hold(run_dir) as lk:
        assert not lk.held and lk.holder["host"] == "node-7"
    old = time.time() - runlock.STALE_S - 5
    os.utime(lock, (old, old))
    assert runlock.live_holder(run_dir) is None
    # a requeued Slurm task takes over the lock its earlier incarnation left on another node
    lock.write_text(json.dumps({"pid": 1, "host": "node-7", "time": time.time(), "slurm": "12_3"}))
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "12")
    monkeypatch.setenv("SLURM_JOB_ID", "15")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    with runlock.hold(run_dir) as lk:
        assert lk.held
    # a dead local pid is stale; junk is live only while young
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "time": time.time()}))
    assert runlock.live_holder(run_dir) is None
    # a pid reused by another process (a different start time) is not the holder
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "time": time.time(),
                                "start": "1"}))
    assert runlock.live_holder(run_dir) is None
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "time": time.time(),
                                "start": runlock._proc_start(os.getppid())}))
    assert runlock.live_holder(run_dir)["pid"] == os.getppid()
    lock.write_text("{garbage")
    assert runlock.live_holder(run_dir) is not None
    os.utime(lock, (old, old))
    assert runlock.live_holder(run_dir) is None
