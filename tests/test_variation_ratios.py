"""variation-ratios: 1 - (modal-class frequency over T MC-dropout passes), by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from albench.errors import ConfigError
from albench.strategies.base import StochasticPasses
from albench.strategies.registry import make_strategy
from albench.strategies.variation_ratios import VariationRatios, variation_ratio

from tests.mc_helpers import official, one_hot_passes, query


def test_scores_by_hand():
    probs = one_hot_passes([[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 2, 3], [5, 5, 5, 2]])
    assert variation_ratio(probs).tolist() == [0.0, 0.5, 0.75, 0.25]
    # a pass whose posterior ties votes for the first maximal class (np.argmax's rule)
    tie = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]])
    assert variation_ratio(tie).tolist() == [0.5]  # votes 0 and 1: modal frequency 1/2
    assert variation_ratio(torch.full((1, 3, 4), 0.25)).tolist() == [0.0]  # every pass votes class 0


def test_the_highest_are_queried_ties_to_the_lower_pool_index():
    probs = one_hot_passes([[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 2, 3], [1, 1, 1, 2], [3, 3, 2, 2]])
    s = make_strategy("variation-ratios", {"passes": 4})
    assert query(s, probs, indices=[10, 11, 12, 13, 14], budget=2).tolist() == [12, 11]  # 0.75, then 0.5 (11 < 14)
    assert query(s, probs, indices=[10, 11, 12, 13, 14], budget=4).tolist() == [12, 11, 14, 13]


def test_numpy_argsort_ranking_keeps_the_candidates_draw_order():
    s = make_strategy("variation-ratios", {"passes": 4, "subset": 5, "ranking": "numpy-argsort"})
    from tests.mc_helpers import pool

    p = pool(50)
    cand = s.candidates(cycle=1, pool=p, rng=np.random.default_rng(3))
    assert len(cand) == 5 and not np.all(np.diff(cand) > 0)  # draw order, as random.sample
    sorted_cand = make_strategy("variation-ratios", {"passes": 4, "subset": 5}).candidates(
        cycle=1, pool=p, rng=np.random.default_rng(3))
    assert np.all(np.diff(sorted_cand) > 0)
    probs = one_hot_passes([[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 2, 3], [1, 1, 1, 2], [3, 3, 2, 2]])
    scores = variation_ratio(probs).numpy()
    assert query(s, probs, indices=cand, budget=2).tolist() == cand[scores.argsort()[-2:][::-1]].tolist()


def test_it_declares_the_passes_and_needs_dropout():
    s = make_strategy("variation-ratios", {"passes": 7})
    (spec,) = s.needs_for("classification")
    assert isinstance(spec, StochasticPasses) and spec.passes == 7 and spec.seed is None
    with pytest.raises(ConfigError, match="model.params.dropout"):
        VariationRatios.check_model({}, model="small-cnn", model_params={}, path="model.params")
    VariationRatios.check_model({}, model="dbal-cnn", model_params={}, path="model.params")
    with pytest.raises(ConfigError, match="passes"):
        VariationRatios.validate_params({"passes": 1})


def test_official_protocol_switches_on_the_gal_quirks():
    s = official("variation-ratios")
    assert (s.ranking, s.subset) == ("numpy-argsort", 2000)
