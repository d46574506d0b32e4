"""Quirk impact: what each official-code quirk of an ablated strategy changes, paired by seed.

A strategy entry with ``ablate: quirks`` (:mod:`albench.ablation`) records, in every run's
``run.json``, an ``ablation`` record: the entry it belongs to (``of``), its variant (``official``
or ``base``: every quirk on; ``without``: one unit removed; ``paper``: none) and the units. From those
runs this module computes, for each unit U (a quirk, or a group of quirks that only make sense
together) and for all of them at once (``paper``):

- the paired difference ``official - (official without U)`` in percentage points, seed s of one
  variant with seed s of the other (same initial draw, same data order), at every labeled count
  and for the AUBC (:func:`albench.reports.stats.aubc`, runs with every planned cycle only);
- over seeds: the mean, a percentile bootstrap confidence interval
  (:func:`albench.reports.stats.bootstrap_mean_ci`: 10,000 resamples, generator seed 0, 95%) and
  the two-sided Wilcoxon signed-rank test (:func:`albench.reports.stats.paired_wilcoxon`: exact
  null distribution, zero differences dropped) with its number of seeds;
- the class counts of the first query with and without U (the cold-start table's columns).

A positive difference means the quirk raises the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from albench.reports.data import Run
from albench.reports.output import Table
from albench.reports.provenance import DAGGER
from albench.reports.stats import (ALPHA, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CI_LEVEL, bootstrap_mean_ci,
                                   paired_wilcoxon)
from albench.reports.tables import MAX_LISTED_CLASSES, PCT, aubc_per_run, first_query_data, fmt_p

ALL = "paper"  # the comparison that removes every unit: official - paper
AUBC = "AUBC"


@dataclass
class Ablation:
    """The runs of one ablated strategy entry of one sweep, by variant (series names)."""

    sweep: str
    of: str  # the entry's label (or strategy name)
    units: dict[str, list[str]]  # unit -> its quirks, in declaration order
    top: str | None = None  # series of the variant with every quirk (official, or the listed base)
    top_name: str = "official"
    without: dict[str, str] = field(default_factory=dict)  # unit -> series without it
    paper: str | None = None
    series_runs: dict[str, list[Run]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The strategy entry as a report names it (prefixed by its sweep when the top series is)."""
        prefix = self.top.rsplit("/", 1)[0] + "/" if self.top and "/" in self.top else ""
        return prefix + self.of

    def comparisons(self) -> list[tuple[str, str | None]]:
        """(comparison, series compared with the top variant): each unit in order, then ``paper``."""
        return [(u, self.without.get(u)) for u in self.units] + [(ALL, self.paper)]

    def runs(self) -> list[Run]:
        return [r for rs in self.series_runs.values() for r in rs]


def find_ablations(runs: list[Run]) -> list[Ablation]:
    """Every ablated entry among ``runs`` (one dataset's), from the runs' ``ablation`` records."""
    found: dict[tuple[str, str], Ablation] = {}
    for r in sorted(runs, key=lambda r: (r.sweep, r.series, r.seed)):
        rec = r.identity.get("ablation")
        if not isinstance(rec, dict) or "of" not in rec:
            continue
        key = (r.sweep, str(rec["of"]))
        abl = found.setdefault(key, Ablation(r.sweep, str(rec["of"]), {}))
        for u, members in (rec.get("units") or {}).items():
            abl.units.setdefault(str(u), [str(m) for m in members])
        kind = rec.get("variant")
        if kind in ("official", "base"):
            abl.top, abl.top_name = r.series, str(kind)
        elif kind == "without" and rec.get("unit") is not None:
            abl.without[str(rec["unit"])] = r.series
        elif kind == "paper":
            abl.paper = r.series
        abl.series_runs.setdefault(r.series, []).append(r)
    return [found[k] for k in sorted(found)]


def _label(abl: Ablation, comparison: str) -> str:
    if comparison == ALL:
        return "− all (paper)"
    members = abl.units.get(comparison, [comparison])
    return f"− {comparison}" + (f" ({', '.join(members)})" if members != [comparison] else "")


