"""The CLI contract: list, show, dry-run and exit codes."""

from __future__ import annotations

import subprocess
import sys

from albench.cli import main
from tests.conftest import write_yaml


def test_list_prints_one_name_per_line_then_description(capsys):
    for what, expected in (("strategies", {"random", "entropy", "margin", "least-confidence"}),
                           ("datasets", {"digits", "cifar10", "cifar10-imbalanced", "npz", "imagefolder"}),
                           ("models", {"small-cnn", "resnet18-cifar"})):
        assert main(["list", what]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        names = {line.split()[0] for line in lines}
        assert expected <= names
        assert all(len(line.split(None, 1)) == 2 for line in lines)  # every name has a description


def test_dry_run_plans_without_running(tiny_raw, tmp_path, capsys):
    tiny_raw["strategies"] = ["random", "entropy"]
    tiny_raw["seeds"] = [0, 1]
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["digits/random/seed-0\tto run", "digits/random/seed-1\tto run",
                   "digits/entropy/seed-0\tto run", "digits/entropy/seed-1\tto run"]
    assert not (tmp_path / "results" / "tiny").exists()


def test_show_prints_the_summary_table(tiny_raw, tmp_path, capsys):
    tiny_raw["seeds"] = [0, 1]
    tiny_raw["al"]["cycles"] = 2
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--quiet"]) == 0
    run_out = capsys.readouterr().out
    assert main(["show", str(tmp_path / "results" / "tiny")]) == 0
    out = capsys.readouterr().out
    assert out == run_out
    assert "accuracy (%)" in out and "over 2 seed(s)" in out
    header = [line for line in out.splitlines() if line.startswith("n_labeled")][0]
    assert header.split()[1:] == ["20", "40"]
    assert any(line.startswith("random") and "±" in line for line in out.splitlines())


def test_show_on_a_folder_without_runs_is_bad_input(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert "holds no albench runs" in capsys.readouterr().err


def test_a_failing_run_exits_1(tiny_raw, tmp_path, capsys, monkeypatch):
    """A run that raises is recorded as failed; the others still run; exit code 1."""
    import albench.strategies.uncertainty as unc

    def broken(self, **kw):
        raise RuntimeError("strategy exploded")

    monkeypatch.setattr(unc.Margin, "select", broken)
    tiny_raw["strategies"] = ["margin", "random"]
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "run failed: digits/margin/seed-0: RuntimeError: strategy exploded" in err
    import json

    status = json.loads((tmp_path / "results/tiny/digits/margin/seed-0/status.json").read_text())
    assert status["state"] == "failed" and "strategy exploded" in status["traceback"]
    ok = json.loads((tmp_path / "results/tiny/digits/random/seed-0/status.json").read_text())
    assert ok["state"] == "complete"


def test_console_script_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "albench.cli", "list", "datasets"], capture_output=True, text=True)
    assert proc.returncode == 0 and "digits" in proc.stdout
    proc = subprocess.run(["albench", "run", "--set", "train.epochs=-1", "--dry-run"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "albench: error: train.epochs: must be a positive integer (got -1); fix: set train.epochs to e.g. 200"]


def test_summary_cells_show_std_only_where_two_seeds_or_more():
    import pandas as pd

    from albench.summary import summary_table

    df = pd.DataFrame({"dataset": "d", "strategy": ["a", "a", "b"], "n_labeled": 10, "value": [0.5, 0.7, 0.4],
                       "flags": ""})
    table = summary_table(df)["d"]
    assert table.loc["a", 10] == "60.00 ± 14.14"  # sample std of 50 and 70
    assert table.loc["b", 10] == "40.00 (n=1)"


def test_run_prints_the_sweeps_table_and_names_its_seeds(tiny_raw, tmp_path, capsys, one_torch_thread):
    """A sweep run seed by seed (--set seeds=[0], then [1]) ends each time on the table of the whole
    sweep, whose header names the seeds it holds; stderr says what this invocation added."""
    tiny_raw["al"]["cycles"] = 2
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--quiet", "--set", "seeds=[0]"]) == 0
    first = capsys.readouterr()
    assert "over 1 seed(s) (seeds 0)" in first.out and "the table is the sweep's" not in first.err
    assert main(["run", str(cfg), "--quiet", "--set", "seeds=[1]"]) == 0
    second = capsys.readouterr()
    assert "mean ± std over 2 seed(s) (seeds 0, 1)" in second.out
    assert any(line.startswith("random") and "±" in line for line in second.out.splitlines())  # two seeds: a std
    assert "the table is the sweep's: 2 runs, seeds 0, 1; this command planned 1 of them (seeds 1)" in second.err
    assert main(["show", str(tmp_path / "results" / "tiny")]) == 0
    assert capsys.readouterr().out == second.out
