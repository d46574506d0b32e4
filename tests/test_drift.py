"""Config drift: a rerun whose result keys differ from an existing run folder is refused (exit 2)
before anything is written, naming the keys; --restart-changed moves the old folder aside."""

from __future__ import annotations

import json

from albench import drift
from albench.cli import main
from albench.config import build_config
from albench.plan import make_plan
from albench.records import atomic_write_json, read_status
from tests.conftest import write_yaml


def _snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def _sweep(tiny_raw, tmp_path):
    tiny_raw["al"]["cycles"] = 2
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--quiet"]) == 0
    return cfg, tmp_path / "results" / "tiny"


def test_changed_epochs_is_refused_naming_the_key_and_nothing_is_written(tiny_raw, tmp_path, capsys,
                                                                         one_torch_thread):
    cfg, sweep = _sweep(tiny_raw, tmp_path)
    before = _snapshot(sweep)
    capsys.readouterr()
    assert main(["run", str(cfg), "--quiet", "--set", "train.epochs=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("albench: error: train.epochs: differs from the config")
    assert "train.epochs 2 -> 3" in err and "--restart-changed" in err and "--out" in err
    assert _snapshot(sweep) == before
    # also for several keys at once, and in a dry run
    assert main(["run", str(cfg), "--dry-run", "--set", "al.budget=30", "--set", "model.params.width=4"]) == 2
    err = capsys.readouterr().err
    assert "al.budget, model.params.width:" in err
    # keys that cannot change a result do not count
    for neutral in (["--set", "threads=2"], ["--set", "record.embeddings=0"], ["--set", "train.checkpoint_every=1"],
                    ["--workers", "1"]):
        assert main(["run", str(cfg), "--quiet", *neutral]) == 0, neutral
        assert "1 already complete" in capsys.readouterr().err
    assert _snapshot(sweep) == before


def test_an_unfinished_run_is_not_resumed_with_another_config(tiny_raw, tmp_path, capsys, one_torch_thread):
    cfg, sweep = _sweep(tiny_raw, tmp_path)
    run_dir = sweep / "digits" / "random" / "seed-0"
    st = read_status(run_dir)
    atomic_write_json(run_dir / "status.json", {**st, "state": "running", "pid": 1})  # as if killed
    before = _snapshot(sweep)
    assert main(["run", str(cfg), "--quiet", "--set", "al.budget=30"]) == 2
    assert "al.budget 20 -> 30" in capsys.readouterr().err
    assert _snapshot(sweep) == before


def test_a_folder_without_fingerprint_is_compared_through_its_config_yaml(tiny_raw, tmp_path, capsys,
                                                                          one_torch_thread):
    cfg, sweep = _sweep(tiny_raw, tmp_path)
    (sweep / "digits" / "random" / "seed-0" / drift.FINGERPRINT).unlink()  # written before fingerprints
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert "1 already complete" in capsys.readouterr().err
    assert main(["run", str(cfg), "--quiet", "--set", "train.epochs=3"]) == 2
    assert "train.epochs 2 -> 3" in capsys.readouterr().err


def test_restart_changed_moves_the_old_folder_aside_and_runs_the_new_config(tiny_raw, tmp_path, capsys,
                                                                           one_torch_thread):
    cfg, sweep = _sweep(tiny_raw, tmp_path)
    old = _snapshot(sweep / "digits")
    assert main(["run", str(cfg), "--quiet", "--set", "train.epochs=3", "--restart-changed"]) == 0
    moved = list((sweep / ".replaced").glob("*/digits/random/seed-0"))
    assert len(moved) == 1
    kept = {p.relative_to(moved[0]): v for p, v in _snapshot(moved[0]).items()}
    assert kept == {p.relative_to(sweep / "digits" / "random" / "seed-0"): v for p, v in old.items()}
    run_dir = sweep / "digits" / "random" / "seed-0"
    fp = json.loads((run_dir / drift.FINGERPRINT).read_text())
    assert fp["keys"]["train.epochs"] == 3
    assert read_status(run_dir)["state"] == "complete"
    capsys.readouterr()
    assert main(["show", str(sweep)]) == 0  # the moved run is not read as a run of the sweep
    table = capsys.readouterr().out
    assert "over 1 seed(s)" in table


def test_result_keys_leave_out_resources_and_paths(tiny_raw):
    rc = make_plan(build_config(tiny_raw))[0]
    keys = drift.result_keys(rc.to_dict())
    for k in ("train.epochs", "al.budget", "model.params.width", "strategy.name", "device", "train.eval_batch_size",
              "train.batching"):
        assert k in keys
    for k in ("output", "sweep", "threads", "seed", "dataset.root", "train.checkpoint_every", "record.embeddings",
              "baseline", "tracking.tensorboard", "tracking.mlflow"):
        assert k not in keys
    assert drift.fingerprint(rc.to_dict()) == drift.fingerprint(rc.to_dict())


def test_only_keys_both_sides_know_count_except_free_form_params(tiny_raw, tmp_path):
    rc = make_plan(build_config(tiny_raw))[0].to_dict()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    old = drift.fingerprint(rc)
    del old["keys"]["train.amp"]  # a key a newer albench added: the older run could not have set it
    old["keys"]["train.gone"] = 1  # a key a newer albench removed
    (run_dir / drift.FINGERPRINT).write_text(json.dumps(old))
    (run_dir / "cycles.csv").write_text("cycle\n")  # it holds results
    assert drift.changed_keys(rc, run_dir) == []
    rc["model"]["params"]["depth"] = 3  # a model param the run was started without: a change
    assert drift.changed_keys(rc, run_dir) == [("model.params.depth", None, 3)]
    rc["model"]["params"] = {}
    assert [k for k, _, _ in drift.changed_keys(rc, run_dir)] == ["model.params.width"]


def test_a_key_added_since_counts_only_when_set_away_from_its_default(tiny_raw, tmp_path):
    """A run recorded before train.min_steps existed ran with its default (0): resuming it at the
    default is no change, with min_steps 300 it is one (0 -> 300)."""
    rc = make_plan(build_config(tiny_raw))[0].to_dict()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    old = drift.fingerprint(rc)
    del old["keys"]["train.min_steps"]
    (run_dir / drift.FINGERPRINT).write_text(json.dumps(old))
    (run_dir / "cycles.csv").write_text("cycle\n")  # it holds results
    assert drift.changed_keys(rc, run_dir) == []
    rc["train"]["min_steps"] = 300
    assert drift.changed_keys(rc, run_dir) == [("train.min_steps", 0, 300)]
    assert drift.schema_default("train.schedule.gamma") == 0.1
    assert drift.schema_default("train.no_such_key") is drift._MISSING


def test_a_run_that_failed_before_any_result_may_start_over_with_another_config(tiny_raw, tmp_path, capsys,
                                                                                one_torch_thread):
    tiny_raw["al"]["cycles"] = 2
    tiny_raw["al"]["initial"] = 5000  # more than the digits pool: the run fails before its first cycle
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    from albench.config import build_config as build
    from albench.integrity import claim

    rc = make_plan(build(tiny_raw))[0]
    with claim(rc) as refused:  # what a started run leaves before its first checkpoint
        assert refused is None
    assert (rc.run_dir / drift.FINGERPRINT).exists() and not drift.holds_results(rc.run_dir)
    tiny_raw["al"]["initial"] = 20
    assert main(["run", str(cfg), "--quiet", "--set", "al.initial=20"]) == 0
    assert json.loads((rc.run_dir / drift.FINGERPRINT).read_text())["keys"]["al.initial"] == 20


def test_a_run_queued_in_slurm_with_other_result_keys_is_refused(tiny_raw, tmp_path, monkeypatch):
    import pytest

    from albench.errors import ConfigError
    from albench.runner import slurm

    old = make_plan(build_config(tiny_raw))[0]
    tiny_raw["train"]["epochs"] = 5
    cfg = build_config(tiny_raw)
    new = make_plan(cfg)[0]
    entry = {"run_id": old.run_id, "run_dir": str(old.run_dir.resolve()), "job_id": "7_0", "job_name": "albench-x",
             "folder": str(tmp_path), "submitted": 1.0, "keys": drift.fingerprint(old.to_dict())["keys"]}
    monkeypatch.setattr(slurm, "check_slurm", lambda *a, **k: None)
    monkeypatch.setattr(slurm, "queued_elsewhere",
                        lambda c, runs: {old.run_dir.resolve(): {**entry, "state": "PENDING"}})
    monkeypatch.setattr(slurm, "submit", lambda *a: pytest.fail("nothing may be submitted"))
    with pytest.raises(ConfigError, match=r"^train\.epochs: .*job 7_0\): train\.epochs 2 -> 5.*scancel"):
        slurm.run_slurm(cfg, [new])