def _paired(frame: pd.DataFrame, a: str, b: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Seeds both series have in ``frame`` (one row per series x seed, column value) and their values."""
    va = frame[frame["series"] == a].set_index("seed")["value"]
    vb = frame[frame["series"] == b].set_index("seed")["value"]
    seeds = sorted(set(va.index) & set(vb.index))
    return [int(s) for s in seeds], va.loc[seeds].to_numpy(float), vb.loc[seeds].to_numpy(float)


def _stats(seeds: list[int], with_: np.ndarray, without: np.ndarray) -> dict:
    d = with_ - without
    t = paired_wilcoxon(with_, without)
    lo, hi = bootstrap_mean_ci(d)
    return {"seeds": len(seeds), "seed_list": " ".join(map(str, seeds)),
            "diff_per_seed_pp": " ".join(f"{x:+.4g}" for x in d),
            "mean_diff_pp": float(d.mean()) if len(d) else np.nan, "ci_low_pp": lo, "ci_high_pp": hi,
            "wilcoxon_n_nonzero": t.n_nonzero, "wilcoxon_W": t.statistic, "wilcoxon_p": t.pvalue,
            "wilcoxon_min_p": t.min_p,
            "mean_with_pct": float(with_.mean()) if len(d) else np.nan,
            "mean_without_pct": float(without.mean()) if len(d) else np.nan}


def _first_query(fq: pd.DataFrame | None, series: str | None) -> dict:
    if fq is None or series is None or series not in set(fq["series"]):
        return {"per_class": "", "min": np.nan, "max": np.nan, "missed": np.nan, "seeds": 0}
    r = fq[fq["series"] == series].iloc[0]
    return {"per_class": " ".join(f"{x:g}" for x in r["per_class"]), "min": int(r["min"]), "max": int(r["max"]),
            "missed": float(r["missed"]), "seeds": int(r["n"])}


def quirk_impact_data(df: pd.DataFrame, abl: Ablation, first_counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per comparison (each unit, then ``paper``) x point (each labeled count, then the AUBC).

    ``df``: the per-cycle frame of the dataset (:meth:`albench.reports.data.Sweep.cycles`);
    ``first_counts``: first-query class counts (:func:`albench.reports.data.class_counts` with
    ``first_query=True``). Differences are ``top - without`` in percentage points; ``mean_with_pct``
    and ``mean_without_pct`` are the two variants' means over the paired seeds. Comparisons whose
    variant has no run are left out.
    """
    fq = first_query_data(first_counts) if first_counts is not None and not first_counts.empty else None
    top_fq = _first_query(fq, abl.top)
    cyc = df[["series", "seed", "n_labeled", "value"]].assign(value=df["value"] * PCT)
    per_run = aubc_per_run(df)
    rows = []
    for comparison, series in abl.comparisons():
        if abl.top is None or series is None:
            continue
        removed = abl.units.get(comparison, []) if comparison != ALL else [q for m in abl.units.values() for q in m]
        base = {"sweep": abl.sweep, "strategy": abl.of, "comparison": comparison, "removed": " ".join(removed),
                "with_series": abl.top, "without_series": series}
        wo_fq = _first_query(fq, series)
        fq_cols = {**{f"first_query_with_{k}": v for k, v in top_fq.items()},
                   **{f"first_query_without_{k}": v for k, v in wo_fq.items()}}
        points = sorted(set(cyc.loc[cyc["series"] == abl.top, "n_labeled"]) & set(cyc.loc[cyc["series"] == series,
                                                                                          "n_labeled"]))
        for n in points:
            seeds, a, b = _paired(cyc[cyc["n_labeled"] == n], abl.top, series)
            if seeds:
                rows.append({**base, "point": str(int(n)), "n_labeled": int(n), **_stats(seeds, a, b), **fq_cols})
        seeds, a, b = _paired(per_run, abl.top, series)
        if seeds:
            rows.append({**base, "point": AUBC, "n_labeled": np.nan, **_stats(seeds, a, b), **fq_cols})
    cols = ["sweep", "strategy", "comparison", "removed", "with_series", "without_series", "point", "n_labeled",
            "seeds", "seed_list", "diff_per_seed_pp", "mean_diff_pp", "ci_low_pp", "ci_high_pp",
            "wilcoxon_n_nonzero", "wilcoxon_W", "wilcoxon_p", "wilcoxon_min_p", "mean_with_pct", "mean_without_pct"]
    fq_names = [f"first_query_{side}_{k}" for side in ("with", "without")
                for k in ("per_class", "min", "max", "missed", "seeds")]
    return pd.DataFrame(rows, columns=cols + fq_names)


def _cell(r) -> str:
    if not np.isfinite(r.mean_diff_pp):
        return ""
    ci = f" [{r.ci_low_pp:+.2f}, {r.ci_high_pp:+.2f}]" if np.isfinite(r.ci_low_pp) else ""
    p = fmt_p(r.wilcoxon_p)
    return f"{r.mean_diff_pp:+.2f}{ci}" + (f" p={p}" if p else "")


def quirk_impact_table(data: pd.DataFrame, abl: Ablation, *, metric: str, caption: str, flagged: set[str],
                       name: str, alpha: float = ALPHA, unit: str = "images") -> Table:
    """The quirk impact of one ablated strategy: one row per comparison (a reference row for the
    variant with every quirk first), one column per labeled count and the AUBC, each cell
    ``mean [CI] p`` of the paired difference in percentage points; then seeds and the first query's
    class counts of the row's variant (the reference row: the variant with every quirk)."""
    points = list(dict.fromkeys(data.sort_values("n_labeled", na_position="last")["point"]))
    seeds_max = int(data["seeds"].max()) if not data.empty else 0
    what = "labeled pixels" if unit == "pixels" else "images"

    def name_of(series: str | None, text: str) -> str:
        return f"{text} {DAGGER}" if series in flagged or abl.top in flagged else text

    ref = {"comparison": name_of(abl.top, f"{abl.top_name} (every quirk on)")}
    rows, fq_rows = [ref], []
    for comparison, part in data.groupby("comparison", sort=False):
        row = {"comparison": name_of(part["without_series"].iloc[0], _label(abl, comparison))}
        for r in part.itertuples():
            row[r.point] = _cell(r) + (f" (n={r.seeds})" if r.seeds < seeds_max else "")
        row["seeds"] = str(int(part["seeds"].max()))
        rows.append(row)
        fq_rows.append(part.iloc[0])
    disp = pd.DataFrame(rows).set_index("comparison")
    disp.index.name = f"{abl.name}: removed"
    disp = disp.reindex(columns=[*points, "seeds"]).fillna("")
    disp.columns = [f"Δ {p}" if p == AUBC else f"Δ at {p}" for p in points] + ["seeds"]
    if fq_rows and any(str(r["first_query_with_per_class"]) for r in fq_rows):
        first = fq_rows[0]
        sides = [("with", first)] + [("without", r) for r in fq_rows]
        n_classes = max(len(str(r[f"first_query_{s}_per_class"]).split()) for s, r in sides)
        listed = n_classes <= MAX_LISTED_CLASSES

        def fq(side, r, key):
            v = r[f"first_query_{side}_{key}"]
            if key == "per_class":
                return str(v)
            return "" if not np.isfinite(v) else (f"{v:.3g}" if key == "missed" else str(int(v)))

        if listed:
            disp[f"first query per class ({what})"] = [fq(s, r, "per_class") for s, r in sides]
        disp["first query min / max"] = [f"{fq(s, r, 'min')} / {fq(s, r, 'max')}" if fq(s, r, "min") else ""
                                         for s, r in sides]
        disp["classes missed"] = [fq(s, r, "missed") for s, r in sides]
    data_points = [p for p in points if p != AUBC]
    notes = [
        f"Each cell: the paired difference {abl.top_name} − ({abl.top_name} without the row's quirks) in "
        f"percentage points of {metric}, at {len(data_points)} labeled count(s) and for the AUBC (runs with "
        "every planned cycle); seed s of one variant paired with seed s of the other; mean over seeds, "
        f"[{CI_LEVEL:.0%} percentile bootstrap CI of the mean over seeds: {BOOTSTRAP_RESAMPLES:,} resamples, "
        f"generator seed {BOOTSTRAP_SEED}], p of the two-sided Wilcoxon signed-rank test (exact null "
        "distribution, zero differences dropped). A positive difference: the quirk raises the metric.",
        f"Seeds: {seeds_max} paired seeds" + (f" ((n=k): fewer at that point)" if (data["seeds"] < seeds_max).any()
                                             else "")
        + f"; with n non-zero differences the exact test cannot go below p = 2/2^n ({2 / 2 ** max(seeds_max, 1):.3g}"
        f" for {seeds_max}), so with fewer than 6 seeds no difference reaches p < α = {alpha}.",
        "First query: the class counts of each row's variant's cold-start query (the first al.initial labels, "
        "complete runs; per class: mean over seeds; min / max: fewest and most of any class in any seed; classes "
        "missed: mean over seeds); the first row is the variant with every quirk on.",
    ]
    return Table(name=name, title=f"Quirk impact: {abl.name}, {abl.top_name} − {abl.top_name} without each quirk",
                 caption=caption, data=data, display=disp, notes=notes)


def quirk_impact_figure(data: pd.DataFrame, abl: Ablation, *, metric: str, dataset: str, caption: str,
                        flagged: set[str], alpha: float = ALPHA):
    """Heatmap: removed quirk (rows) x labeled count and AUBC (columns), coloured by the mean paired
    difference (percentage points), each cell annotated with it and its bootstrap CI; cells with
    Wilcoxon p < ``alpha`` framed."""
    import matplotlib.pyplot as plt

    from albench.reports.figures import _heatmap
    from albench.reports.output import add_caption

    points = list(dict.fromkeys(data.sort_values("n_labeled", na_position="last")["point"]))
    comps = list(dict.fromkeys(data["comparison"]))
    mean = data.pivot(index="comparison", columns="point", values="mean_diff_pp").reindex(index=comps,
                                                                                          columns=points)
    lo = data.pivot(index="comparison", columns="point", values="ci_low_pp").reindex(index=comps, columns=points)
    hi = data.pivot(index="comparison", columns="point", values="ci_high_pp").reindex(index=comps, columns=points)
    p = data.pivot(index="comparison", columns="point", values="wilcoxon_p").reindex(index=comps, columns=points)
    annot = np.empty(mean.shape, dtype=object)
    for i in range(mean.shape[0]):
        for j in range(mean.shape[1]):
            m = mean.iat[i, j]
            annot[i, j] = "" if not np.isfinite(m) else f"{m:+.1f}" + (
                f"\n[{lo.iat[i, j]:+.1f}, {hi.iat[i, j]:+.1f}]" if np.isfinite(lo.iat[i, j]) else "")
    finite = np.abs(mean.to_numpy(dtype=float))
    finite = finite[np.isfinite(finite)]
    lim = max(1.0, float(finite.max())) if finite.size else 1.0
    rows = [_label(abl, c) + (f" {DAGGER}" if abl.top in flagged else "") for c in comps]
    cols = [AUBC if c == AUBC else f"{int(c):,}" for c in points]
    import seaborn as sns

    with sns.axes_style("white"):
        fig, ax = plt.subplots(figsize=(2.4 + 1.05 * len(points), 1.3 + 0.55 * len(comps)))
        _heatmap(mean.astype(float), annot=annot, fmt="", cmap="RdBu", vmin=-lim, vmax=lim, center=0, ax=ax,
                 linewidths=0.5, linecolor="white", xticklabels=cols, yticklabels=rows, annot_kws={"fontsize": 7},
                 cbar_kws={"label": f"mean paired difference, {metric} (pp)", "shrink": 0.8})
        for i in range(len(comps)):
            for j in range(len(points)):
                if np.isfinite(p.iat[i, j]) and p.iat[i, j] < alpha:
                    ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, edgecolor="black", lw=1.2))
        if AUBC in points and len(points) > 1:
            ax.axvline(len(points) - 1, color="black", lw=1.0)
        ax.set_xlabel("labeled images (and area under the budget curve)")
        ax.set_ylabel("quirks removed")
        ax.set_title(f"{dataset}: quirk impact on {abl.name}\n{abl.top_name} − {abl.top_name} without the quirk",
                     fontsize=10)
        plt.setp(ax.get_xticklabels(), rotation=0, fontsize=8)
        plt.setp(ax.get_yticklabels(), rotation=0, fontsize=8)
        fig.tight_layout()
        add_caption(fig, caption)
    return fig
