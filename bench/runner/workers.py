"""Local worker processes that stop when asked and never outlive the sweep.

Each worker is a spawned process that takes runs from a task queue and reports events and
outcomes on a result queue. The rules, and why:

- Workers ignore SIGINT (it is blocked while they start, so an import is never cut halfway): a
  Ctrl-C reaches the whole terminal process group, and only the parent decides. The parent then
  terminates every worker (SIGTERM, then SIGKILL after :data:`GRACE_S`), starts nothing more and
  raises KeyboardInterrupt. A run cut this way is left as SIGKILL leaves it: its last checkpoint
  and records, status "running", a stale lock; never "failed". Rerunning the sweep resumes it.
- Workers die with their parent: on Linux the kernel sends them SIGKILL when it dies
  (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread in each worker watches the parent's pid.
- A worker that dies while running a run (killed, out of memory) makes that run's outcome
  "failed" for this sweep's exit code, without touching its records (they stay resumable), and a
  fresh worker takes its place.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from typing import Callable

from albench.records import run_id

GRACE_S = 3.0
POLL_S = 0.2
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, name="albench-parent-watch", daemon=True).start()


def _worker_main(parent_pid: int, wid: int, tasks, results) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from albench.runner.jobs import run_job

    while True:
        item = tasks.get()
        if item is None:
            return
        i, d = item
        results.put(("start", wid, i, None))
        try:
            out = run_job(d, events=lambda e: results.put(("event", wid, i, e)))
        except Exception as exc:  # noqa: BLE001 - execute_run records run failures itself; this is the rest
            out = {"run_id": _run_id(d), "state": "failed", "error": f"{type(exc).__name__}: {exc}", "value": None}
        results.put(("done", wid, i, out))


def _run_id(d: dict) -> str:
    st = d.get("strategy") or {}
    return run_id((d.get("dataset") or {}).get("name"), st.get("label") or st.get("name"), d.get("seed"))


def run_in_workers(dicts: list[dict], workers: int, *, on_event: Callable[[dict], None],
                   on_done: Callable[[dict], None]) -> list[dict]:
    """Run every job dict in ``workers`` processes; returns their outcomes in the order of ``dicts``.

    KeyboardInterrupt (Ctrl-C) stops every worker before it propagates."""
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for q in (tasks, results):
        q.cancel_join_thread()  # never block this process's exit on a queue nobody reads any more
    for i, d in enumerate(dicts):
        tasks.put((i, d))
    n = min(workers, len(dicts))
    for _ in range(n):
        tasks.put(None)
    procs: dict[int, mp.process.BaseProcess] = {}
    current: dict[int, int] = {}  # worker -> job it runs
    outcomes: dict[int, dict] = {}
    next_wid = 0

    def start() -> None:
        nonlocal next_wid
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # inherited: blocked until it ignores it
        try:
            p = ctx.Process(target=_worker_main, args=(os.getpid(), next_wid, tasks, results),
                            name=f"albench-worker-{next_wid}", daemon=True)
            p.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        procs[next_wid] = p
        next_wid += 1

    def handle(msg) -> None:
        kind, wid, i, payload = msg
        if kind == "start":
            current[wid] = i
        elif kind == "event":
            on_event(payload)
        elif i not in outcomes:
            current.pop(wid, None)
            outcomes[i] = payload
            on_done(payload)

    def drain() -> None:
        while True:
            try:
                handle(results.get_nowait())
            except queue_mod.Empty:
                return

    ok = False
    try:
        for _ in range(n):
            start()
        while len(outcomes) < len(dicts):
            try:
                handle(results.get(timeout=POLL_S))
                continue
            except queue_mod.Empty:
                pass
            dead = [wid for wid, p in procs.items() if not p.is_alive()]
            if not dead:
                continue
            drain()  # a worker's last messages may still be in flight
            for wid in dead:
                p = procs.pop(wid)
                i = current.pop(wid, None)
                if i is not None and i not in outcomes:
                    out = {"run_id": _run_id(dicts[i]), "state": "failed", "value": None,
                           "error": f"its worker process ended with exit code {p.exitcode} (killed? out of "
                                    "memory?); its records are left as they were: rerun the sweep to resume it"}
                    outcomes[i] = out
                    on_done(out)
                if p.exitcode != 0 and len(outcomes) < len(dicts):
                    start()  # takes the dead worker's place (and its end-of-queue marker)
            if not procs and len(outcomes) < len(dicts):
                raise RuntimeError("every worker process ended before the sweep did")
        ok = True
    finally:
        _stop(list(procs.values()), graceful=ok)
    return [outcomes[i] for i in sorted(outcomes)]


def _stop(procs: list, *, graceful: bool) -> None:
    """Join finished workers; on an interrupt or error, terminate them, then kill what is left."""
    if not graceful:
        for p in procs:
            if p.is_alive():
                p.terminate()
    deadline = time.monotonic() + (GRACE_S if not graceful else 30.0)
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(1.0)
