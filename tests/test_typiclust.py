"""TypiClust on hand-checkable 2-D point sets, its params, and a tiny end-to-end run on digits."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import albench.strategies.typiclust as tc
from albench.strategies.kmeans import minibatch_kmeans
from albench.config import StrategyConfig, TrainConfig, build_config
from albench.errors import ConfigError
from albench.plan import make_plan, resolve_strategy
from albench.strategies.registry import make_strategy


def _plus(center, r=1.0):
    """A center and four points at distance r around it (the center is the most typical point)."""
    cx, cy = center
    return [(cx, cy), (cx + r, cy), (cx - r, cy), (cx, cy + r), (cx, cy - r)]


def test_the_typical_point_of_a_tight_cluster_is_its_center():
    pts = np.array(_plus((0.0, 0.0)) + [(0.0, 2.0)], dtype=np.float64)  # a 6th point pulls nothing off-centre
    d = tc.mean_knn_distance(pts, 3)
    # center: three neighbours at 1 -> 1; (0, 1): neighbours (0, 0) 1, (0, 2) 1, (1, 0) sqrt 2
    assert d[0] == pytest.approx(1.0)
    assert d[3] == pytest.approx((2 + np.sqrt(2)) / 3)
    assert int(np.argmin(d)) == 0
    picks = tc.typiclust_select(pts, np.zeros(6, dtype=np.int64), np.array([], dtype=np.int64), 1,
                                rng=np.random.default_rng(0))
    assert picks.tolist() == [0]


def test_squared_distances_change_the_typical_point():
    # point 0: neighbours at 1 and 3 (mean 2, mean square 5); point 3: at 2.1 and 2.1 (mean 2.1, 4.41)
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [-3.0, 0.0], [10.0, 0.0], [10.0, 2.1], [12.1, 0.0]])
    d = tc.mean_knn_distance(pts, 2)
    sq = tc.mean_knn_distance(pts, 2, squared=True)
    assert d[[0, 3]].tolist() == pytest.approx([2.0, 2.1]) and sq[[0, 3]].tolist() == pytest.approx([5.0, 4.41])
    assert int(np.argmin(d)) == 0 and int(np.argmin(sq)) == 3


def test_the_knn_is_blockwise_and_never_n_by_n(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    full = tc.mean_knn_distance(x, 5)
    monkeypatch.setattr(tc, "BLOCK_ELEMENTS", 50 * 7)  # 7 rows per block
    assert np.allclose(tc.mean_knn_distance(x, 5), full)
    brute = np.sort(np.linalg.norm(x[:, None] - x[None], axis=2), axis=1)[:, 1:6].mean(1)
    assert np.allclose(full, brute)


def _three_clusters():
    # clusters 0 (6 points), 1 (7 points: largest), 2 (3 points: dropped, <= 5)
    a = _plus((0.0, 0.0)) + [(0.0, 2.0)]
    b = _plus((10.0, 0.0)) + [(10.0, 2.0), (10.0, -2.0)]
    c = [(20.0, 0.0), (20.0, 1.0), (21.0, 0.0)]
    pts = np.array(a + b + c, dtype=np.float64)
    clusters = np.array([0] * 6 + [1] * 7 + [2] * 3)
    return pts, clusters


def test_cluster_visit_order_fewest_labeled_then_largest_and_small_clusters_dropped():
    pts, clusters = _three_clusters()
    none = np.array([], dtype=np.int64)
    # no labels: the largest cluster (1, center 6) first, then cluster 0 (center 0); cluster 2 never
    assert tc.typiclust_select(pts, clusters, none, 2, rng=np.random.default_rng(0)).tolist() == [6, 0]
    # cluster 1's center already labeled: cluster 0 has fewer labels, so it goes first; then cluster 1's
    # most typical unlabeled point (the paper's density counts the labeled center as a neighbour)
    picks = tc.typiclust_select(pts, clusters, np.array([6]), 2, rng=np.random.default_rng(0))
    assert picks[0] == 0 and picks[1] in (7, 8, 9, 10)
    # a third pick: both clusters hold one label now, so the largest again (re-ranked after each pick)
    picks = tc.typiclust_select(pts, clusters, none, 3, rng=np.random.default_rng(0))
    assert picks[:2].tolist() == [6, 0] and clusters[picks[2]] == 1


def test_fixed_cluster_order_cycles_without_reranking():
    pts, clusters = _three_clusters()
    lab = np.array([0, 3])  # cluster 0 holds 2 labels, cluster 1 none: ranked [1, 0] once
    ranked = tc.typiclust_select(pts, clusters, lab, 3, rng=np.random.default_rng(0))
    fixed = tc.typiclust_select(pts, clusters, lab, 3, rng=np.random.default_rng(0), resort=False,
                                density="candidates")
    assert [int(clusters[i]) for i in ranked] == [1, 1, 1]  # 1 (0 labels), 1 (1 < 2), 1 (2 = 2: the larger)
    assert [int(clusters[i]) for i in fixed] == [1, 0, 1]


def test_exhausted_clusters_leave_the_rest_to_rng():
    pts, clusters = _three_clusters()
    picks = tc.typiclust_select(pts, clusters, np.array([], dtype=np.int64), 15, rng=np.random.default_rng(0))
    assert len(set(picks.tolist())) == 15 and set(picks[:13].tolist()) == set(range(13))
    assert set(picks[13:].tolist()) <= {13, 14, 15}


def test_cluster_count_and_seeded_kmeans():
    assert tc.cluster_count(0, 10, 500, 1000) == 10 and tc.cluster_count(990, 20, 500, 5000) == 500
    pts, _ = _three_clusters()
    a = tc.cluster_pool(pts, 3, np.random.default_rng(1))
    b = tc.cluster_pool(pts, 3, np.random.default_rng(1))
    assert np.array_equal(a, b) and len(np.unique(a[:6])) == 1 and len(np.unique(a[6:13])) == 1
    pool = np.random.default_rng(0).normal(size=(300, 2))
    many = tc.cluster_pool(pool, 60, np.random.default_rng(0))
    assert many.shape == (300,) and many.max() < 60  # mini-batch k-means above 50
    # albench's by default, the same labels as minibatch_kmeans from the seed the rng draws first
    seed = int(np.random.default_rng(0).integers(0, 2**31 - 1))
    assert np.array_equal(many, minibatch_kmeans(pool.astype(np.float32), 60, seed=seed, batch_size=5000))
    # scikit-learn's (the official quirk), seeded the same way: reproducible, and other labels
    sk = tc.cluster_pool(pool, 60, np.random.default_rng(0), kmeans="sklearn")
    assert np.array_equal(sk, tc.cluster_pool(pool, 60, np.random.default_rng(0), kmeans="sklearn"))
    assert sk.max() < 60 and not np.array_equal(sk, many)


def test_params_are_validated_and_official_switches_every_quirk():
    with pytest.raises(ConfigError) as err:
        make_strategy("typiclust", {"max_clusters": 0})
    assert err.value.field == "params.max_clusters"
    with pytest.raises(ConfigError) as err:
        make_strategy("typiclust", {"representation": "simclrr"})
    assert err.value.field == "params.representation"
    with pytest.raises(ConfigError) as err:
        make_strategy("typiclust", {"pretext_model": "nope"})
    assert err.value.field == "params.pretext_model"
    with pytest.raises(ConfigError) as err:
        make_strategy("typiclust", {"pretext_options": {"tau": -1}})
    assert err.value.field == "params.pretext_options.tau"
    st, _, quirks, flags = resolve_strategy(StrategyConfig("typiclust"), "official", TrainConfig(), "s")
    # official = the current code (4097a71), which normalises the features
    assert set(quirks) == {"squared_distances", "fixed_cluster_order", "candidate_density", "sklearn_minibatch_kmeans"}
    assert st.params["squared_distances"] and not st.params["resort"] and st.params["normalize"]
    assert st.params["kmeans"] == "sklearn"
    assert st.params["density"] == "candidates" and flags == []
    # the superseded code of the ICML 2022 paper: its own commit-named quirk
    st, _, quirks, _ = resolve_strategy(StrategyConfig("typiclust", quirks=["unnormalized_features_250a41d"]),
                                        "official", TrainConfig(), "s")
    assert quirks == ["unnormalized_features_250a41d"] and not st.params["normalize"]
    st, *_ = resolve_strategy(StrategyConfig("typiclust"), "paper", TrainConfig(), "s")
    assert st.params["normalize"] and st.params["resort"] and not st.params["squared_distances"]
    assert st.params["kmeans"] == "albench"


TINY_SIMCLR = {"pretext_model": "small-cnn", "pretext_width": 4, "pretext_epochs": 1, "pretext_batch_size": 256}


@pytest.mark.slow
def test_end_to_end_on_digits_shares_one_representation_across_seeds(tmp_path, one_torch_thread):
    raw = {"name": "tc", "dataset": {"name": "digits"}, "model": {"name": "small-cnn", "params": {"width": 4}},
           "train": {"epochs": 1, "batch_size": 64, "optimizer": {"lr": 0.05}, "schedule": {"name": "constant"}},
           "al": {"initial": 20, "budget": 20, "cycles": 2}, "seeds": [0, 1], "threads": 1,
           "record": {"embeddings": 0}, "output": str(tmp_path),
           "strategies": [{"name": "typiclust", "params": copy.deepcopy(TINY_SIMCLR)}]}
    from albench.engine.loop import execute_run
    from albench.records import read_queries

    runs = make_plan(build_config(raw))
    for rc in runs:
        assert execute_run(rc).state == "complete"
    infos = [json.loads((rc.run_dir / "run.json").read_text())["prepare"] for rc in runs]
    assert [i["representation_cache"] for i in infos] == ["miss", "hit"]
    assert infos[0]["representation"] == "simclr" and infos[0]["representation_dim"] == 32
    for rc in runs:
        q = read_queries(rc.run_dir)
        flat = [i for c in sorted(q) for i in q[c]]
        assert [len(q[c]) for c in sorted(q)] == [20, 20] and len(set(flat)) == 40


def test_pt4al_first_cycle_strategy_is_validated_at_config_load():
    st = make_strategy("pt4al", {"first_cycle_strategy": "typiclust"})
    assert st.cold_start is not None and st.cold_start.name == "typiclust"
    assert make_strategy("pt4al").cold_start is None
    with pytest.raises(ConfigError) as err:
        make_strategy("pt4al", {"first_cycle_strategy": "badge"})
    assert err.value.field == "params.first_cycle_strategy"
    with pytest.raises(ConfigError) as err:
        make_strategy("pt4al", {"first_cycle_strategy": {"name": "probcover", "params": {"delta": -1}}})
    assert err.value.field == "params.first_cycle_strategy.params.delta"
    with pytest.raises(ConfigError) as err:
        make_strategy("pt4al", {"first_cycle_strategy": {"name": "typiclust", "prams": {}}})
    assert err.value.field == "params.first_cycle_strategy.prams"


@pytest.mark.slow
def test_pt4al_with_a_typiclust_first_cycle_queries_what_typiclust_queries(tmp_path, one_torch_thread):
    from albench.engine.loop import execute_run
    from albench.records import read_queries

    pretext = {"pretext_model": "small-cnn", "pretext_model_params": {"width": 4}, "pretext_epochs": 1,
               "pretext_batch_size": 256, "pretext_selection": "final"}
    raw = {"name": "hy", "dataset": {"name": "digits"}, "model": {"name": "small-cnn", "params": {"width": 4}},
           "train": {"epochs": 1, "batch_size": 64, "optimizer": {"lr": 0.05}, "schedule": {"name": "constant"}},
           "al": {"initial": 20, "budget": 20, "cycles": 2}, "seeds": [0], "threads": 1,
           "record": {"embeddings": 0}, "output": str(tmp_path),
           "strategies": [{"name": "typiclust", "params": copy.deepcopy(TINY_SIMCLR)},
                          {"name": "pt4al", "label": "pt4al-typiclust",
                           "params": {**pretext, "first_cycle_strategy": {"name": "typiclust",
                                                                          "params": copy.deepcopy(TINY_SIMCLR)}}}]}
    runs = make_plan(build_config(raw))
    for rc in runs:
        assert execute_run(rc).state == "complete"
    tq, hq = (read_queries(rc.run_dir) for rc in runs)
    assert tq[0].tolist() == hq[0].tolist()  # the same cold start, from the same cached representation
    info = json.loads((runs[1].run_dir / "run.json").read_text())["prepare"]
    assert info["representation_cache"] == "hit" and "pretext_key" in info
