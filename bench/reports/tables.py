"""Report tables as pure functions on DataFrames (unit-testable without any run on disk).

Inputs are the tidy per-cycle frame of :meth:`albench.reports.data.Sweep.cycles` (one row per run x
finished cycle; ``value`` a fraction in [0, 1]) or small per-run frames built from artifacts.
Metric values are shown in percent; standard deviations are sample standard deviations over seeds
(ddof = 1; blank with a single seed); seconds are wall-clock seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from albench.records import PHASES, pick_baseline
from albench.reports.output import Table
from albench.reports.provenance import display_name
from albench.reports.stats import ALPHA, aubc, pairwise_tests, win_tie_loss

PCT = 100.0


# ---------------------------------------------------------------------------------------------
# formatting


def describe(values) -> dict:
    """{n, mean, std (ddof=1, nan if n < 2), min, max} of ``values`` (nan-free)."""
    v = np.asarray(values, dtype=float)
    n = int(len(v))
    if n == 0:
        return {"n": 0, "mean": np.nan, "std": np.nan, "min": np.nan, "max": np.nan}
    return {"n": n, "mean": float(v.mean()), "std": float(v.std(ddof=1)) if n > 1 else np.nan,
            "min": float(v.min()), "max": float(v.max())}


def fmt_mean_std(mean: float, std: float, digits: int = 2, n: int | None = None, n_max: int | None = None) -> str:
    """``mean ± std`` (std omitted when undefined), with ``(n=k)`` when ``n`` < ``n_max``."""
    if mean is None or not np.isfinite(mean):
        return ""
    s = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and np.isfinite(std) else "")
    if n is not None and n_max is not None and n < n_max:
        s += f" (n={n})"
    return s


def fmt_duration(seconds: float) -> str:
    """A wall-clock duration as a reader expects it: '12.3 s', '4.5 min' or '2 h 16 min'."""
    if seconds is None or not np.isfinite(seconds):
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    h, m = divmod(int(round(seconds / 60)), 60)
    return f"{h} h {m:02d} min"


def fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return ""
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}"


def _names(index, flagged: set[str]) -> list[str]:
    return [display_name(s, s in flagged) for s in index]


# ---------------------------------------------------------------------------------------------
# comparison curves (Fig. 3/5/6 as a table)


def curve_data(df: pd.DataFrame) -> pd.DataFrame:
    """Per series and labeled count: n seeds, mean, std, min, max of the metric in percent."""
    rows = []
    for (series, n_lab), part in df.groupby(["series", "n_labeled"], sort=True):
        rows.append({"series": series, "n_labeled": int(n_lab), **describe(part["value"] * PCT)})
    return pd.DataFrame(rows, columns=["series", "n_labeled", "n", "mean", "std", "min", "max"])


def curve_table(df: pd.DataFrame, *, metric: str, caption: str, flagged: set[str], name: str) -> Table:
    """The metric by labeled count, one row per strategy: mean ± std over seeds (percent)."""
    data = curve_data(df)
    n_max = int(data["n"].max()) if not data.empty else 0
    disp = data.assign(cell=[fmt_mean_std(r.mean, r.std, 2, int(r.n), n_max) for r in data.itertuples()])
    disp = disp.pivot(index="series", columns="n_labeled", values="cell").fillna("")
    disp.index = _names(disp.index, flagged)
    disp.index.name = "strategy"
    disp.columns = [str(c) for c in disp.columns]
    csv = data.rename(columns={"mean": f"{metric}_mean_pct", "std": f"{metric}_std_pct", "min": f"{metric}_min_pct",
                               "max": f"{metric}_max_pct"})
    return Table(name=name, title=f"{metric} (%) by labeled count, mean ± std over seeds", caption=caption,
                 data=csv, display=disp,
                 notes=[f"Columns are labeled counts; (n=k) marks cells with fewer than {n_max} seeds."])


# ---------------------------------------------------------------------------------------------
# cold start (Table 1)


def cold_start_data(df: pd.DataFrame) -> pd.DataFrame:
    """First-cycle (cycle 0) metric per series over seeds: n, n_labeled, mean, std, min, max (percent)."""
    first = df[df["cycle"] == 0]
    rows = []
    for series, part in first.groupby("series", sort=True):
        rows.append({"series": series, "n_labeled": int(part["n_labeled"].iloc[0]),
                     **describe(part["value"] * PCT)})
    return pd.DataFrame(rows, columns=["series", "n_labeled", "n", "mean", "std", "min", "max"])


def first_query_data(counts: pd.DataFrame) -> pd.DataFrame:
    """Per series, the class counts of the cold-start query over seeds.

    ``counts``: one row per (series, seed, class) with ``count`` (:func:`albench.reports.data.class_counts`
    with ``first_query=True``). Columns: series, n (seeds), per_class (mean count of each class over
    seeds, a list), min and max (the smallest and largest count of any class in any seed), missed (mean
    over seeds of the number of classes with count 0).
    """
    rows = []
    for series, part in counts.groupby("series", sort=True):
        m = part.pivot(index="seed", columns="class", values="count").fillna(0).to_numpy(dtype=float)
        rows.append({"series": series, "n": int(m.shape[0]), "per_class": m.mean(axis=0).tolist(),
                     "min": int(m.min()), "max": int(m.max()), "missed": float((m == 0).sum(axis=1).mean())})
    return pd.DataFrame(rows, columns=["series", "n", "per_class", "min", "max", "missed"])


# per-class means are listed in the table up to this many classes (beyond it only min / max and missed)
MAX_LISTED_CLASSES = 20


def cold_start_table(df: pd.DataFrame, *, metric: str, caption: str, flagged: set[str], name: str,
                     first_counts: pd.DataFrame | None = None, unit: str = "images") -> Table:
    """Table 1: the first-cycle metric per strategy, mean ± std and min / max over seeds, and, when
    ``first_counts`` is given (see :func:`first_query_data`), the class counts of the first query."""
    data = cold_start_data(df)
    disp = pd.DataFrame({
        "labeled": data["n_labeled"].astype(str).to_numpy(),
        f"mean {metric} (%)": [fmt_mean_std(r.mean, r.std) for r in data.itertuples()],
        "min / max (%)": [f"{r.min:.2f} / {r.max:.2f}" for r in data.itertuples()],
        "seeds": data["n"].astype(str).to_numpy(),
    }, index=pd.Index(_names(data["series"], flagged), name="strategy"))
    csv = data.rename(columns={"mean": f"{metric}_mean_pct", "std": f"{metric}_std_pct", "min": f"{metric}_min_pct",
                               "max": f"{metric}_max_pct"})
    notes = []
    fq = first_query_data(first_counts) if first_counts is not None and not first_counts.empty else None
    if fq is not None:
        by = {r.series: r for r in fq.itertuples()}
        n_classes = max(len(r.per_class) for r in fq.itertuples())
        listed = n_classes <= MAX_LISTED_CLASSES
        what = "labeled pixels" if unit == "pixels" else "images"

        def cell(series, fmt):
            r = by.get(series)
            if r is None:
                return ""
            n_acc = int(data.loc[data["series"] == series, "n"].iloc[0])
            return fmt(r) + (f" (n={r.n})" if r.n < n_acc else "")

        if listed:
            disp[f"first query per class ({what})"] = [
                cell(s, lambda r: " ".join(f"{x:.3g}" for x in r.per_class)) for s in data["series"]]
        disp["first query min / max"] = [cell(s, lambda r: f"{r.min} / {r.max}") for s in data["series"]]
        disp["classes missed"] = [cell(s, lambda r: f"{r.missed:.3g}") for s in data["series"]]
        csv = csv.merge(fq.assign(per_class=[" ".join(f"{x:g}" for x in v) for v in fq["per_class"]]).rename(
            columns={"n": "first_query_seeds", "per_class": "first_query_per_class_mean", "min": "first_query_min",
                     "max": "first_query_max", "missed": "first_query_classes_missed_mean"}), on="series", how="left")
        notes.append(
            f"First query: the class counts ({what}) of the cold-start query, the first al.initial labels of each "
            "complete run" + (f"; per class: classes 0..{n_classes - 1}, mean over seeds" if listed else "")
            + "; min / max: the fewest and most of any class in any seed; classes missed: classes with none, mean "
            "over seeds; (n=k) marks fewer seeds than the metric.")
    return Table(name=name, title=f"Cold start: first-cycle {metric}", caption=caption, data=csv, display=disp,
                 notes=notes)


# ---------------------------------------------------------------------------------------------
# wall-clock (Table 2)


def phases_of(df: pd.DataFrame) -> list[str]:
    """The timed phases of the runs in ``df``, in recorded order (the ``phases`` column, from run.json).

    Runs older than the field record the engine's five (:data:`albench.records.PHASES`).
    """
    if "phases" not in df or df.empty:
        return list(PHASES)
    out: list[str] = []
    for joined in df["phases"].dropna().unique():
        out += [p for p in str(joined).split(",") if p and p not in out]
    return out or list(PHASES)


def run_seconds(df: pd.DataFrame) -> pd.DataFrame:
    """Per complete run: seconds per phase summed over cycles, charged, and the total, charged and incurred.

    Columns sweep, series, strategy_name, seed, one per phase (:func:`phases_of`), total, incurred,
    cache_reused, cached_artifacts. A phase's and the total's seconds are *charged*: each run pays the
    compute time of every cached artifact it used, whether it computed the entry or reused it
    (:mod:`albench.cached`); ``incurred`` is the total the run's own clock measured. ``cache_reused``:
    whether the charge includes an entry another run computed; ``cached_artifacts``: the artifacts
    used (comma-joined). Only runs with ``complete`` True count: an unfinished run's time is not the
    method's cost. A phase a run's cycles.csv lacks counts 0 s.
    """
    phases = phases_of(df)
    done = df[df["complete"].astype(bool)]
    rows = []
    for (sweep, series, seed), part in done.groupby(["sweep", "series", "seed"], sort=True):
        rec = {"sweep": sweep, "series": series, "strategy_name": part["strategy_name"].iloc[0], "seed": int(seed)}
        extra = 0.0
        for ph in phases:
            incurred = part[f"seconds_{ph}"].fillna(0) if f"seconds_{ph}" in part else pd.Series(0.0, part.index)
            charged = part[f"seconds_{ph}_charged"].fillna(incurred) if f"seconds_{ph}_charged" in part else incurred
            rec[ph] = float(charged.sum())
            extra += float(charged.sum() - incurred.sum())
        rec["incurred"] = float(part["seconds_total"].fillna(0).sum())
        rec["total"] = rec["incurred"] + extra
        rec["cache_reused"] = bool(part["cache_reused"].fillna(False).any()) if "cache_reused" in part else False
        arts = part["cached_artifacts"].dropna() if "cached_artifacts" in part else []
        rec["cached_artifacts"] = ",".join(sorted({a for j in arts for a in str(j).split(",") if a}))
        rows.append(rec)
    return pd.DataFrame(rows, columns=["sweep", "series", "strategy_name", "seed", *phases, "total", "incurred",
                                       "cache_reused", "cached_artifacts"])


def baseline_series(df: pd.DataFrame, sweep: str) -> str | None:
    """The series of ``sweep``'s baseline among the runs in ``df``, or None.

    The baseline is the strategy label run.json designates (:func:`albench.records.pick_baseline`;
    records older than the field: the strategy named random, as reports always did).
    """
    mine = df[df["sweep"] == sweep]
    if mine.empty:
        return None
    designated = mine["baseline_designated"] if "baseline_designated" in mine else pd.Series(False, mine.index)
    recorded = mine["baseline"] if "baseline" in mine else pd.Series(None, mine.index)
    keys = {(str(lbl), str(name), bool(has), str(b) if bool(has) and isinstance(b, str) else None)
            for lbl, name, has, b in zip(mine["strategy"], mine["strategy_name"], designated, recorded)}
    label = pick_baseline(sorted(keys, key=str))
    series = sorted(mine.loc[mine["strategy"] == label, "series"].unique()) if label is not None else []
    return series[0] if series else None


def baseline_name(series: str | None) -> str:
    """How a table header and a figure name the baseline: its label, first letter capitalised ('Random')."""
    if not series:
        return "baseline"
    label = series.split("/")[-1]
    return label[:1].upper() + label[1:]


def wallclock_data(df: pd.DataFrame) -> pd.DataFrame:
    """Per series: runs, mean charged seconds per phase and in total, std of the total, the mean incurred
    total, how many runs were charged an entry another run computed, the cached artifacts used, and
    the ratio to the baseline (of charged totals; see :func:`run_seconds`).

    ``ratio_to_random`` (the name kept from when the baseline was always random) divides the mean
    total by the mean total of the same sweep's baseline series, named in ``baseline`` (see
    :func:`baseline_series`; nan and None without one among the complete runs).
    """
    phases = phases_of(df)
    per_run = run_seconds(df)
    done = df[df["complete"].astype(bool)] if not df.empty else df
    rows = []
    for series, part in per_run.groupby("series", sort=True):
        rec = {"series": series, "sweep": part["sweep"].iloc[0], "strategy_name": part["strategy_name"].iloc[0],
               "runs": int(len(part))}
        for ph in phases:
            rec[f"{ph}_s"] = float(part[ph].mean())
        rec["total_s"] = float(part["total"].mean())
        rec["total_std_s"] = float(part["total"].std(ddof=1)) if len(part) > 1 else np.nan
        rec["incurred_s"] = float(part["incurred"].mean())
        rec["cache_reused_runs"] = int(part["cache_reused"].sum())
        rec["cached_artifacts"] = ",".join(sorted({a for j in part["cached_artifacts"] for a in j.split(",") if a}))
        rows.append(rec)
    out = pd.DataFrame(rows, columns=["series", "sweep", "strategy_name", "runs", *[f"{p}_s" for p in phases],
                                      "total_s", "total_std_s", "incurred_s", "cache_reused_runs",
                                      "cached_artifacts"])
    bases = {sw: baseline_series(done, sw) for sw in out["sweep"].unique()}
    ratios = []
    for r in out.itertuples():
        base = bases[r.sweep]
        ratios.append(r.total_s / float(out.loc[out["series"] == base, "total_s"].iloc[0]) if base else np.nan)
    out["ratio_to_random"] = ratios
    out["baseline"] = [bases[sw] for sw in out["sweep"]]
    return out


def wallclock_phases(data: pd.DataFrame) -> list[str]:
    """The phases of a :func:`wallclock_data` frame, in column order."""
    return [c[:-2] for c in data.columns if c.endswith("_s") and c not in ("total_s", "total_std_s", "incurred_s")]


def wallclock_table(df: pd.DataFrame, *, caption: str, flagged: set[str], name: str) -> Table:
    """Table 2: wall-clock per run, total and per phase (mean over complete runs), and the ratio to the
    sweep's baseline (Random unless the sweep designates another)."""
    data = wallclock_data(df)
    disp = pd.DataFrame({"runs": data["runs"].astype(str).to_numpy()},
                        index=pd.Index(_names(data["series"], flagged), name="strategy"))
    for ph in wallclock_phases(data):
        disp[ph] = [fmt_duration(v) for v in data[f"{ph}_s"]]
    disp["total"] = [fmt_duration(v) + (f" ± {fmt_duration(s)}" if np.isfinite(s) else "")
                     for v, s in zip(data["total_s"], data["total_std_s"])]
    cached = data["cached_artifacts"].astype(bool)
    if cached.any():
        disp["incurred"] = [fmt_duration(v) for v in data["incurred_s"]]
    bases = sorted({b for b in data["baseline"] if b})
    labels = sorted({b.split("/")[-1] for b in bases})
    head = f"× {baseline_name(bases[0])}" if len(labels) == 1 else "× baseline"
    disp[head] = [f"{v:.2f}" if np.isfinite(v) else "" for v in data["ratio_to_random"]]
    if len(labels) == 1:
        whose = f"that of {labels[0]} in the same sweep."
    elif bases:
        whose = "that of its sweep's baseline (" + ", ".join(bases) + ")."
    else:
        whose = ("that of the sweep's baseline; blank here: no sweep has one (run.json designates none, its runs "
                 "designate different ones, or the baseline has no complete run).")
    notes = ["Seconds of wall-clock per run, summed over its cycles, mean over complete runs (± std of the total);"
             f" {head} divides the mean total by {whose}"]
    if cached.any():
        arts = sorted({a for j in data["cached_artifacts"] for a in j.split(",") if a})
        users = data.loc[cached, "series"].tolist()
        reused = data.loc[data["cache_reused_runs"] > 0]
        notes.append(
            f"Charged time: the phases and total of {', '.join(users)} include the compute time of each cached "
            f"artifact the run used ({', '.join(arts)}), whether the run computed the entry or reused it, so a "
            "method's cost does not depend on which run came first; incurred is the run's own wall-clock total "
            "(a run that reused an entry spent only the read). "
            + (f"Runs charged for an entry another run computed: {', '.join(f'{r.series} {r.cache_reused_runs} of {r.runs}' for r in reused.itertuples())}."
               if len(reused) else "No run reused an entry another run computed."))
    return Table(name=name, title="Wall-clock time per run, total and per phase", caption=caption, data=data,
                 display=disp, notes=notes)


