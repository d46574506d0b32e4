"""ProbCover on hand-checkable 2-D point sets, its params, and a tiny end-to-end run on digits."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import albench.strategies.probcover as pc
from albench.config import StrategyConfig, TrainConfig, build_config
from albench.errors import ConfigError
from albench.plan import make_plan, resolve_strategy
from albench.strategies.registry import make_strategy

# six points on a line: {0, 1, 2} a chain, {10, 11} a pair, {20} alone
LINE = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [10.0, 0.0], [11.0, 0.0], [20.0, 0.0]])


def test_ball_graph_has_strict_edges_and_self_loops():
    indptr, targets = pc.ball_graph(LINE, 1.5, chunk_rows=4)
    rows = [targets[indptr[i]:indptr[i + 1]].tolist() for i in range(6)]
    assert rows == [[0, 1], [0, 1, 2], [1, 2], [3, 4], [3, 4], [5]]
    indptr, targets = pc.ball_graph(LINE, 1.0)  # distance 1 is not < 1: self-loops only
    assert np.diff(indptr).tolist() == [1] * 6


def test_greedy_on_the_six_point_graph_picks_the_known_cover():
    g = pc.ball_graph(LINE, 1.5)
    none = np.array([], dtype=np.int64)
    # degrees 2, 3, 2, 2, 2, 1: node 1 covers the chain; then the pair (tie 3/4 -> 3); then node 5
    assert pc.max_coverage(*g, none, 3, np.random.default_rng(0)).tolist() == [1, 3, 5]
    # node 0 labeled covers {0, 1}: uncovered degrees 1, 1, 2, 2, 1 -> 3, then the tie 1/2/5 -> 1, then 5
    assert pc.max_coverage(*g, np.array([0]), 3, np.random.default_rng(0)).tolist() == [3, 1, 5]


def test_once_all_is_covered_the_rest_is_uniform_and_never_repeats():
    g = pc.ball_graph(LINE, 1.5)
    picks = pc.max_coverage(*g, np.array([0]), 5, np.random.default_rng(0))
    assert picks[:3].tolist() == [3, 1, 5]
    assert sorted(picks[3:].tolist()) == [2, 4]  # the only unlabeled, unchosen points left
    draws = {tuple(pc.max_coverage(*g, np.array([0]), 4, np.random.default_rng(s))[3:]) for s in range(20)}
    assert draws == {(2,), (4,)}  # drawn from rng, not always the same index


def _plain_greedy(indptr, targets, labeled, k, silent=()):
    """The greedy written the obvious way: recount every node's uncovered out-neighbours each step."""
    n = len(indptr) - 1
    rows = [set(targets[indptr[i]:indptr[i + 1]].tolist()) if i not in set(silent) else set() for i in range(n)]
    covered = set().union(*(rows[i] for i in labeled)) if len(labeled) else set()
    picks = []
    for _ in range(k):
        counts = [len(r - covered) for r in rows]
        best = max(range(n), key=lambda i: (counts[i], -i))
        if counts[best] == 0:
            break
        picks.append(best)
        covered |= rows[best]
    return picks


