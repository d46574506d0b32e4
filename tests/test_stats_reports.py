"""AUBC, paired Wilcoxon tests, win/tie/loss and Spearman, checked against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from albench.reports.stats import (aubc, min_attainable_p, paired_wilcoxon, pairwise_tests, spearman_rho,
                                 win_tie_loss)


def test_aubc_is_the_trapezoidal_mean_over_the_labeled_range():
    # (20-10) * (0.5+0.7)/2 + (40-20) * (0.7+0.8)/2 = 6 + 15 = 21; / (40-10) = 0.7
    assert aubc([10, 20, 40], [0.5, 0.7, 0.8]) == pytest.approx(0.7)
    assert aubc([40, 10, 20], [0.8, 0.5, 0.7]) == pytest.approx(0.7)  # order of the points does not matter
    assert aubc([0, 100], [0.3, 0.3]) == pytest.approx(0.3)  # a flat curve's AUBC is its value


@pytest.mark.parametrize("x,y", [([10], [0.5]), ([10, 10], [0.5, 0.6])])
def test_aubc_refuses_degenerate_curves(x, y):
    with pytest.raises(ValueError):
        aubc(x, y)


def test_min_attainable_p_of_the_exact_two_sided_test():
    assert min_attainable_p(3) == pytest.approx(0.25)
    assert min_attainable_p(5) == pytest.approx(0.0625)
    assert min_attainable_p(6) == pytest.approx(0.03125)
    assert min_attainable_p(0) == 1.0


def test_paired_wilcoxon_six_consistent_gains_is_a_significant_win():
    a = np.array([0.60, 0.62, 0.64, 0.66, 0.68, 0.70])
    b = a - np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    t = paired_wilcoxon(a, b)
    assert (t.n, t.n_nonzero) == (6, 6)
    assert t.pvalue == pytest.approx(2 / 64)  # all six ranks on one side: the exact two-sided minimum
    assert t.mean_diff == pytest.approx(0.035)
    assert t.outcome() == "win"
    assert paired_wilcoxon(b, a).outcome() == "loss"


def test_paired_wilcoxon_with_three_seeds_cannot_be_significant():
    t = paired_wilcoxon([0.9, 0.8, 0.7], [0.1, 0.2, 0.3])
    assert t.pvalue == pytest.approx(0.25)
    assert t.min_p == pytest.approx(0.25)
    assert t.outcome() == "tie"


def test_paired_wilcoxon_identical_and_empty_samples():
    same = paired_wilcoxon([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert (same.n, same.n_nonzero, same.pvalue, same.outcome()) == (3, 0, 1.0, "tie")
    empty = paired_wilcoxon([], [])
    assert empty.n == 0 and np.isnan(empty.pvalue) and empty.outcome() == "tie"


def test_pairwise_tests_pair_seeds_by_seed_number():
    frame = pd.DataFrame({"series": ["a"] * 3 + ["b"] * 3, "seed": [0, 1, 2, 2, 1, 0],
                          "value": [1.0, 2.0, 3.0, 30.0, 20.0, 10.0]})
    out = pairwise_tests(frame)
    assert len(out) == 1
    row = out.iloc[0]
    assert (row["a"], row["b"], row["n"]) == ("a", "b", 3)
    # seed-aligned differences: 1-10, 2-20, 3-30 -> mean -18
    assert row["mean_diff"] == pytest.approx(-18.0)
    assert row["mean_a"] == pytest.approx(2.0) and row["mean_b"] == pytest.approx(20.0)
    assert row["outcome"] == "tie"  # 3 seeds


def test_win_tie_loss_counts_per_labeled_count():
    rows = []
    for seed in range(6):
        rows += [{"series": "a", "seed": seed, "n_labeled": 10, "value": 0.5 + 0.01 * seed + 0.1},
                 {"series": "b", "seed": seed, "n_labeled": 10, "value": 0.5 + 0.01 * seed},
                 {"series": "a", "seed": seed, "n_labeled": 20, "value": 0.8 + 0.01 * (seed + 1)},
                 {"series": "b", "seed": seed, "n_labeled": 20, "value": 0.8},
                 {"series": "a", "seed": seed, "n_labeled": 30, "value": 0.9},
                 {"series": "b", "seed": seed, "n_labeled": 30, "value": 0.9}]
    wins, ties, losses = win_tie_loss(pd.DataFrame(rows))
    assert wins.loc["a", "b"] == 2 and ties.loc["a", "b"] == 1 and losses.loc["a", "b"] == 0
    assert wins.loc["b", "a"] == 0 and ties.loc["b", "a"] == 1 and losses.loc["b", "a"] == 2
    assert wins.loc["a", "a"] == 0 and ties.loc["a", "a"] == 0


def test_spearman_rho_hand_case():
    # ranks x 1 2 3 4, y 1 3 2 4: d^2 = 0+1+1+0 = 2; rho = 1 - 6*2 / (4*(16-1)) = 0.8
    assert spearman_rho([0.1, 0.2, 0.3, 0.4], [5.0, 7.0, 6.0, 8.0]) == pytest.approx(0.8)
    assert spearman_rho([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
