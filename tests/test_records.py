"""Run records: round trip, atomic writes, a complete run is never rewritten, reruns skip it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from albench.cli import main
from albench.errors import RecordError
from albench.records import CYCLE_COLUMNS, RunRecorder, atomic_write_text, read_artifact, read_cycles, read_queries
from albench.reports.data import load_sweep_runs
from tests.conftest import write_yaml


def test_round_trip(tmp_path):
    rec = RunRecorder(tmp_path / "sw" / "digits" / "random" / "seed-0")
    ident = {"sweep": "sw", "dataset": "digits", "strategy": "random", "strategy_name": "random", "seed": 0,
             "protocol": "paper", "quirks": [], "flags": []}
    rec.start(ident, {"seed": 0}, {"torch": "x"})
    rows = [{"cycle": c, "n_labeled": 10 * (c + 1), "metric": "accuracy", "value": 0.5 + c / 10,
             "test_loss": 1.0 / (c + 1), "seconds_train": 1.5, "seconds_pretext": 0.0, "seconds_inference": 0.25,
             "seconds_select": 0.125, "seconds_evaluate": 0.5, "seconds_total": 2.375, "epochs": 3,
             "selected_epoch": None} for c in range(3)]
    queries = {0: [5, 1, 9], 1: [2, 3], 2: [7]}
    rec.write_cycles(rows, queries)
    rec.save_artifacts({"pretext": np.arange(4, dtype=np.float32)})
    rec.finish()
    back = read_cycles(rec.dir)
    assert [r["cycle"] for r in back] == [0, 1, 2]
    assert back[1]["value"] == pytest.approx(0.6) and back[2]["selected_epoch"] is None
    assert back[0]["seconds_select"] == 0.125 and back[0]["metric"] == "accuracy"
    assert {c: q.tolist() for c, q in read_queries(rec.dir).items()} == queries
    assert read_artifact(rec.dir, "pretext").tolist() == [0, 1, 2, 3]
    df = load_sweep_runs(tmp_path / "sw").cycles()
    assert len(df) == 3 and set(CYCLE_COLUMNS) <= set(df.columns)
    assert df["state"].unique().tolist() == ["complete"] and df["strategy"].iloc[0] == "random"


def test_complete_run_is_never_rewritten(tmp_path):
    rec = RunRecorder(tmp_path / "run")
    rec.start({"strategy": "random"}, {}, {})
    rec.write_cycles([{"cycle": 0}], {0: [1]})
    rec.finish()
    before = {p.name: p.read_bytes() for p in rec.dir.iterdir() if p.is_file()}
    for attempt in (lambda: rec.start({}, {}, {}), lambda: rec.write_cycles([], {}),
                    lambda: rec.save_artifacts({"a": np.zeros(1)}), rec.finish,
                    lambda: rec.save_checkpoint({})):
        with pytest.raises(RecordError, match="never rewritten"):
            attempt()
    rec.fail(RuntimeError("late failure"))  # ignored: the run is complete
    after = {p.name: p.read_bytes() for p in rec.dir.iterdir() if p.is_file()}
    assert before == after


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


def test_rerun_skips_complete_runs(tiny_raw, tmp_path, capsys):
    tiny_raw["strategies"] = ["random", "margin"]
    tiny_raw["al"]["cycles"] = 2
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--quiet"]) == 0
    sweep = tmp_path / "results" / "tiny"
    files = sorted(p for p in sweep.rglob("*") if p.is_file())
    stamp = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    capsys.readouterr()
    assert main(["run", str(cfg), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "2 already complete" in err
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == stamp
    # a new seed in the same sweep runs only the missing runs
    assert main(["run", str(cfg), "--quiet", "--set", "seeds=[0, 1]"]) == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == stamp
    assert (sweep / "digits" / "margin" / "seed-1" / "status.json").exists()


def test_run_folder_contents(tiny_raw, tmp_path):
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--quiet"]) == 0
    run = tmp_path / "results" / "tiny" / "digits" / "random" / "seed-0"
    for name in ("run.json", "config.yaml", "env.json", "cycles.csv", "queries.json", "status.json", "run.log"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoint.pt").exists()
    env = json.loads((run / "env.json").read_text())
    for key in ("python", "torch", "cuda", "device_name", "hostname", "git"):
        assert key in env
    assert set(env["git"]) == {"sha", "dirty", "source"}
    rows = read_cycles(run)
    assert [r["n_labeled"] for r in rows] == [20, 40, 60]
    queries = read_queries(run)
    assert [len(q) for q in queries.values()] == [20, 20, 20]
    assert len(np.unique(np.concatenate(list(queries.values())))) == 60
    assert read_artifact(run, "test_loss").shape == (3, 297)
    labels = read_artifact(run, "labeled_targets")
    from albench.config import DatasetConfig
    from albench.data.registry import load_dataset

    y = load_dataset(DatasetConfig("digits")).y_train.numpy()
    assert labels.tolist() == y[np.concatenate([queries[c] for c in range(3)])].tolist()
    emb, idx = read_artifact(run, "embeddings"), read_artifact(run, "embedding_indices")
    assert emb.shape[0] == len(idx) and set(np.concatenate(list(queries.values()))) <= set(idx)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_records_honour_the_umask_like_a_plain_open(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        rec = RunRecorder(tmp_path / "run")
        rec.start({"strategy": "random"}, {"seed": 0}, {})
        rec.write_cycles([{"cycle": 0}], {0: [1]})
        rec.save_artifacts({"a": np.zeros(2)})
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == mode
    for name in ("run.json", "config.yaml", "env.json", "status.json", "cycles.csv", "queries.json", "artifacts/a.npy"):
        assert (rec.dir / name).stat().st_mode & 0o777 == mode, name
