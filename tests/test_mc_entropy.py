"""mc-entropy: the entropy of the mean posterior over T MC-dropout passes, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from albench.divergence import Diverged
from albench.strategies.mc_entropy import McEntropy, predictive_entropy, predictive_entropy_official
from albench.strategies.registry import make_strategy

from tests.mc_helpers import official, one_hot_passes, query


def test_scores_by_hand():
    uniform = torch.full((1, 3, 4), 0.25)
    assert predictive_entropy(uniform).item() == pytest.approx(math.log(4))
    certain = one_hot_passes([[2, 2, 2]], classes=4)
    assert predictive_entropy(certain).item() == 0.0  # 0 log 0 = 0
    split = one_hot_passes([[0, 1, 0, 1]], classes=4)  # each pass certain, the mean is (1/2, 1/2)
    assert predictive_entropy(split).item() == pytest.approx(math.log(2))
    p = torch.tensor([[[0.7, 0.3], [0.5, 0.5]]])
    assert predictive_entropy(p).item() == pytest.approx(-(0.6 * math.log(0.6) + 0.4 * math.log(0.4)))


def test_the_official_score_is_base_2_and_nan_at_zero():
    p = torch.tensor([[[0.7, 0.3], [0.5, 0.5]], [[1.0, 0.0], [1.0, 0.0]]])
    off = predictive_entropy_official(p).numpy()
    assert off[0] == pytest.approx(predictive_entropy(p)[0].item() / math.log(2))
    assert math.isnan(off[1])  # np.log2(0) * 0


def test_the_highest_are_queried_and_nan_comes_first_under_the_official_ranking():
    p = torch.stack([one_hot_passes([[0, 0, 0, 0]])[0], one_hot_passes([[0, 1, 0, 1]])[0],
                     torch.full((4, 10), 0.1), one_hot_passes([[0, 1, 2, 0]])[0]])
    s = make_strategy("mc-entropy", {"passes": 4})
    assert query(s, p, indices=[5, 6, 7, 8], budget=2).tolist() == [7, 8]  # log 10, then H(1/2, 1/4, 1/4)
    off = official("mc-entropy", passes=4)
    assert (off.log_zero, off.ranking) == ("nan", "numpy-argsort")
    # row 0 (every pass certain of class 0) has zero probabilities: NaN, queried first; so are rows 1 and 3
    assert query(off, p, indices=[5, 6, 7, 8], budget=2).tolist()[0] in (5, 6, 8)
    assert 7 not in query(off, p, indices=[5, 6, 7, 8], budget=3).tolist()


def test_a_nan_score_is_refused_under_the_stable_ranking():
    s = make_strategy("mc-entropy", {"passes": 2, "log_zero": "nan"})
    with pytest.raises(Diverged):
        query(s, torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]]), budget=1)


def test_it_needs_dropout():
    from albench.errors import ConfigError

    with pytest.raises(ConfigError):
        McEntropy.check_model({}, model="small-cnn", model_params={"dropout": 0.0}, path="model.params")
    assert np.isfinite(predictive_entropy(torch.softmax(torch.randn(5, 3, 10), -1)).numpy()).all()
