"""The Slurm executor's decisions from recorded Slurm answers, no cluster needed (issue 16, Slurm and
resume items 1, 4, 6, 7, 8): a COMPLETING task is waited out before it is judged, a finished task
ignores a late time-limit signal, failure texts carry no submitit internals, a run out of requeues
says it timed out, and a rejected submission leaves no folder behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from albench import status as st
from albench.errors import ConfigError
from albench.records import RunRecorder, read_status

JOB_NAME = "albench-s-abc"


@pytest.fixture(autouse=True)
def _keep_usr2():
    """SlurmRun ignores USR2 once its run is recorded; give this test process its handler back."""
    before = signal.getsignal(signal.SIGUSR2)
    yield
    signal.signal(signal.SIGUSR2, before)


@pytest.fixture
def plan(tmp_path):
    """(config, [run]) of a one-run digits sweep under tmp_path/results."""
    from albench.config import build_config
    from albench.plan import make_plan

    cfg = build_config({"name": "s", "dataset": "digits", "model": {"name": "small-cnn", "params": {"width": 8}},
                        "train": {"epochs": 1, "batch_size": 32}, "al": {"initial": 20, "budget": 20, "cycles": 2},
                        "strategies": ["random"], "seeds": [0], "threads": 1, "output": str(tmp_path / "results"),
                        "executor": {"name": "slurm", "slurm": {"time_min": 11, "max_requeues": 2}}})
    return cfg, make_plan(cfg)


def _ledger(cfg, rc, job_id: str) -> None:
    sweep = Path(cfg.output).resolve() / cfg.name
    st.append_ledger(sweep, [{"run_id": rc.run_id, "run_dir": str(rc.run_dir.resolve()), "job_id": job_id,
                              "job_name": JOB_NAME, "folder": str(sweep / ".slurm" / "x"), "submitted": 1.0}])


def _squeue(monkeypatch, *answers: dict) -> list:
    """Make live_jobs() give ``answers`` one per call (the last one repeats); returns the call log."""
    from albench.runner import slurm

    calls = []

    def fake():
        calls.append(1)
        return answers[min(len(calls), len(answers)) - 1]

    monkeypatch.setattr(slurm, "live_jobs", fake)
    monkeypatch.setattr(slurm, "POLL_S", 0.0)
    monkeypatch.setattr(slurm.time, "sleep", lambda s: None)
    return calls


# ---------------------------------------------------------------------------------------------
# item 1: COMPLETING


def test_a_cancelled_task_still_completing_is_waited_out_then_resubmitted(plan, monkeypatch, capsys):
    from albench.runner.slurm import queued_elsewhere

    cfg, (rc,) = plan
    _ledger(cfg, rc, "5_0")
    calls = _squeue(monkeypatch, {"5_0": {"state": "COMPLETING", "name": JOB_NAME}},
                    {"5_0": {"state": "COMPLETING", "name": JOB_NAME}}, {})
    assert queued_elsewhere(cfg, [rc]) == {}  # gone once settled: the run is submitted again
    assert len(calls) == 3
    assert "waiting for Slurm job(s) 5_0 (COMPLETING)" in capsys.readouterr().err


def test_a_requeue_passing_through_completing_is_left_queued(plan, monkeypatch):
    from albench.runner.slurm import queued_elsewhere

    cfg, (rc,) = plan
    _ledger(cfg, rc, "5_0")
    _squeue(monkeypatch, {"5_0": {"state": "COMPLETING", "name": JOB_NAME}},
            {"5_0": {"state": "REQUEUED", "name": JOB_NAME}})
    queued = queued_elsewhere(cfg, [rc])
    assert list(queued) == [rc.run_dir.resolve()] and queued[rc.run_dir.resolve()]["state"] == "REQUEUED"


def test_a_job_squeue_lists_as_over_is_not_live(plan, monkeypatch):
    from albench.runner.slurm import queued_elsewhere

    cfg, (rc,) = plan
    _ledger(cfg, rc, "5_0")
    _squeue(monkeypatch, {"5_0": {"state": "CANCELLED", "name": JOB_NAME}})
    assert queued_elsewhere(cfg, [rc]) == {}


def test_another_users_completing_job_with_a_reused_id_is_not_waited_on(plan, monkeypatch):
    from albench.runner.slurm import queued_elsewhere

    cfg, (rc,) = plan
    _ledger(cfg, rc, "5_0")
    calls = _squeue(monkeypatch, {"5_0": {"state": "COMPLETING", "name": "someone-else"}})
    assert queued_elsewhere(cfg, [rc]) == {} and len(calls) == 1


def test_a_task_completing_for_too_long_is_one_clear_line(plan, monkeypatch):
    from albench.runner import slurm

    cfg, (rc,) = plan
    _ledger(cfg, rc, "5_0")
    _squeue(monkeypatch, {"5_0": {"state": "COMPLETING", "name": JOB_NAME}})
    monkeypatch.setattr(slurm, "SETTLE_S", 0.0)
    with pytest.raises(ConfigError, match=r"5_0 of this sweep are still COMPLETING.*rerun the same command"):
        slurm.queued_elsewhere(cfg, [rc])


# ---------------------------------------------------------------------------------------------
# item 4: a finished task ignores the time-limit signal


def test_a_finished_task_ignores_a_late_time_limit_signal(plan, monkeypatch):
    from albench.runner import slurm

    cfg, (rc,) = plan
    got = []
    before = signal.signal(signal.SIGUSR2, lambda *a: got.append("requeue"))  # stands in for submitit's handler
    try:
        monkeypatch.setattr(slurm, "run_job", lambda d: {"run_id": rc.run_id, "state": "complete", "error": None})
        out = slurm.SlurmRun(rc.to_dict())()
        assert out["state"] == "complete"
        os.kill(os.getpid(), signal.SIGUSR2)  # Slurm's time-limit signal, as the task writes its result
        assert got == [] and signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR2, before)


# ---------------------------------------------------------------------------------------------
# the requeue survives the SIGTERM that requeueing sends the job's own processes

# stands in for scontrol: it gets SIGTERM (as Slurm sends every process of a job it requeues) and
# then exits 0 when it lives on
_SIGTERMED = ("sh", "-c", 'kill -TERM $$; exit 0', "sh")


def test_requeue_command_survives_the_requeue_sigterm():
    import subprocess

    from albench.runner.slurm import requeue_job

    assert subprocess.run(list(_SIGTERMED)).returncode == -signal.SIGTERM  # unprotected, it dies
    requeue_job("7", command=_SIGTERMED)  # no CalledProcessError
    with pytest.raises(subprocess.CalledProcessError):
        requeue_job("7", command=("false",))  # a real failure still raises


def test_slurm_tasks_requeue_through_the_sigterm_proof_command(monkeypatch):
    from submitit.slurm.slurm import SlurmJobEnvironment

    from albench.runner import slurm

    monkeypatch.setattr(SlurmJobEnvironment, "_requeue", SlurmJobEnvironment._requeue)  # restored afterwards
    calls = []
    monkeypatch.setattr(slurm, "requeue_job", lambda job_id: calls.append(job_id))
    slurm.use_sigterm_proof_requeue()

    class _Env:
        job_id = "12"

    SlurmJobEnvironment._requeue(_Env(), 2)
    assert calls == ["12"]


# ---------------------------------------------------------------------------------------------
# items 6 and 7: failure texts


class _Job:
    job_id = "12_0"

    def __init__(self, folder: Path, state: str) -> None:
        from submitit.core.utils import JobPaths

        self.paths = JobPaths(folder, job_id="12_0", task_id=0)
        self._state = state

    def get_info(self, mode="force"):
        return {"State": self._state}


def test_failure_text_has_no_submitit_result_path(tmp_path, plan):
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from albench.runner.slurm import _job_failure

    _, (rc,) = plan
    folder = tmp_path / "results" / "s" / ".slurm" / "20260101-abc"
    exc = UncompletedJobError(f"Job 12_0 (task: 0) with path {folder}/12_0_0_result.pkl\n"
                              "has not produced any output (state: CANCELLED)\nNo output/error stream produced !")
    msg = _job_failure(_Job(folder, "CANCELLED"), rc, exc)
    assert "result.pkl" not in msg and "with path" not in msg
    assert msg.startswith("Slurm job 12_0 ended CANCELLED without finishing the run; see ")
    assert msg.endswith("12_0_0_log.err")  # the log the user reads stays named
    trace = ("Job (task=0) failed during processing with trace:\n----------------------\nTraceback (most recent "
             "call last):\n  File \"x.py\", line 1\nMemoryError: cannot allocate\n")
    msg = _job_failure(_Job(folder, "FAILED"), rc, FailedJobError(trace))
    assert "(MemoryError: cannot allocate)" in msg and "result.pkl" not in msg


def test_a_run_out_of_requeues_says_it_timed_out(plan, monkeypatch, one_torch_thread):
    """submitit raises UncompletedJobError inside the run when the time-limit signal comes once more
    than max_requeues allows; the run records a time-out, not submitit's internals, and keeps its
    checkpoint; status shows that reason, not 'ended COMPLETED (exit 0:0): UncompletedJobError'."""
    from submitit.core.utils import UncompletedJobError

    from albench.runner.slurm import SlurmRun

    cfg, (rc,) = plan
    job = SlurmRun(rc.to_dict(), time_min=11, max_requeues=2)
    orig = RunRecorder.save_checkpoint

    def signalled(self, state):  # the signal lands at the end of cycle 0, as submitit's handler acts
        orig(self, state)
        job.checkpoint()
        raise UncompletedJobError("Job not requeued because: timed-out too many times.")

    monkeypatch.setattr(RunRecorder, "save_checkpoint", signalled)
    out = job()
    monkeypatch.undo()
    assert out["state"] == "failed" and out["error"].startswith("RunFailed: timed out")
    status = read_status(rc.run_dir)
    assert status["state"] == "failed" and "timed out" in status["error"] and "max_requeues=2" in status["error"]
    assert "UncompletedJobError" not in status["error"]
    assert (rc.run_dir / "checkpoint.pt").exists()  # a rerun resumes

    answers = {"12_0": {"state": "COMPLETED", "alive": False, "exit_code": "0:0"}}
    entry = {"run_id": rc.run_id, "run_dir": str(rc.run_dir.resolve()), "job_id": "12_0", "job_name": JOB_NAME,
             "folder": str(rc.run_dir), "submitted": 1.0}
    row = st.run_status(rc.run_dir.resolve(), entry, answers)
    assert row.state == "failed" and "timed out" in row.detail
    assert "ended COMPLETED" not in row.detail and "UncompletedJobError" not in row.detail


# ---------------------------------------------------------------------------------------------
# item 8: a rejected submission leaves nothing behind


class _RejectingExecutor:
    def __init__(self, folder, max_num_timeout=3):
        self.folder = Path(folder)

    def update_parameters(self, **kwargs):
        pass

    def submit_array(self, calls):
        from submitit.core.utils import FailedSubmissionError

        self.folder.mkdir(parents=True, exist_ok=True)  # submitit writes its pickles before sbatch answers
        (self.folder / "submission_file.sh").write_text("#!/bin/sh\n")
        raise FailedSubmissionError("sbatch: error: Batch job submission failed: Invalid partition name specified")


def test_a_rejected_submission_leaves_no_slurm_folder(plan, monkeypatch):
    import submitit

    from albench.runner.slurm import submit

    cfg, runs = plan
    monkeypatch.setattr(submitit, "SlurmExecutor", _RejectingExecutor)
    with pytest.raises(ConfigError, match="executor.slurm.partition"):
        submit(cfg, runs)
    assert not (Path(cfg.output) / cfg.name / ".slurm").exists()
    assert not Path(cfg.output).exists()  # nothing was there before: nothing is left


def test_a_rejected_resubmission_keeps_what_was_there(plan, monkeypatch):
    import submitit

    from albench.runner.slurm import submit

    cfg, runs = plan
    ledger = st.ledger_path(Path(cfg.output) / cfg.name)
    ledger.parent.mkdir(parents=True)
    ledger.write_text("")
    monkeypatch.setattr(submitit, "SlurmExecutor", _RejectingExecutor)
    with pytest.raises(ConfigError):
        submit(cfg, runs)
    assert ledger.is_file() and [p.name for p in ledger.parent.iterdir()] == [ledger.name]
