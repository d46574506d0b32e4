"""Where each run of a sweep stands (done, running, pending, failed), from its records and Slurm.

A run's own ``status.json`` says complete / running / stopped / failed. What it cannot say is whether a
"running" run is still alive, or whether a run that has no folder yet is waiting in Slurm's queue:
for that the Slurm executor keeps a ledger of its submissions (``<sweep>/.slurm/submissions.jsonl``,
one JSON object per submitted run: run folder, job id, job name, submitit folder), and this module
asks Slurm (``squeue`` for live jobs, ``sacct`` for finished ones) about the latest job of each run.
A job is matched by id *and* name (the name carries a per-submission token), so a restarted cluster
that reuses job ids is never mistaken for ours.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from albench import runlock
from albench.records import (DamagedRecord, append_text, check_records, load_run, read_config_record, read_cycles,
                             read_identity, read_queries, record_text, run_id, stopped_note)

LEDGER_DIR = ".slurm"
LEDGER = "submissions.jsonl"
# stopped: left unfinished on purpose by --stop-at-labels; rerunning without the flag goes on.
# interrupted: no process is writing it and it did not fail; rerunning the sweep resumes it.
# not started: planned (the config was given) but no folder nor submission yet.
# damaged: a record cannot be read; the run is left alone until moved aside (--restart-damaged).
STATES = ("done", "running", "stopped", "interrupted", "pending", "not started", "failed", "damaged")
# squeue states of a job waiting to (re)start; every other state squeue lists is a live allocation
WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
SLURM_TIMEOUT_S = 60
SCONTROL_MAX = 20  # jobs asked one by one from the controller when accounting does not know them yet


class SlurmQueryError(RuntimeError):
    """squeue/sacct could not be run or did not answer."""


# ---------------------------------------------------------------------------------------------
# the submission ledger


def ledger_path(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / LEDGER_DIR / LEDGER


def append_ledger(sweep_dir: str | Path, entries: list[dict]) -> None:
    """Record submitted runs (one JSON line each: run_id, run_dir, job_id, job_name, folder, submitted)."""
    path = ledger_path(sweep_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    append_text(path, text)  # one write: concurrent submitters do not interleave lines


def read_ledgers(root: str | Path) -> dict[Path, dict]:
    """The latest ledger entry of every run folder under ``root`` (keyed by resolved run folder)."""
    root = Path(root)
    paths = [p for p in root.rglob(LEDGER) if p.parent.name == LEDGER_DIR]
    for parent in [root, *root.parents][:4]:  # root may be a run folder inside a sweep
        cand = ledger_path(parent)
        if cand.is_file() and cand not in paths:
            paths.append(cand)
    latest: dict[Path, dict] = {}
    for path in paths:
        try:
            text = record_text(path) or ""
        except DamagedRecord:
            continue  # not a file albench wrote (a folder, a link, not UTF-8): no submissions to follow
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue  # a torn last line from a crashed submitter
            if not (isinstance(entry, dict) and isinstance(entry.get("run_dir"), str)
                    and isinstance(entry.get("job_id"), str) and "\0" not in entry["run_dir"]):
                continue  # a line of another shape: not one albench wrote
            try:
                run_dir = Path(entry["run_dir"]).resolve()
            except (OSError, RuntimeError):
                continue
            if run_dir != root.resolve() and root.resolve() not in run_dir.parents:
                continue
            when = entry.get("submitted")
            if isinstance(when, bool) or not isinstance(when, (int, float)) or when != when:
                entry["submitted"] = 0
            if run_dir not in latest or entry.get("submitted", 0) >= latest[run_dir].get("submitted", 0):
                latest[run_dir] = entry
    return latest


# ---------------------------------------------------------------------------------------------
# asking Slurm


def slurm_available() -> bool:
    return shutil.which("squeue") is not None and shutil.which("sacct") is not None


def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SLURM_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmQueryError(f"{cmd[0]}: {exc}") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()] or [f"exit {proc.returncode}"]
        raise SlurmQueryError(f"{cmd[0]}: {lines[-1].strip()}")
    return proc.stdout


def live_jobs() -> dict[str, dict]:
    """{job id ('12' or '12_3'): {'state', 'name'}} of this user's jobs that Slurm still holds."""
    out = _run(["squeue", "-u", pwd.getpwuid(os.getuid()).pw_name, "-h", "-r", "-o", "%i|%T|%j"])
    jobs = {}
    for line in out.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) == 3:
            jobs[parts[0]] = {"state": parts[1], "name": parts[2]}
    return jobs


