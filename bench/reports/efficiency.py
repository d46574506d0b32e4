"""Label efficiency: how many labels a learning curve needs to reach a metric threshold.

A curve is a run's (labeled count, metric) points, or the mean over seeds of several runs' curves at
the counts every one of them has recorded. Two conventions, and every number says which:

- ``first``: the first labeled count whose metric is at or past the threshold;
- ``interpolated``: the count where the straight line between that point and the one before it
  crosses the threshold (the first count itself when the curve starts at or past it).

A curve that never reaches the threshold has no count: it is reported as "> N", N its largest
labeled count, never as a number. Counts are labels (the initial set included); ``acquired``
counts subtract the initial set (Gal et al. 2017's Table 1 counts "acquired images").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CONVENTIONS = ("first", "interpolated")


@dataclass(frozen=True)
class Reach:
    """Labels a curve needed to reach a threshold (``labels`` None: not reached by ``max_labels``)."""

    labels: float | None
    max_labels: int
    convention: str

    @property
    def reached(self) -> bool:
        return self.labels is not None

    def minus(self, offset: int) -> "Reach":
        """The same reach counted from ``offset`` labels (e.g. acquired images: minus the initial set)."""
        return Reach(None if self.labels is None else self.labels - offset, self.max_labels - offset, self.convention)

    def text(self, digits: int = 0) -> str:
        """'145' (or '142.5' with digits), or '> 500' when never reached."""
        if self.labels is None:
            return f"> {self.max_labels}"
        return f"{self.labels:.{digits}f}"


def labels_to_reach(counts, values, threshold: float, convention: str = "first") -> Reach:
    """The labels a curve (``counts`` ascending, ``values`` the metric at each, same units as
    ``threshold``) needs to reach ``threshold`` (metric >= threshold) under ``convention``."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
    c = np.asarray(counts, dtype=float)
    v = np.asarray(values, dtype=float)
    if c.ndim != 1 or c.shape != v.shape or len(c) == 0:
        raise ValueError("labels_to_reach needs two equally long, non-empty 1-D sequences")
    if np.any(np.diff(c) <= 0):
        raise ValueError("labeled counts must be strictly increasing")
    if not np.all(np.isfinite(v)):
        raise ValueError("the curve holds a non-finite metric value")
    hit = np.flatnonzero(v >= threshold)
    if len(hit) == 0:
        return Reach(None, int(c[-1]), convention)
    i = int(hit[0])
    if convention == "first" or i == 0:
        return Reach(float(c[i]), int(c[-1]), convention)
    c0, c1, v0, v1 = c[i - 1], c[i], v[i - 1], v[i]
    return Reach(float(c0 + (threshold - v0) * (c1 - c0) / (v1 - v0)), int(c[-1]), convention)


def mean_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(counts, mean value) over ``curves`` at the counts every curve has, in order up to the first
    count one of them lacks (a shorter, unfinished run ends the mean curve there)."""
    if not curves:
        return np.zeros(0), np.zeros(0)
    maps = [dict(zip(np.asarray(c).tolist(), np.asarray(v, dtype=float).tolist())) for c, v in curves]
    counts = []
    for x in sorted(maps[0]):
        if not all(x in m for m in maps):
            break
        counts.append(x)
    return np.asarray(counts, dtype=float), np.asarray([np.mean([m[x] for m in maps]) for x in counts])


def efficiency_data(df: pd.DataFrame, thresholds: list[float]) -> pd.DataFrame:
    """Long table from the per-cycle frame (``value`` a fraction; ``thresholds`` in percent): one row
    per series x threshold x convention x scope (``mean-curve``, or ``seed`` with its seed), with
    ``labels`` (NaN when not reached), ``reached``, ``max_labels`` and ``seeds`` (curves used)."""
    rows = []
    for series, part in df.groupby("series", sort=True):
        curves = {}
        for seed, run in part.groupby("seed", sort=True):
            run = run.sort_values("n_labeled")
            curves[int(seed)] = (run["n_labeled"].to_numpy(), run["value"].to_numpy() * 100.0)
        mc = mean_curve(list(curves.values()))
        for thr in thresholds:
            for conv in CONVENTIONS:
                scopes = [("mean-curve", None, mc, len(curves))] if len(mc[0]) else []
                scopes += [("seed", s, cv, 1) for s, cv in curves.items()]
                for scope, seed, (c, v), n in scopes:
                    r = labels_to_reach(c, v, thr, conv)
                    rows.append({"series": series, "threshold_pct": thr, "convention": conv, "scope": scope,
                                 "seed": seed, "labels": np.nan if r.labels is None else r.labels,
                                 "reached": r.reached, "max_labels": r.max_labels, "seeds": n})
    return pd.DataFrame(rows, columns=["series", "threshold_pct", "convention", "scope", "seed", "labels", "reached",
                                       "max_labels", "seeds"])


def _text(labels: float, reached: bool, max_labels: int, conv: str) -> str:
    return Reach(None if not reached else float(labels), int(max_labels), conv).text(0 if conv == "first" else 1)


def efficiency_table(df: pd.DataFrame, *, thresholds: list[float], metric: str, caption: str, flagged: set[str],
                     name: str):
    """Labels to reach each threshold, one row per strategy: per threshold and convention the count on
    the mean-over-seeds curve and each seed's count (seed order, with their mean when all reached)."""
    from albench.reports.output import Table
    from albench.reports.provenance import display_name

    data = efficiency_data(df, thresholds)
    cells: dict[str, dict[str, str]] = {}
    for (series, thr, conv), part in data.groupby(["series", "threshold_pct", "convention"], sort=False):
        row = cells.setdefault(series, {})
        mc = part[part["scope"] == "mean-curve"]
        key = f"{thr:g}%, {conv}"
        row[f"{key}: mean curve"] = "" if mc.empty else _text(mc["labels"].iloc[0], bool(mc["reached"].iloc[0]),
                                                               mc["max_labels"].iloc[0], conv)
        seeds = part[part["scope"] == "seed"].sort_values("seed")
        per = " · ".join(_text(r.labels, r.reached, r.max_labels, conv) for r in seeds.itertuples())
        if len(seeds) > 1 and seeds["reached"].all():
            per += f" (mean {seeds['labels'].mean():.{0 if conv == 'first' else 1}f})"
        row[f"{key}: per seed"] = per
    disp = pd.DataFrame.from_dict(cells, orient="index")
    disp.index = [display_name(s, s in flagged) for s in disp.index]
    disp.index.name = "strategy"
    seeds = sorted({int(s) for s in df["seed"].unique()})
    return Table(name=name, title=f"labels to reach {', '.join(f'{t:g}%' for t in thresholds)} {metric}",
                 caption=caption, data=data, display=disp,
                 notes=["Labels include the initial set. 'first': the first labeled count at or past the threshold; "
                        "'interpolated': linear interpolation between that count and the one before. 'mean curve': "
                        "the curve of the mean metric over seeds, at the counts every seed has recorded; 'per seed': "
                        f"seeds {', '.join(map(str, seeds))} in order. '> N': not reached by N labels."])
