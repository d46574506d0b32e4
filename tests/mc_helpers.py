"""Helpers of the MC-dropout strategy tests: hand a strategy (b, T, C) posteriors as the engine would."""

from __future__ import annotations

import numpy as np
import torch

from albench.config import StrategyConfig, TrainConfig
from albench.plan import resolve_strategy
from albench.strategies.base import Inputs, Outputs, PoolState, StochasticPasses
from albench.strategies.registry import make_strategy


def pool(n: int) -> PoolState:
    return PoolState(images=torch.zeros(n, 1, 2, 2, dtype=torch.uint8), labeled=np.zeros(0, dtype=np.int64),
                     labeled_targets=torch.zeros(0, dtype=torch.int64), num_classes=10)


def query(strategy, probs: torch.Tensor, indices=None, budget: int = 3) -> np.ndarray:
    """What ``strategy`` selects from candidates ``indices`` (default 0..n-1) whose T passes gave
    ``probs``: the engine hands ``select`` each chunk's reduce, concatenated."""
    n = probs.shape[0]
    indices = np.arange(n) if indices is None else np.asarray(indices)
    (spec,) = [s for s in strategy.needs_for("classification") if isinstance(s, StochasticPasses)]
    assert spec.passes == strategy.passes
    scores = torch.cat([spec.reduce(probs[i:i + 7]) for i in range(0, n, 7)])  # in chunks, as the engine
    inputs = Inputs(candidates=Outputs(indices=indices, stochastic=scores), labeled=None, device=torch.device("cpu"))
    return strategy.select(cycle=1, budget=budget, pool=pool(int(indices.max()) + 1), inputs=inputs,
                           rng=np.random.default_rng(0))


def official(name: str, **params):
    """The strategy as ``protocol: official`` resolves it (every declared quirk on), with ``params``."""
    resolved, *_ = resolve_strategy(StrategyConfig(name, params=params), "official", TrainConfig(), "s")
    return make_strategy(name, resolved.params)


def one_hot_passes(votes: list[list[int]], classes: int = 10) -> torch.Tensor:
    """(n, T, C) posteriors whose pass t of row i is one-hot on class votes[i][t]."""
    v = torch.tensor(votes)
    return torch.nn.functional.one_hot(v, classes).float()