# ---------------------------------------------------------------------------------------------
# class distribution of queried samples


def class_distribution_data(counts: pd.DataFrame) -> pd.DataFrame:
    """Per series and class: mean count over seeds and the mean fraction of the series' queries.

    ``counts``: one row per (series, seed, class) with column ``count`` (queried images of that class
    in that run, zeros included). Also returns, per series, ``balance``: the normalised entropy of the
    mean class distribution (1 = perfectly balanced, 0 = one class), repeated on each row.
    """
    rows = []
    for series, part in counts.groupby("series", sort=True):
        per_class = part.groupby("class", sort=True)["count"].mean()
        total = per_class.sum()
        frac = per_class / total if total > 0 else per_class * 0.0
        k = len(frac)
        p = frac[frac > 0].to_numpy()
        balance = float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 else 1.0
        for cls, mean in per_class.items():
            rows.append({"series": series, "class": cls, "seeds": int(part["seed"].nunique()),
                         "mean_count": float(mean), "fraction": float(frac.loc[cls]), "balance": balance})
    return pd.DataFrame(rows, columns=["series", "class", "seeds", "mean_count", "fraction", "balance"])


def class_distribution_table(counts: pd.DataFrame, *, caption: str, flagged: set[str], name: str,
                             class_names: dict | None = None, unit: str = "images") -> Table:
    """Share (%) of each class among all queried images (initial set included), mean over seeds.

    ``unit`` names what ``counts`` counts: ``images`` (classification) or ``pixels`` (the labeled
    pixels of the queried images, segmentation).
    """
    data = class_distribution_data(counts)
    class_names = class_names or {}
    pct = data.assign(cell=(data["fraction"] * PCT).map(lambda v: f"{v:.1f}"))
    disp = pct.pivot(index="series", columns="class", values="cell").fillna("")
    disp.columns = [str(class_names.get(c, c)) for c in disp.columns]
    bal = data.groupby("series", sort=True)["balance"].first()
    seeds = data.groupby("series", sort=True)["seeds"].first()
    disp["balance"] = [f"{bal.loc[s]:.3f}" for s in disp.index]
    disp["seeds"] = [str(seeds.loc[s]) for s in disp.index]
    disp.index = _names(disp.index, flagged)
    disp.index.name = "strategy"
    what = "queried images" if unit == "images" else f"labeled {unit} of the queried images"
    return Table(name=name, title=f"Class distribution of queried samples (% of each strategy's {what})",
                 caption=caption, data=data, display=disp,
                 notes=["Balance is the normalised entropy of the class shares (1 = balanced)."])


