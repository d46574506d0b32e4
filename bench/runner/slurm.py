"""The Slurm executor: the plan's runs as one submitit job array, requeued on preemption/time-out.

Each array task runs one run through :func:`albench.runner.jobs.run_job`, wrapped in a submitit
``Checkpointable``: when Slurm signals a time-out or preemption, submitit requeues the task, and
the requeued task resumes from the run's own checkpoint file (the engine writes it at every cycle
boundary and every ``train.checkpoint_every`` epochs). Submissions are logged in the sweep's
ledger (see :mod:`albench.status`), so a resubmission skips runs whose job is still queued or
running, and ``albench status`` can tell pending runs from dead ones.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from submitit.helpers import Checkpointable, DelayedSubmission

from albench.config import Config, SlurmConfig
from albench.drift import compare, describe, fingerprint
from albench.errors import ConfigError, RunFailed
from albench.plan import RunConfig
from albench.records import DamagedRecord, RunRecorder, read_cycles, read_status
from albench.runner.jobs import run_job
from albench.status import SlurmQueryError, append_ledger, live_jobs, read_ledgers

POLL_S = 2.0


class SlurmRun(Checkpointable):
    """The job callable: one run; on a Slurm signal it is resubmitted as-is and resumes from disk."""

    def __init__(self, rc_dict: dict, time_min: int | None = None, max_requeues: int | None = None) -> None:
        self.rc_dict = rc_dict
        self.time_min = time_min  # only for the message of a run that ran out of requeues
        self.max_requeues = max_requeues
        self.signalled = False  # set when Slurm's preemption / time-limit signal reached this task

    def __call__(self) -> dict:
        use_sigterm_proof_requeue()
        out = run_job(self.rc_dict)
        # The run is recorded (complete or failed): a time-limit signal from here on must neither
        # requeue the task nor make it fail while it writes its result and exits (issue 16 item 4).
        ignore_requeue_signal()
        if out.get("state") == "failed" and self.signalled and str(out.get("error", "")).startswith(
                "UncompletedJobError"):
            # submitit raised inside the run because the time-limit signal came once more than
            # max_requeues allows: say so, instead of submitit's internal message
            msg = (f"timed out: Slurm's time limit came and the requeues are spent "
                   f"(executor.slurm.time_min={self.time_min}, max_requeues={self.max_requeues}); "
                   "the checkpoint is kept: raise time_min or max_requeues and rerun the sweep to resume")
            rec = RunRecorder(RunConfig.from_dict(self.rc_dict).run_dir)
            rec.fail(RunFailed(msg))
            out = {**out, "error": f"RunFailed: {msg}"}
        return out

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        # The run's state is already on disk (checkpoint.pt); only the call itself is resubmitted.
        self.signalled = True
        rec = RunRecorder(RunConfig.from_dict(self.rc_dict).run_dir)
        try:
            if not rec.is_complete():
                rec.log("Slurm signalled preemption or time-out: requeued; resumes from the last checkpoint")
        except (DamagedRecord, OSError):
            pass  # only a log line: the requeue must happen regardless
        return DelayedSubmission(self, *args, **kwargs)


REQUEUE_COMMAND = ("scontrol", "requeue")


def requeue_job(job_id: str, command: tuple[str, ...] = REQUEUE_COMMAND) -> None:
    """Run ``command job_id`` (``scontrol requeue``) with SIGTERM ignored; CalledProcessError if it fails.

    Requeueing a running job makes Slurm send SIGTERM to every process of the job, the ``scontrol``
    that asked included. When that signal came before scontrol exited, submitit's own requeue call
    raised CalledProcessError inside the running engine, and a run whose requeue had gone through
    was recorded as failed. An ignored signal stays ignored across exec, so scontrol finishes.
    """
    subprocess.run(["sh", "-c", 'trap "" TERM; exec "$@"', "sh", *command, str(job_id)], check=True, timeout=60)


def use_sigterm_proof_requeue() -> None:
    """Make submitit's preemption / time-limit handler in this job process requeue through
    :func:`requeue_job` (submitit calls ``SlurmJobEnvironment._requeue`` when it requeues)."""
    from submitit.slurm.slurm import SlurmJobEnvironment

    def _requeue(env, countdown: int) -> None:
        requeue_job(env.job_id)
        print(f"albench: requeued Slurm job {env.job_id} ({countdown} time-outs left)", file=sys.stderr, flush=True)

    SlurmJobEnvironment._requeue = _requeue


def ignore_requeue_signal() -> None:
    """Ignore submitit's preemption / time-limit signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says
    otherwise) in this process from now on. A no-op outside the main thread."""
    import signal

    from submitit.core.job_environment import JobEnvironment

    try:
        signal.signal(JobEnvironment._usr_sig(), signal.SIG_IGN)
    except (ValueError, RuntimeError):  # not the main thread, or an unknown signal name
        pass


# ---------------------------------------------------------------------------------------------
# checks before anything is queued


def check_slurm(name_field: str = "executor.name") -> None:
    """ConfigError unless Slurm's commands are installed here and the controller answers."""
    missing = [c for c in ("sbatch", "squeue", "sacct", "sinfo") if shutil.which(c) is None]
    if missing:
        raise ConfigError(name_field, f"is 'slurm' but Slurm is not installed here ({', '.join(missing)} not on PATH)",
                          "run on a Slurm login node, or use --executor local", "slurm")
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise ConfigError(name_field, "is 'slurm' but the Slurm controller did not answer within 60 s",
                          "check that slurmctld is up, or use --executor local", "slurm") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()] or [f"exit {proc.returncode}"]
        raise ConfigError(name_field, f"is 'slurm' but Slurm is not reachable ({lines[-1]})",
                          "check slurmctld, munge and SLURM_CONF, or use --executor local", "slurm")


