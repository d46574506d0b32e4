"""Executors: the local executor with worker processes and submitit's debug executor give the same
records as a plain in-process run."""

from __future__ import annotations

from albench.cli import main
from albench.reports.data import load_sweep_runs
from tests.conftest import write_yaml


def _values(root):
    df = load_sweep_runs(root).cycles().sort_values(["strategy", "seed", "cycle"])
    return df[["strategy", "seed", "cycle", "n_labeled", "value", "test_loss"]].to_dict("records")


def test_workers_and_debug_executor_match_serial(tiny_raw, tmp_path, capsys):
    tiny_raw["strategies"] = ["random", "least-confidence"]
    tiny_raw["seeds"] = [0, 1]
    tiny_raw["al"]["cycles"] = 2
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--quiet", "--out", str(tmp_path / "serial")]) == 0
    assert main(["run", str(cfg), "--quiet", "--out", str(tmp_path / "pool"), "--workers", "2"]) == 0
    assert main(["run", str(cfg), "--quiet", "--out", str(tmp_path / "debug"), "--executor", "debug"]) == 0
    serial = _values(tmp_path / "serial" / "tiny")
    assert len(serial) == 8
    assert _values(tmp_path / "pool" / "tiny") == serial
    assert _values(tmp_path / "debug" / "tiny") == serial
