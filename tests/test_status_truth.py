"""albench status tells the truth about interrupted runs: a run killed anywhere is
``interrupted (resumable at cycle N)`` (not failed, exit 0), runs that never started are counted from
the config, and ``albench status DIR | head`` ends quietly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


from albench.cli import main
from albench.records import RunRecorder, atomic_write_json, read_status
from tests.conftest import write_yaml

REPO = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _as_killed(run_dir: Path) -> None:
    """What SIGKILL leaves: status 'running' and the lock of a pid that is gone."""
    pid = _dead_pid()
    st = read_status(run_dir)
    atomic_write_json(run_dir / "status.json", {**st, "pid": pid})
    (run_dir / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "time": 0}))


def test_interrupted_runs_are_resumable_not_failed(tiny_raw, tmp_path, capsys, monkeypatch, one_torch_thread):
    tiny_raw["strategies"] = ["random", "least-confidence", "margin", "entropy"]
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    sweep = tmp_path / "results" / "tiny"
    # kill the first run between its cycle-0 checkpoint and its cycles.csv
    real = RunRecorder.write_cycles

    def die(self, rows, queries):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunRecorder, "write_cycles", die)
    assert main(["run", str(cfg), "--quiet"]) == 130
    monkeypatch.setattr(RunRecorder, "write_cycles", real)
    first = sweep / "digits" / "random" / "seed-0"
    _as_killed(first)
    # a second run killed before its first status record: only its log and lock exist
    second = sweep / "digits" / "least-confidence" / "seed-0"
    second.mkdir(parents=True)
    (second / "run.log").write_text("2026-01-01 00:00:00 start\n")
    (second / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "time": 0}))
    capsys.readouterr()

    assert main(["status", str(sweep), "--config", str(cfg)]) == 0  # nothing failed
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "4 runs: 0 done, 0 running, 2 interrupted, 0 pending, 2 not started, 0 failed"
    table = {ln.split()[1] if not ln.startswith("not started") else ln.split()[2]: ln for ln in lines[1:]}
    assert "interrupted (resumable at cycle 1), 1/3 cycles done" in table["digits/random/seed-0"]
    assert "interrupted (resumable at cycle 0)" in table["digits/least-confidence/seed-0"]
    assert table["digits/margin/seed-0"].startswith("not started")
    assert table["digits/entropy/seed-0"].startswith("not started")
    # and the rerun does resume them: every run completes
    assert main(["run", str(cfg), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["status", str(sweep)]) == 0
    assert capsys.readouterr().out.startswith("4 runs: 4 done")


def test_status_piped_into_head_ends_quietly(tmp_path):
    sweep = tmp_path / "sweep"
    for i in range(1500):  # more than a pipe buffer of table
        run_dir = sweep / "digits" / f"strategy-{i:04d}" / "seed-0"
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps({"dataset": "digits", "strategy": f"strategy-{i:04d}", "seed": 0}))
        (run_dir / "status.json").write_text(json.dumps({"state": "complete"}))
    proc = subprocess.Popen(f"{sys.executable} -m albench.cli status {sweep} | head -n 2", shell=True, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    out, err = proc.communicate(timeout=120)
    assert out.startswith("1500 runs: 1500 done") and len(out.splitlines()) == 2
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_status_without_config_counts_the_runs_not_started_from_the_recorded_config(tiny_raw, tmp_path, capsys,
                                                                                    monkeypatch, one_torch_thread):
    """Mid-sweep (here: stopped after its first run), ``albench status DIR`` alone plans the rest of the
    sweep from the config ``albench run`` recorded, including another invocation's seeds."""
    from albench.engine import loop

    tiny_raw["strategies"] = ["random", "margin"]
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    sweep = tmp_path / "results" / "tiny"
    real, calls = loop.execute_run, []

    def first_only(rc, **kw):  # the sweep is cut after its first run
        calls.append(rc.run_id)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(rc, **kw)

    monkeypatch.setattr("albench.runner.jobs.execute_run", first_only)
    assert main(["run", str(cfg), "--quiet"]) == 130
    monkeypatch.undo()
    assert main(["run", str(cfg), "--quiet", "--set", "seeds=[1]", "--dry-run"]) == 0  # a dry run plans nothing
    capsys.readouterr()
    assert main(["status", str(sweep)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 runs: 1 done, 0 running, 0 pending, 1 not started, 0 failed"
    assert lines[2].startswith("not started") and "digits/margin/seed-0" in lines[2]
    # another invocation with other seeds joins the plan; a moved sweep folder still plans inside itself
    moved = tmp_path / "elsewhere" / "tiny"
    moved.parent.mkdir()
    sweep.rename(moved)
    monkeypatch.setattr("albench.runner.jobs.execute_run", lambda rc, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["run", str(cfg), "--quiet", "--set", "seeds=[1]", "--out", str(tmp_path / "elsewhere")]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["status", str(moved)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "4 runs: 1 done, 0 running, 0 pending, 3 not started, 0 failed"
    for rid in ("digits/margin/seed-0", "digits/random/seed-1", "digits/margin/seed-1"):
        assert any(ln.startswith("not started") and rid in ln for ln in out.splitlines())
    assert main(["status", str(tmp_path / "elsewhere")]) == 0  # from the output root too
    assert capsys.readouterr().out.splitlines()[0].startswith("4 runs: 1 done")
