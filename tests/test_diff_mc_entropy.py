"""mc-entropy against an independent re-implementation of the official scoring and query of
Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803
ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run/Dropout_Max_Entropy_Q10_N1000.py, written
from its loop: ``score_All`` (float64 zeros) plus each pass's float32 posteriors, divided by T,
``-sum(Avg_Pi * np.log2(Avg_Pi), axis=1)``, then ``argsort()[-Queries:][::-1]`` over the candidates in
the random subset's order.

Measured: 3 seeds x 3 candidate orders, queries of 10 from 200 candidates (T = 20, 10 classes, 6
rows whose every pass is one-hot, so their averaged posterior has exact zeros and the official
score is NaN): every query equal under ``protocol: official``, the 6 NaN rows queried first. With
the paper's score (0 log 0 = 0, nats) those rows score 0 or log 2 and most are not queried, as
asserted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.mc_helpers import official, query

N, T, C, QUERIES = 200, 20, 10, 10


def official_scores(probs: np.ndarray) -> np.ndarray:
    score_all = np.zeros(shape=(probs.shape[0], C))
    for d in range(T):
        score_all = score_all + probs[:, d, :]
    avg_pi = np.divide(score_all, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_avg_pi = np.log2(avg_pi)
        entropy_avg_pi = -np.multiply(avg_pi, log_avg_pi)
    return np.sum(entropy_avg_pi, axis=1)


def _posteriors(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(N, 1, C, generator=g) * 2 + torch.randn(N, T, C, generator=g), dim=-1)
    rows = torch.randperm(N, generator=g)[:6]
    p[rows] = torch.nn.functional.one_hot(torch.arange(T) % 2, C).float()  # certain passes, split 0 / 1
    return p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_protocol_queries_what_the_official_code_queries(seed):
    probs = _posteriors(seed)
    strategy = official("mc-entropy", passes=T)
    nan_rows = set(np.flatnonzero(np.isnan(official_scores(probs.numpy()))).tolist())
    assert len(nan_rows) == 6
    rng = np.random.default_rng(seed)
    for _ in range(3):
        order = rng.permutation(N)
        theirs = order[official_scores(probs[order].numpy()).argsort()[-QUERIES:][::-1]]
        ours = query(strategy, probs[order], indices=order, budget=QUERIES)
        assert ours.tolist() == theirs.tolist()
        assert set(ours[:6].tolist()) == nan_rows  # NaN first


def test_the_papers_score_ranks_those_rows_by_their_entropy():
    probs = _posteriors(0)
    order = np.random.default_rng(0).permutation(N)
    paper = query(official("mc-entropy", passes=T, log_zero="zero", ranking="stable"), probs[order], indices=order,
                  budget=QUERIES)
    nan_rows = set(np.flatnonzero(np.isnan(official_scores(probs.numpy()))).tolist())
    assert len(nan_rows & set(paper.tolist())) < 6  # H = log 2 for them: high, but not the highest