# ---------------------------------------------------------------------------------------------
# AUBC, Wilcoxon, win/tie/loss


def aubc_per_run(df: pd.DataFrame) -> pd.DataFrame:
    """AUBC (percent) of every run whose every planned cycle is recorded: columns series, seed, value.

    Runs with a partial curve are left out (their area would cover a different range).
    """
    rows = []
    for (series, seed), part in df.groupby(["series", "seed"], sort=True):
        planned = part["cycles_planned"].iloc[0]
        if planned is None or not np.isfinite(planned) or part["cycle"].nunique() != int(planned) or len(part) < 2:
            continue
        rows.append({"series": series, "seed": int(seed), "value": aubc(part["n_labeled"], part["value"]) * PCT})
    return pd.DataFrame(rows, columns=["series", "seed", "value"])


def aubc_table(df: pd.DataFrame, *, metric: str, caption: str, flagged: set[str], name: str) -> Table:
    """AUBC per strategy: mean ± std over seeds, min / max (percent)."""
    per_run = aubc_per_run(df)
    rows = [{"series": s, **describe(p["value"])} for s, p in per_run.groupby("series", sort=True)]
    data = pd.DataFrame(rows, columns=["series", "n", "mean", "std", "min", "max"])
    disp = pd.DataFrame({
        f"AUBC {metric} (%)": [fmt_mean_std(r.mean, r.std) for r in data.itertuples()],
        "min / max (%)": [f"{r.min:.2f} / {r.max:.2f}" for r in data.itertuples()],
        "seeds": data["n"].astype(str).to_numpy()},
        index=pd.Index(_names(data["series"], flagged), name="strategy"))
    return Table(name=name, title=f"Area under the budget curve ({metric})", caption=caption, data=data,
                 display=disp, notes=["AUBC: trapezoidal area under the metric vs labeled-count curve divided by "
                                      "the labeled range (the mean metric over the budget); complete runs only."])


