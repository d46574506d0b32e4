"""BALD's official scoring and ranking against ej0cl6/deep-active-learning@eea3d2c
(query_strategies/bayesian_active_learning_disagreement_dropout.py), re-implemented from the facts of
../shared/reference/strategies-modern.md: U = E[H] - H[E] over the passes in float32 with an
unguarded ``log`` (no epsilon), sorted ascending (so the top-B mutual information comes first; a NaN
from a probability that is exactly 0 sorts last), first B taken.

The stochastic passes themselves (``train-mode-passes``, ``ten-passes``) are the engine's and are
tested in tests/test_bald.py; here both sides get the same (n, T, C) posteriors, as the engine
hands them to the strategy's reduce.

Measured agreement with ``protocol: official`` (quirk ``log-zero-nan``): 40/40 picks equal for each
of 3 seeds (120/120; 200 candidates, 10 passes, 10 classes, 12 of them with exact zeros and
two-way disagreement, i.e. a high mutual information but a NaN official score). Near-ties: the test
asserts the sorted official scores around the cut differ by more than 1e-6. With the quirk off
(0 log 0 = 0) the 12 zero rows rank first instead of last: 28 of the 40 picks are shared, in
another order (asserted: they differ).

Gal et al.'s official BALD (quirks ``gal-nan-first``, ``gal-pool-subset-2000``, off under protocol
official): the same 3 x 40 picks equal an independent re-implementation of their Keras script's
score and ``argsort()[-K:][::-1]``, the 12 NaN rows queried first.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from albench.config import StrategyConfig, TrainConfig
from albench.plan import resolve_strategy
from albench.strategies.base import Inputs, Outputs, PoolState
from albench.strategies.bald import mutual_information, mutual_information_official
from albench.strategies.registry import make_strategy

N, T, C, BUDGET = 200, 10, 10, 40


def _posteriors(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # each row's passes scatter around its own logits (MI well below log 2)
    logits = torch.randn(N, 1, C, generator=g) * 2.0 + torch.randn(N, T, C, generator=g) * 0.5
    probs = torch.softmax(logits, dim=-1)
    rows = torch.randperm(N, generator=g)[:12]
    split = torch.zeros(T, C)
    split[::2, 0] = 1.0
    split[1::2, 1] = 1.0  # passes disagree between class 0 and 1: MI = log 2, with exact zeros
    probs[rows] = split
    return probs


def official_query(probs: torch.Tensor, budget: int) -> list[int]:
    p = probs.float().permute(1, 0, 2)  # (T, n, C), as the code stacks its passes
    pb = p.mean(0)
    entropy1 = (-pb * torch.log(pb)).sum(1)
    entropy2 = (-p * torch.log(p)).sum(2).mean(0)
    u = entropy2 - entropy1
    s = torch.sort(u).values
    finite = s[torch.isfinite(s)]
    assert (finite[budget] - finite[budget - 1]).abs() > 1e-6, "a near-tie at the cut"
    return torch.sort(u)[1][:budget].tolist()


def _ours(probs: torch.Tensor, protocol: str) -> list[int]:
    st, *_ = resolve_strategy(StrategyConfig("bald"), protocol, TrainConfig(), "s")
    s = make_strategy("bald", st.params)
    reduce = mutual_information_official if st.params["log_zero"] == "nan-last" else mutual_information
    cand = Outputs(indices=np.arange(N), stochastic=reduce(probs))
    pool = PoolState(images=torch.zeros(N, 1, 1, 1, dtype=torch.uint8), labeled=np.zeros(0, dtype=np.int64),
                     labeled_targets=torch.zeros(0, dtype=torch.long), num_classes=C)
    return s.select(cycle=1, budget=BUDGET, pool=pool, inputs=Inputs(candidates=cand, labeled=None,
                                                                       device=torch.device("cpu")),
                    rng=np.random.default_rng(0)).tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_picks_equal_the_reference(seed):
    probs = _posteriors(seed)
    assert sorted(_ours(probs, "official")) == sorted(official_query(probs, BUDGET))
    assert _ours(probs, "official") == official_query(probs, BUDGET)


def test_the_quirk_is_needed_for_the_agreement():
    probs = _posteriors(0)
    assert _ours(probs, "paper") != official_query(probs, BUDGET)


# ------------------------------------------------------------------ Gal et al.'s official BALD
def gal_official_query(probs: np.ndarray, queries: int) -> np.ndarray:
    """Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803
    ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run/Dropout_BALD_Q10_N1000.py, from its loop:
    per pass ``-sum(p * np.log2(p))`` (float32) accumulated in float64, the float64 mean's entropy,
    U = G - F, ``argsort()[-Queries:][::-1]``."""
    n, t, c = probs.shape
    score_all = np.zeros((n, c))
    all_entropy = np.zeros(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        for d in range(t):
            score = probs[:, d, :]
            score_all = score_all + score
            all_entropy = all_entropy + np.sum(-np.multiply(score, np.log2(score)), axis=1)
        avg = np.divide(score_all, t)
        g_x = np.sum(-np.multiply(avg, np.log2(avg)), axis=1)
    return (g_x - np.divide(all_entropy, t)).flatten().argsort()[-queries:][::-1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gal_quirks_query_what_gals_official_code_queries(seed):
    from albench.strategies.bald import mutual_information_gal

    probs = _posteriors(seed)
    resolved, *_ = resolve_strategy(StrategyConfig("bald", params={"passes": T},
                                                   quirks=["gal-nan-first", "gal-pool-subset-2000"]),
                                    "paper", TrainConfig(), "s")
    bald = make_strategy("bald", resolved.params)
    assert (bald.log_zero, bald.subset) == ("nan-first", 2000)
    scores = mutual_information_gal(probs)
    nan_rows = set(np.flatnonzero(np.isnan(scores.numpy())).tolist())
    assert len(nan_rows) == 12  # the rows with exact zeros
    inputs = Inputs(candidates=Outputs(indices=np.arange(N), stochastic=scores), labeled=None,
                    device=torch.device("cpu"))
    pool = PoolState(images=torch.zeros(N, 1, 1, 1, dtype=torch.uint8), labeled=np.zeros(0, dtype=np.int64),
                     labeled_targets=torch.zeros(0, dtype=torch.long), num_classes=C)
    ours = bald.select(cycle=1, budget=BUDGET, pool=pool, inputs=inputs, rng=np.random.default_rng(0))
    assert ours.tolist() == gal_official_query(probs.numpy(), BUDGET).tolist()
    assert set(ours[:12].tolist()) == nan_rows  # queried first, where ej0cl6's code puts them last
