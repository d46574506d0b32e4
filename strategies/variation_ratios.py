"""Variation ratios with MC dropout (Freeman 1965; Gal, Islam & Ghahramani, ICML 2017, Sec. 3).

Each candidate's T stochastic passes each vote for their argmax class (the first on a tie, as
``np.argmax``); the score is

    variation ratio = 1 - (votes of the modal class) / T

in [0, 1 - 1/C], a multiple of 1/T, and the K highest are queried (ties: the lower pool index). With
T = 100 the scores take at most 100 values, so ties at the cut are common and the tie rule decides
some picks; the official code breaks them in numpy's quicksort order (quirk ``numpy-argsort``).

Official code: Riashat/Active-Learning-Bayesian-Convolutional-Neural-Networks@f8b6803
``ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run/Dropout_VarRatio_Q10_N1000.py``
(``predict_classes_stochastic`` per pass, ``scipy.stats.mode`` of the votes, ``1 - Mode / T``, the
same number as ours). Its quirks: ``numpy-argsort`` (ranking) and ``pool-subset-2000``.
"""

from __future__ import annotations

import torch

from albench.strategies.mc_dropout import McDropoutStrategy, numpy_argsort_quirk, pool_subset_quirk
from albench.strategies.registry import register_strategy

SCRIPT = "Dropout_VarRatio_Q10_N1000.py"


def variation_ratio(probs: torch.Tensor) -> torch.Tensor:
    """(b,) float64 variation ratios from (b, T, C) posteriors: 1 - (count of the modal argmax class) / T."""
    b, t, c = probs.shape
    votes = probs.argmax(dim=-1)  # (b, T), the first maximal class of each pass
    counts = torch.zeros(b, c, dtype=torch.int64, device=probs.device).scatter_add_(
        1, votes, torch.ones_like(votes))
    return 1.0 - counts.max(dim=1).values.double() / float(t)


@register_strategy
class VariationRatios(McDropoutStrategy):
    name = "variation-ratios"
    description = "the K highest variation ratios (1 - modal-class frequency) over T MC-dropout passes " \
                  "(params: passes, subset)"
    quirks = (numpy_argsort_quirk(SCRIPT), pool_subset_quirk(SCRIPT))

    def reduce(self, probs: torch.Tensor) -> torch.Tensor:
        return variation_ratio(probs)
