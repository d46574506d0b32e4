"""albench status and the Slurm executor's pieces that need no cluster: state per run from records
and (faked) Slurm answers, sbatch rejections as one line, sbatch parameters from the config."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from albench import status as st
from albench.cli import main
from albench.config import SlurmConfig
from albench.records import RunRecorder, atomic_write_json


def _run_folder(root: Path, strategy: str, state: str | None, *, rows: int = 0, **status) -> Path:
    run_dir = root / "sweep" / "digits" / strategy / "seed-0"
    run_dir.mkdir(parents=True)
    atomic_write_json(run_dir / "run.json", {"dataset": "digits", "strategy": strategy, "seed": 0})
    (run_dir / "config.yaml").write_text("al: {cycles: 3}\n")
    if rows:
        lines = ["cycle,n_labeled,metric,value"] + [f"{c},{20 * (c + 1)},accuracy,0.5" for c in range(rows)]
        (run_dir / "cycles.csv").write_text("\n".join(lines) + "\n")
    if state is not None:
        atomic_write_json(run_dir / "status.json", {"state": state, **status})
    (run_dir / "run.log").write_text("".join(f"line {i}\n" for i in range(30)))
    return run_dir


def _entry(run_dir: Path, job_id: str, folder: Path | None = None) -> dict:
    return {"run_id": f"digits/{run_dir.parent.name}/seed-0", "run_dir": str(run_dir.resolve()), "job_id": job_id,
            "job_name": "albench-sweep-abc", "folder": str(folder or run_dir.parent), "submitted": 1.0}


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_states_from_local_records(tmp_path, capsys):
    host = socket.gethostname()
    _run_folder(tmp_path, "done", "complete", rows=3)
    _run_folder(tmp_path, "alive", "running", rows=1, host=host, pid=os.getpid())
    _run_folder(tmp_path, "killed", "running", rows=2, host=host, pid=_dead_pid())
    _run_folder(tmp_path, "crashed", "failed", rows=0, error="ValueError: boom")
    _run_folder(tmp_path, "elsewhere", "running", host="node-7", pid=1)

    assert main(["status", str(tmp_path / "sweep"), "--lines", "3"]) == 1  # a failed run: exit 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "5 runs: 1 done, 2 running, 1 interrupted, 0 pending, 1 failed"
    table = {ln.split()[1]: ln for ln in lines[1:6]}
    assert table["digits/done/seed-0"].startswith("done ") and "final accuracy 50.00%" in table["digits/done/seed-0"]
    assert table["digits/alive/seed-0"].startswith("running ") and "1/3 cycles" in table["digits/alive/seed-0"]
    assert table["digits/killed/seed-0"].startswith("interrupted ") and "ended without finishing" in table[
        "digits/killed/seed-0"] and "interrupted (resumable at cycle 0)" in table["digits/killed/seed-0"]
    assert table["digits/crashed/seed-0"].startswith("failed ") and "ValueError: boom" in table[
        "digits/crashed/seed-0"]
    assert table["digits/elsewhere/seed-0"].startswith("running ") and "not checked from here" in table[
        "digits/elsewhere/seed-0"]
    # the last lines of each failed run's log follow the table
    assert out.count("last lines of") == 1
    assert "    line 27\n    line 28\n    line 29" in out and "    line 26" not in out


def test_a_run_stopped_at_labels_is_stopped_whatever_its_worker_or_job_does_next(tmp_path, monkeypatch, capsys):
    host = socket.gethostname()
    # the worker that stopped it lives on (here: this process), running other runs
    local = _run_folder(tmp_path, "local", "stopped", rows=2, host=host, pid=os.getpid(), labels=40)
    # its Slurm task ended normally after stopping it
    slurm = _run_folder(tmp_path, "slurm", "stopped", rows=1, labels=20, slurm_job_id="8", slurm_task_id="0")
    st.append_ledger(tmp_path / "sweep", [_entry(slurm, "8_0")])
    monkeypatch.setattr(st, "slurm_job_states", lambda entries: {"8_0": {"state": "COMPLETED", "alive": False}})

    assert main(["status", str(tmp_path / "sweep")]) == 0  # nothing failed
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 runs: 0 done, 0 running, 2 stopped, 0 pending, 0 failed"
    table = {ln.split()[1]: ln for ln in lines[1:3]}
    assert table["digits/local/seed-0"].startswith("stopped ")
    assert "2/3 cycles, left unfinished at 40 labels by --stop-at-labels; rerun without the flag" in table[
        "digits/local/seed-0"]
    assert table["digits/slurm/seed-0"].startswith("stopped ") and "at 20 labels" in table["digits/slurm/seed-0"]


def test_states_from_slurm_answers(tmp_path, monkeypatch):
    folder = tmp_path / "submitit"
    folder.mkdir()
    queued = tmp_path / "sweep" / "digits" / "queued" / "seed-0"  # no folder yet: the task waits
    requeued = _run_folder(tmp_path, "requeued", "running", rows=1, slurm_job_id="7", slurm_task_id="1")
    (requeued / "checkpoint.pt").write_bytes(b"x")
    running = _run_folder(tmp_path, "running", "running", rows=2)
    dead = _run_folder(tmp_path, "dead", "running", rows=1)
    done = _run_folder(tmp_path, "done", "complete", rows=3)
    (folder / "7_3_0_log.err").write_text("Traceback\nMemoryError: out of memory\n")
    entries = [_entry(queued, "7_0"), _entry(requeued, "7_1"), _entry(running, "7_2"), _entry(dead, "7_3", folder),
               _entry(done, "7_4")]
    st.append_ledger(tmp_path / "sweep", entries)
    answers = {"7_0": {"state": "PENDING", "alive": True}, "7_1": {"state": "REQUEUED", "alive": True},
               "7_2": {"state": "RUNNING", "alive": True},
               "7_3": {"state": "OUT_OF_MEMORY", "alive": False, "exit_code": "0:125"},
               "7_4": {"state": "COMPLETED", "alive": False}}
    monkeypatch.setattr(st, "slurm_job_states", lambda entries: answers)

    statuses, answered = st.sweep_status(tmp_path / "sweep")
    by = {s.run_id: s for s in statuses}
    assert answered is True
    assert by["digits/queued/seed-0"].state == "pending" and "not started" in by["digits/queued/seed-0"].detail
    assert by["digits/requeued/seed-0"].state == "pending" and "resumes from its checkpoint" in by[
        "digits/requeued/seed-0"].detail
    assert by["digits/running/seed-0"].state == "running" and "Slurm job 7_2 RUNNING" in by[
        "digits/running/seed-0"].detail
    assert by["digits/dead/seed-0"].state == "failed" and "ended OUT_OF_MEMORY" in by["digits/dead/seed-0"].detail
    assert by["digits/dead/seed-0"].logs[str(folder / "7_3_0_log.err")][-1] == "MemoryError: out of memory"
    assert by["digits/done/seed-0"].state == "done"


def test_unknown_job_is_failed_and_unreachable_slurm_keeps_the_records_state(tmp_path, monkeypatch):
    queued = tmp_path / "sweep" / "digits" / "queued" / "seed-0"
    running = _run_folder(tmp_path, "running", "running", rows=1)
    st.append_ledger(tmp_path / "sweep", [_entry(queued, "9_0"), _entry(running, "9_1")])

    monkeypatch.setattr(st, "slurm_job_states", lambda entries: {})  # Slurm answers, knows neither job
    by = {s.run_id: s for s in st.sweep_status(tmp_path / "sweep")[0]}
    assert by["digits/queued/seed-0"].state == "failed" and "no job 9_0" in by["digits/queued/seed-0"].detail
    assert by["digits/running/seed-0"].state == "failed"

    monkeypatch.setattr(st, "slurm_job_states", lambda entries: None)  # Slurm cannot be asked from here
    statuses, answered = st.sweep_status(tmp_path / "sweep")
    by = {s.run_id: s for s in statuses}
    assert answered is False
    assert by["digits/queued/seed-0"].state == "pending" and "not reachable" in by["digits/queued/seed-0"].detail
    assert by["digits/running/seed-0"].state == "running"
    assert "Slurm did not answer" in st.format_status(statuses, answered).splitlines()[0]


def test_the_latest_submission_of_a_run_wins(tmp_path):
    run_dir = tmp_path / "sweep" / "digits" / "random" / "seed-0"
    old, new = _entry(run_dir, "3_0"), _entry(run_dir, "8_0")
    old["submitted"], new["submitted"] = 100.0, 200.0
    st.append_ledger(tmp_path / "sweep", [new])
    st.append_ledger(tmp_path / "sweep", [old])
    (entry,) = st.read_ledgers(tmp_path / "sweep").values()
    assert entry["job_id"] == "8_0"
    # asked about one run folder inside the sweep, the sweep's ledger still counts
    assert st.read_ledgers(run_dir)[run_dir.resolve()]["job_id"] == "8_0"


def test_status_of_a_folder_without_runs_is_bad_input(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("albench: error: RESULTS_DIR:") and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# the Slurm executor without a cluster


@pytest.mark.parametrize("stderr,field", [
    ("sbatch: error: Invalid generic resource (gres) specification\n", "gpus_per_task"),
    ("sbatch: error: Batch job submission failed: More processors requested than permitted\n", "cpus_per_task"),
    ("sbatch: error: invalid partition specified: gpu\nsbatch: error: Batch job submission failed: "
     "Invalid partition name specified\n", "partition"),
    ("sbatch: error: Memory specification can not be satisfied\n", "mem_gb"),
    ("sbatch: error: Batch job submission failed: Invalid feature specification\n", "constraint"),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified\n",
     "account"),
    ("sbatch: error: Batch job submission failed: Invalid qos specification\n", "qos"),
    ("sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)\n",
     "time_min"),
    ("sbatch: unrecognized option '--exclud=node1'\nTry \"sbatch --help\" for more information\n", "additional"),
])
def test_sbatch_rejection_names_the_field(stderr, field):
    from albench.runner.slurm import rejection_error

    scfg = SlurmConfig(partition="gpu", gpus_per_task=1, additional={"exclud": "node1"})
    err = rejection_error(stderr, scfg)
    assert err.field == f"executor.slurm.{field}"
    assert err.value == getattr(scfg, field)
    text = str(err)
    assert "\n" not in text and "Try " not in text and "sbatch: error" not in text and "fix: " in text


def test_unrecognised_rejection_lists_the_request():
    from albench.runner.slurm import rejection_error

    err = rejection_error("sbatch: error: Batch job submission failed: Node count specification invalid\n",
                          SlurmConfig(cpus_per_task=4))
    assert err.field == "executor.slurm" and "cpus_per_task=4" in str(err) and "Node count" in str(err)


def test_sbatch_parameters_follow_the_config():
    from albench.runner.slurm import sbatch_parameters

    scfg = SlurmConfig(partition="gpu", account="lab", qos="high", time_min=240, gpus_per_task=1, cpus_per_task=8,
                       mem_gb=31.5, constraint="a100", array_parallelism=16, signal_delay_s=300,
                       additional={"exclude": "node7"})
    p = sbatch_parameters(scfg, "albench-x-1")
    assert p == {"job_name": "albench-x-1", "time": 240, "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": 8,
                 "array_parallelism": 16, "signal_delay_s": 300, "gpus_per_task": 1, "mem": "32256M",
                 "partition": "gpu", "account": "lab", "qos": "high", "constraint": "a100",
                 "additional_parameters": {"exclude": "node7"}}
    # what submitit writes into the sbatch script
    from submitit.slurm.slurm import _make_sbatch_string

    script = _make_sbatch_string(command="x", folder="/tmp/f", map_count=3, **p)
    for flag in ("--gpus-per-task=1", "--cpus-per-task=8", "--mem=32256M", "--partition=gpu", "--account=lab",
                 "--qos=high", "--constraint=a100", "--time=240", "--exclude=node7", "--array=0-2%3",
                 "--signal=USR2@300"):
        assert f"#SBATCH {flag}" in script
    assert "gpus" not in " ".join(sbatch_parameters(SlurmConfig(), "n"))


def _tiny_config(tmp_path: Path) -> Path:
    import yaml

    cfg = {"name": "s", "dataset": "digits", "model": {"name": "small-cnn", "params": {"width": 8}},
           "train": {"epochs": 1, "batch_size": 32}, "al": {"initial": 20, "budget": 20, "cycles": 2},
           "strategies": ["random"], "seeds": [0], "output": str(tmp_path / "results")}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_executor_slurm_without_slurm_is_bad_input(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no sbatch, squeue, sacct, sinfo here
    assert main(["run", str(_tiny_config(tmp_path)), "--executor", "slurm", "--quiet"]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("albench: error:")]
    assert line.startswith("albench: error: executor.name: is 'slurm' but Slurm is not installed here")
    assert not (tmp_path / "results" / "s" / ".slurm").exists()


def test_executor_slurm_with_an_unreachable_controller_is_bad_input(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "bin"
    fake.mkdir()
    for cmd in ("sbatch", "squeue", "sacct"):
        (fake / cmd).write_text("#!/bin/sh\nexit 1\n")
    (fake / "sinfo").write_text("#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller "
                                "(connect failure)' >&2\nexit 1\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    assert main(["run", str(_tiny_config(tmp_path)), "--executor", "slurm", "--quiet"]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("albench: error:")]
    assert "Slurm is not reachable (slurm_load_partitions: Unable to contact slurm controller" in line


def test_checkpointable_resubmits_the_same_run_and_notes_it_in_the_log(tmp_path):
    from albench.validate import load_config
    from albench.plan import make_plan
    from albench.runner.slurm import SlurmRun

    (rc,) = make_plan(load_config(_tiny_config(tmp_path)))
    job = SlurmRun(rc.to_dict())
    delayed = job.checkpoint()
    assert delayed.function is job and delayed.args == () and delayed.kwargs == {}
    assert "Slurm signalled preemption or time-out" in (rc.run_dir / "run.log").read_text()
    # a complete run's log is never appended to
    RunRecorder(rc.run_dir)._set_status("complete")
    before = (rc.run_dir / "run.log").read_bytes()
    job.checkpoint()
    assert (rc.run_dir / "run.log").read_bytes() == before


def test_runs_of_several_sweeps_are_named_by_folder(tmp_path, capsys):
    for sweep in ("a", "b"):
        run_dir = tmp_path / sweep / "digits" / "random" / "seed-0"
        run_dir.mkdir(parents=True)
        atomic_write_json(run_dir / "run.json", {"dataset": "digits", "strategy": "random", "seed": 0})
        atomic_write_json(run_dir / "status.json", {"state": "complete"})
    assert main(["status", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in lines[1:]] == ["a/digits/random/seed-0", "b/digits/random/seed-0"]
