"""benchmarks/retrain_probe.py rebuilds a recorded cycle exactly (its metric, its picks) from the
run's records alone, measures protocol changes on it, and refuses what it cannot rebuild."""

from __future__ import annotations

import json

import pytest

from albench.engine.loop import execute_run
from albench.config import build_config
from albench.plan import make_plan
from albench.records import read_cycles, read_queries
from benchmarks.retrain_probe import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(raw: dict):
    rc = make_plan(build_config(raw))[0]
    assert execute_run(rc).state == "complete"
    return rc.run_dir


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _mc_raw(tiny_raw, strategy: dict) -> dict:
    raw = dict(tiny_raw, strategies=[strategy])
    raw["model"] = {"name": "small-cnn", "params": {"width": 8, "dropout": 0.5}}
    raw["al"] = {"initial": 20, "budget": 10, "cycles": 3}
    return raw


def test_a_cycle_retrained_from_the_records_reproduces_its_metric_and_a_change_is_measured(tiny_raw, capsys):
    run_dir = _run(_mc_raw(tiny_raw, {"name": "mc-entropy", "params": {"passes": 3}}))
    before = sorted(p.name for p in run_dir.iterdir())
    recorded = {int(r["cycle"]): r["value"] for r in read_cycles(run_dir)}

    assert main([str(run_dir), "--cycle", "2", "--generators-of", "2", "1"]) == 0
    own, other = _lines(capsys)
    assert (own["n_labeled"], own["generators_of"], own["recorded"]) == (40, 2, recorded[2])
    assert own["value"] == recorded[2] and own["reproduces_recorded"] is True
    assert other["generators_of"] == 1 and "reproduces_recorded" not in other  # another draw: no claim

    assert main([str(run_dir), "--cycle", "1", "--set", "train.batching=even", "--set", "train.min_steps=12"]) == 0
    (changed,) = _lines(capsys)
    assert changed["overrides"] == ["train.batching=even", "train.min_steps=12"]
    assert changed["value"] != recorded[1] and "reproduces_recorded" not in changed
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written into the run


def test_a_rebuilt_acquisition_picks_the_recorded_query(tiny_raw, capsys):
    run_dir = _run(_mc_raw(tiny_raw, {"name": "bald", "params": {"passes": 3}}))
    assert main([str(run_dir), "--cycle", "2", "--select"]) == 0
    (line,) = _lines(capsys)
    assert line["picks_equal_recorded"] is True
    assert sorted(line["picks"]) == sorted(read_queries(run_dir)[2].tolist())


def test_batchbald_distinct_configurations_are_counted_per_sampled_pick(tiny_raw, capsys):
    # 10 classes, samples 20, passes 4: picks 1-2 sum exactly (1 and 10 configurations), picks 3-10 sample 4 x 5
    run_dir = _run(_mc_raw(tiny_raw, {"name": "batchbald", "params": {"passes": 4, "samples": 20}}))
    assert main([str(run_dir), "--cycle", "1", "--select", "--count-configs"]) == 0
    (line,) = _lines(capsys)
    assert line["picks_equal_recorded"] is True
    counts = line["distinct_configs"]
    assert len(counts) == 8 and all(1 <= c <= 20 for c in counts)  # merged draws: at most the 4 x 5 drawn


def test_what_cannot_be_rebuilt_is_refused(tiny_raw, tmp_path, capsys):
    warm = _mc_raw(tiny_raw, {"name": "random"})
    warm["train"] = {**warm["train"], "init": "warm"}
    run_dir = _run(warm)
    assert main([str(run_dir), "--cycle", "1"]) == 2
    assert "warm-starts" in capsys.readouterr().err
    assert main([str(run_dir.parent), "--cycle", "1"]) == 2
    assert "not a run folder" in capsys.readouterr().err
    cold = _run(_mc_raw(dict(tiny_raw, output=str(tmp_path / "cold")), {"name": "random"}))
    assert main([str(cold), "--cycle", "0", "--select"]) == 2
    assert "cycle >= 1" in capsys.readouterr().err
    assert main([str(cold), "--cycle", "9"]) == 2
    assert "not recorded" in capsys.readouterr().err


def test_select_mode_refuses_a_strategy_that_keeps_state_between_cycles(tiny_raw, monkeypatch, capsys):
    from albench.strategies.random_sampling import RandomSampling

    run_dir = _run(_mc_raw(tiny_raw, {"name": "random"}))
    monkeypatch.setattr(RandomSampling, "state_dict", lambda self: {}, raising=False)  # its own, even if empty
    assert main([str(run_dir), "--cycle", "1", "--select"]) == 2
    assert "carries state between cycles" in capsys.readouterr().err
    monkeypatch.undo()
    assert main([str(run_dir), "--cycle", "1", "--select"]) == 0
    assert _lines(capsys)[0]["picks_equal_recorded"] is True
