"""Statistics beyond the paper: area under the budget curve, paired Wilcoxon tests, win/tie/loss.

Definitions (the report's index repeats them):

- **AUBC** (area under the budget curve) of one run: the trapezoidal area under its metric-vs-
  labeled-count curve divided by the labeled range, ``trapz(value, n_labeled) / (n_max - n_min)``.
  It is the curve's mean metric over the budget, in the metric's units (a fraction in [0, 1]; the
  report shows percent). Only runs with every planned cycle have one, so AUBCs of one sweep cover
  the same range and are comparable.
- **Paired Wilcoxon signed-rank test** between two strategies: over the seeds both have (seed s of
  A paired with seed s of B: same initial pool draw, same data order), two-sided, zero
  differences dropped (``zero_method='wilcox'``), exact null distribution when scipy can use it.
  With n non-zero differences the smallest two-sided p the exact test can reach is ``2 / 2**n``:
  0.25 for 3 seeds, 0.0625 for 5, 0.03125 for 6. With fewer than 6 seeds no difference can be
  significant at alpha = 0.05; the p value is reported anyway, the outcome is a tie, and the report
  says so.
- **Win / tie / loss** of A against B at one comparison point (a labeled count of one dataset, or
  the AUBC): a win when the paired test gives p < alpha and the mean paired difference A - B is
  positive, a loss when p < alpha and it is negative, a tie otherwise. The matrix counts outcomes
  over every labeled count of the dataset.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

ALPHA = 0.05


def aubc(n_labeled, values) -> float:
    """Area under the budget curve, normalised by the labeled range: the mean metric over the budget.

    Returns a value in the units of ``values`` (a fraction in [0, 1] for accuracy). Points are sorted
    by labeled count. Raises ValueError for fewer than two points or a zero labeled range.
    """
    x = np.asarray(n_labeled, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("n_labeled and values must be 1-d arrays of the same length")
    if len(x) < 2:
        raise ValueError("AUBC needs at least two cycles")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    span = x[-1] - x[0]
    if span <= 0:
        raise ValueError("AUBC needs at least two distinct labeled counts")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / span)


def min_attainable_p(n: int) -> float:
    """Smallest two-sided p of the exact Wilcoxon signed-rank test with ``n`` non-zero differences."""
    return 1.0 if n <= 0 else min(1.0, 2.0 / 2.0 ** n)


@dataclass
class PairedTest:
    """A two-sided paired Wilcoxon signed-rank test of A against B over shared seeds."""

    n: int  # paired seeds
    n_nonzero: int  # pairs with a non-zero difference (the test's sample size)
    mean_diff: float  # mean of A - B over the pairs (nan when n == 0)
    statistic: float  # scipy's W (nan when not computable)
    pvalue: float  # two-sided p (1.0 when every difference is zero, nan when n == 0)

    @property
    def min_p(self) -> float:
        return min_attainable_p(self.n_nonzero)

    def outcome(self, alpha: float = ALPHA) -> str:
        """'win' (A better), 'loss' (A worse) or 'tie' (not significant at ``alpha``)."""
        if not np.isfinite(self.pvalue) or self.pvalue >= alpha or self.mean_diff == 0:
            return "tie"
        return "win" if self.mean_diff > 0 else "loss"


def paired_wilcoxon(a, b) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of paired samples ``a`` and ``b`` (same length)."""
    from scipy.stats import wilcoxon

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired samples must have the same length")
    d = a - b
    n = int(len(d))
    nz = int(np.count_nonzero(d))
    if n == 0:
        return PairedTest(0, 0, float("nan"), float("nan"), float("nan"))
    if nz == 0:
        return PairedTest(n, 0, 0.0, float("nan"), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on small n and ties; the p value is still right
        res = wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return PairedTest(n, nz, float(d.mean()), float(res.statistic), float(res.pvalue))


def paired(frame: pd.DataFrame, a: str, b: str, value: str = "value") -> tuple[np.ndarray, np.ndarray]:
    """Values of series ``a`` and ``b`` on the seeds both have, seed-aligned (sorted by seed).

    ``frame`` has one row per (series, seed) with columns series, seed and ``value``.
    """
    va = frame[frame["series"] == a].set_index("seed")[value]
    vb = frame[frame["series"] == b].set_index("seed")[value]
    seeds = sorted(set(va.index) & set(vb.index))
    return va.loc[seeds].to_numpy(dtype=float), vb.loc[seeds].to_numpy(dtype=float)


def pairwise_tests(frame: pd.DataFrame, value: str = "value", alpha: float = ALPHA) -> pd.DataFrame:
    """Paired Wilcoxon tests between every pair of series in ``frame`` (one row per unordered pair).

    ``frame``: one row per (series, seed). Returns columns a, b, n, n_nonzero, mean_a, mean_b,
    mean_diff (a - b), statistic, pvalue, min_p (smallest attainable p) and outcome (of a vs b).
    """
    rows = []
    series = sorted(frame["series"].unique())
    for a, b in itertools.combinations(series, 2):
        xa, xb = paired(frame, a, b, value)
        t = paired_wilcoxon(xa, xb)
        rows.append({"a": a, "b": b, "n": t.n, "n_nonzero": t.n_nonzero,
                     "mean_a": float(xa.mean()) if t.n else float("nan"),
                     "mean_b": float(xb.mean()) if t.n else float("nan"),
                     "mean_diff": t.mean_diff, "statistic": t.statistic, "pvalue": t.pvalue, "min_p": t.min_p,
                     "outcome": t.outcome(alpha)})
    return pd.DataFrame(rows, columns=["a", "b", "n", "n_nonzero", "mean_a", "mean_b", "mean_diff", "statistic",
                                       "pvalue", "min_p", "outcome"])


def win_tie_loss(frame: pd.DataFrame, by: str = "n_labeled", value: str = "value",
                 alpha: float = ALPHA) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(wins, ties, losses) matrices: cell [A, B] counts comparison points where A beats / ties / loses to B.

    ``frame``: one row per (series, seed, ``by``); each distinct ``by`` value is one comparison point
    tested with :func:`paired_wilcoxon` over the seeds both series have there. Points where a pair
    shares no seed are not counted. The diagonal is 0.
    """
    series = sorted(frame["series"].unique())
    wins = pd.DataFrame(0, index=series, columns=series)
    ties = wins.copy()
    losses = wins.copy()
    for _, part in frame.groupby(by, sort=True):
        for a, b in itertools.permutations(series, 2):
            xa, xb = paired(part, a, b, value)
            if len(xa) == 0:
                continue
            out = paired_wilcoxon(xa, xb).outcome(alpha)
            {"win": wins, "tie": ties, "loss": losses}[out].loc[a, b] += 1
    return wins, ties, losses


def spearman_rho(a, b) -> float:
    """Spearman's rank correlation of two equally long samples (average ranks for ties), in [-1, 1]."""
    from scipy.stats import spearmanr

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("spearman_rho needs two 1-d samples of the same length")
    return float(spearmanr(a, b).statistic)


BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95


def bootstrap_mean_ci(values, *, resamples: int = BOOTSTRAP_RESAMPLES, level: float = CI_LEVEL,
                      seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values`` (e.g. per-seed paired
    differences), in their units: ``resamples`` resamples of len(values) drawn with replacement from a
    generator seeded with ``seed``, the (1 - level) / 2 and (1 + level) / 2 quantiles of their means.

    (nan, nan) with fewer than two values. With n values there are only C(2n - 1, n) distinct
    resamples (126 for 5 seeds), so the interval is coarse and too narrow for small n: read it as
    a description of the seeds' spread, not an exact coverage statement.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1:
        raise ValueError("bootstrap_mean_ci needs a 1-d sample")
    if len(v) < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(v), size=(resamples, len(v)))
    means = v[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