@pytest.mark.parametrize("seed", range(40))
def test_greedy_takes_exactly_the_plain_greedys_picks(seed):
    # integer points: many equal counts, so ties (to the lowest index) decide most steps
    r = np.random.default_rng(seed)
    n = int(r.integers(20, 150))
    x = r.integers(0, 6, size=(n, int(r.integers(1, 4)))).astype(np.float32)
    g = pc.ball_graph(x, float(r.uniform(0.5, 3.0)))
    labeled = r.choice(n, size=int(r.integers(0, n // 3)), replace=False)
    silent = r.choice(n, size=int(r.integers(0, n // 4)), replace=False) if seed % 2 else np.zeros(0, dtype=int)
    k = int(r.integers(1, n - len(labeled) + 1))
    want = _plain_greedy(*g, labeled, k, silent.tolist())
    got = pc.max_coverage(*g, labeled, k, np.random.default_rng(0), silent=silent).tolist()
    assert got[:len(want)] == want
    assert not set(got[len(want):]) & set(labeled.tolist()) and len(set(got)) == k  # the uniform rest
    assert not set(want) & set(silent.tolist())


def test_uncovered_degrees_count_per_row_and_skip_empty_rows():
    indptr = np.array([0, 2, 2, 5, 6])  # row 1 empty
    targets = np.array([0, 1, 0, 2, 3, 3], dtype=np.int32)
    covered = np.array([True, False, False, False])
    for block in (1, 2, 3, 100):  # rows grouped into blocks of about that many edges
        assert pc.uncovered_degrees(indptr, targets, covered, block=block).tolist() == [1, 0, 2, 1]


@pytest.mark.parametrize("seed", range(6))
def test_ball_graph_is_the_definition_and_symmetric(seed, monkeypatch):
    r = np.random.default_rng(seed)
    n = int(r.integers(2, 200))
    x = r.normal(size=(n, int(r.integers(1, 5)))).astype(np.float32)
    delta = float(r.uniform(0.3, 2.0))
    d = np.sqrt(((x[:, None].astype(np.float64) - x[None].astype(np.float64)) ** 2).sum(-1))
    assert np.abs(d - delta).min() > 1e-5  # no pair at the ball's edge, where float32 may decide otherwise
    want = [np.flatnonzero(row < delta).tolist() for row in d]
    real = pc._place
    monkeypatch.setattr(pc, "_place", lambda *a, **k: real(*a, **{**k, "block": 7}))  # many small copies
    for chunk in (1, 3, 64, 1000):
        indptr, targets = pc.ball_graph(x, delta, chunk_rows=chunk)
        assert [targets[indptr[i]:indptr[i + 1]].tolist() for i in range(n)] == want
        assert targets.dtype == np.int32 and indptr.dtype == np.int64


def test_official_row_tail_is_the_last_n_mod_block_of_labeled_then_unlabeled():
    labeled, unlabeled = np.array([7, 2]), np.array([0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 12])
    assert pc.official_row_tail(labeled, unlabeled, 5).tolist() == [10, 11, 12]  # 13 points: 2 blocks of 5
    assert pc.official_row_tail(labeled, unlabeled, 13).tolist() == []
    assert pc.official_row_tail(np.arange(4), np.arange(4, 6), 2).tolist() == []
    assert pc.official_row_tail(np.array([5, 4, 3]), np.array([0]), 3).tolist() == [0]
    assert pc.official_row_tail(np.array([5, 4, 3, 2]), np.array([], dtype=int), 3).tolist() == [2]  # a labeled one
    with pytest.raises(ValueError, match="0 row blocks"):
        pc.official_row_tail(labeled, unlabeled, 14)


def test_graph_refuses_past_the_edge_limit_naming_the_params():
    with pytest.raises(pc.GraphTooLarge, match="params.delta.*params.max_edges"):
        pc.ball_graph(LINE, 1.5, max_edges=10, chunk_rows=2)  # 12 edges
    assert len(pc.ball_graph(LINE, 1.5, max_edges=12)[1]) == 12


# two clusters of three on a line: exact binary fractions, so the hand values are exact
TOY = np.array([[0.0, 0.0], [0.25, 0.0], [0.5, 0.0], [1.5, 0.0], [1.75, 0.0], [2.0, 0.0]])
TOY_LABELS = np.array([0, 0, 0, 1, 1, 1])


def test_purity_rule_picks_the_known_delta():
    other = pc.other_label_distance(TOY, TOY_LABELS, chunk_rows=4)
    assert other.tolist() == [1.5, 1.25, 1.0, 1.0, 1.25, 1.5]
    grid = [0.25 * i for i in range(1, 9)]
    assert pc.purity(other, 1.0) == 1.0 and pc.purity(other, 1.25) == pytest.approx(4 / 6)
    assert pc.purity_delta(other, grid, 0.95) == 1.0  # every ball pure up to 1.0 (strict: 1.0 is not < 1.0)
    assert pc.purity_delta(other, grid, 0.6) == 1.25
    assert pc.purity_delta(other, grid, 0.3) == 1.5
    assert pc.purity_delta(other, [1.75, 2.0], 0.95) is None
    # the k-means labels of the rule (K = 2 here) find the two clusters
    labels = pc.kmeans_labels(TOY, 2, seed=0)
    assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1 and labels[0] != labels[3]


def test_params_are_validated_and_official_switches_the_delta():
    for bad, field in [({"delta": 0}, "params.delta"), ({"alpha": 1.5}, "params.alpha"),
                       ({"max_edges": 0}, "params.max_edges"), ({"delta_grid": [0.2, -1]}, "params.delta_grid"),
                       ({"delta_grid": []}, "params.delta_grid"), ({"pretext_epochs": 0}, "params.pretext_epochs"),
                       ({"pretext_width": 8, "pretext_model": "nope"}, "params.pretext_model")]:
        with pytest.raises(ConfigError) as err:
            make_strategy("probcover", bad)
        assert err.value.field == field, bad
    st, _, quirks, _ = resolve_strategy(StrategyConfig("probcover"), "official", TrainConfig(), "s")
    assert quirks == ["official_delta", "graph_row_blocks_floor"] and st.params["delta"] == 0.6
    assert st.params["row_block"] == 500
    st, *_ = resolve_strategy(StrategyConfig("probcover"), "paper", TrainConfig(), "s")
    assert st.params["delta"] is None and st.params["alpha"] == 0.95


# 5 epochs: a 1-epoch network maps digits so close together that no delta of the grid is 95% pure
TINY_SIMCLR = {"pretext_model": "small-cnn", "pretext_width": 8, "pretext_epochs": 5, "pretext_batch_size": 256}


@pytest.mark.slow
def test_end_to_end_on_digits(tmp_path, one_torch_thread):
    from albench.engine.loop import execute_run
    from albench.records import read_queries

    raw = {"name": "pc", "dataset": {"name": "digits"}, "model": {"name": "small-cnn", "params": {"width": 4}},
           "train": {"epochs": 1, "batch_size": 64, "optimizer": {"lr": 0.05}, "schedule": {"name": "constant"}},
           "al": {"initial": 20, "budget": 20, "cycles": 2}, "seeds": [0], "threads": 1,
           "record": {"embeddings": 0}, "output": str(tmp_path),
           "strategies": [{"name": "probcover", "params": copy.deepcopy(TINY_SIMCLR)},
                          {"name": "probcover", "label": "probcover-fixed",
                           "params": {**TINY_SIMCLR, "delta": 0.3}}]}
    runs = make_plan(build_config(raw))
    for rc in runs:
        assert execute_run(rc).state == "complete"
    infos = [json.loads((rc.run_dir / "run.json").read_text())["prepare"] for rc in runs]
    assert infos[0]["probcover_delta_rule"] == "purity" and infos[0]["probcover_purity"] >= 0.95
    assert infos[1]["probcover_delta"] == 0.3 and infos[1]["representation_cache"] == "hit"
    for rc in runs:
        q = read_queries(rc.run_dir)
        flat = [i for c in sorted(q) for i in q[c]]
        assert [len(q[c]) for c in sorted(q)] == [20, 20] and len(set(flat)) == 40
