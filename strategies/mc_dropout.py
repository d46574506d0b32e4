"""What the MC-dropout acquisition functions of Gal, Islam & Ghahramani (ICML 2017) share: their
params, the dropout check on the model, the ranking rules and the official code's quirks.

Each function scores every candidate from the (b, T, C) softmax posteriors of T stochastic passes
with dropout on (a :class:`~albench.strategies.base.StochasticPasses` need: the engine runs the
passes, seeds the masks from the run, and a model that declares a stochastic split runs its
deterministic prefix once per batch) and queries the K highest scores.

Official code: Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803, the MNIST
scripts of ``ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run/`` with 10 queries per
acquisition (``*_Q10_N1000.py``). Their per-strategy quirks are declared on each strategy; the
protocol-level differences (pool slice, validation size, weight-decay rule, test evaluation, the
first model's extra block, the Random script's network) are config keys or not reproducible, and are
listed with their sources in the README section "Reproduction: Gal et al. 2017 (MNIST)".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

import torch

from albench.errors import ConfigError
from albench.strategies.base import (Inputs, PoolState, Quirk, StochasticPasses, Strategy, Subset, random_subset,
                                     top_k_highest)
from albench.typed import Bounds

REPO = "Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803"
SCRIPTS = "ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run"
SUGGESTED_DROPOUT = 0.5


def source(script: str) -> str:
    """``owner/repo@commit path`` of one official MNIST script (e.g. ``Dropout_VarRatio_Q10_N1000.py``)."""
    return f"{REPO} {SCRIPTS}/{script}"


@dataclass(frozen=True)
class McParams:
    """``passes``: stochastic forward passes per candidate (T); ``subset``: score a random subset of this
    many unlabeled images (None: all of them); ``ranking``: ``stable`` (the K highest scores, ties to
    the lower pool index, NaN refused) or ``numpy-argsort`` (the official ``np.argsort(scores)[-K:][::-1]``
    over the candidates in random draw order: NaN sorts last and is queried first, equal scores in
    numpy's quicksort order)."""

    passes: Annotated[int, Bounds(ge=2)] = 20
    subset: Subset = None
    ranking: Literal["stable", "numpy-argsort"] = "stable"


def numpy_argsort_top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions the official scripts query: ``scores.argsort()[-k:][::-1]`` (numpy's default
    quicksort; NaN sorts after every number, so NaN scores come first)."""
    return np.asarray(scores).argsort()[-k:][::-1]


def rank(scores: np.ndarray, k: int, ranking: str) -> np.ndarray:
    """Positions of the ``k`` candidates to query under ``ranking`` (see :class:`McParams`)."""
    if ranking == "numpy-argsort":
        return numpy_argsort_top(scores, k)
    return top_k_highest(scores, k)  # refuses NaN: with 0 log 0 = 0 a NaN means divergence


def check_dropout_model(strategy: str, model: str, model_params: dict, path: str) -> None:
    """ConfigError unless ``model`` declares a dropout param (``dropout`` or ``dropout_*``) set above 0:
    without one every MC-dropout pass would be identical."""
    from albench.models.registry import dropout_params

    ps = dropout_params(model, model_params)
    if not ps:
        raise ConfigError(f"{path}.dropout", f"model {model!r} has no dropout param; {strategy}'s MC dropout needs one",
                          f"use dbal-cnn, or small-cnn / resnet18-cifar with {path}.dropout: {SUGGESTED_DROPOUT}, "
                          f"or leave {strategy} out of strategies", None)
    bad = [k for k, p in ps.items() if not isinstance(p, (int, float)) or isinstance(p, bool)]
    if bad or all(p <= 0 for p in ps.values()):
        key = next(iter(ps))
        raise ConfigError(f"{path}.{key}", f"is 0: {strategy}'s MC-dropout passes would all be identical",
                          f"set {path}.{key}: {SUGGESTED_DROPOUT}, or leave {strategy} out of strategies", ps[key])


def numpy_argsort_quirk(script: str) -> Quirk:
    return Quirk("numpy-argsort",
                 "the query is np.argsort(scores)[-K:][::-1] over the candidates: a NaN score sorts last and is "
                 "queried first, and equal scores go in numpy's quicksort order instead of to the lower pool index",
                 params={"ranking": "numpy-argsort"}, source=source(script))


def pool_subset_quirk(script: str, name: str = "pool-subset-2000", official: bool = True) -> Quirk:
    return Quirk(name,
                 "each acquisition scores a uniform random 2,000 of the unlabeled pool (pool_subset = 2000), not the "
                 "whole pool the paper's text names",
                 params={"subset": 2000}, source=source(script), official=official)


class McDropoutStrategy(Strategy):
    """Base of the MC-dropout acquisition functions: candidates are a random ``subset`` of the
    unlabeled pool (all of it by default), the model must have dropout, and :meth:`reduce` turns each
    chunk's (b, T, C) posteriors into (b,) scores that :meth:`select` ranks."""

    Params = McParams

    def reduce(self, probs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """(b,) scores (higher: more informative) from (b, T, C) float32 posteriors."""
        raise NotImplementedError

    def needs_for(self, task: str) -> frozenset:
        """T stochastic passes reduced to one score per candidate; the engine seeds the masks."""
        return frozenset({StochasticPasses(passes=self.passes, reduce=self.reduce)})

    @classmethod
    def check_model(cls, params: dict, *, model: str, model_params: dict, path: str) -> None:
        """Refuse a model without an active dropout layer."""
        check_dropout_model(cls.name, model, model_params, path)

    def candidates(self, *, cycle: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        """A sorted random ``subset`` of the unlabeled pool; under ``ranking: numpy-argsort`` the subset
        stays in draw order (all of the pool in random order when ``subset`` is None), as the official
        ``random.sample``, since numpy's order of equal scores then depends on the candidates' order."""
        if self.ranking == "numpy-argsort":
            unlabeled = pool.unlabeled
            size = len(unlabeled) if self.subset is None else min(self.subset, len(unlabeled))
            return rng.choice(unlabeled, size=size, replace=False)
        return random_subset(pool.unlabeled, self.subset, rng)

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        c = inputs.candidates
        if c.stochastic is None:
            raise ValueError(f"{self.name}: no stochastic-pass scores in the inputs (needs_for() declares the "
                             "passes; the engine computes them)")
        scores = c.stochastic.detach().double().cpu().numpy()
        return c.indices[rank(scores, budget, self.ranking)]