def small_sample_note(n: int, alpha: float = ALPHA) -> str:
    """A note for tests with ``n`` pairs that cannot reach significance at ``alpha``, else ''."""
    from albench.reports.stats import min_attainable_p

    if n > 0 and min_attainable_p(n) >= alpha:
        return (f"With {n} paired seed{'s' if n != 1 else ''} the smallest two-sided p the exact Wilcoxon test can "
                f"reach is {min_attainable_p(n):.3g} ≥ α = {alpha}: no difference can be significant, so every "
                "outcome is a tie; p values are reported anyway (6 or more seeds are needed).")
    return ""


def wilcoxon_table(df: pd.DataFrame, *, caption: str, flagged: set[str], name: str, alpha: float = ALPHA) -> Table:
    """Paired Wilcoxon signed-rank tests on AUBC between every pair of strategies."""
    data = pairwise_tests(aubc_per_run(df), alpha=alpha)
    disp = pd.DataFrame({
        "B": _names(data["b"], flagged),
        "seeds": data["n"].astype(str).to_numpy(),
        "mean A − B (pp)": [f"{v:+.2f}" if np.isfinite(v) else "" for v in data["mean_diff"]],
        "W": [f"{v:g}" if np.isfinite(v) else "" for v in data["statistic"]],
        "p": [fmt_p(v) for v in data["pvalue"]],
        "min. p": [fmt_p(v) for v in data["min_p"]],
        "A vs B": data["outcome"].to_numpy()},
        index=pd.Index(_names(data["a"], flagged), name="A"))
    notes = [f"Two-sided paired Wilcoxon signed-rank test on per-seed AUBC (seed s of A with seed s of B), "
             f"zero differences dropped; win/loss when p < α = {alpha}; 'min. p' is the smallest p attainable "
             "with that many non-zero differences."]
    n_min = int(data["n"].min()) if not data.empty else 0
    note = small_sample_note(n_min, alpha)
    if note:
        notes.append(note)
    return Table(name=name, title="Paired Wilcoxon tests on AUBC", caption=caption, data=data, display=disp,
                 notes=notes)


