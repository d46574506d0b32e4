"""Executors: turn a plan of runs into finished run folders (local processes, submitit, Slurm)."""

from albench.runner.dispatch import execute_plan

__all__ = ["execute_plan"]