# (what sbatch's error mentions, the config field to blame, how to fix it); first match wins
_REJECTIONS = [
    (r"account", "account", "use an account you belong to (see sacctmgr show assoc user=$USER)"),
    (r"qos", "qos", "use a QOS your account may use (see sacctmgr show assoc user=$USER format=qos)"),
    (r"partition", "partition", "name a partition from 'sinfo -s', or leave it empty for the cluster's default"),
    (r"gres|generic resource|\bgpus?\b", "gpus_per_task",
     "request GPUs only on a partition whose nodes have them (see sinfo -o '%P %G'), or set it to 0"),
    (r"unrecognized option|invalid option|unknown option", "additional",
     "use sbatch's long option names without '--' (see 'man sbatch')"),
    (r"processors|cpu count|cpus", "cpus_per_task", "ask for at most the CPUs of one node (see sinfo -o '%P %c')"),
    (r"memory", "mem_gb", "ask for at most one node's memory (see sinfo -o '%P %m', in MB), or leave it empty"),
    (r"feature|constraint", "constraint", "use a feature the nodes have (see sinfo -o '%P %f')"),
    (r"time limit", "time_min", "ask for at most the partition's time limit (see sinfo -o '%P %l')"),
]


def rejection_error(stderr: str, scfg: SlurmConfig) -> ConfigError:
    """One ConfigError line for sbatch's refusal, naming the executor.slurm field it points to."""
    lines = []
    for ln in stderr.splitlines():
        ln = re.sub(r"^\s*sbatch:\s*(error:\s*)?(Batch job submission failed:\s*)?", "", ln).strip()
        if ln and ln not in lines and not ln.startswith(("Traceback", "Try ")):
            lines.append(ln)
    reason = "; ".join(lines[:3]) or "no reason given"
    for pattern, field, fix in _REJECTIONS:
        if re.search(pattern, reason, re.IGNORECASE):
            return ConfigError(f"executor.slurm.{field}", f"the cluster rejected the job array (sbatch: {reason})",
                               fix, getattr(scfg, field))
    asked = (f"partition={scfg.partition or 'default'}, cpus_per_task={scfg.cpus_per_task}, "
             f"gpus_per_task={scfg.gpus_per_task}, mem_gb={scfg.mem_gb}, constraint={scfg.constraint}, "
             f"time_min={scfg.time_min}")
    return ConfigError("executor.slurm", f"the cluster rejected the job array (sbatch: {reason}) for {asked}",
                       "ask for resources one node of the partition has (see sinfo -N -l)")


# ---------------------------------------------------------------------------------------------
# submission


