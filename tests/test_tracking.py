"""TensorBoard and MLflow tracking, read back with each library's own reader.

Cycle scalars are at step = cycle index, the train loss at step = the global epoch
(cycle * train.epochs + epoch, or the epochs of earlier cycles + epoch when train.min_steps
lengthens cycles); a resumed run holds each (tag, step) exactly once.
"""

from __future__ import annotations

import copy
import json

import pytest

from albench.cli import main
from albench.config import build_config
from albench.engine.loop import execute_run
from albench.errors import ConfigError
from albench.plan import make_plan
from albench.records import RunRecorder, read_cycles
from tests.conftest import TINY, write_yaml

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'albench[tensorboard]')")
pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'albench[mlflow]')")

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator  # noqa: E402

EPOCHS, CYCLES = 2, 3


def _raw(tmp_path, **tracking) -> dict:
    raw = copy.deepcopy(TINY)
    raw["output"] = str(tmp_path / "results")
    raw["tracking"] = tracking
    return raw


def _run(raw: dict):
    (rc,) = make_plan(build_config(raw))
    outcome = execute_run(rc)
    assert outcome.state == "complete", outcome.error
    return rc


def _tb_points(run_dir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} in the order written, every point kept (duplicates too)."""
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()[SCALARS]}


def _mlflow(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _assert_cycles_match(points: dict, rows: list[dict]) -> None:
    assert [s for s, _ in points["cycle/accuracy"]] == [0, 1, 2]
    assert [v for _, v in points["cycle/accuracy"]] == pytest.approx([r["value"] for r in rows], rel=1e-6)
    assert [v for _, v in points["cycle/n_labeled"]] == [20, 40, 60]
    assert [v for _, v in points["cycle/test_loss"]] == pytest.approx([r["test_loss"] for r in rows], rel=1e-6)
    for phase in ("train", "evaluate", "select", "inference", "pretext", "total"):
        assert [v for _, v in points[f"seconds/{phase}"]] == pytest.approx(
            [r[f"seconds_{phase}"] for r in rows], rel=1e-6, abs=1e-6)
    assert [s for s, _ in points["train/loss"]] == list(range(CYCLES * EPOCHS))
    assert all(v > 0 for _, v in points["train/loss"])


@pytest.mark.usefixtures("one_torch_thread")
def test_tensorboard_event_files_hold_the_cycle_metrics(tmp_path):
    rc = _run(_raw(tmp_path, tensorboard=True))
    points = _tb_points(rc.run_dir)
    _assert_cycles_match(points, read_cycles(rc.run_dir))
    assert json.loads((rc.run_dir / "run.json").read_text())["tracking"] == {"tensorboard": "tensorboard"}
    assert build_config(_raw(tmp_path, tensorboard=True)).tracking.tensorboard is True


@pytest.mark.usefixtures("one_torch_thread")
def test_train_loss_steps_follow_cycles_lengthened_by_min_steps(tmp_path):
    raw = _raw(tmp_path, tensorboard=True)
    raw["train"] = dict(raw["train"], batch_size=16, min_steps=9)  # 5, 3 and 3 epochs (test_min_steps.py)
    rc = _run(raw)
    assert [r["epochs"] for r in read_cycles(rc.run_dir)] == [5, 3, 3]
    assert [s for s, _ in _tb_points(rc.run_dir)["train/loss"]] == list(range(11))


def _mlflow_points(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {key: [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
            for key in client.get_run(run_id).data.metrics}


@pytest.mark.usefixtures("one_torch_thread")
def test_mlflow_run_holds_params_metrics_and_records(tmp_path):
    uri = str(tmp_path / "mlruns")  # a local folder: MLflow's file store, no server
    rc = _run(_raw(tmp_path, mlflow=uri))
    tracked = json.loads((rc.run_dir / "run.json").read_text())["tracking"]
    client = _mlflow(tracked["mlflow_uri"])
    run = client.get_run(tracked["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == rc.run_id
    assert run.data.tags["albench.sweep"] == "tiny"
    assert client.get_experiment(run.info.experiment_id).name == "tiny"
    params = run.data.params
    assert params["train.epochs"] == str(EPOCHS)
    assert params["al.budget"] == "20"
    assert params["strategy.name"] == "random"
    assert params["seed"] == "0"
    _assert_cycles_match(_mlflow_points(client, run.info.run_id), read_cycles(rc.run_dir))
    records = {f.path for f in client.list_artifacts(run.info.run_id, "records")}
    assert {"records/cycles.csv", "records/run.json", "records/config.yaml", "records/queries.json",
            "records/artifacts"} <= records
    assert "records/checkpoint.pt" not in records
    local = client.download_artifacts(run.info.run_id, "records/cycles.csv", str(tmp_path / "dl"))
    assert open(local).read() == (rc.run_dir / "cycles.csv").read_text()


class Crash(BaseException):
    """Stands in for SIGKILL (not an Exception, so no failure is recorded)."""


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("method,n", [
    ("save_checkpoint", 2),  # mid-training of cycle 0 (after its first epoch): epoch 1 is trained again
    ("save_checkpoint", 3),  # the cycle-0 boundary: the checkpoint holds a row no tracker has seen yet
    ("write_cycles", 2),  # cycle 1 recorded, trackers not yet told
])
def test_resumed_run_logs_each_point_once(tmp_path, monkeypatch, method, n):
    uri = str(tmp_path / "mlruns")
    raw = _raw(tmp_path, tensorboard=True, mlflow=uri)
    raw["train"]["checkpoint_every"] = 1
    (rc,) = make_plan(build_config(raw))
    orig, calls = getattr(RunRecorder, method), {"n": 0}

    def wrapped(self, *args, **kwargs):
        out = orig(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash(method)
        return out

    monkeypatch.setattr(RunRecorder, method, wrapped)
    with pytest.raises(Crash):
        execute_run(rc)
    monkeypatch.undo()
    assert execute_run(rc).state == "complete"
    rows = read_cycles(rc.run_dir)
    _assert_cycles_match(_tb_points(rc.run_dir), rows)  # steps listed once each, in order
    tracked = json.loads((rc.run_dir / "run.json").read_text())["tracking"]
    client = _mlflow(tracked["mlflow_uri"])
    assert len(client.search_runs([client.get_experiment_by_name("tiny").experiment_id])) == 1  # one MLflow run
    _assert_cycles_match(_mlflow_points(client, tracked["mlflow_run_id"]), rows)


def test_tracking_is_off_by_default(tmp_path, one_torch_thread):
    cfg = build_config(dict(copy.deepcopy(TINY), output=str(tmp_path / "results")))
    assert cfg.tracking.tensorboard is False and cfg.tracking.mlflow is None
    (rc,) = make_plan(cfg)
    assert execute_run(rc).state == "complete"
    assert not (rc.run_dir / "tensorboard").exists()
    assert "tracking" not in json.loads((rc.run_dir / "run.json").read_text())


@pytest.mark.parametrize("name,setting", [("tensorboard", True), ("mlflow", "mlruns")])
def test_missing_package_is_refused_at_config_load(tmp_path, monkeypatch, capsys, name, setting):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda pkg, *a: None if pkg == name else real(pkg, *a))
    with pytest.raises(ConfigError) as err:
        build_config(_raw(tmp_path, **{name: setting}))
    assert err.value.field == f"tracking.{name}"
    assert f"pip install 'albench[{name}]'" in str(err.value)
    cfg = write_yaml(tmp_path / "c.yaml", _raw(tmp_path, **{name: setting}))
    assert main(["run", str(cfg), "--quiet"]) == 2
    assert f"tracking.{name}" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()  # refused before anything ran


def test_empty_mlflow_uri_is_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_config(_raw(tmp_path, mlflow=" "))
    assert err.value.field == "tracking.mlflow"
