"""Max entropy with MC dropout (Shannon 1948; Gal, Islam & Ghahramani, ICML 2017, Sec. 3): the
entropy of the predictive distribution averaged over T stochastic passes,

    H[y | x] = - sum_c pbar_c log pbar_c,   pbar = mean over passes of the softmax   (nats; 0 log 0 = 0)

and the K highest are queried (ties: the lower pool index). (The deterministic ``entropy`` strategy
scores one pass with dropout off instead.)

Official code: Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803
``ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run/Dropout_Max_Entropy_Q10_N1000.py``: the
passes summed in float64, divided by T, ``-sum(p * np.log2(p))``. Base 2 only rescales the scores;
its quirks:

- ``unguarded-log2``: ``np.log2`` of an averaged probability that is exactly 0 (every pass underflowed
  in float32) gives 0 * -inf = NaN, so the candidate's score is NaN;
- ``numpy-argsort``: ``U_X.argsort()[-Queries:][::-1]`` queries NaN scores first, and equal scores in
  numpy's order; with ``unguarded-log2`` the candidates whose softmax underflowed (the most
  confident ones) are queried before any other;
- ``pool-subset-2000``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from albench.strategies.mc_dropout import (McDropoutStrategy, McParams, numpy_argsort_quirk, pool_subset_quirk,
                                           source)
from albench.strategies.base import Quirk
from albench.strategies.registry import register_strategy

SCRIPT = "Dropout_Max_Entropy_Q10_N1000.py"


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(b,) entropy in nats of the mean over passes of (b, T, C) posteriors, 0 log 0 = 0, in float64."""
    mean = probs.double().mean(dim=1)
    return -torch.special.xlogy(mean, mean).sum(dim=-1)


def predictive_entropy_official(probs: torch.Tensor) -> torch.Tensor:
    """(b,) the official score, computed as the official script does: the float32 passes summed in
    float64 in pass order, divided by T, then ``-sum(p * log2 p)`` with an unguarded ``np.log2`` (NaN
    where an averaged probability is 0)."""
    p = probs.detach().float().cpu().numpy()
    total = np.zeros(p.shape[::2], dtype=np.float64)
    for d in range(p.shape[1]):
        total = total + p[:, d, :]
    avg = np.divide(total, p.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.sum(-np.multiply(avg, np.log2(avg)), axis=1)
    return torch.from_numpy(h)


@dataclass(frozen=True)
class McEntropyParams(McParams):
    """and ``log_zero``: ``zero`` (0 log 0 = 0, nats) or ``nan`` (the official unguarded ``log2``)."""

    log_zero: Literal["zero", "nan"] = "zero"


@register_strategy
class McEntropy(McDropoutStrategy):
    name = "mc-entropy"
    description = "the K highest entropies of the mean posterior over T MC-dropout passes (params: passes, subset)"
    Params = McEntropyParams
    quirks = (
        Quirk("unguarded-log2",
              "the entropy takes np.log2 of the averaged probabilities without a guard: a probability that is "
              "exactly 0 (every pass underflowed) makes the score NaN",
              params={"log_zero": "nan"}, source=source(SCRIPT)),
        numpy_argsort_quirk(SCRIPT),
        pool_subset_quirk(SCRIPT),
    )

    def reduce(self, probs: torch.Tensor) -> torch.Tensor:
        return predictive_entropy(probs) if self.log_zero == "zero" else predictive_entropy_official(probs)
