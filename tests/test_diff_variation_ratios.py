"""variation-ratios against an independent re-implementation of the official scoring and query of
Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803
ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run/Dropout_VarRatio_Q10_N1000.py:
per pass the predicted class (np.argmax of the posterior, ``predict_classes_stochastic``), the votes
of candidate t gathered in a list, ``scipy.stats.mode`` of them, ``1 - Mode / T``, then
``argsort()[-Queries:][::-1]`` over the candidates in the random subset's order.

Both sides get the same (n, T, C) posteriors (the passes are the engine's, tested in
tests/test_mc_passes.py). Measured: 3 seeds x 3 candidate orders, queries of 10 from 300 candidates with T = 20: every
query equal under ``protocol: official``; with ``ranking: stable`` (the paper protocol's tie rule)
the sets differ where equal scores straddle the cut, as asserted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from tests.mc_helpers import official, query

N, T, C, QUERIES = 300, 20, 10, 10


def official_query(probs: np.ndarray) -> np.ndarray:
    """Positions queried by the official script, written from its loops."""
    n = probs.shape[0]
    all_classes = np.zeros((n, 1))
    for d in range(T):
        dropout_classes = np.array([probs[:, d, :].argmax(axis=-1)]).T
        all_classes = np.append(all_classes, dropout_classes, axis=1)
    variation = np.zeros(n)
    for t in range(n):
        votes = np.array([0])
        for d_iter in range(T):
            votes = np.append(votes, all_classes[t, d_iter + 1])
        _, mode = stats.mode(votes[1:])
        variation[t] = np.array([1 - mode / float(T)]).item()
    return variation.flatten().argsort()[-QUERIES:][::-1]


def _posteriors(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # rows with a confident class plus per-pass noise: votes split among a few classes, many equal scores
    logits = torch.randn(N, 1, C, generator=g) * 1.5 + torch.randn(N, T, C, generator=g) * 1.2
    return torch.softmax(logits, dim=-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_protocol_queries_what_the_official_code_queries(seed):
    probs = _posteriors(seed)
    strategy = official("variation-ratios", passes=T)
    rng = np.random.default_rng(seed)
    for _ in range(3):  # three candidate orders (the official subset is in random.sample order)
        order = rng.permutation(N)
        ours = query(strategy, probs[order], indices=order, budget=QUERIES)
        theirs = order[official_query(probs[order].numpy())]
        assert ours.tolist() == theirs.tolist()


def test_the_stable_tie_rule_differs_where_ties_straddle_the_cut():
    probs = _posteriors(0)
    scores = np.sort(1 - np.array([np.bincount(r, minlength=C).max() for r in probs.argmax(-1).numpy()]) / T)[::-1]
    assert scores[QUERIES - 1] == scores[QUERIES]  # a tie at the cut: the tie rule decides
    paper = official("variation-ratios", passes=T)
    paper_stable = type(paper)(**{**paper.params.__dict__, "ranking": "stable"})
    order = np.random.default_rng(5).permutation(N)
    a = query(paper, probs[order], indices=order, budget=QUERIES)
    b = query(paper_stable, probs[order], indices=order, budget=QUERIES)
    assert set(a) != set(b)
    vr = dict(zip(range(N), 1 - np.array([np.bincount(r, minlength=C).max() for r in probs.argmax(-1).numpy()]) / T))
    assert sorted(vr[i] for i in a) == sorted(vr[i] for i in b)  # the same scores: only the tie rule differs
