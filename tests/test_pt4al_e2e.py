"""PT4AL through the engine on digits: cache shared by seeds and strategies, records, protocols, resume."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml

import albench.strategies.pretext.losses as losses_mod
from albench.config import build_config
from albench.engine.loop import execute_run
from albench.plan import make_plan
from albench.records import RunRecorder, read_artifact, read_queries

PRETEXT = {"pretext_model": "small-cnn", "pretext_model_params": {"width": 8}, "pretext_epochs": 1,
           "pretext_batch_size": 256, "pretext_selection": "final"}

BASE = {
    "name": "pt4al",
    "dataset": {"name": "digits"},
    "model": {"name": "small-cnn", "params": {"width": 8}},
    "train": {"epochs": 2, "batch_size": 32, "optimizer": {"lr": 0.05}, "schedule": {"name": "constant"}},
    "al": {"initial": 20, "budget": 20, "cycles": 3},
    "seeds": [0, 1],
    "threads": 1,
    "record": {"embeddings": 0},
}


def _plan(out, **extra) -> list:
    raw = copy.deepcopy(BASE)
    raw.update(copy.deepcopy(extra))
    raw["output"] = str(out)
    return make_plan(build_config(raw))


@pytest.mark.slow
def test_seeds_and_the_ablation_share_one_pretext_training(tmp_path):
    runs = _plan(tmp_path, strategies=[{"name": "pt4al", "params": PRETEXT},
                                       {"name": "pt4al-pretext-only", "params": PRETEXT}])
    for rc in runs:
        assert execute_run(rc).state == "complete"
    infos = [json.loads((rc.run_dir / "run.json").read_text())["prepare"] for rc in runs]
    assert [i["pretext_cache"] for i in infos] == ["miss", "hit", "hit", "hit"]
    assert len({i["pretext_key"] for i in infos}) == 1
    assert len({i["pretext_train_seconds"] for i in infos}) == 1 and infos[0]["pretext_train_seconds"] > 0

    rc = runs[0]
    n_pool, n_test = 1500, 297
    pool_loss = read_artifact(rc.run_dir, "pretext_loss_pool")
    test_loss = read_artifact(rc.run_dir, "pretext_loss_test")
    assert pool_loss.shape == (n_pool,) and pool_loss.dtype == np.float32
    assert test_loss.shape == (n_test,) and test_loss.dtype == np.float32
    assert read_artifact(rc.run_dir, "test_loss").shape == (3, n_test)  # the main-task side of the Spearman plot
    np.testing.assert_array_equal(read_artifact(runs[1].run_dir, "pretext_loss_pool"), pool_loss)

    # cycle c draws from batch c; batch 0 holds the 500 highest losses, sampled at every 25th position
    batch = read_artifact(rc.run_dir, "pt4al_batch")
    queries = read_queries(rc.run_dir)
    for c in range(3):
        assert (batch[queries[c]] == c).all()
    order = np.argsort(-pool_loss.astype(np.float64), kind="stable")
    assert sorted(queries[0].tolist()) == sorted(order[np.arange(20) * 25].tolist())

    only = read_queries(runs[2].run_dir)  # pretext-only: the 60 highest losses, in order
    assert np.concatenate([only[c] for c in range(3)]).tolist() == order[:60].tolist()


@pytest.mark.slow
def test_official_protocol_is_recorded_with_its_flag(tmp_path):
    # digits has one channel: bgr_normalization (CIFAR-10's BGR constants) does not apply, so list the others
    quirks = ["string_sort", "normalized_softmax", "warm_start", "best_on_test"]
    (rc,) = _plan(tmp_path, protocol="official", seeds=[0], al={"initial": 20, "budget": 20, "cycles": 2},
                  strategies=[{"name": "pt4al", "params": PRETEXT, "quirks": quirks}])
    assert execute_run(rc).state == "complete"
    ident = json.loads((rc.run_dir / "run.json").read_text())
    assert ident["quirks"] == quirks
    assert ident["flags"] == ["best-on-test"]
    assert ident["prepare"]["loss_sort"] == "string"
    cfg = yaml.safe_load((rc.run_dir / "config.yaml").read_text())
    assert cfg["train"]["init"] == "warm" and cfg["train"]["selection"] == "best-on-test"
    assert cfg["strategy"]["params"]["normalized_softmax"] is True


class Crash(BaseException):
    """Stands in for a killed job."""


@pytest.mark.slow
def test_resume_reuses_the_cache_and_ends_equal(tmp_path, monkeypatch):
    strategies = [{"name": "pt4al", "params": PRETEXT}]
    (ref,) = _plan(tmp_path / "ref", seeds=[0], strategies=strategies)
    assert execute_run(ref).state == "complete"

    (rc,) = _plan(tmp_path / "crash", seeds=[0], strategies=strategies)
    orig = RunRecorder.save_checkpoint
    calls = {"n": 0}

    def crash_after_first(self, state):
        orig(self, state)
        calls["n"] += 1
        if calls["n"] == 1:
            raise Crash()

    monkeypatch.setattr(RunRecorder, "save_checkpoint", crash_after_first)
    with pytest.raises(Crash):
        execute_run(rc)
    monkeypatch.undo()
    # the resumed job must read the losses from the cache, not train again
    monkeypatch.setattr(losses_mod, "fit_pretext", lambda *a, **k: pytest.fail("pretext retrained on resume"))
    assert execute_run(rc).state == "complete"
    assert json.loads((rc.run_dir / "queries.json").read_text()) == json.loads(
        (ref.run_dir / "queries.json").read_text())
    np.testing.assert_array_equal(read_artifact(rc.run_dir, "pretext_loss_test"),
                                  read_artifact(ref.run_dir, "pretext_loss_test"))
