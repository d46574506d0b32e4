"""The GCN's graph: the adjacency normalisation by hand, and the memory bound on its size."""

from __future__ import annotations

import math

import pytest
import torch

from albench.config import build_config
from albench.validate import validate_environment
from albench.errors import ConfigError
from albench.strategies.gcn import (GCN, LowRankAdjacency, _check_adjacency, adjacency_gb, max_query_nodes, normalized_adjacency,
                            train_gcn)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny graphs: threads only add hand-offs


def test_three_node_adjacency_equals_the_hand_result():
    # Unit rows (1, 0), (0, 1), (0.6, 0.8). X X^T - I = [[0, 0, .6], [0, 0, .8], [.6, .8, 0]];
    # column sums (.6, .8, 1.4); dividing each column by its sum and adding I gives:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    expect = torch.tensor([[1.0, 0.0, 3 / 7],
                           [0.0, 1.0, 4 / 7],
                           [1.0, 1.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(normalized_adjacency(x), expect, atol=1e-12)


def test_zero_column_sum_is_left_undivided():
    # Orthogonal nodes: X X^T - I is all zeros, so every column sums to 0; the result is I, not NaN.
    a = normalized_adjacency(torch.eye(2))
    assert torch.equal(a, torch.eye(2))


def test_lowrank_operator_equals_the_dense_matrix():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(LowRankAdjacency(x) @ eye, normalized_adjacency(x), atol=1e-12)  # the 3-node hand result
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.rand(200, 16, generator=g, dtype=torch.float64), dim=1)
    s = torch.randn(200, 5, generator=g, dtype=torch.float64)
    assert torch.allclose(LowRankAdjacency(x) @ s, normalized_adjacency(x) @ s, atol=1e-10)
    assert torch.equal(LowRankAdjacency(torch.eye(2)) @ torch.eye(2), torch.eye(2))  # zero column sums


def test_lowrank_trains_the_same_gcn():
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.normalize(torch.rand(120, 16, generator=g), dim=1)
    labeled = torch.arange(120) >= 100
    kw = dict(hidden=32, dropout=0.3, steps=20, lr=1e-2, weight_decay=5e-4, lambda_=1.2, seed=3)
    dense = train_gcn(x, normalized_adjacency(x), labeled, **kw)
    low = train_gcn(x, LowRankAdjacency(x), labeled, **kw)
    with torch.no_grad():
        a, _ = dense(x, normalized_adjacency(x))
        b, _ = low(x, LowRankAdjacency(x))
    assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("kind", ["dense", "lowrank"])
def test_propagating_the_features_once_gives_the_same_layer(kind):
    """train_gcn hands the GCN A X once; (A X) W + b must be the layer A (X W) + b it replaces, for
    the values and for the gradients of W and b."""
    g = torch.Generator().manual_seed(2)
    x = torch.nn.functional.normalize(torch.rand(90, 12, generator=g, dtype=torch.float64), dim=1)
    adj = normalized_adjacency(x) if kind == "dense" else LowRankAdjacency(x)
    model = GCN(12, 8, 0.0, torch.Generator().manual_seed(4)).double()
    out = []
    for ax in (None, adj @ x):
        model.zero_grad()
        logits, feats = model(x, adj, ax=ax)
        (logits.square().sum() + feats.sum()).backward()
        out.append((logits.detach(), feats.detach(), model.gc1.weight.grad.clone(), model.gc1.bias.grad.clone()))
    for a, b in zip(*out):
        assert torch.allclose(a, b, atol=1e-10)


def test_adjacency_size_and_largest_query_graph():
    assert adjacency_gb(20_000) == pytest.approx(1.6)  # 20k^2 float32 = 1.6e9 bytes
    # CIFAR-10 official: 1k initial + 1k per cycle, 10 cycles: the last query sees 9k labeled.
    assert max_query_nodes(pool_size=50_000, subset=10_000, initial=1000, budget=1000, cycles=10) == 19_000
    # A pool smaller than the subset: every unlabeled image is a node.
    assert max_query_nodes(pool_size=1500, subset=10_000, initial=50, budget=50, cycles=4) == 1500
    assert max_query_nodes(pool_size=1500, subset=None, initial=50, budget=50, cycles=1) == 0


def test_refusal_names_subset_and_how_far_to_lower_it():
    with pytest.raises(ConfigError) as err:
        _check_adjacency(20_000, 5_000, {"subset": 15_000, "max_adjacency_gb": 1.0}, "strategies[0].params")
    e = err.value
    assert e.field == "strategies[0].params.subset"
    fits = math.isqrt(int(1.0e9 / 4))  # 15811 nodes fit in 1 GB
    assert f"lower strategies[0].params.subset to {fits - 5_000} or less" in e.fix
    assert "1.6 GB" in e.problem
    assert "adjacency to 'lowrank'" in e.fix
    _check_adjacency(15_811, 5_000, {"subset": 10_811, "max_adjacency_gb": 1.0}, "p")  # fits: no error


@pytest.mark.parametrize("name", ["uncertaingcn", "coregcn"])
def test_config_load_refuses_an_adjacency_over_the_limit(tiny_raw, name):
    # digits: a 1,500-image pool; tiny schedule 20 + 20 per cycle, 3 cycles -> 1,500 nodes = 9 MB.
    raw = dict(tiny_raw, strategies=[{"name": name, "params": {"max_adjacency_gb": 0.005}}])
    with pytest.raises(ConfigError) as err:
        validate_environment(build_config(raw))
    assert err.value.field == "strategies[0].params.subset"
    raw["strategies"][0]["params"]["max_adjacency_gb"] = 0.01
    validate_environment(build_config(raw))


def test_lowrank_adjacency_is_not_bounded(tiny_raw):
    raw = dict(tiny_raw, strategies=[{"name": "uncertaingcn",
                                      "params": {"max_adjacency_gb": 0.005, "adjacency": "lowrank"}}])
    validate_environment(build_config(raw))


def test_superseded_official_coregcn_builds_no_graph_so_is_not_refused(tiny_raw):
    raw = dict(tiny_raw, protocol="official",
               strategies=[{"name": "coregcn", "params": {"max_adjacency_gb": 0.005},
                            "quirks": ["kcenter-on-input-features-d8993bc"]}])
    validate_environment(build_config(raw))
    # the current official code (a040272) trains the GCN, so its graph is bounded like the paper's
    raw["strategies"][0]["quirks"] = ["kcenter-on-hidden-and-output"]
    with pytest.raises(ConfigError) as err:
        validate_environment(build_config(raw))
    assert err.value.field == "strategies[0].params.subset"