def finished_jobs(job_ids: list[str], names: dict[str, str] | None = None) -> dict[str, dict]:
    """{job id: {'state', 'name', 'exit_code'}} of finished jobs (or array tasks), from accounting or,
    for jobs it does not list yet, from the controller."""
    bases = sorted({j.split("_")[0] for j in job_ids})
    if not bases:
        return {}
    out = _run(["sacct", "-X", "-P", "-o", "JobID,JobName,State,ExitCode", "-j", ",".join(bases)])
    jobs = {}
    lines = out.splitlines()
    for line in lines[1:]:
        parts = line.strip().split("|")
        if len(parts) != 4 or "[" in parts[0]:
            continue  # array tasks not started yet are listed as 12_[3-5]; squeue covers those
        jobs[parts[0]] = {"name": parts[1], "state": parts[2].split(" ")[0], "exit_code": parts[3]}
    # accounting lags the controller by a few seconds; the controller keeps a finished job a while
    # (it may also list a job cancelled before it started under the name 'allocation' for a while)
    names = names or {}
    unsure = [j for j in job_ids if j not in jobs or (j in names and jobs[j]["name"] != names[j])]
    for jid in unsure[:SCONTROL_MAX]:
        try:
            out = _run(["scontrol", "-o", "show", "job", jid])
        except SlurmQueryError:
            continue  # purged, or never existed
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        if "JobState" in fields:
            jobs[jid] = {"name": fields.get("JobName"), "state": fields["JobState"],
                         "exit_code": fields.get("ExitCode", "?")}
    return jobs


def slurm_job_states(entries: list[dict]) -> dict[str, dict] | None:
    """{job id: {'state', 'alive'}} for the ledger entries whose job Slurm knows under the same name;
    None when Slurm cannot be asked from here."""
    if not entries or not slurm_available():
        return None
    try:
        live = live_jobs()
        need = [e["job_id"] for e in entries if e["job_id"] not in live]
        done = finished_jobs(need, {e["job_id"]: e["job_name"] for e in entries if e.get("job_name")}) if need else {}
    except SlurmQueryError:
        return None
    states = {}
    for e in entries:
        jid, name = e["job_id"], e.get("job_name")
        if jid in live and (name is None or live[jid]["name"] == name):
            states[jid] = {"state": live[jid]["state"], "alive": True}
        elif jid in done and (name is None or done[jid]["name"] == name):
            states[jid] = {"state": done[jid]["state"], "alive": False, "exit_code": done[jid]["exit_code"]}
    return states


# ---------------------------------------------------------------------------------------------
# one status per run


@dataclass
class RunStatus:
    run_id: str
    run_dir: Path
    state: str  # done | running | pending | failed
    detail: str
    job_id: str | None = None
    logs: dict[str, list[str]] = field(default_factory=dict)  # failed runs: source -> last lines


def _tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return text.rstrip("\n").splitlines()[-lines:] if text.strip() else []


def _run_id(run_dir: Path, entry: dict | None) -> str:
    if entry and isinstance(entry.get("run_id"), str):
        return entry["run_id"]
    try:
        ident = read_identity(run_dir)
        return run_id(ident['dataset'], ident['strategy'], ident['seed'])
    except (OSError, ValueError):  # a damaged run.json: the run is named by its folder
        return "/".join(run_dir.parts[-3:])


def _cycles_total(run_dir: Path) -> int | None:
    try:
        return (read_config_record(run_dir).get("al") or {}).get("cycles")
    except (OSError, ValueError):  # a damaged config.yaml (named where the run's state is decided)
        return None


def _progress(run_dir: Path) -> str:
    try:
        rows = len(read_cycles(run_dir))
    except DamagedRecord:
        return "cycles.csv damaged (resuming rewrites it from the checkpoint)"
    total = _cycles_total(run_dir)
    text = f"{rows}/{total if total is not None else '?'} cycles"
    if rows == 0 and (pretext := _pretext_epoch(run_dir)):  # a long prepare phase shows where it is
        text += f", {pretext}"
    return text


PRETEXT_LINE = re.compile(r"pretext (\S+) epoch (\d+)/(\d+)")


