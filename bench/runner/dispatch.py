"""Choose the executor a config names and hand it the runs that are not complete yet."""

from __future__ import annotations

from pathlib import Path

from albench.config import Config
from albench.plan import RunConfig
from albench.records import DamagedRecord, RunRecorder


def pending_runs(plan: list[RunConfig]) -> tuple[list[RunConfig], list[RunConfig]]:
    """(runs still to do, runs already complete): a rerun never touches a complete run."""
    todo, done = [], []
    for rc in plan:
        try:
            complete = RunRecorder(rc.run_dir).is_complete()
        except DamagedRecord:
            complete = False  # its worker reports it damaged and leaves it alone
        (done if complete else todo).append(rc)
    return todo, done


def execute_plan(cfg: Config, plan: list[RunConfig], *, progress: bool = True) -> list[dict]:
    """Run every incomplete run of ``plan`` with ``cfg.executor``; returns their outcomes."""
    todo, _ = pending_runs(plan)
    if not todo:
        return []
    name = cfg.executor.name
    if name == "local":
        from albench.runner.local import run_local

        return run_local(todo, workers=cfg.executor.workers, progress=progress)
    if name == "debug":
        from albench.runner.submit import run_debug

        return run_debug(todo, Path(cfg.output) / cfg.name / ".submitit")
    from albench.runner.slurm import run_slurm

    return run_slurm(cfg, todo, progress=progress)
