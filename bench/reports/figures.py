"""Report figures (matplotlib + seaborn). Each function returns a Figure with its caption drawn under it.

Colours and markers are fixed per strategy by :func:`style_map` so one strategy looks the same in
every figure of a report.
"""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")  # reports are written to files, never shown; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from albench.reports.output import add_caption  # noqa: E402
from albench.reports.provenance import display_name  # noqa: E402
from albench.reports.tables import baseline_name, fmt_duration, wallclock_phases  # noqa: E402

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p"]
# tab10, the most distinct set of ten hues matplotlib has; beyond ten series the hues repeat, each
# round with its own line style (never the baseline's dashes) and every series with its own marker,
# so no two series share colour and line style, and up to 12 none shares a marker either
PALETTE = "tab10"
ROUND_STYLES = ["-", "-.", ":", (0, (5, 1, 1, 1, 1, 1))]
BASELINE = {"color": (0.1, 0.1, 0.1), "ls": "--"}


def style_map(series: list[str], baselines=()) -> dict[str, dict]:
    """{series: {'color', 'marker', 'ls'}}, stable for a given sorted list of series.

    Each series in ``baselines`` (a sweep's baseline, :func:`albench.reports.tables.baseline_series`) is
    drawn black and dashed and takes no colour from the others. The others take the ten tab10 hues
    in sorted order; the 11th to 20th reuse them with dash-dot lines, the next ten with dotted lines
    (so a hue is never shared by two series of the same line style), and markers never repeat
    within 12 series.
    """
    names = sorted(series)
    colors = sns.color_palette(PALETTE, 10)
    out, k = {}, 0
    for i, s in enumerate(names):
        out[s] = {"marker": MARKERS[i % len(MARKERS)]}
        if s in baselines:  # the baseline every reader looks for
            out[s].update(BASELINE)
            continue
        out[s].update(color=colors[k % len(colors)], ls=ROUND_STYLES[(k // len(colors)) % len(ROUND_STYLES)])
        k += 1
    return out


def _heatmap(data, **kw):
    """``seaborn.heatmap`` without the PendingDeprecationWarning seaborn's own colormap call raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return sns.heatmap(data, **kw)


def _style():
    return sns.axes_style("whitegrid")


def _legend_outside(ax, **kw) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False, fontsize=8, **kw)


# ---------------------------------------------------------------------------------------------


def curves_figure(curve: pd.DataFrame, *, metric: str, dataset: str, caption: str, flagged: set[str],
                  styles: dict[str, dict]):
    """Metric (%) vs labeled count, mean ± std band over seeds, one line per strategy (paper Fig. 3/5/6).

    ``curve``: the output of :func:`albench.reports.tables.curve_data`.
    """
    many = curve["series"].nunique() > 6
    with _style():
        fig, ax = plt.subplots(figsize=(7.2, 4.6) if many else (6.4, 3.8))
        for series, part in curve.groupby("series", sort=True):
            part = part.sort_values("n_labeled")
            st = styles[series]
            x, m = part["n_labeled"].to_numpy(), part["mean"].to_numpy()
            sd = part["std"].fillna(0).to_numpy()
            n_min, n_max = int(part["n"].min()), int(part["n"].max())
            seeds = f"n={n_max}" if n_min == n_max else f"n={n_min}-{n_max}"
            ax.plot(x, m, color=st["color"], marker=st["marker"], ms=4, lw=1.5, ls=st["ls"],
                    label=f"{display_name(series, series in flagged)} ({seeds})")
            ax.fill_between(x, m - sd, m + sd, color=st["color"], alpha=0.06 if many else 0.15, lw=0)
        xs = sorted(curve["n_labeled"].unique())
        if len(xs) <= 12:
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{v:,}" for v in xs])
        ax.set_xlabel("labeled images")
        ax.set_ylabel(f"test {metric} (%)")
        ax.set_title(f"{dataset}: test {metric} vs labeled images", fontsize=10)
        _legend_outside(ax, title="strategy (seeds)\nline: mean, band: ± std", title_fontsize=8)
        fig.tight_layout()
        add_caption(fig, caption)
    return fig


def error_curves_figure(curve: pd.DataFrame, *, metric: str, dataset: str, caption: str, flagged: set[str],
                        styles: dict[str, dict], thresholds: list[float], initial: int | None):
    """Test error (100 - metric, %) vs acquired images (labels minus ``initial``; labels when None),
    mean ± std band over seeds, with a dashed line at each threshold's error (Gal et al. 2017, Fig. 1).

    ``curve``: the output of :func:`albench.reports.tables.curve_data`."""
    with _style():
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        off = initial or 0
        for series, part in curve.groupby("series", sort=True):
            part = part.sort_values("n_labeled")
            st = styles[series]
            x = part["n_labeled"].to_numpy() - off
            err = 100.0 - part["mean"].to_numpy()
            sd = part["std"].fillna(0).to_numpy()
            n_min, n_max = int(part["n"].min()), int(part["n"].max())
            seeds = f"n={n_max}" if n_min == n_max else f"n={n_min}-{n_max}"
            ax.plot(x, err, color=st["color"], lw=1.5, ls=st["ls"],
                    label=f"{display_name(series, series in flagged)} ({seeds})")
            ax.fill_between(x, err - sd, err + sd, color=st["color"], alpha=0.15, lw=0)
        for thr in thresholds:
            ax.axhline(100.0 - thr, color="0.4", lw=0.8, ls=":")
            ax.annotate(f"{100 - thr:g}% error", xy=(0.0, 100.0 - thr), xycoords=("axes fraction", "data"),
                        xytext=(4, -9), textcoords="offset points", ha="left", fontsize=7, color="0.3")
        top = float(np.nanmax(100.0 - curve["mean"])) if not curve.empty else 100.0
        ax.set_ylim(0, min(100.0, max(top * 1.05, max((100 - t for t in thresholds), default=0) * 2)))
        ax.set_xlabel("acquired images" if initial is not None else "labeled images")
        ax.set_ylabel(f"test error (100 - {metric}, %)")
        ax.set_title(f"{dataset}: test error vs {'acquired' if initial is not None else 'labeled'} images",
                     fontsize=10)
        _legend_outside(ax, title="strategy (seeds)\nline: mean, band: ± std", title_fontsize=8)
        fig.tight_layout()
        add_caption(fig, caption)
    return fig


def spearman_figure(panels: list[dict], *, dataset: str, caption: str, flagged: set[str], n_points: int = 1000,
                    seed: int = 0):
    """Normalised rank of main-task loss (x) against pretext-task loss (y) (paper Fig. 2).

    ``panels``: one dict per panel with series, seed, main (per-test-image main-task loss), pretext
    (per-test-image pretext loss), rho (on the full test set). ``n_points`` random images are drawn
    (generator seeded by ``seed``) for legibility; rho is computed on all of them.
    """
    from scipy.stats import rankdata

    n = len(panels)
    cols = min(3, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    with _style():
        fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.4 * rows), squeeze=False)
        for ax, p in zip(axes.flat, panels):
            main, pre = np.asarray(p["main"], float), np.asarray(p["pretext"], float)
            rx, ry = rankdata(main) / len(main), rankdata(pre) / len(pre)
            k = min(n_points, len(main))
            pick = np.random.default_rng(seed).choice(len(main), size=k, replace=False)
            ax.scatter(rx[pick], ry[pick], s=4, alpha=0.5, color="tab:blue", lw=0)
            ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.4")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_aspect("equal")
            ax.set_xlabel("main-task loss (normalised rank)", fontsize=8)
            ax.set_ylabel("pretext-task loss (normalised rank)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_title(f"{display_name(p['series'], p['series'] in flagged)}, seed {p['seed']}\n"
                         f"ρ = {p['rho']:.3f} on {len(main):,} test images ({k:,} shown)", fontsize=9)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.tight_layout()
        add_caption(fig, caption, title=f"{dataset}: rank correlation of pretext and main-task test loss")
    return fig


def class_distribution_figure(data: pd.DataFrame, *, dataset: str, caption: str, flagged: set[str],
                              styles: dict[str, dict], class_names: dict | None = None, max_bars: int = 5,
                              unit: str = "images"):
    """Share of each class among each strategy's queried images (mean over seeds).

    ``data``: the output of :func:`albench.reports.tables.class_distribution_data`. Grouped bars for up
    to ``max_bars`` strategies; beyond that a strategy x class heatmap of shares (bars would be too
    thin to read), coloured by the deviation from a uniform share.
    """
    class_names = class_names or {}
    what = "queried images" if unit == "images" else f"labeled {unit}"
    classes = sorted(data["class"].unique())
    series = sorted(data["series"].unique())
    labels = [str(class_names.get(c, c)) for c in classes]
    long_labels = any(len(lb) > 3 for lb in labels)
    uniform = 100 / len(classes)
    with _style():
        if len(series) <= max_bars:
            width = 0.8 / max(1, len(series))
            fig, ax = plt.subplots(figsize=(max(6.4, 0.35 * len(classes) * max(1, len(series)) ** 0.5 + 3.0), 3.6))
            x = np.arange(len(classes))
            for i, s in enumerate(series):
                part = data[data["series"] == s].set_index("class").reindex(classes)
                ax.bar(x - 0.4 + width * (i + 0.5), part["fraction"].fillna(0) * 100, width=width,
                       color=styles[s]["color"], label=display_name(s, s in flagged))
            ax.axhline(uniform, ls="--", lw=0.8, color="0.3", label="uniform")
            shares = data["fraction"].to_numpy() * 100
            if shares.max() > 5 * uniform and (shares > 0).any():  # e.g. background pixels: keep the rest legible
                ax.set_yscale("log")
                ax.set_ylim(bottom=max(1e-3, shares[shares > 0].min() / 2))
            ax.set_xticks(x)
            ax.set_xticklabels(labels, rotation=30 if long_labels else 0, ha="right" if long_labels else "center")
            ax.set_xlabel("class")
            ax.set_ylabel(f"share of {what} (%)" + (", log scale" if ax.get_yscale() == "log" else ""))
            _legend_outside(ax)
        else:
            share = data.pivot(index="series", columns="class", values="fraction").reindex(index=series,
                                                                                         columns=classes) * 100
            fig, ax = plt.subplots(figsize=(max(6.4, 0.6 * len(classes) + 3.2), 0.38 * len(series) + 1.8))
            lim = max(1.0, float(np.nanmax(np.abs(share.to_numpy() - uniform))))
            _heatmap(share, annot=True, fmt=".1f", cmap="PuOr_r", center=uniform, vmin=max(0.0, uniform - lim),
                     vmax=uniform + lim, ax=ax, linewidths=0.4, linecolor="white", annot_kws={"fontsize": 7},
                     xticklabels=labels, yticklabels=[display_name(s, s in flagged) for s in series],
                     cbar_kws={"label": f"share of {what} (%); uniform = {uniform:.1f}"})
            ax.set_xlabel("class")
            ax.set_ylabel("")
            plt.setp(ax.get_xticklabels(), rotation=30 if long_labels else 0, ha="right" if long_labels else "center")
            plt.setp(ax.get_yticklabels(), rotation=0)
        ax.set_title(f"{dataset}: class distribution of {what} (mean over seeds)", fontsize=10)
        fig.tight_layout()
        add_caption(fig, caption)
    return fig


def aubc_figure(per_run: pd.DataFrame, *, metric: str, dataset: str, caption: str, flagged: set[str],
                styles: dict[str, dict]):
    """AUBC per strategy: each seed as a dot, mean ± std as a bar (percent)."""
    series = sorted(per_run["series"].unique())
    with _style():
        fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(series) + 1.4))
        for i, s in enumerate(series):
            v = per_run.loc[per_run["series"] == s, "value"].to_numpy()
            c = styles[s]["color"]
            ax.scatter(v, np.full(len(v), i) + np.linspace(-0.12, 0.12, len(v)), s=14, color=c, alpha=0.7, lw=0)
            sd = v.std(ddof=1) if len(v) > 1 else 0.0
            ax.errorbar(v.mean(), i, xerr=sd, fmt="|", color=c, ms=14, mew=2, capsize=4, lw=1.5)
        ax.set_yticks(range(len(series)))
        ax.set_yticklabels([display_name(s, s in flagged) for s in series], fontsize=8)
        ax.set_ylim(len(series) - 0.5, -0.5)
        ax.set_xlabel(f"AUBC: mean test {metric} over the labeled budget (%)\ndots: seeds; bar: mean ± std")
        ax.set_title(f"{dataset}: area under the budget curve", fontsize=10)
        fig.tight_layout()
        add_caption(fig, caption)
    return fig


def win_tie_loss_figure(wins: pd.DataFrame, ties: pd.DataFrame, losses: pd.DataFrame, *, dataset: str,
                        caption: str, flagged: set[str], mean_diff: pd.DataFrame | None = None):
    """Matrix of row strategy vs column strategy: each cell reads W/T/L over labeled counts.

    With ``mean_diff`` (same index/columns: mean paired difference row - column, percentage points)
    cells are coloured by it and print it under W/T/L, so a matrix of ties (few seeds) still shows
    direction; without it they are coloured by wins - losses. Cells holding at least one significant
    win or loss are framed in black.
    """
    from matplotlib.ticker import MaxNLocator

    names = [display_name(s, s in flagged) for s in wins.index]
    n = len(names)
    mask = np.eye(n, dtype=bool)
    if mean_diff is not None:
        color = mean_diff.reindex(index=wins.index, columns=wins.columns).astype(float)
        label, ticks = "mean paired difference row − column (pp)", None
    else:
        color = (wins - losses).astype(float)
        label, ticks = "wins − losses (row vs column)", MaxNLocator(integer=True)
    off = np.abs(color.to_numpy()[~mask])
    off = off[np.isfinite(off)]
    lim = max(1.0, float(off.max())) if off.size else 1.0
    annot = np.empty((n, n), dtype=object)
    for i, a in enumerate(wins.index):
        for j, b in enumerate(wins.columns):
            annot[i, j] = "" if a == b else f"{wins.loc[a, b]}/{ties.loc[a, b]}/{losses.loc[a, b]}"
            if a != b and mean_diff is not None and np.isfinite(color.loc[a, b]):
                annot[i, j] += f"\n{color.loc[a, b]:+.1f}"
    side = 1.6 + 0.62 * n
    with sns.axes_style("white"):
        fig, ax = plt.subplots(figsize=(side + 2.6, side))
        _heatmap(color, mask=mask, annot=annot, fmt="", cmap="RdBu", vmin=-lim, vmax=lim, center=0, ax=ax,
                 square=True, linewidths=0.5, linecolor="white", xticklabels=names, yticklabels=names,
                 cbar_kws={"label": label, "ticks": ticks, "shrink": 0.7}, annot_kws={"fontsize": 7})
        for i in range(n):  # the diagonal: a strategy is not compared with itself
            ax.add_patch(plt.Rectangle((i, i), 1, 1, facecolor="0.92", edgecolor="white", lw=0.5))
        for i, a in enumerate(wins.index):
            for j, b in enumerate(wins.columns):
                if a != b and wins.loc[a, b] + losses.loc[a, b] > 0:
                    ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, edgecolor="black", lw=1.2))
        ax.set_xlabel("column strategy (B)")
        ax.set_ylabel("row strategy (A)")
        ax.set_title(f"{dataset}: wins / ties / losses of A vs B over labeled counts", fontsize=10)
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right", fontsize=8)
        plt.setp(ax.get_yticklabels(), rotation=0, fontsize=8)
        fig.tight_layout()
        add_caption(fig, caption)
    return fig


def wallclock_figure(data: pd.DataFrame, *, dataset: str, caption: str, flagged: set[str]):
    """Stacked horizontal bars: mean wall-clock per run by phase; the ratio to the baseline at each bar's end.

    ``data``: the output of :func:`albench.reports.tables.wallclock_data`.
    """
    data = data.sort_values("series")
    biggest = float(data["total_s"].max()) if not data.empty else 0.0
    unit, div = ("h", 3600.0) if biggest >= 7200 else (("min", 60.0) if biggest >= 120 else ("s", 1.0))
    phases = wallclock_phases(data)
    colors = sns.color_palette("Set2", len(phases))
    with _style():
        fig, ax = plt.subplots(figsize=(6.8, 0.45 * len(data) + 1.6))
        y = np.arange(len(data))
        left = np.zeros(len(data))
        for ph, c in zip(phases, colors):
            v = data[f"{ph}_s"].to_numpy() / div
            ax.barh(y, v, left=left, color=c, label=ph, height=0.6)
            left += v
        sd = data["total_std_s"].fillna(0).to_numpy() / div
        ax.errorbar(data["total_s"].to_numpy() / div, y, xerr=sd, fmt="none", ecolor="0.2", elinewidth=0.8,
                    capsize=2, label="± std of the total")
        ratios = zip(data["total_s"], data["ratio_to_random"], data["baseline"], sd)
        for yi, (tot, ratio, base, s_) in enumerate(ratios):
            text = fmt_duration(tot) + (f"  (×{ratio:.2f} {baseline_name(base)})" if np.isfinite(ratio) else "")
            ax.text(tot / div + s_, yi, "  " + text, va="center", fontsize=7,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.9})
        ax.set_yticks(y)
        ax.set_yticklabels([display_name(s, s in flagged) for s in data["series"]], fontsize=8)
        ax.set_ylim(len(data) - 0.5, -0.5)
        reach = float((data["total_s"] / div + sd).max()) if len(data) else 0.0
        ax.set_xlim(0, reach * 1.5 if reach > 0 else 1)
        ax.set_xlabel(f"wall-clock per run ({unit}), mean over complete runs")
        ax.set_title(f"{dataset}: wall-clock per run by phase", fontsize=10)
        _legend_outside(ax, title="phase", title_fontsize=8)
        fig.tight_layout()
        add_caption(fig, caption)
    return fig
