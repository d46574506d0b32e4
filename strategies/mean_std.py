"""Mean STD with MC dropout (Kampffmeyer et al. 2016, Kendall et al. 2015; Gal, Islam & Ghahramani,
ICML 2017, Sec. 3): per class c the standard deviation of p_c over T stochastic passes,

    sigma_c = sqrt(E[p_c^2] - E[p_c]^2)   (population std over the passes),   score = mean_c sigma_c

computed in float64, and the K highest are queried (ties: the lower pool index).

Official code: Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803
``ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run/Dropout_Segnet_Q10_N1000.py`` ("Bayes
Segnet"). Its quirks:

- ``std-of-first-pass``: the script appends each pass's (n, 10) posteriors to a (n, 10) array of
  zeros, then for every class r builds the T values from column ``r + 10`` in every iteration, i.e.
  T copies of the *first* pass's p_r; ``np.std`` of T equal numbers is 0 up to float rounding, and
  the score (``sum`` of the 10 stds) is that rounding: about 1e-17, zero for some candidates, and
  unrelated to the model's uncertainty. Reproduced exactly: the same numpy reductions on the same
  float64 values;
- ``numpy-argsort``: ``argsort()[-Queries:][::-1]`` over those scores (many equal), so the query is
  decided by rounding noise and numpy's order of equal keys;
- ``pool-subset-2000``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from albench.strategies.base import Quirk
from albench.strategies.mc_dropout import (McDropoutStrategy, McParams, numpy_argsort_quirk, pool_subset_quirk,
                                           source)
from albench.strategies.registry import register_strategy

SCRIPT = "Dropout_Segnet_Q10_N1000.py"


def mean_std(probs: torch.Tensor) -> torch.Tensor:
    """(b,) mean over classes of the population std over passes of (b, T, C) posteriors, in float64."""
    return probs.double().std(dim=1, correction=0).mean(dim=-1)


def mean_std_first_pass(probs: torch.Tensor) -> torch.Tensor:
    """(b,) the official script's score: for each class the ``np.std`` of T float64 copies of the first
    pass's posterior, summed over classes left to right (Python's ``sum``)."""
    p = probs.detach().float().cpu().numpy()
    b, t, c = p.shape
    copies = np.repeat(p[:, 0, :].astype(np.float64)[:, :, None], t, axis=2)  # (b, C, T), contiguous rows
    stds = np.std(copies, axis=2)  # one contiguous row per (candidate, class): the reduction of a 1-D np.std
    total = np.zeros(b, dtype=np.float64)
    for r in range(c):
        total = total + stds[:, r]
    return torch.from_numpy(total)


@dataclass(frozen=True)
class MeanStdParams(McParams):
    """and ``std``: ``all-passes`` (the paper's score) or ``first-pass`` (the official script's: T copies
    of the first pass, so float rounding)."""

    std: Literal["all-passes", "first-pass"] = "all-passes"


@register_strategy
class MeanStd(McDropoutStrategy):
    name = "mean-std"
    description = "the K highest mean (over classes) std of the posterior over T MC-dropout passes " \
                  "(params: passes, subset)"
    Params = MeanStdParams
    quirks = (
        Quirk("std-of-first-pass",
              "the std of each class is taken over T copies of the first pass's posterior (the script reads "
              "column r + 10 in every iteration), so every score is float rounding (about 1e-17 or 0), not "
              "uncertainty",
              params={"std": "first-pass"}, source=source(SCRIPT)),
        numpy_argsort_quirk(SCRIPT),
        pool_subset_quirk(SCRIPT),
    )

    def reduce(self, probs: torch.Tensor) -> torch.Tensor:
        return mean_std(probs) if self.std == "all-passes" else mean_std_first_pass(probs)
