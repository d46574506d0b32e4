"""Random: K pool images drawn uniformly without replacement (the CoreGCN repo draws with
replacement and loses labels; we do not copy that)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from albench.strategies.base import Inputs, PoolState, Strategy
from albench.strategies.registry import register_strategy


@dataclass(frozen=True)
class RandomParams:
    """Random sampling takes no params."""


@register_strategy
class RandomSampling(Strategy):
    name = "random"
    description = "uniform without replacement over the unlabeled pool"
    tasks = frozenset({"classification", "segmentation"})
    Params = RandomParams

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        return np.sort(rng.choice(inputs.candidates.indices, size=budget, replace=False))
