"""Integration tests against a real single-node Slurm cluster (slurmctld, slurmd, munge, slurmdbd).

They use the cluster that ``SLURM_CONF`` points to (``.ci/run`` brings one up with
``slurm/cluster.sh``); without one, the module brings up its own and tears it down afterwards.
They skip only where the daemons cannot run: not root, or not Debian.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from albench.cli import main
from albench.records import read_artifact, read_cycles, read_status

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
CLUSTER_SH = REPO / "slurm" / "cluster.sh"
SAME = ("cycle", "n_labeled", "metric", "value", "test_loss", "epochs", "selected_epoch")
JOB_TIMEOUT_S = 300
# time_min >= 11: with 10 min or less submitit counts every signal as a time-out (and spends a requeue)
SLURM = {"name": "slurm", "slurm": {"time_min": 11, "cpus_per_task": 1, "mem_gb": 1}}


def _why_daemons_cannot_run() -> str | None:
    if os.geteuid() != 0:
        return "not root (the Slurm daemons and apt-get need root)"
    try:
        release = Path("/etc/os-release").read_text()
    except OSError:
        release = ""
    if "ID=debian" not in release.split():
        return "not Debian (slurm/cluster.sh uses Debian's Slurm packages)"
    return None


def _sinfo_ok() -> tuple[bool, str]:
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0 and proc.stdout.strip() != "", (proc.stderr or proc.stdout).strip()


def _free_port_block(n: int = 4) -> int:
    for _ in range(50):
        base = random.randint(20000, 40000)
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError("no free block of ports for a private Slurm cluster")


@pytest.fixture(scope="module")
def cluster():
    """A Slurm cluster that answers: CI's (SLURM_CONF) or one brought up here for this module."""
    conf = os.environ.get("SLURM_CONF")
    if conf:
        ok, msg = _sinfo_ok()
        if not ok:
            pytest.fail(f"SLURM_CONF={conf} is set but Slurm does not answer (sinfo: {msg}); "
                        f"bring the cluster up with 'slurm/cluster.sh up DIR' or unset SLURM_CONF")
        yield conf
        return
    why = _why_daemons_cannot_run()
    if why:
        pytest.skip(f"Slurm integration tests need to run the Slurm daemons here: {why}")
    if subprocess.run([str(CLUSTER_SH), "check"], capture_output=True).returncode != 0:
        inst = subprocess.run([str(CLUSTER_SH), "install"], capture_output=True, text=True)
        if inst.returncode != 0:
            pytest.fail(f"could not install the Slurm packages: {inst.stderr.strip()[-500:]}")
    # not under pytest's tmp folders: munged wants every folder above its socket traversable by all
    folder = Path(tempfile.mkdtemp(prefix="albench-slurm-"))
    env = {**os.environ, "ALBENCH_SLURM_PORT": str(_free_port_block())}
    up = subprocess.run([str(CLUSTER_SH), "up", str(folder)], capture_output=True, text=True, env=env)
    try:
        if up.returncode != 0:
            pytest.fail(f"slurm/cluster.sh up failed: {up.stderr.strip()[-1000:]}")
        os.environ["SLURM_CONF"] = str(folder / "etc" / "slurm.conf")
        yield os.environ["SLURM_CONF"]
    finally:
        os.environ.pop("SLURM_CONF", None)
        subprocess.run([str(CLUSTER_SH), "down", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _config(tmp_path: Path, name: str, **over) -> Path:
    cfg = {
        "name": name,
        "dataset": {"name": "digits"},
        "model": {"name": "small-cnn", "params": {"width": 8}},
        "train": {"epochs": 2, "batch_size": 32, "checkpoint_every": 1, "optimizer": {"lr": 0.05},
                  "schedule": {"name": "constant"}},
        "al": {"initial": 20, "budget": 20, "cycles": 2},
        "strategies": ["random", "margin"],
        "seeds": [0, 1],
        "threads": 1,
        "record": {"embeddings": 32},
        "output": str(tmp_path / "results"),
        "executor": json.loads(json.dumps(SLURM)),
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _ledger(sweep_dir: Path) -> list[dict]:
    path = sweep_dir / ".slurm" / "submissions.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def _final(run_dir: Path) -> dict:
    return {
        "queries": json.loads((run_dir / "queries.json").read_text()),
        "rows": [{k: r[k] for k in SAME} for r in read_cycles(run_dir)],
        **{k: read_artifact(run_dir, k) for k in ("labeled_targets", "test_loss", "embeddings")},
    }


def test_sweep_2x2_as_a_job_array_then_resubmit_is_a_no_op(cluster, tmp_path, capsys):
    cfg = _config(tmp_path, "array")
    assert main(["run", str(cfg), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "submitted 4 run(s) as Slurm job" in err and "array of 4" in err

    sweep = tmp_path / "results" / "array"
    ledger = _ledger(sweep)
    assert len(ledger) == 4
    array_id = ledger[0]["job_id"].split("_")[0]
    assert sorted(e["job_id"] for e in ledger) == [f"{array_id}_{i}" for i in range(4)]
    for entry in ledger:
        run_dir = Path(entry["run_dir"])
        status = read_status(run_dir)
        assert status["state"] == "complete"
        assert f"{status['slurm_job_id']}_{status['slurm_task_id']}" == entry["job_id"]
        rows = read_cycles(run_dir)
        assert [r["n_labeled"] for r in rows] == [20, 40]
        assert all(0.0 <= r["value"] <= 1.0 for r in rows)
        assert len(json.loads((run_dir / "queries.json").read_text())) == 2
        assert not (run_dir / "checkpoint.pt").exists()
    assert {e["run_id"] for e in ledger} == {f"digits/{s}/seed-{n}" for s in ("random", "margin") for n in (0, 1)}

    assert main(["status", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "4 runs: 4 done, 0 running, 0 pending, 0 failed"

    # resubmitting the same config queues nothing: every run is complete
    assert main(["run", str(cfg), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "4 already complete" in err and "submitted" not in err
    assert len(_ledger(sweep)) == 4


def test_interrupted_job_requeues_resumes_and_equals_an_uninterrupted_run(cluster, tmp_path):
    import submitit

    over = {"strategies": ["random"], "seeds": [0],
            # batch 4 and width 16: an epoch lasts long enough to interrupt the job mid-training
            "model": {"name": "small-cnn", "params": {"width": 16}},
            "train": {"epochs": 4, "batch_size": 4, "checkpoint_every": 1, "optimizer": {"lr": 0.02},
                      "schedule": {"name": "constant"}},
            "al": {"initial": 40, "budget": 40, "cycles": 3}}
    cfg = _config(tmp_path, "preempt", **over)
    assert main(["run", str(cfg), "--quiet", "--set", "executor.slurm.wait=false"]) == 0
    (entry,) = _ledger(tmp_path / "results" / "preempt")
    run_dir = Path(entry["run_dir"])
    job = submitit.SlurmJob(folder=entry["folder"], job_id=entry["job_id"])

    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not (run_dir / "cycles.csv").exists():  # cycle 0 done: cycle 1 is training now
        assert time.monotonic() < deadline, "the job never finished its first cycle"
        time.sleep(0.05)
    job._interrupt()  # scancel --signal USR2: what Slurm sends on preemption

    # the same run, uninterrupted, on this CPU with one thread (while the requeued job waits to restart)
    local = _config(tmp_path, "preempt", executor={"name": "local"}, output=str(tmp_path / "local"), **over)
    assert main(["run", str(local), "--quiet"]) == 0
    want = _final(tmp_path / "local" / "preempt" / "digits" / "random" / "seed-0")

    result = job.result()
    assert result["state"] == "complete", result

    log = (run_dir / "run.log").read_text()
    assert "Slurm signalled preemption or time-out: requeued" in log
    assert "resume digits/random/seed-0 at cycle 1 " in log or "resume digits/random/seed-0 at cycle 2 " in log
    status = read_status(run_dir)
    assert status["state"] == "complete" and status["resumes"] == 1

    got = _final(run_dir)
    assert got["queries"] == want["queries"]
    assert got["rows"] == want["rows"]
    for key in ("labeled_targets", "test_loss", "embeddings"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_impossible_request_is_one_clear_line_and_queues_nothing(cluster, tmp_path, capsys):
    cfg = _config(tmp_path, "gpu")
    code = main(["run", str(cfg), "--quiet", "--set", "executor.slurm.gpus_per_task=1"])
    err = capsys.readouterr().err
    assert code == 2
    (line,) = [ln for ln in err.splitlines() if ln.startswith("albench: error:")]
    assert line.startswith("albench: error: executor.slurm.gpus_per_task: the cluster rejected the job array")
    assert "gres" in line and "(got 1)" in line and "fix:" in line
    assert "Traceback" not in err and "sbatch: error" not in err
    assert _ledger(tmp_path / "results" / "gpu") == []
    assert not list((tmp_path / "results" / "gpu").rglob("*.pkl"))


def test_status_shows_a_queued_run_as_pending_then_a_cancelled_one_as_failed(cluster, tmp_path, capsys):
    cfg = _config(tmp_path, "held", strategies=["random"], seeds=[0])
    # --begin in an hour: the array task stays in the queue, its run folder does not exist yet
    assert main(["run", str(cfg), "--quiet", "--set", "executor.slurm.wait=false",
                 "--set", "executor.slurm.additional={begin: now+3600}"]) == 0
    sweep = tmp_path / "results" / "held"
    (entry,) = _ledger(sweep)
    assert not Path(entry["run_dir"]).exists()
    capsys.readouterr()
    assert main(["status", str(sweep)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1 runs: 0 done, 0 running, 1 pending, 0 failed"
    assert out[1].startswith("pending  digits/random/seed-0") and f"Slurm job {entry['job_id']} PENDING" in out[1]

    # resubmitting does not queue the run a second time
    assert main(["run", str(cfg), "--quiet", "--set", "executor.slurm.wait=false"]) == 0
    assert "already queued or running, not submitted again" in capsys.readouterr().err
    assert len(_ledger(sweep)) == 1

    subprocess.run(["scancel", entry["job_id"]], check=True)
    deadline = time.monotonic() + 60
    while True:  # until accounting has the final state
        assert main(["status", str(sweep)]) in (0, 1)
        out = capsys.readouterr().out.splitlines()
        if out[0].endswith("1 failed"):
            break
        assert time.monotonic() < deadline, out
        time.sleep(1)
    assert out[1].startswith("failed   digits/random/seed-0") and "CANCELLED" in out[1]
    assert shutil.which("sacct")


def test_resubmitting_right_after_a_cancel_runs_the_run_again_in_one_command(cluster, tmp_path, capsys):
    """A cancelled task passes through COMPLETING; a resubmission waits for it to clear and queues
    the run again, instead of waiting on the dying job and reporting the run failed (issue 16)."""
    over = {"strategies": ["random"], "seeds": [0],
            "model": {"name": "small-cnn", "params": {"width": 16}},
            "train": {"epochs": 4, "batch_size": 4, "checkpoint_every": 1, "optimizer": {"lr": 0.02},
                      "schedule": {"name": "constant"}},
            "al": {"initial": 40, "budget": 40, "cycles": 2}}
    cfg = _config(tmp_path, "cancelled", **over)
    assert main(["run", str(cfg), "--quiet", "--set", "executor.slurm.wait=false"]) == 0
    (entry,) = _ledger(tmp_path / "results" / "cancelled")
    run_dir = Path(entry["run_dir"])
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (read_status(run_dir) or {}).get("state") != "running":
        assert time.monotonic() < deadline, "the job never started its run"
        time.sleep(0.05)
    subprocess.run(["scancel", entry["job_id"]], check=True)
    capsys.readouterr()
    assert main(["run", str(cfg), "--quiet"]) == 0, capsys.readouterr().err
    assert read_status(run_dir)["state"] == "complete"
    assert len(_ledger(tmp_path / "results" / "cancelled")) == 2  # submitted again, not waited on
