"""mean-std: the mean over classes of the std of p_c over T MC-dropout passes, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from albench.strategies.mean_std import mean_std, mean_std_first_pass
from albench.strategies.registry import make_strategy

from tests.mc_helpers import official, one_hot_passes, query


def test_scores_by_hand():
    # two classes, passes (0.2, 0.8) and (0.6, 0.4): each class's population std is 0.2
    p = torch.tensor([[[0.2, 0.8], [0.6, 0.4]]])
    assert mean_std(p).item() == pytest.approx(0.2)
    assert mean_std(torch.full((1, 5, 4), 0.25)).item() == 0.0  # identical passes
    split = one_hot_passes([[0, 1, 0, 1]], classes=4)  # classes 0, 1: std 1/2; classes 2, 3: 0
    assert mean_std(split).item() == pytest.approx(0.25)
    # sqrt(E[p^2] - E[p]^2) over the passes (population), not the sample std
    q = torch.tensor([[[0.1, 0.9], [0.3, 0.7], [0.8, 0.2]]])
    e, e2 = q.double().mean(1), (q.double() ** 2).mean(1)
    assert mean_std(q).item() == pytest.approx(float(torch.sqrt(e2 - e ** 2).mean()))


def test_the_highest_are_queried():
    p = torch.stack([torch.full((4, 10), 0.1), one_hot_passes([[0, 1, 0, 1]])[0], one_hot_passes([[0, 1, 2, 3]])[0]])
    s = make_strategy("mean-std", {"passes": 4})
    scores = mean_std(p).tolist()
    assert scores[0] == 0.0 and scores[2] > scores[1] > 0
    assert query(s, p, indices=[3, 4, 5], budget=2).tolist() == [5, 4]


def test_the_official_score_sees_only_the_first_pass():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(50, 6, 10, generator=g) * 3, dim=-1)
    first = mean_std_first_pass(p).numpy()
    assert np.all(first < 1e-15)  # the std of T copies of one number: rounding at most
    changed = p.clone()
    changed[:, 1:] = torch.softmax(torch.randn(50, 5, 10, generator=g), dim=-1)
    assert np.array_equal(mean_std_first_pass(changed).numpy(), first)  # passes 2..T never read
    assert not np.allclose(mean_std(changed).numpy(), mean_std(p).numpy())
    s = official("mean-std", passes=6)
    assert (s.std, s.ranking, s.subset) == ("first-pass", "numpy-argsort", 2000)
    assert math.isfinite(float(mean_std(p).sum()))
