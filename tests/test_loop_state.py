"""LoopState: the run state between cycles owns its checkpoint layout (write, read, refuse)."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from albench.config import build_config
from albench.engine.loop import execute_run
from albench.engine.state import CHECKPOINT_VERSION, CheckpointVersionError, LoopState, PartialCycle
from albench.errors import AlbenchError
from albench.plan import make_plan
from albench.records import RunRecorder


def _through_disk(payload: dict) -> dict:
    buf = io.BytesIO()
    torch.save(payload, buf)
    buf.seek(0)
    return torch.load(buf, map_location="cpu", weights_only=True)


def _state(partial: bool) -> LoopState:
    return LoopState(
        next_cycle=2, labeled=np.array([5, 1, 9, 3], dtype=np.int64),
        rows=[{"cycle": 0, "value": 0.5, "selected_epoch": None}, {"cycle": 1, "value": 0.75, "selected_epoch": 2}],
        queries={0: [10, 2], 1: [18, 6]},
        test_losses={0: np.array([0.1, 0.2], np.float32), 1: np.array([0.3, 0.4], np.float32)},
        extra_metrics={0: {"iou": np.array([0.5, 0.25])}, 1: {"iou": np.array([0.5, 0.5])}},
        prev={"model": {"w": torch.ones(2, 2)}, "aux": None},
        strategy={"order": np.array([3, 1, 2], dtype=np.int64), "note": "x"},
        resumes=1,
        partial=PartialCycle(cycle=2, new=np.array([7], dtype=np.int64), labeled=np.array([5, 1, 9, 3, 7]),
                             seconds={"select": 0.5}, trainer={"epoch": 1}) if partial else None)


def _assert_equal(a: LoopState, b: LoopState) -> None:
    assert (a.next_cycle, a.rows, a.queries, a.resumes) == (b.next_cycle, b.rows, b.queries, b.resumes)
    np.testing.assert_array_equal(a.labeled, b.labeled)
    assert a.labeled.dtype == b.labeled.dtype == np.int64
    assert sorted(a.test_losses) == sorted(b.test_losses)
    for c in a.test_losses:
        np.testing.assert_array_equal(a.test_losses[c], b.test_losses[c])
        assert a.test_losses[c].dtype == np.float32
        np.testing.assert_array_equal(a.extra_metrics[c]["iou"], b.extra_metrics[c]["iou"])
    assert torch.equal(a.prev["model"]["w"], b.prev["model"]["w"]) and b.prev["aux"] is None
    np.testing.assert_array_equal(a.strategy["order"], b.strategy["order"])
    assert isinstance(b.strategy["order"], np.ndarray) and b.strategy["note"] == "x"
    assert (a.partial is None) == (b.partial is None)
    if a.partial is not None:
        assert (a.partial.cycle, a.partial.seconds, a.partial.trainer) == (b.partial.cycle, b.partial.seconds,
                                                                            b.partial.trainer)
        np.testing.assert_array_equal(a.partial.new, b.partial.new)
        np.testing.assert_array_equal(a.partial.labeled, b.partial.labeled)


@pytest.mark.parametrize("partial", [False, True], ids=["boundary", "mid-cycle"])
def test_loop_state_round_trips_through_a_weights_only_checkpoint(partial):
    state = _state(partial)
    payload = _through_disk(state.to_checkpoint())
    assert payload["version"] == CHECKPOINT_VERSION == 1
    _assert_equal(state, LoopState.from_checkpoint(payload))


def test_a_fresh_state_round_trips():
    back = LoopState.from_checkpoint(_through_disk(LoopState().to_checkpoint()))
    assert back.next_cycle == 0 and back.labeled.dtype == np.int64 and len(back.labeled) == 0
    assert back.rows == [] and back.prev is None and back.partial is None and back.resumes == 0


def test_a_version_1_checkpoint_as_written_before_loop_state_still_reads():
    # the payload the cycle loop's snapshot closure wrote before LoopState existed, key for key
    old = {
        "version": 1, "next_cycle": 1, "labeled": torch.tensor([4, 0], dtype=torch.long),
        "rows": [{"cycle": 0, "value": 0.5}], "queries": {"0": torch.tensor([4, 0], dtype=torch.long)},
        "test_losses": {"0": torch.tensor([0.5, 1.5])}, "extra_metrics": {},
        "prev": {"model": {"w": torch.zeros(1)}, "aux": None}, "strategy": {"k": {"__ndarray__": torch.arange(3)}},
        "partial": {"cycle": 1, "new": torch.tensor([2], dtype=torch.long),
                    "labeled": torch.tensor([4, 0, 2], dtype=torch.long), "seconds": {"train": 1.0},
                    "trainer": {"epoch": 1}},
        "resumes": 0,
    }
    state = LoopState.from_checkpoint(_through_disk(old))
    assert state.next_cycle == 1 and state.labeled.tolist() == [4, 0] and state.queries == {0: [4, 0]}
    assert state.strategy["k"].tolist() == [0, 1, 2]
    assert state.partial.labeled.tolist() == [4, 0, 2] and state.partial.trainer == {"epoch": 1}
    assert set(LoopState.from_checkpoint(_through_disk(old)).to_checkpoint()) == set(old)  # the same keys


@pytest.mark.parametrize("found", [2, 0, None, "1"])
def test_an_unknown_checkpoint_version_is_refused_with_the_fix(found):
    payload = LoopState().to_checkpoint()
    if found is None:
        del payload["version"]
    else:
        payload["version"] = found
    with pytest.raises(CheckpointVersionError) as err:
        LoopState.from_checkpoint(payload, source="out/run/checkpoint.pt")
    msg = str(err.value)
    assert isinstance(err.value, AlbenchError)
    assert "out/run/checkpoint.pt" in msg and f"version {found!r}" in msg and "version 1" in msg
    assert "delete out/run/checkpoint.pt to restart that run" in msg


def test_a_run_with_an_unknown_checkpoint_version_fails_and_keeps_the_checkpoint(tmp_path, tiny_raw):
    raw = copy.deepcopy(tiny_raw)
    (rc,) = make_plan(build_config(raw))
    rc.run_dir.mkdir(parents=True)
    payload = LoopState(next_cycle=1).to_checkpoint()
    payload["version"] = 99
    RunRecorder(rc.run_dir).save_checkpoint(payload)
    before = (rc.run_dir / "checkpoint.pt").read_bytes()
    outcome = execute_run(rc)
    assert outcome.state == "failed"
    assert "CheckpointVersionError" in outcome.error and "version 99" in outcome.error
    assert str(rc.run_dir / "checkpoint.pt") in outcome.error
    assert (rc.run_dir / "checkpoint.pt").read_bytes() == before  # not restarted over
    assert not (rc.run_dir / "cycles.csv").exists()


def test_what_prepare_returns_is_recorded_and_anything_but_a_dict_fails_the_run(tmp_path, tiny_raw, monkeypatch):
    import json

    from albench.strategies.registry import get_strategy

    cls = get_strategy("random")
    monkeypatch.setattr(cls, "prepare", lambda self, ctx: {"split": np.int64(3)}, raising=False)
    (rc,) = make_plan(build_config(copy.deepcopy(tiny_raw)))
    assert execute_run(rc).state == "complete"
    assert json.loads((rc.run_dir / "run.json").read_text())["prepare"] == {"split": 3}

    monkeypatch.setattr(cls, "prepare", lambda self, ctx: [3], raising=False)
    raw = copy.deepcopy(tiny_raw)
    raw["output"] = str(tmp_path / "other")
    (rc,) = make_plan(build_config(raw))
    outcome = execute_run(rc)
    assert outcome.state == "failed" and "prepare() returned list" in outcome.error
