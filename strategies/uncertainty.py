"""Posterior-based uncertainty sampling: least confidence, entropy and margin.

Each scores the (optionally subsampled) unlabeled pool with the current model and takes the K most
uncertain images; ties go to the lower pool index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from albench.strategies.base import (Inputs, Need, PoolState, Strategy, Subset, random_subset, top_k_highest,
                             top_k_lowest)
from albench.strategies.registry import register_strategy


@dataclass(frozen=True)
class UncertaintyParams:
    """``subset``: score a random subset of this many unlabeled images (None: all of them)."""

    subset: Subset = None


class _Uncertainty(Strategy):
    Params = UncertaintyParams

    def candidates(self, *, cycle: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return random_subset(pool.unlabeled, self.subset, rng)


def entropy(posteriors: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row of a probability matrix; 0 log 0 counts as 0."""
    p = posteriors.float()
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)


def margin(posteriors: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 probability per row."""
    top2 = posteriors.float().topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


@register_strategy
class LeastConfidence(_Uncertainty):
    name = "least-confidence"
    description = "the K lowest top-1 posteriors (params: subset)"
    needs = frozenset({Need.CONFIDENCE})
    tasks = frozenset({"classification", "segmentation"})

    def select(self, *, cycle, budget, pool, inputs: Inputs, rng) -> np.ndarray:
        c = inputs.candidates
        return c.indices[top_k_lowest(c.confidence, budget)]


@register_strategy
class Entropy(_Uncertainty):
    name = "entropy"
    description = "the K highest posterior entropies (params: subset)"
    needs = frozenset({Need.POSTERIORS})

    def select(self, *, cycle, budget, pool, inputs: Inputs, rng) -> np.ndarray:
        c = inputs.candidates
        return c.indices[top_k_highest(entropy(c.posteriors), budget)]


@register_strategy
class Margin(_Uncertainty):
    name = "margin"
    description = "the K smallest top-1 minus top-2 posterior margins (params: subset)"
    needs = frozenset({Need.POSTERIORS})

    def select(self, *, cycle, budget, pool, inputs: Inputs, rng) -> np.ndarray:
        c = inputs.candidates
        return c.indices[top_k_lowest(margin(c.posteriors), budget)]