def win_tie_loss_table(df: pd.DataFrame, *, caption: str, flagged: set[str], name: str,
                       alpha: float = ALPHA) -> tuple[Table, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """Row strategy vs column strategy: wins / ties / losses over labeled counts (paired Wilcoxon per count)."""
    frame = df[["series", "seed", "n_labeled", "value"]]
    wins, ties, losses = win_tie_loss(frame, by="n_labeled", alpha=alpha)
    cells = pd.DataFrame("", index=wins.index, columns=wins.columns)
    rows = []
    for a in wins.index:
        for b in wins.columns:
            if a == b:
                cells.loc[a, b] = "–"
                continue
            cells.loc[a, b] = f"{wins.loc[a, b]}/{ties.loc[a, b]}/{losses.loc[a, b]}"
            rows.append({"a": a, "b": b, "wins": int(wins.loc[a, b]), "ties": int(ties.loc[a, b]),
                         "losses": int(losses.loc[a, b])})
    cells.index = _names(cells.index, flagged)
    cells.index.name = "A \\ B"
    cells.columns = _names(cells.columns, flagged)
    data = pd.DataFrame(rows, columns=["a", "b", "wins", "ties", "losses"])
    n_pairs = int(df.groupby("n_labeled")["seed"].nunique().min()) if not df.empty else 0
    notes = [f"Cell = wins/ties/losses of the row strategy against the column strategy over the "
             f"{df['n_labeled'].nunique()} labeled counts; at each count a two-sided paired Wilcoxon test over "
             f"seeds, win/loss when p < α = {alpha} (sign of the mean difference)."]
    note = small_sample_note(n_pairs, alpha)
    if note:
        notes.append(note)
    table = Table(name=name, title="Win / tie / loss matrix", caption=caption, data=data, display=cells, notes=notes)
    return table, (wins, ties, losses)


def mean_paired_difference(df: pd.DataFrame) -> pd.DataFrame:
    """Matrix [A, B]: mean of A - B (percentage points) over the (labeled count, seed) pairs both have."""
    wide = df.pivot_table(index=["n_labeled", "seed"], columns="series", values="value", aggfunc="first") * PCT
    series = sorted(wide.columns)
    out = pd.DataFrame(np.nan, index=series, columns=series)
    for a in series:
        for b in series:
            if a != b:
                d = (wide[a] - wide[b]).dropna()
                out.loc[a, b] = float(d.mean()) if len(d) else np.nan
    return out


# ---------------------------------------------------------------------------------------------
# Spearman (Fig. 2)


def spearman_table(per_run: pd.DataFrame, *, caption: str, flagged: set[str], name: str) -> Table:
    """Spearman's rho between pretext and main-task test loss: per strategy, mean ± std over runs.

    ``per_run``: columns series, seed, rho, n_test.
    """
    rows = [{"series": s, **describe(p["rho"]), "n_test": int(p["n_test"].iloc[0])}
            for s, p in per_run.groupby("series", sort=True)]
    data = pd.DataFrame(rows, columns=["series", "n", "mean", "std", "min", "max", "n_test"])
    disp = pd.DataFrame({
        "ρ": [fmt_mean_std(r.mean, r.std, 3) for r in data.itertuples()],
        "min / max": [f"{r.min:.3f} / {r.max:.3f}" for r in data.itertuples()],
        "seeds": data["n"].astype(str).to_numpy(),
        "test images": data["n_test"].astype(str).to_numpy()},
        index=pd.Index(_names(data["series"], flagged), name="strategy"))
    return Table(name=name, title="Spearman's ρ between pretext-task and main-task test loss", caption=caption,
                 data=data, display=disp,
                 notes=["ρ on the full test set, main-task loss of the final cycle's model."])
