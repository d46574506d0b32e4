"""Random: K pool images drawn uniformly without replacement (the CoreGCN repo draws with
replacement and loses labels; we do not copy that)."""

from __future__ import annotations

import numpy as np

from strategies.base import Inputs, PoolState, Strategy
from strategies.registry import register_strategy


@register_strategy
class RandomSampling(Strategy):
    name = "random"
    description = "uniform without replacement over the unlabeled pool"
    tasks = frozenset({"classification", "segmentation"})

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        return np.sort(rng.choice(inputs.candidates.indices, size=budget, replace=False))
