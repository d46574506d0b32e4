"""train.min_steps: a floor on the optimizer steps of each cycle (0, the default: train.epochs as given).

A cycle whose labeled set gives fewer steps than min_steps in train.epochs epochs trains for the
fewest epochs that reach it; the lr schedule and Learning Loss's detach point stretch with it, and
cycles.csv records each cycle's epochs and steps.
"""

from __future__ import annotations

import copy

import pytest
import torch

from albench.config import TrainConfig, build_config
from albench.engine.loop import execute_run
from albench.engine.train import cycle_epochs, lr_factor, steps_per_epoch
from albench.errors import ConfigError
from albench.plan import make_plan
from albench.records import read_cycles
from albench.toolkit import epoch_batches
from albench.toolkit.batches import batches_per_epoch
from tests.conftest import TINY


def _train(**kw) -> TrainConfig:
    return build_config(dict(copy.deepcopy(TINY), train=dict(TINY["train"], **kw))).train


@pytest.mark.parametrize("mode", ["keep-last", "drop-last", "even"])
def test_batches_per_epoch_counts_what_epoch_batches_yields(mode):
    for n in range(1, 70):
        for bs in (1, 2, 3, 16, 32, 64):
            kw = {"drop_last": mode == "drop-last", "even": mode == "even"}
            got = len(list(epoch_batches(n, bs, torch.Generator().manual_seed(0), **kw)))
            assert batches_per_epoch(n, bs, **kw) == got, (n, bs, mode)


def test_cycle_epochs_reach_min_steps_with_the_fewest_epochs():
    cfg = _train(epochs=15, batch_size=64, min_steps=300)
    assert steps_per_epoch(100, cfg) == 2  # 64 + 36
    assert cycle_epochs(100, cfg) == 150  # 30 steps in 15 epochs; 150 epochs give 300
    assert cycle_epochs(1000, cfg) == 19  # 16 steps an epoch: 18 epochs give 288, 19 give 304
    assert cycle_epochs(5000, cfg) == 15  # 79 steps an epoch: 15 epochs already give 1185
    assert cycle_epochs(100, _train(epochs=15, batch_size=64)) == 15  # min_steps 0: off
    # the batching mode counts: 33 at 32 is 32+1 under keep-last (the single image is dropped), 17+16 under even
    assert cycle_epochs(33, _train(epochs=1, batch_size=32, min_steps=10)) == 10
    assert cycle_epochs(33, _train(epochs=1, batch_size=32, min_steps=10, batching="even")) == 5


def test_a_stretched_cycle_keeps_the_schedule_shape():
    cfg = _train(epochs=10, schedule={"name": "multistep", "gamma": 0.1})
    # default milestone at 80% of the epochs the cycle trains: epoch 40 of 50
    assert [lr_factor(e, cfg, 50) for e in (0, 39, 40, 49)] == pytest.approx([1, 1, 0.1, 0.1])
    assert [lr_factor(e, cfg) for e in (7, 8)] == pytest.approx([1, 0.1])  # unstretched: epoch 8 of 10
    given = _train(epochs=10, schedule={"name": "multistep", "gamma": 0.1, "milestones": [5, 8]})
    assert [lr_factor(e, given, 20) for e in (9, 10, 15, 16)] == pytest.approx([1, 0.1, 0.1, 0.01])
    cosine = _train(epochs=10, schedule={"name": "cosine"})
    assert lr_factor(25, cosine, 50) == pytest.approx(0.5)  # halfway through the stretched cycle


def test_min_steps_must_be_a_non_negative_integer():
    with pytest.raises(ConfigError) as err:
        _train(min_steps=-1)
    assert err.value.field == "train.min_steps"


@pytest.mark.usefixtures("one_torch_thread")
def test_each_cycle_trains_and_records_at_least_min_steps(tmp_path, trained_batches):
    """20, 40, 60 labels at batch 16 give 2, 3, 4 steps an epoch; min_steps 9 makes that 5, 3, 3 epochs."""
    raw = dict(copy.deepcopy(TINY), output=str(tmp_path / "results"))
    raw["train"] = dict(raw["train"], batch_size=16, min_steps=9)
    (rc,) = make_plan(build_config(raw))
    assert execute_run(rc).state == "complete"
    rows = read_cycles(rc.run_dir)
    assert [r["epochs"] for r in rows] == [5, 3, 3]
    assert [r["steps"] for r in rows] == [10, 9, 12]
    passes = [n for n, _ in trained_batches]  # one entry per optimizer step actually taken
    assert [passes.count(n) for n in (20, 40, 60)] == [10, 9, 12]


@pytest.mark.usefixtures("one_torch_thread")
def test_learning_loss_detaches_at_its_share_of_the_stretched_cycle(tmp_path, monkeypatch):
    from albench.strategies.learning_loss import LossPredictionModule

    calls: list[tuple[int, int]] = []
    orig = LossPredictionModule.training_loss

    def spy(self, out, per_sample_loss, *, epoch, epochs):
        calls.append((epoch, epochs))
        return orig(self, out, per_sample_loss, epoch=epoch, epochs=epochs)

    monkeypatch.setattr(LossPredictionModule, "training_loss", spy)
    raw = dict(copy.deepcopy(TINY), output=str(tmp_path / "results"), strategies=["learning-loss"])
    raw["train"] = dict(raw["train"], batch_size=16, min_steps=9)
    raw["al"] = {"initial": 20, "budget": 20, "cycles": 1}
    (rc,) = make_plan(build_config(raw))
    assert execute_run(rc).state == "complete"
    assert {e for e, _ in calls} == set(range(5)) and {n for _, n in calls} == {5}