def sbatch_parameters(scfg: SlurmConfig, job_name: str) -> dict:
    """submitit SlurmExecutor parameters (sbatch's own names) for the config's resources."""
    params: dict = {
        "job_name": job_name,
        "time": int(scfg.time_min),
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": int(scfg.cpus_per_task),
        "array_parallelism": int(scfg.array_parallelism),
        "signal_delay_s": int(scfg.signal_delay_s),
    }
    if scfg.gpus_per_task:
        params["gpus_per_task"] = int(scfg.gpus_per_task)
    if scfg.mem_gb is not None:
        params["mem"] = f"{max(1, int(round(scfg.mem_gb * 1024)))}M"
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(scfg, key):
            params[key] = getattr(scfg, key)
    if scfg.additional:
        params["additional_parameters"] = {str(k): v for k, v in scfg.additional.items()}
    return params


def _job_dicts(runs: list[RunConfig], scfg: SlurmConfig) -> list[dict]:
    dicts = []
    for rc in runs:
        d = rc.to_dict()
        d["output"] = str(Path(rc.output).resolve())  # a job's working folder may differ on the node
        if d["threads"] is None:
            d["threads"] = int(scfg.cpus_per_task)
        dicts.append(d)
    return dicts


def submit(cfg: Config, runs: list[RunConfig]) -> list[tuple[RunConfig, object]]:
    """Submit ``runs`` as one job array; returns (run, submitit job) pairs. Nothing is queued on error."""
    import submitit
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    scfg = cfg.executor.slurm
    sweep_dir = Path(cfg.output).resolve() / cfg.name
    token = uuid.uuid4().hex[:8]
    # a fresh folder per submission: a restarted cluster reuses job ids, and submitit names its
    # result files by job id
    folder = sweep_dir / ".slurm" / f"{time.strftime('%Y%m%d-%H%M%S')}-{token}"
    # what this call creates and must take back if nothing is queued (the folders above `folder`
    # that did not exist before, deepest first)
    created = [p for p in (folder.parent, sweep_dir, sweep_dir.parent) if not p.exists()]
    job_name = f"albench-{re.sub(r'[^A-Za-z0-9_.-]', '_', cfg.name)}-{token}"  # goes into '#SBATCH' lines
    try:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=int(scfg.max_requeues))
        try:
            executor.update_parameters(**sbatch_parameters(scfg, job_name))
        except ValueError as exc:
            raise ConfigError("executor.slurm.additional", f"is not accepted by submitit ({str(exc).splitlines()[0]})",
                              "use sbatch's long option names", scfg.additional) from None
        calls = [SlurmRun(d, int(scfg.time_min), int(scfg.max_requeues)) for d in _job_dicts(runs, scfg)]
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's stderr; we say it in one line
                jobs = executor.submit_array(calls)
        except (FailedJobError, FailedSubmissionError) as exc:
            raise rejection_error(str(exc), scfg) from None
    except BaseException:
        _take_back(folder, created)
        raise
    now = time.time()
    append_ledger(sweep_dir, [
        {"run_id": rc.run_id, "run_dir": str(rc.run_dir.resolve()), "job_id": job.job_id, "job_name": job_name,
         "folder": str(folder), "submitted": now, "keys": fingerprint(rc.to_dict())["keys"]}
        for rc, job in zip(runs, jobs)])
    return list(zip(runs, jobs))


def _take_back(folder: Path, created: list[Path]) -> None:
    """Remove a submission's folder and the (now empty) folders the submission created above it."""
    shutil.rmtree(folder, ignore_errors=True)
    for p in created:
        try:
            p.rmdir()  # only when empty: never anything another process put there meanwhile
        except OSError:
            pass


# squeue states of a job on its way out. COMPLETING is also a requeue's way back to PENDING (a
# preempted or time-limit-signalled task): wait until it settles before judging the job.
SETTLING = {"COMPLETING", "SIGNALING", "STAGE_OUT", "PREEMPTED"}
# states of a job that is over, should squeue still list it: not live, whatever its name
OVER = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY",
        "REVOKED"}
SETTLE_S = 180.0  # the longest wait for a COMPLETING job to clear (Slurm's KillWait is 30 s by default)


