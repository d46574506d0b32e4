"""Same config + seed => identical queried indices and (on CPU) identical metrics; another seed
=> different indices."""

from __future__ import annotations

import json

import pytest

from albench.config import build_config
from albench.engine.loop import execute_run
from albench.plan import make_plan
from albench.records import read_artifact, read_cycles


def _run(raw: dict, out, strategy: str, seed: int):
    raw = dict(raw, output=str(out), strategies=[strategy], seeds=[seed])
    (rc,) = make_plan(build_config(raw))
    outcome = execute_run(rc)
    assert outcome.state == "complete", outcome.error
    queries = json.loads((rc.run_dir / "queries.json").read_text())
    return queries, read_cycles(rc.run_dir), rc.run_dir


@pytest.mark.parametrize("strategy", ["random", "entropy"])
def test_same_seed_same_indices_and_metrics(tiny_raw, tmp_path, strategy):
    q1, rows1, d1 = _run(tiny_raw, tmp_path / "a", strategy, 3)
    q2, rows2, d2 = _run(tiny_raw, tmp_path / "b", strategy, 3)
    assert q1 == q2
    assert [r["value"] for r in rows1] == [r["value"] for r in rows2]
    assert [r["test_loss"] for r in rows1] == [r["test_loss"] for r in rows2]  # bit for bit
    assert (read_artifact(d1, "test_loss") == read_artifact(d2, "test_loss")).all()
    assert (read_artifact(d1, "embeddings") == read_artifact(d2, "embeddings")).all()


def test_different_seed_different_indices(tiny_raw, tmp_path):
    q1, _, _ = _run(tiny_raw, tmp_path / "a", "random", 0)
    q2, _, _ = _run(tiny_raw, tmp_path / "b", "random", 1)
    assert q1["0"] != q2["0"]
    assert q1["1"] != q2["1"]


def test_initial_set_is_shared_by_strategies_of_a_seed(tiny_raw, tmp_path):
    """The cold-start draw depends on the seed only, so strategies start from the same labels."""
    q1, _, _ = _run(tiny_raw, tmp_path / "a", "random", 5)
    q2, _, _ = _run(tiny_raw, tmp_path / "b", "margin", 5)
    assert q1["0"] == q2["0"]
    assert q1["1"] != q2["1"]