def _pretext_epoch(run_dir: Path) -> str | None:
    """'pretext simclr epoch 37/500' from the last such line of run.log (its last 4 KiB), or None."""
    try:
        with open(run_dir / "run.log", "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = PRETEXT_LINE.findall(tail)
    return f"pretext {found[-1][0]} epoch {found[-1][1]}/{found[-1][2]}" if found else None


def _resume_point(run_dir: Path) -> tuple[str, int]:
    """('resumable at cycle N' (with the epoch when mid-training), N) from the run's checkpoint: the
    checkpoint, not cycles.csv, says how far a run got (it is written first)."""
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.exists():
        return "resumable at cycle 0", 0
    try:
        import torch

        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        cycle = int(state["next_cycle"])
        partial = state.get("partial")
        epoch = f", epoch {int(partial['trainer']['epoch'])}" if partial else ""
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint
        raise DamagedRecord(ckpt, f"cannot be loaded ({type(exc).__name__}); fix: delete it to start this run "
                            "over from cycle 0, or move the run folder aside") from None
    return f"resumable at cycle {cycle}{epoch}", cycle


def _interrupted(rid: str, run_dir: Path, why: str) -> RunStatus:
    try:
        point, done = _resume_point(run_dir)
    except DamagedRecord as exc:
        return RunStatus(rid, run_dir, "damaged", f"{_progress(run_dir)}, {exc}")
    total = _cycles_total(run_dir)
    return RunStatus(rid, run_dir, "interrupted", f"interrupted ({point}), {done}/{total if total else '?'} cycles "
                     f"done; {why}; rerun the sweep to resume")


def _stderr_path(entry: dict) -> Path | None:
    try:
        from submitit.core.utils import JobPaths

        return JobPaths(entry["folder"], job_id=entry["job_id"], task_id=0).stderr
    except (KeyError, ImportError):
        return None


def run_status(run_dir: Path, entry: dict | None, slurm: dict[str, dict] | None, lines: int = 10) -> RunStatus:
    """The state of one run from its status.json, its latest submission and Slurm's answer."""
    rid = _run_id(run_dir, entry)
    try:
        st = check_records(run_dir) or {}  # a damaged identity record is damage whatever the state
    except DamagedRecord as exc:
        return RunStatus(rid, run_dir, "damaged", f"{exc}; fix: rerun with --restart-damaged to move it aside "
                         "and run it again")
    rec = st.get("state")
    if rec == "complete":
        try:
            rows = load_run(run_dir)["rows"]  # run.json, config.yaml and cycles.csv
            read_queries(run_dir)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            return RunStatus(rid, run_dir, "damaged", f"complete, but {exc}")
        total = _cycles_total(run_dir)
        if total is not None and len(rows) != total:
            return RunStatus(rid, run_dir, "damaged", f"complete, but cycles.csv holds {len(rows)} of {total} "
                             "cycles")
        last = rows[-1] if rows else {}
        value = f", final {last.get('metric', 'metric')} {100 * last['value']:.2f}%" if last.get("value") is not None else ""
        return RunStatus(rid, run_dir, "done", f"{len(rows)} cycles{value}")

    job_id = entry["job_id"] if entry else None
    if job_id is None and st.get("slurm_job_id"):  # started by a submission this ledger does not hold
        job_id = st["slurm_job_id"] + (f"_{st['slurm_task_id']}" if st.get("slurm_task_id") else "")
    job = (slurm or {}).get(job_id) if job_id else None
    progress = _progress(run_dir) if run_dir.exists() else "not started"

    if job is not None and job["alive"]:
        where = f"Slurm job {job_id} {job['state']}"
        if job["state"] in WAITING:
            again = " (requeued; resumes from its checkpoint)" if (run_dir / "checkpoint.pt").exists() else ""
            return RunStatus(rid, run_dir, "pending", f"{progress}, {where}{again}", job_id)
        return RunStatus(rid, run_dir, "running", f"{progress}, {where}", job_id)

    if rec == "stopped" and runlock.live_holder(run_dir) is None:  # its worker may live on with other runs
        return RunStatus(rid, run_dir, "stopped", f"{progress}, {stopped_note(st)}", job_id)

    failed = None
    if job is not None:  # Slurm says the job is over, yet the run is not complete
        failed = f"Slurm job {job_id} ended {job['state']} (exit {job.get('exit_code', '?')})"
        if rec == "failed" and st.get("error"):
            # the run's own record says why first; a task that recorded its failure and exited
            # normally is not "ended COMPLETED"
            failed = (f"{st['error']} (Slurm job {job_id})" if job["state"] == "COMPLETED"
                      else f"{st['error']} ({failed})")
    elif rec == "failed":
        failed = st.get("error") or "failed"
    elif job_id is not None and slurm is not None:
        failed = f"Slurm has no job {job_id} under this sweep's job name (cancelled before it started, or purged)"
    elif job_id is not None:  # Slurm cannot be asked from here: the records are all we have
        state = "running" if rec == "running" else "pending"
        return RunStatus(rid, run_dir, state, f"{progress}, Slurm job {job_id} (Slurm not reachable here; "
                         "state from the records)", job_id)
    elif (holder := runlock.live_holder(run_dir)) is not None:
        return RunStatus(rid, run_dir, "running", f"{progress}, {runlock.describe_holder(holder)}")
    elif rec == "running":
        host, pid = st.get("host"), st.get("pid")
        if host == socket.gethostname() and isinstance(pid, int) and runlock.pid_alive(pid) \
                and not (run_dir / runlock.LOCK).exists():
            return RunStatus(rid, run_dir, "running", f"{progress}, pid {pid} on {host}")
        if host != socket.gethostname() and not (run_dir / runlock.LOCK).exists():
            return RunStatus(rid, run_dir, "running", f"{progress}, pid {pid} on {host}, not checked from here")
        return _interrupted(rid, run_dir, f"process {pid} on {host} ended without finishing")
    else:
        return _interrupted(rid, run_dir, "killed before its first record")

    logs = {}
    tail = _tail(run_dir / "run.log", lines)
    if tail:
        logs[str(run_dir / "run.log")] = tail
    err = _stderr_path(entry) if entry else None
    if err is not None:
        tail = _tail(err, lines)
        if tail:
            logs[str(err)] = tail
    return RunStatus(rid, run_dir, "failed", f"{progress}, {failed}", job_id, logs)


def sweep_status(root: str | Path, lines: int = 10, planned: list | None = None) -> tuple[list[RunStatus], bool | None]:
    """(status of every run under ``root``, whether Slurm answered: None when no run was submitted to it).

    ``planned``: the sweep's RunConfigs (from its config), so runs with no folder yet are listed too.
    """
    root = Path(root)
    ledger = read_ledgers(root)
    dirs = {p.parent.resolve() for name in ("run.json", "status.json", runlock.LOCK, "run.log")
            for p in root.rglob(name)
            if not any(part.startswith(".") for part in p.parent.relative_to(root).parts)}
    dirs |= set(ledger)
    slurm = slurm_job_states(list(ledger.values())) if ledger else None
    answered = None if not ledger else slurm is not None
    out = [run_status(d, ledger.get(d), slurm, lines) for d in sorted(dirs)]
    for rc in planned or []:
        planned_dir = Path(rc.run_dir).resolve()
        if planned_dir not in dirs and (planned_dir == root.resolve() or root.resolve() in planned_dir.parents):
            out.append(RunStatus(rc.run_id, Path(rc.run_dir).resolve(), "not started", "no run folder yet"))
    ids = [r.run_id for r in out]
    if len(set(ids)) < len(ids):  # several sweeps under root: name runs by their folder instead
        for r in out:
            r.run_id = os.path.relpath(r.run_dir, root.resolve())
    return out, answered


def format_status(statuses: list[RunStatus], answered: bool | None) -> str:
    """A table: one line per run (state, run, detail), then the last log lines of each failed run."""
    if not statuses:
        return "no runs found"
    counts = {s: sum(1 for r in statuses if r.state == s) for s in STATES}
    head = f"{len(statuses)} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES
                                                  if counts[s] or s in ("done", "running", "pending", "failed"))
    if answered is False:
        head += " (Slurm did not answer from here: states of submitted runs come from their records)"
    width = max(len(r.run_id) for r in statuses)
    sw = max(8, max(len(r.state) for r in statuses))
    lines = [head] + [f"{r.state:<{sw}} {r.run_id:<{width}}  {r.detail}" for r in statuses]
    for r in statuses:
        for source, tail in r.logs.items():
            lines.append(f"\n--- {r.run_id}: last lines of {source}")
            lines.extend(f"    {ln}" for ln in tail)
    return "\n".join(lines)


def status_command(root: str | Path, lines: int = 10, config: str | None = None) -> int:
    """``albench status``: print the table; returns 1 when a run failed or is damaged, else 0
    (interrupted runs are not failures: rerunning the sweep resumes them)."""
    from albench.errors import ConfigError

    from albench.paths import check_folder_arg

    if not 0 <= lines <= 10_000:
        raise ConfigError("--lines", "must be in 0..10000", "use e.g. --lines 10", lines)
    root = check_folder_arg(str(root), "RESULTS_DIR", "pass a sweep folder such as results/quickstart")
    planned = None
    if config is not None:
        from albench.validate import load_config
        from albench.plan import make_plan

        cfg = load_config(config, [], check_data=False)
        planned = make_plan(cfg)
    else:  # the configs albench run recorded in the sweep folder (.sweep/)
        from albench.sweeps import recorded_plan

        planned = recorded_plan(root)
    statuses, answered = sweep_status(root, lines, planned)
    if not statuses:
        raise ConfigError("RESULTS_DIR", "holds no albench runs or Slurm submissions",
                          "pass a sweep folder such as results/quickstart", str(root))
    print(format_status(statuses, answered))
    return 1 if any(r.state in ("failed", "damaged") for r in statuses) else 0
