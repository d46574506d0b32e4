"""Random and the posterior-uncertainty strategies on hand-checkable posteriors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from albench.strategies.base import Inputs, Outputs, PoolState, top_k_highest, top_k_lowest
from albench.strategies.registry import make_strategy
from albench.strategies.uncertainty import entropy, margin

POST = torch.tensor([
    [0.90, 0.05, 0.05],  # idx 10: confident
    [0.40, 0.35, 0.25],  # idx 11: least confident, highest entropy, small margin
    [0.50, 0.49, 0.01],  # idx 12: smallest margin
    [0.60, 0.20, 0.20],  # idx 13
    [1.00, 0.00, 0.00],  # idx 14: certain (0 log 0 counts as 0)
])
CAND = np.array([10, 11, 12, 13, 14])


def _inputs(post=POST, cand=CAND):
    return Inputs(candidates=Outputs(indices=cand, posteriors=post, confidence=post.max(dim=1).values),
                  labeled=None, device=torch.device("cpu"))


def _pool(n=20, labeled=(0, 1)):
    return PoolState(images=torch.zeros(n, 1, 2, 2, dtype=torch.uint8), labeled=np.array(labeled),
                     labeled_targets=torch.zeros(len(labeled), dtype=torch.long), num_classes=3)


def _select(name, k, **params):
    s = make_strategy(name, params)
    return s.select(cycle=1, budget=k, pool=_pool(), inputs=_inputs(), rng=np.random.default_rng(0)).tolist()


def test_least_confidence_order():
    assert _select("least-confidence", 3) == [11, 12, 13]


def test_entropy_order():
    h = entropy(POST)
    assert h[4] == 0.0
    assert h[1] == pytest.approx(-(0.4 * np.log(0.4) + 0.35 * np.log(0.35) + 0.25 * np.log(0.25)))
    assert _select("entropy", 2) == [11, 13]


def test_margin_order():
    assert margin(POST).tolist() == pytest.approx([0.85, 0.05, 0.01, 0.40, 1.0])
    assert _select("margin", 3) == [12, 11, 13]


def test_ties_go_to_the_lower_position():
    assert top_k_lowest(np.array([0.5, 0.1, 0.1, 0.1]), 2).tolist() == [1, 2]
    assert top_k_highest(np.array([0.5, 0.9, 0.9]), 2).tolist() == [1, 2]


def test_random_is_uniform_over_the_unlabeled_pool():
    """(Seeded, distinct and unlabeled picks: the contract suite, tests/test_contract_suite.py.)"""
    s = make_strategy("random")
    pool = _pool(1000, labeled=range(100))
    cand = pool.unlabeled
    inputs = Inputs(candidates=Outputs(indices=cand), labeled=None, device=torch.device("cpu"))
    # uniform: over many draws every unlabeled image is picked about budget/|U| of the time
    counts = np.zeros(1000)
    rng = np.random.default_rng(2)
    for _ in range(300):
        counts[s.select(cycle=1, budget=90, pool=pool, inputs=inputs, rng=rng)] += 1
    assert counts[:100].sum() == 0
    assert abs(counts[100:].mean() - 30) < 1e-9 and counts[100:].std() < 8


def test_subset_param_scores_a_seeded_random_subset():
    s = make_strategy("entropy", {"subset": 5})
    pool = _pool(50, labeled=(0, 1, 2))
    c1 = s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(3))
    c2 = s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(3))
    assert np.array_equal(c1, c2) and len(c1) == 5 and not np.isin(c1, [0, 1, 2]).any()
    assert len(make_strategy("entropy").candidates(cycle=1, pool=pool, rng=np.random.default_rng(0))) == 47