def _settled_live_jobs(ids: dict[str, str | None]) -> dict[str, dict]:
    """live_jobs() without jobs that are over, polled until none of ``ids`` (job id -> our job name) is
    settling (COMPLETING...):
    such a job is then either gone (dead: resubmit it) or back as PENDING/REQUEUED (a requeue: leave
    it). ConfigError when one is still settling after SETTLE_S."""
    deadline = time.monotonic() + SETTLE_S
    said = False
    while True:
        live = {j: v for j, v in live_jobs().items() if v["state"] not in OVER}
        settling = sorted(j for j, name in ids.items() if j in live and live[j]["state"] in SETTLING
                          and live[j]["name"] == name)  # another job that reuses the id is not ours to wait on
        if not settling:
            return live
        if time.monotonic() >= deadline:
            raise ConfigError("executor.name", f"Slurm job(s) {', '.join(settling)} of this sweep are still "
                              f"{live[settling[0]]['state']} after {SETTLE_S:.0f} s, so albench cannot tell whether "
                              "they end or are requeued", "wait until squeue no longer lists them as "
                              f"{live[settling[0]]['state']}, then rerun the same command")
        if not said:
            print(f"albench: waiting for Slurm job(s) {', '.join(settling)} ({live[settling[0]]['state']}) to "
                  "clear before deciding what to resubmit", file=sys.stderr)
            said = True
        time.sleep(POLL_S)


def queued_elsewhere(cfg: Config, runs: list[RunConfig]) -> dict[Path, dict]:
    """Ledger entries of ``runs`` whose latest job Slurm still holds (pending, running, requeued)."""
    sweep_dir = Path(cfg.output).resolve() / cfg.name
    if not sweep_dir.is_dir():
        return {}
    ledger = read_ledgers(sweep_dir)
    mine = {rc.run_dir.resolve() for rc in runs}
    entries = {d: e for d, e in ledger.items() if d in mine}
    if not entries:
        return {}
    try:
        live = _settled_live_jobs({e["job_id"]: e.get("job_name") for e in entries.values()})
    except SlurmQueryError as exc:
        raise ConfigError("executor.name", f"is 'slurm' but squeue failed ({exc})",
                          "check that Slurm answers (squeue --me), then resubmit") from None
    return {d: {**e, "state": live[e["job_id"]]["state"]} for d, e in entries.items()
            if e["job_id"] in live and live[e["job_id"]]["name"] == e.get("job_name")}


def _refuse_queued_drift(queued: dict[Path, dict], by_dir: dict[Path, RunConfig]) -> None:
    """ConfigError when a run still queued in Slurm was submitted with other result keys: waiting for
    that job would record the old config's result under this one's name."""
    drifted = [(e, compare(e["keys"], by_dir[d].to_dict())) for d, e in queued.items()
               if isinstance(e.get("keys"), dict)]
    drifted = [(e, changes) for e, changes in drifted if changes]
    if not drifted:
        return
    keys = sorted({k for _, changes in drifted for k, _, _ in changes})
    jobs = "; ".join(f"{e['run_id']} (job {e['job_id']}): {describe(changes, 3)}" for e, changes in drifted[:3])
    raise ConfigError(", ".join(keys), f"differs from the config that {len(drifted)} queued or running Slurm job(s) "
                      f"were submitted with ({jobs})",
                      "wait for those jobs or scancel them, or set another 'name' or --out")


def run_slurm(cfg: Config, todo: list[RunConfig], *, progress: bool = True) -> list[dict]:
    """Submit the runs that are neither complete nor queued; wait for them unless ``executor.slurm.wait``
    is false. Returns one outcome per run (state: complete | failed | skipped | submitted)."""
    import submitit

    check_slurm()
    scfg = cfg.executor.slurm
    sweep_dir = Path(cfg.output) / cfg.name
    queued = queued_elsewhere(cfg, todo)
    _refuse_queued_drift(queued, {rc.run_dir.resolve(): rc for rc in todo})
    fresh = [rc for rc in todo if rc.run_dir.resolve() not in queued]
    pairs = submit(cfg, fresh) if fresh else []
    if pairs:
        first = pairs[0][1].job_id.split("_")[0]
        print(f"albench: submitted {len(pairs)} run(s) as Slurm job {first} "
              f"({'array of ' + str(len(pairs)) if len(pairs) > 1 else 'one task'}); "
              f"logs under {sweep_dir / '.slurm'}", file=sys.stderr)
    if queued:
        print(f"albench: {len(queued)} run(s) already queued or running, not submitted again: "
              + ", ".join(f"{e['run_id']} (job {e['job_id']} {e['state']})" for e in queued.values()),
              file=sys.stderr)
    by_dir = {rc.run_dir.resolve(): rc for rc in todo}
    for d, e in queued.items():
        pairs.append((by_dir[d], submitit.SlurmJob(folder=e["folder"], job_id=e["job_id"])))
    if not scfg.wait:
        print(f"albench: not waiting (executor.slurm.wait: false); follow them with: albench status {sweep_dir}",
              file=sys.stderr)
        return [{"run_id": rc.run_id, "state": "submitted", "job_id": job.job_id, "error": None, "value": None}
                for rc, job in pairs]
    try:
        return wait_for(pairs, progress=progress)
    except KeyboardInterrupt:
        print(f"\nalbench: stopped waiting; the Slurm jobs keep running. Follow them with: albench status "
              f"{sweep_dir} (rerunning the same command waits for them again)", file=sys.stderr)
        raise


