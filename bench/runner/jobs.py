"""The callable every executor runs: one run, from plain data (picklable for processes and Slurm)."""

from __future__ import annotations

from albench.engine.loop import RunOutcome, execute_run
from albench.plan import RunConfig


def run_job(rc_dict: dict, events=None) -> dict:
    """Execute (or resume, or skip) the run described by ``rc_dict``; returns the outcome as a dict."""
    rc = RunConfig.from_dict(rc_dict)
    outcome: RunOutcome = execute_run(rc, events=events)
    return outcome.__dict__.copy()
