"""The protocol pieces Gal et al. 2017's MNIST experiment needs, through the engine on digits: a
class-balanced initial set, weight decay scaled by the labeled count, the MC-averaged test metric
(with the single-pass metric recorded beside it), ``--stop-at-labels`` staging, and the packaged
gal2017-mnist config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from albench.cli import main
from albench.config import build_config, quickstart_path, read_yaml
from albench.engine.loop import balanced_initial, execute_run
from albench.errors import ConfigError
from albench.plan import make_plan
from albench.records import read_cycles, read_queries
from albench.validate import validate_environment

from tests.conftest import write_yaml


def _raw(tiny_raw, **al):
    raw = dict(tiny_raw)
    raw["model"] = {"name": "small-cnn", "params": {"width": 8, "dropout": 0.5}}
    raw["al"] = {"initial": 20, "budget": 10, "cycles": 3, **al}
    return raw


@pytest.mark.usefixtures("one_torch_thread")
def test_balanced_initial_set_is_the_same_for_every_strategy_of_a_seed(tiny_raw):
    import torch

    raw = _raw(tiny_raw, initial_selection="balanced", cycles=1)
    raw["strategies"] = ["random", {"name": "variation-ratios", "params": {"passes": 3}}]
    raw["seeds"] = [0, 1]
    firsts = {}
    for rc in make_plan(build_config(raw)):
        assert execute_run(rc).state == "complete"
        firsts[(rc.strategy.name, rc.seed)] = read_queries(rc.run_dir)[0]
    from albench.data.registry import load_dataset

    y = load_dataset(build_config(raw).datasets[0]).y_train.numpy()
    for q in firsts.values():
        assert np.bincount(y[q], minlength=10).tolist() == [2] * 10
    assert np.array_equal(firsts[("random", 0)], firsts[("variation-ratios", 0)])
    assert not np.array_equal(firsts[("random", 0)], firsts[("random", 1)])
    # the draw by hand: 2 per class, uniform within the class, classes in order
    targets = torch.tensor([0, 1, 0, 1, 2, 2, 0])
    got = balanced_initial(targets, 3, 3, np.random.default_rng(0))
    assert sorted(targets[got].tolist()) == [0, 1, 2]
    with pytest.raises(ConfigError, match="multiple of the 3 classes"):
        balanced_initial(targets, 4, 3, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="class 1 has 2 images"):
        balanced_initial(targets, 9, 3, np.random.default_rng(0))


@pytest.mark.usefixtures("one_torch_thread")
def test_weight_decay_per_label_follows_the_labeled_count(tiny_raw, monkeypatch):
    import albench.engine.train as train_mod

    seen = []
    orig = train_mod.make_optimizer

    def spy(params, cfg, *, n_labeled=None):
        opt = orig(params, cfg, n_labeled=n_labeled)
        seen.append((n_labeled, opt.param_groups[0]["weight_decay"]))
        return opt

    monkeypatch.setattr(train_mod, "make_optimizer", spy)
    raw = _raw(tiny_raw)
    raw["train"] = {**raw["train"], "optimizer": {"name": "adam", "lr": 0.001, "weight_decay": 5.0,
                                                  "weight_decay_scaling": "per-label"}}
    (rc,) = make_plan(build_config(raw))
    assert execute_run(rc).state == "complete"
    assert seen == [(20, 0.25), (30, 5.0 / 30), (40, 0.125)]


@pytest.mark.usefixtures("one_torch_thread")
def test_mc_test_passes_are_recorded_with_the_single_pass_metric(tiny_raw):
    raw = _raw(tiny_raw, cycles=2)
    raw["train"] = {**raw["train"], "test_passes": 4}
    (rc,) = make_plan(build_config(raw))
    assert execute_run(rc).state == "complete"
    rows = read_cycles(rc.run_dir)
    assert all(0.0 <= r["value_single_pass"] <= 1.0 for r in rows)
    art = np.load(rc.run_dir / "artifacts" / "metric_accuracy_single_pass.npy")
    assert art.tolist() == [r["value_single_pass"] for r in rows]
    raw["train"]["test_passes"] = 0  # the default: one pass, nothing beside it
    raw["output"] = str(rc.run_dir.parent / "plain")
    (plain,) = make_plan(build_config(raw))
    assert execute_run(plain).state == "complete"
    plain_rows = read_cycles(plain.run_dir)
    assert all(r["value_single_pass"] is None for r in plain_rows)
    # the same models (test_passes changes no draw of training): the single-pass metric is the plain run's
    assert [r["value_single_pass"] for r in rows] == [r["value"] for r in plain_rows]


def test_mc_test_passes_need_a_model_with_dropout(tiny_raw):
    raw = dict(tiny_raw, train={**tiny_raw["train"], "test_passes": 4})  # small-cnn, dropout 0
    with pytest.raises(ConfigError) as err:
        validate_environment(build_config(raw))
    assert err.value.field == "train.test_passes"


@pytest.mark.usefixtures("one_torch_thread")
def test_stop_at_labels_leaves_runs_resumable_and_a_resumed_run_equals_an_uninterrupted_one(tiny_raw, tmp_path,
                                                                                           capsys):
    raw = _raw(tiny_raw, cycles=4)
    raw["strategies"] = [{"name": "mc-entropy", "params": {"passes": 3}}]
    cfg = write_yaml(tmp_path / "c.yaml", raw)
    out = tmp_path / "staged"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--stop-at-labels", "30"]) == 0
    run_dir = out / "tiny" / "digits" / "mc-entropy" / "seed-0"
    assert [r["n_labeled"] for r in read_cycles(run_dir)] == [20, 30]
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["state"], status["labels"]) == ("stopped", 30)  # unfinished on purpose, not failed
    assert "--stop-at-labels 30" in (run_dir / "run.log").read_text()
    assert "left unfinished" in capsys.readouterr().err
    # the process that stopped it (this one) is alive: status must not call the run running
    assert main(["status", str(out / "tiny")]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("1 runs: 0 done, 0 running, 1 stopped")
    assert "2/4 cycles, left unfinished at 30 labels by --stop-at-labels" in table
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0  # no flag: it goes on
    assert json.loads((run_dir / "status.json").read_text())["state"] == "complete"
    assert main(["run", str(cfg), "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    whole = tmp_path / "whole" / "tiny" / "digits" / "mc-entropy" / "seed-0"
    staged_rows, whole_rows = read_cycles(run_dir), read_cycles(whole)
    assert [r["value"] for r in staged_rows] == [r["value"] for r in whole_rows]
    assert {c: q.tolist() for c, q in read_queries(run_dir).items()} == \
        {c: q.tolist() for c, q in read_queries(whole).items()}
    with pytest.raises(SystemExit):
        main(["run", str(cfg), "--stop-at-labels", "x"])
    assert main(["run", str(cfg), "--out", str(out), "--stop-at-labels", "0"]) == 2


def test_the_packaged_gal2017_config_is_the_papers_protocol():
    cfg = build_config(read_yaml(quickstart_path().parent / "gal2017-mnist.yaml"))
    assert (cfg.protocol, cfg.model.name, cfg.datasets[0].name) == ("paper", "dbal-cnn", "mnist")
    assert (cfg.al.initial, cfg.al.budget, cfg.al.cycles, cfg.al.initial_selection) == (20, 10, 101, "balanced")
    t = cfg.train
    assert (t.epochs, t.batch_size, t.optimizer.name, t.optimizer.lr, t.init) == (50, 128, "adam", 0.001, "fresh")
    assert (t.optimizer.weight_decay, t.optimizer.weight_decay_scaling) == (5.0, "per-label")
    assert (t.augment.crop_padding, t.augment.hflip, t.augment.mean, t.augment.std) == (0, False, [0.0], [1.0])
    assert {s.name for s in cfg.strategies} == {"bald", "variation-ratios", "mc-entropy", "mean-std", "random"}
    for st in cfg.strategies:
        if st.name != "random":
            assert st.params == {"passes": 100, "subset": 2000}
    runs = make_plan(cfg)
    assert len(runs) == 15 and all(not rc.quirks for rc in runs)


def test_run_only_selects_and_orders_runs(tiny_raw, tmp_path, capsys):
    from albench.cli import select_runs

    raw = dict(tiny_raw, strategies=["random", "entropy"], seeds=[0, 1])
    plan = make_plan(build_config(raw))
    order = [rc.run_id for rc in select_runs(plan, ["*/seed-0", "*/seed-1"])]
    assert order == ["digits/random/seed-0", "digits/entropy/seed-0", "digits/random/seed-1", "digits/entropy/seed-1"]
    assert [rc.run_id for rc in select_runs(plan, ["digits/entropy/*", "*"])][:2] == ["digits/entropy/seed-0",
                                                                                     "digits/entropy/seed-1"]
    with pytest.raises(ConfigError, match="--only"):
        select_runs(plan, ["*/seed-7"])
    cfg = write_yaml(tmp_path / "c.yaml", raw)
    assert main(["run", str(cfg), "--dry-run", "--only", "*/seed-1"]) == 0
    out = capsys.readouterr().out
    assert "digits/random/seed-1" in out and "seed-0" not in out


def test_list_strategies_shows_the_mc_dropout_family(capsys):
    assert main(["list", "strategies"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert {"bald", "variation-ratios", "mc-entropy", "mean-std"} <= names
