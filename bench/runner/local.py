"""The local executor: runs one after another, or in N worker processes, with progress bars."""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

from albench.plan import RunConfig
from albench.runner.jobs import run_job


def _threads_per_run(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


class Progress:
    """Two bars (runs, cycles), one more per long phase in progress (a strategy's pretext or
    representation training, in epochs, with its ETA), plus one line per finished run."""

    def __init__(self, runs: int, cycles: int, enabled: bool) -> None:
        self.enabled = enabled
        self._kw = dict(file=sys.stderr, disable=not enabled, dynamic_ncols=True)
        self.runs = tqdm(total=runs, desc="runs  ", unit="run", position=0, leave=True, **self._kw)
        self.cycles = tqdm(total=cycles, desc="cycles", unit="cycle", position=1, leave=True, **self._kw)
        self.started: dict[str, float] = {}
        self.phases: dict[tuple[str, str], tuple] = {}  # (run, phase) -> (epoch bar, position, start time)

    def event(self, e: dict) -> None:
        if e["type"] == "run_start":
            self.started[e["run"]] = time.perf_counter()
        elif e["type"] == "epoch":
            self._epoch(e)
        elif e["type"] == "cycle":
            self._close_phases(e["run"])
            self.cycles.update(1)
            self.cycles.set_postfix_str(f"{e['run']} c{e['cycle']} n={e['n_labeled']} {100 * e['value']:.1f}%")

    def _epoch(self, e: dict) -> None:
        """Start, advance or finish the bar of a long phase: tqdm's rate over the epochs done gives the ETA."""
        key = (e["run"], e["phase"])
        if key not in self.phases:
            used = {pos for _, pos, _ in self.phases.values()}
            pos = next(p for p in range(2, 3 + len(self.phases)) if p not in used)
            bar = tqdm(total=e["epochs"], desc=e["phase"], unit="epoch", position=pos, leave=False,
                       postfix=e["run"], **self._kw)
            self.phases[key] = (bar, pos, time.perf_counter())
        bar, _, since = self.phases[key]
        bar.update(max(0, e["epoch"] - bar.n))
        if e["epoch"] >= e["epochs"]:
            self._close(key)
            if self.enabled:
                tqdm.write(f"{e['phase']} of {e['run']}: {e['epochs']} epochs in "
                           f"{time.perf_counter() - since:.1f}s", file=sys.stderr)

    def _close(self, key: tuple[str, str]) -> None:
        entry = self.phases.pop(key, None)
        if entry is not None:
            entry[0].close()

    def _close_phases(self, run: str) -> None:
        for key in [k for k in self.phases if k[0] == run]:
            self._close(key)

    def done(self, outcome: dict) -> None:
        self._close_phases(outcome["run_id"])
        self.runs.update(1)
        secs = time.perf_counter() - self.started.get(outcome["run_id"], time.perf_counter())
        if outcome["state"] in ("failed", "damaged", "changed"):
            msg = f"{outcome['state'].upper()} {outcome['run_id']}: {outcome['error']}"
        elif outcome["state"] in ("busy", "stopped"):
            msg = f"{'skipped' if outcome['state'] == 'busy' else 'stopped'} {outcome['run_id']}: {outcome['error']}"
        else:
            val = "" if outcome.get("value") is None else f" final {100 * outcome['value']:.2f}%"
            msg = f"done   {outcome['run_id']}{val} ({secs:.1f}s)"
        if self.enabled:
            tqdm.write(msg, file=sys.stderr)

    def close(self) -> None:
        for key in list(self.phases):
            self._close(key)
        self.cycles.close()
        self.runs.close()


def run_local(plan: list[RunConfig], *, workers: int = 1, progress: bool = True) -> list[dict]:
    """Execute ``plan`` here; returns one outcome dict per run (state: complete | skipped | failed | busy ...).

    With ``workers`` > 1 the runs go to that many worker processes (:mod:`albench.runner.workers`):
    Ctrl-C stops them all within seconds, leaving the interrupted runs resumable (never marked
    failed), and workers die with this process however it ends.
    """
    threads = _threads_per_run(workers)
    dicts = []
    for rc in plan:
        d = rc.to_dict()
        if d["threads"] is None:
            d["threads"] = threads
        dicts.append(d)
    bar = Progress(len(plan), sum(rc.al.cycles for rc in plan), progress)
    outcomes: list[dict] = []
    try:
        if workers == 1:
            for d in dicts:
                out = run_job(d, events=bar.event)
                outcomes.append(out)
                bar.done(out)
        else:
            from albench.runner.workers import run_in_workers

            outcomes = run_in_workers(dicts, workers, on_event=bar.event, on_done=bar.done)
    finally:
        bar.close()
    return outcomes
