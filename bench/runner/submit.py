"""submitit's ``debug`` executor: the same job callable, run in this process by submitit."""

from __future__ import annotations

from pathlib import Path

from albench.plan import RunConfig
from albench.runner.jobs import run_job


def run_debug(plan: list[RunConfig], folder: Path) -> list[dict]:
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster="debug")
    jobs = [executor.submit(run_job, rc.to_dict()) for rc in plan]
    return [job.result() for job in jobs]
