"""One writer per run: a lock file in the run folder, taken with O_EXCL.

``<run_dir>/.lock`` holds the owner's pid, host, start time and Slurm job (when any). A holder
refreshes the file's mtime every :data:`HEARTBEAT_S` seconds. A lock is stale, and is taken over,
when (as for the pretext cache's lock, :mod:`albench.strategies.pretext.cache`):

- its owner is on this host and its pid is gone (or now names a process started at another time),
  or is this very process;
- it names the Slurm job and array task we are (a requeued task resumes its own run);
- its owner is on another host and the heartbeat is older than :data:`STALE_S` seconds;
- it cannot be read and is older than 60 s (a writer killed between create and write).

Otherwise another live process is writing the run: the caller skips it and says so.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

LOCK = ".lock"
HEARTBEAT_S = 30.0
STALE_S = 600.0
UNREADABLE_STALE_S = 60.0


def _slurm_task() -> str | None:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if task else job


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None: with the pid it
    names a process uniquely, so a pid reused by another process is not mistaken for the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(info: dict) -> str:
    """'pid 123 on host-a since 05:50:01' for a lock's contents."""
    since = time.strftime("%H:%M:%S", time.localtime(float(info.get("time", 0))))
    job = f", Slurm job {info['slurm']}" if info.get("slurm") else ""
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}{job} since {since}"


def live_holder(run_dir: Path) -> dict | None:
    """The contents of the run's lock when a live process other than this one holds it, else None."""
    lock = Path(run_dir) / LOCK
    try:
        text = lock.read_text()
        mtime = lock.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return None
    try:
        info = json.loads(text)
        if not isinstance(info, dict):
            raise ValueError
    except ValueError:
        return None if time.time() - mtime > UNREADABLE_STALE_S else {"pid": "?", "host": "?", "time": mtime}
    host, pid = info.get("host"), info.get("pid")
    if host == socket.gethostname():
        if pid == os.getpid():
            return None
        if isinstance(pid, int) and not pid_alive(pid):
            return None
        if isinstance(pid, int) and info.get("start") is not None and _proc_start(pid) not in (None, info["start"]):
            return None  # the pid now belongs to another process
    mine = _slurm_task()
    if mine is not None and info.get("slurm") == mine:
        return None  # an earlier incarnation of this very Slurm task (requeued)
    if host != socket.gethostname() and time.time() - mtime > STALE_S:
        return None
    return info


@dataclass
class RunLock:
    """The outcome of :func:`hold`: ``held`` True when this process holds the lock, else ``holder``."""

    path: Path
    held: bool
    holder: dict | None = None


@contextmanager
def hold(run_dir: str | Path) -> Iterator[RunLock]:
    """Hold ``run_dir``'s lock while inside; yields RunLock(held=False, holder=...) when another live
    process holds it. Creates ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK
    info = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "slurm": _slurm_task(),
            "start": _proc_start(os.getpid())}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = live_holder(run_dir)
            if holder is not None:
                yield RunLock(lock, False, holder)
                return
            try:  # stale: take it over
                lock.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(info) + "\n")
        break
    else:
        yield RunLock(lock, False, live_holder(run_dir) or {"pid": "?", "host": "?", "time": time.time()})
        return

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                os.utime(lock)
            except OSError:
                return

    thread = threading.Thread(target=beat, name=f"albench-lock-{run_dir.name}", daemon=True)
    thread.start()
    try:
        yield RunLock(lock, True)
    finally:
        stop.set()
        try:  # remove it only while it is still ours (never another's after a takeover)
            if json.loads(lock.read_text()).get("pid") == info["pid"] and \
                    json.loads(lock.read_text()).get("host") == info["host"]:
                lock.unlink()
        except (OSError, ValueError):
            pass