def _failure_reason(exc: BaseException) -> str | None:
    """The line of submitit's exception worth showing, or None when it says nothing beyond the job's
    state. submitit's texts name its internal result files (``..._result.pkl``); those never show."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    if isinstance(exc, UncompletedJobError) and not isinstance(exc, FailedJobError):
        return None  # "Job N with path .../N_result.pkl has not produced any output (state: ...)"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and set(ln.strip()) - set("-=")]
    if not lines:
        return type(exc).__name__
    # FailedJobError carries the job's traceback: its last line is the exception the job raised
    line = lines[-1] if isinstance(exc, FailedJobError) else lines[0]
    line = re.sub(r"(with path )?\S*_(result|submitted)\.pkl\S*", "", line).strip()
    return line[:200] or type(exc).__name__


def _job_failure(job, rc: RunConfig, exc: BaseException) -> str:
    try:
        state = job.get_info(mode="force").get("State") or job.state
    except Exception:  # noqa: BLE001 - the state is only decoration for the message
        state = "UNKNOWN"
    err = Path(job.paths.stderr)
    reason = _failure_reason(exc)
    return (f"Slurm job {job.job_id} ended {state} without finishing the run"
            + (f" ({reason})" if reason else "") + f"; see {err}")


def wait_for(pairs: list[tuple[RunConfig, object]], *, progress: bool = True) -> list[dict]:
    """Wait until every job is over; returns the outcome dicts (a job that died is a failed run)."""
    from albench.errors import RunFailed
    from albench.runner.local import Progress

    bar = Progress(len(pairs), sum(rc.al.cycles for rc, _ in pairs), progress)
    seen_rows = {rc.run_id: 0 for rc, _ in pairs}
    outcomes: list[dict] = []
    pending = list(pairs)
    try:
        while pending:
            still = []
            for rc, job in pending:
                try:
                    rows = len(read_cycles(rc.run_dir)) if progress else 0
                except DamagedRecord:
                    rows = seen_rows[rc.run_id]  # the run rewrites it from its checkpoint
                if rows > seen_rows[rc.run_id]:
                    bar.cycles.update(rows - seen_rows[rc.run_id])
                    seen_rows[rc.run_id] = rows
                if not job.done():
                    still.append((rc, job))
                    continue
                try:
                    out = job.result()
                except Exception as exc:  # noqa: BLE001 - killed, out of requeues, cancelled, node failure
                    msg = _job_failure(job, rc, exc)
                    rec = RunRecorder(rc.run_dir)
                    rec.fail(RunFailed(msg))  # never over a complete (or damaged) status
                    try:
                        complete = rec.is_complete()
                    except DamagedRecord:
                        complete = False
                    out = {"run_id": rc.run_id, "state": "complete" if complete else "failed",
                           "error": None if complete else msg, "value": None}
                try:
                    started = (read_status(rc.run_dir) or {}).get("started")
                except DamagedRecord:
                    started = None
                if started is not None:  # the done line shows the time since the run started
                    bar.started[rc.run_id] = time.perf_counter() - (time.time() - float(started))
                outcomes.append(out)
                bar.done(out)
            pending = still
            if pending:
                time.sleep(POLL_S)
    finally:
        bar.close()
    return outcomes
