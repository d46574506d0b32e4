"""mean-std against an independent re-implementation of the official scoring and query of
Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803
ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run/Dropout_Segnet_Q10_N1000.py, written from
its loops: every pass's (n, 10) posteriors appended to an (n, 10) array of zeros; for candidate t and
class r the values ``All_Dropout_Scores[t, r + 10]`` for each of the T iterations (the same column
each time: the first pass), ``np.std`` of them, the row's stds summed with Python's ``sum``; then
``argsort()[-Queries:][::-1]`` over the candidates in the random subset's order.

Measured: 2 seeds x 3 candidate orders, queries of 10 from 120 candidates (T = 20, float32
posteriors as Keras returns them): every query equal under ``protocol: official``. The official
scores are all 0 here (T equal numbers), so the query is numpy's order of equal keys over the
random candidate order, a uniform random pick; the paper's score (``std: all-passes``) queries
other candidates, as asserted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.mc_helpers import official, query

N, T, C, QUERIES = 120, 20, 10, 10


def official_scores(probs: np.ndarray) -> np.ndarray:
    n = probs.shape[0]
    all_scores = np.zeros(shape=(n, C))
    for d in range(T):
        all_scores = np.append(all_scores, probs[:, d, :], axis=1)
    all_std = np.zeros(shape=(n, C))
    sigma = np.zeros(shape=(n, 1))
    for t in range(n):
        for r in range(C):
            values = np.array([0])
            for _ in range(T):
                values = np.append(values, all_scores[t, r + 10])
            all_std[t, r] = np.std(values[1:])
            sigma[t, 0] = sum(all_std[t, :])
    return sigma.flatten()


def _posteriors(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(N, 1, C, generator=g) * 2 + torch.randn(N, T, C, generator=g), dim=-1)


@pytest.mark.parametrize("seed", [0, 1])
def test_official_protocol_queries_what_the_official_code_queries(seed):
    probs = _posteriors(seed)
    strategy = official("mean-std", passes=T)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        order = rng.permutation(N)
        p = probs[order]
        theirs = official_scores(p.numpy())
        ours_scores = torch.cat([strategy.reduce(p[i:i + 50]) for i in range(0, N, 50)]).numpy()
        assert np.array_equal(ours_scores, theirs)  # bit for bit
        assert query(strategy, p, indices=order, budget=QUERIES).tolist() == \
            order[theirs.argsort()[-QUERIES:][::-1]].tolist()


def test_the_papers_score_queries_other_candidates():
    probs = _posteriors(0)
    order = np.random.default_rng(0).permutation(N)
    off = query(official("mean-std", passes=T), probs[order], indices=order, budget=QUERIES)
    paper = query(official("mean-std", passes=T, std="all-passes", ranking="stable"), probs[order], indices=order,
                  budget=QUERIES)
    assert len(set(off) & set(paper)) < QUERIES // 2
