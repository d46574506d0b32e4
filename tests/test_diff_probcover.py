"""ProbCover against the official selection step (avihu111/TypiClust@4097a71, pycls/al/prob_cover.py
with deep-al/tools/train_al.py's default delta), re-implemented from the facts of
../shared/reference/strategies-modern.md: delta = 0.6 (``--initial_delta``); an edge x -> y when
dist(x, y) < delta (strict), self-loops included; every point reachable from the labeled set starts
covered and its in-edges are dropped; then B times the node with the largest out-degree (a bincount
of the remaining edges' sources; ties to the lowest index) is picked and the in-edges of the points
it newly covers are dropped.

The pool has 1,000 points, a multiple of the official 500-row chunks, so the official code's
uncovered tail (the last N mod 500 rows get no out-edges) does not arise, and 30 picks never cover
everything, so the official repeated index 0 (not reproduced) does not arise either. The reference
is plain numpy on a full float64 distance matrix.

Measured agreement with ``protocol: official`` (quirk ``official_delta``): 30/30 picks equal, in pick
order, for each of 3 seeds (90/90). Near-ties: edges are decided by ``dist < 0.6``; the test asserts
no pair lies within 1e-6 of 0.6, so float32 and float64 distances make the same graph. With the
quirk off (the paper's purity rule) delta is 2.0 on seed 0 and 0/30 positions agree (asserted: they differ).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from albench.config import StrategyConfig, TrainConfig
from albench.plan import resolve_strategy
from albench.strategies.base import PoolState
from albench.strategies.registry import make_strategy

N, CLASSES, BUDGET = 1000, 4, 30


def _inputs(seed: int):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    feats = np.concatenate([c + rng.normal(scale=1.5, size=(N // CLASSES, 2)) for c in centers])
    labeled = np.sort(rng.choice(N, size=10, replace=False))
    return feats.astype(np.float32), labeled


def official_select(feats: np.ndarray, labeled: np.ndarray, budget: int, delta: float = 0.6) -> list[int]:
    x = feats.astype(np.float64)
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    assert np.abs(dist - delta).min() > 1e-6, "a pair at the ball's edge: float32 may decide it otherwise"
    src, dst = np.nonzero(dist < delta)
    covered = np.zeros(len(x), dtype=bool)
    covered[dst[np.isin(src, labeled)]] = True
    keep = ~covered[dst]
    src, dst = src[keep], dst[keep]
    picks = []
    for _ in range(budget):
        pick = int(np.argmax(np.bincount(src, minlength=len(x))))
        picks.append(pick)
        covered[dst[src == pick]] = True
        keep = ~covered[dst]
        src, dst = src[keep], dst[keep]
    return picks


def _ours(feats: np.ndarray, labeled: np.ndarray, protocol: str) -> tuple[list[int], float]:
    st, *_ = resolve_strategy(StrategyConfig("probcover"), protocol, TrainConfig(), "s")
    s = make_strategy("probcover", st.params)
    s.fit_graph(feats, num_classes=CLASSES, seed=0, log=lambda m: None)
    pool = PoolState(images=torch.zeros(N, 1, 1, 1, dtype=torch.uint8), labeled=labeled,
                     labeled_targets=torch.zeros(len(labeled), dtype=torch.long), num_classes=CLASSES)
    picks = s.select(cycle=1, budget=BUDGET, pool=pool, inputs=None, rng=np.random.default_rng(0))
    return picks.tolist(), float(s.delta_)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_picks_equal_the_reference(seed):
    feats, labeled = _inputs(seed)
    picks, delta = _ours(feats, labeled, "official")
    assert delta == 0.6
    assert picks == official_select(feats, labeled, BUDGET)


def test_the_quirk_is_needed_for_the_agreement():
    feats, labeled = _inputs(0)
    picks, delta = _ours(feats, labeled, "paper")
    assert delta != 0.6
    assert picks != official_select(feats, labeled, BUDGET)
