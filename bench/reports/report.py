"""``albench report``: every figure and table of a results folder, plus an index listing them.

Per dataset it writes (figures as PNG + PDF under ``figures/``, tables as Markdown + LaTeX + CSV
under ``tables/``):

- ``curves-<ds>``: metric vs labeled count, mean ± std over seeds (figure and table; paper Fig. 3/5/6)
- ``label-efficiency-<ds>``: labels to reach each ``--reach`` threshold, on the mean curve and per seed,
  first count and interpolated (table; Gal et al. 2017's Table 1), and ``error-curves-<ds>``: test error
  vs acquired images with the thresholds marked (figure; their Fig. 1); written only when thresholds
  are given
- ``cold-start-<ds>``: first-cycle metric, mean ± std, min / max (table; paper Table 1)
- ``wallclock-<ds>``: wall-clock per run, total and per phase, ratio to the sweep's baseline (Random
  unless run.json designates another) (figure, table; Table 2)
- ``class-distribution-<ds>``: class shares of the queried images (figure, table)
- ``aubc-<ds>``, ``wilcoxon-<ds>``, ``win-tie-loss-<ds>``: area under the budget curve, paired
  Wilcoxon tests and the win / tie / loss matrix (beyond the paper)
- ``spearman-<ds>``: pretext vs main-task loss ranks and rho (figure, table; paper Fig. 2), for
  runs that record ``pretext_loss_test``
- ``tsne-<ds>``: t-SNE of final-model embeddings with queried points (figure; paper Fig. 4)
- ``quirk-impact-<ds>-<strategy>``: for a strategy entry with ``ablate: quirks``, the paired
  difference official − official without each quirk by labeled count and AUBC, with bootstrap CI and
  Wilcoxon p, and the first query's class counts (table, figure; see :mod:`albench.reports.quirk_impact`)

An artefact whose inputs the records lack is skipped with the reason in ``index.md``; missing and
unfinished runs are listed there too. ``index.md`` and ``report.json`` list every artefact with
its caption.
"""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

import albench
from albench.errors import ConfigError
from albench.records import atomic_write_json, atomic_write_text, run_id
from albench.reports import figures as figs
from albench.reports import tables as tabs
from albench.reports.data import Missing, Run, Sweep, class_counts, find_missing, load_sweep_runs
from albench.reports.output import Table, save_figure, write_table
from albench.reports.provenance import DAGGER, FLAG_MEANING, flagged_series, provenance
from albench.reports.stats import ALPHA, spearman_rho
from albench.reports.tsne import DEFAULT_POINTS


@dataclass
class Artefact:
    """One figure or table of the report and the files it was written to."""

    kind: str  # figure | table
    name: str
    dataset: str
    title: str
    caption: str
    files: list[Path]


@dataclass
class Skipped:
    what: str
    dataset: str
    reason: str


@dataclass
class ReportIndex:
    """What ``build_report`` wrote, skipped and found missing."""

    out: Path
    artefacts: list[Artefact] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "x"


class _Writer:
    def __init__(self, out: Path, index: ReportIndex, log: Callable[[str], None]) -> None:
        self.out, self.index, self.log = out, index, log

    def table(self, table: Table, dataset: str) -> None:
        files = write_table(table, self.out / "tables")
        self.index.artefacts.append(Artefact("table", table.name, dataset, table.title, table.full_caption(), files))
        self.log(f"table  {table.name}")

    def figure(self, fig, name: str, dataset: str, title: str, caption: str) -> None:
        files = save_figure(fig, self.out / "figures", name)
        self.index.artefacts.append(Artefact("figure", name, dataset, title, caption, files))
        self.log(f"figure {name}")

    def skip(self, what: str, dataset: str, reason: str) -> None:
        self.index.skipped.append(Skipped(what, dataset, reason))
        self.log(f"skip   {what} ({dataset}): {reason}")


def _caption(runs: list[Run], extra: str = "") -> str:
    return (provenance(runs).text() + (" " + extra if extra else "")).strip()


def _class_names(runs: list[Run]) -> dict:
    """{class id: name}: as run.json records them (``classes``; ``dataset_info.classes`` in older
    records), else as the dataset's loader names them when they are fixed (Fashion-MNIST, CIFAR-10),
    else {} (the ids are shown)."""
    for r in runs:
        names = r.identity.get("classes") or (r.identity.get("dataset_info") or {}).get("classes")
        if isinstance(names, list) and names:
            return {i: str(n) for i, n in enumerate(names)}
    from albench.data.registry import dataset_names, get_dataset

    for r in runs:
        if r.dataset in dataset_names() and get_dataset(r.dataset).class_names:
            return {i: str(n) for i, n in enumerate(get_dataset(r.dataset).class_names)}
    return {}


def _spearman_panels(runs: list[Run]) -> tuple[list[dict], pd.DataFrame, list[str]]:
    """Panels (lowest seed per series) and per-run rho of runs recording both test losses; problems."""
    per_run, panels, problems = [], {}, []
    for r in sorted(runs, key=lambda r: (r.series, r.seed)):
        pre = r.artifact("pretext_loss_test")
        if pre is None:
            continue
        main = r.artifact("test_loss")
        if main is None or main.ndim != 2 or main.shape[1] != len(pre):
            problems.append(f"{r.series} seed {r.seed}: test_loss missing or not (cycles, {len(pre)})")
            continue
        last = main[-1].astype(float)
        rho = spearman_rho(pre, last)
        per_run.append({"series": r.series, "seed": r.seed, "rho": rho, "n_test": int(len(pre))})
        panels.setdefault(r.series, {"series": r.series, "seed": r.seed, "main": last, "pretext": pre, "rho": rho})
    return list(panels.values()), pd.DataFrame(per_run, columns=["series", "seed", "rho", "n_test"]), problems


def _quirk_impact(w: _Writer, df: pd.DataFrame, runs: list[Run], complete: list[Run], dataset: str, *,
                  metric: str, flagged: set[str], alpha: float) -> None:
    """One table and one figure per strategy entry ablated with ``ablate: quirks`` (see
    :mod:`albench.reports.quirk_impact`)."""
    from albench.reports import quirk_impact as qi

    ablations = qi.find_ablations(runs)
    several = len({a.sweep for a in ablations}) > 1
    for abl in ablations:
        what = f"quirk impact of {abl.name}"
        if abl.top is None:
            w.skip(what, dataset, f"no run of its '{abl.top_name}' variant (every quirk on) has started")
            continue
        mine = abl.runs()
        dirs = {r.dir for r in mine}
        counts, unit = class_counts([r for r in complete if r.dir in dirs], first_query=True)
        data = qi.quirk_impact_data(df[df["series"].isin(abl.series_runs)], abl, counts)
        if data.empty:
            w.skip(what, dataset, "no seed has finished a cycle in both the variant with every quirk and a variant "
                                  "without one")
            continue
        used = [r for r in mine if r.series in set(data["with_series"]) | set(data["without_series"])]
        cap = _caption(used)
        name = f"quirk-impact-{slug(dataset)}-{slug(abl.name if several else abl.of)}"
        t = qi.quirk_impact_table(data, abl, metric=metric, caption=cap, flagged=flagged, name=name, alpha=alpha,
                                  unit=unit)
        w.table(t, dataset)
        w.figure(qi.quirk_impact_figure(data, abl, metric=metric, dataset=dataset, caption=t.full_caption(),
                                        flagged=flagged, alpha=alpha),
                 name, dataset, f"quirk impact of {abl.name} by labeled count", t.full_caption())


def _report_dataset(w: _Writer, sweep: Sweep, dataset: str, missing: list[Missing], *, tsne_max: int,
                    tsne_threads: int | None, alpha: float, tsne_jobs: int | None = None,
                    reach: tuple[float, ...] = ()) -> None:
    runs = sweep.runs_of(dataset)
    df = sweep.cycles(dataset)
    ds = slug(dataset)
    if df.empty:
        w.skip("every figure and table", dataset, "no run of this dataset has finished a cycle yet")
        return
    metric = next((r.metric for r in runs if r.rows), "metric")
    flagged = flagged_series(runs)
    baselines = {tabs.baseline_series(df, sw) for sw in df["sweep"].unique()} - {None}
    styles = figs.style_map(sorted(df["series"].unique()), baselines=baselines)
    n_missing = sum(1 for m in missing if m.dataset == dataset)
    partial = (f"Partial sweep: {n_missing} run(s) of this dataset are absent or unfinished (see the index)."
               if n_missing else "")
    with_rows = [r for r in runs if r.rows]
    complete = [r for r in runs if r.complete and r.rows]

    # curves ---------------------------------------------------------------------------------
    cap = _caption(with_rows, partial + (" Unfinished runs contribute the cycles they recorded." if partial else ""))
    w.table(tabs.curve_table(df, metric=metric, caption=cap, flagged=flagged, name=f"curves-{ds}"), dataset)
    w.figure(figs.curves_figure(tabs.curve_data(df), metric=metric, dataset=dataset, caption=cap, flagged=flagged,
                                styles=styles),
             f"curves-{ds}", dataset, f"{metric} vs labeled count", cap)

    # labels to reach a threshold (Gal et al. 2017's Table 1) ----------------------------------
    if reach:
        from albench.reports.efficiency import efficiency_table

        cap = _caption(with_rows, partial + (" Unfinished runs contribute the cycles they recorded." if partial
                                             else ""))
        w.table(efficiency_table(df, thresholds=list(reach), metric=metric, caption=cap, flagged=flagged,
                                 name=f"label-efficiency-{ds}"), dataset)  # opt-in: only with --reach
        initials = {int((r.config.get("al") or {}).get("initial") or 0) for r in with_rows}
        initial = initials.pop() if len(initials) == 1 else None
        fig_cap = cap + (f" Acquired images: labels minus the {initial} initial ones." if initial is not None else
                         " The runs start from different initial sets: labeled images on the x axis.")
        w.figure(figs.error_curves_figure(tabs.curve_data(df), metric=metric, dataset=dataset, caption=fig_cap,
                                          flagged=flagged, styles=styles, thresholds=list(reach), initial=initial),
                 f"error-curves-{ds}", dataset, "test error vs acquired images", fig_cap)

    # cold start -----------------------------------------------------------------------------
    first = [r for r in with_rows if any(int(row["cycle"]) == 0 for row in r.rows)]
    first_counts, first_unit = class_counts(complete, first_query=True)
    w.table(tabs.cold_start_table(df, metric=metric, caption=_caption(first), flagged=flagged,
                                  name=f"cold-start-{ds}", first_counts=first_counts, unit=first_unit), dataset)

    # wall-clock -----------------------------------------------------------------------------
    if complete:
        cap = _caption(complete, "Complete runs only.")
        t = tabs.wallclock_table(df, caption=cap, flagged=flagged, name=f"wallclock-{ds}")
        w.table(t, dataset)
        w.figure(figs.wallclock_figure(t.data, dataset=dataset, caption=t.full_caption(), flagged=flagged),
                 f"wallclock-{ds}", dataset, "wall-clock per run by phase", t.full_caption())
    else:
        w.skip("wall-clock table and figure", dataset, "no complete run")

    # class distribution ---------------------------------------------------------------------
    counts, unit = class_counts(complete)
    if counts.empty:
        w.skip("class distribution", dataset, "no complete run recorded labeled_targets or labeled_class_pixels")
    else:
        names = _class_names(runs)
        used = [r for r in complete if r.series in set(counts["series"])]
        what = "All queried images, initial set included" if unit == "images" else \
            "Labeled pixels of all queried images, initial set included"
        cap = _caption(used, f"{what}; complete runs only.")
        t = tabs.class_distribution_table(counts, caption=cap, flagged=flagged, name=f"class-distribution-{ds}",
                                          class_names=names, unit=unit)
        w.table(t, dataset)
        w.figure(figs.class_distribution_figure(t.data, dataset=dataset, caption=cap, flagged=flagged,
                                                styles=styles, class_names=names, unit=unit),
                 f"class-distribution-{ds}", dataset, "class distribution of queried samples", cap)

    # AUBC, Wilcoxon, win/tie/loss -------------------------------------------------------------
    per_run = tabs.aubc_per_run(df)
    if per_run.empty:
        w.skip("AUBC, Wilcoxon tests", dataset, "no run has recorded every planned cycle (need >= 2 cycles)")
    else:
        used = [r for r in runs if (r.series, r.seed) in set(zip(per_run["series"], per_run["seed"]))]
        cap = _caption(used, "Runs with every planned cycle only.")
        w.table(tabs.aubc_table(df, metric=metric, caption=cap, flagged=flagged, name=f"aubc-{ds}"), dataset)
        w.figure(figs.aubc_figure(per_run, metric=metric, dataset=dataset, caption=cap, flagged=flagged,
                                  styles=styles), f"aubc-{ds}", dataset, "area under the budget curve", cap)
        if per_run["series"].nunique() >= 2:
            w.table(tabs.wilcoxon_table(df, caption=cap, flagged=flagged, name=f"wilcoxon-{ds}", alpha=alpha),
                    dataset)
        else:
            w.skip("Wilcoxon tests", dataset, "fewer than two strategies with complete runs")
    if df["series"].nunique() >= 2:
        cap = _caption(with_rows, partial)
        t, (wins, ties, losses) = tabs.win_tie_loss_table(df, caption=cap, flagged=flagged,
                                                          name=f"win-tie-loss-{ds}", alpha=alpha)
        w.table(t, dataset)
        mean_diff = tabs.mean_paired_difference(df)
        w.figure(figs.win_tie_loss_figure(wins, ties, losses, dataset=dataset, mean_diff=mean_diff,
                                          caption=t.full_caption() + " Colour and second line: mean paired difference "
                                          "row − column over seeds and labeled counts (percentage points); framed "
                                          "cells hold at least one significant win or loss.",
                                          flagged=flagged),
                 f"win-tie-loss-{ds}", dataset, "win / tie / loss matrix", t.full_caption())
    else:
        w.skip("win / tie / loss matrix", dataset, "fewer than two strategies")

    # quirk impact (ablate: quirks) -------------------------------------------------------------------
    _quirk_impact(w, df, runs, complete, dataset, metric=metric, flagged=flagged, alpha=alpha)

    # Spearman (Fig. 2) ---------------------------------------------------------------------------
    panels, rhos, problems = _spearman_panels(complete)
    if not panels:
        why = "no complete run records pretext_loss_test (PT4AL's per-test-image pretext loss)"
        w.skip("Spearman figure and table", dataset, why + ("; " + "; ".join(problems) if problems else ""))
    else:
        used = [r for r in complete if (r.series, r.seed) in set(zip(rhos["series"], rhos["seed"]))]
        cap = _caption(used, "Main-task loss of each run's final-cycle model on the test set; pretext loss of its "
                             "pretext model on the test set; one panel per strategy (lowest seed); at most 1,000 "
                             "random test images shown, ρ on all of them.")
        w.table(tabs.spearman_table(rhos, caption=cap, flagged=flagged, name=f"spearman-{ds}"), dataset)
        w.figure(figs.spearman_figure(panels, dataset=dataset, caption=cap, flagged=flagged),
                 f"spearman-{ds}", dataset, "pretext vs main-task loss ranks", cap)

    # t-SNE (Fig. 4) ------------------------------------------------------------------------------
    from albench.reports.tsne import tsne_figure, tsne_input, tsne_panels

    inputs, used = [], []
    for series in sorted({r.series for r in complete}):
        for r in sorted((r for r in complete if r.series == series), key=lambda r: r.seed):
            pts = tsne_input(r, max_points=tsne_max, seed=0)
            if pts is not None:
                inputs.append(pts)
                used.append(r)
                break
    tsne_panels(inputs, seed=0, threads=tsne_threads, jobs=tsne_jobs)
    if not inputs:
        w.skip("t-SNE figure", dataset, "no complete run recorded embeddings (record.embeddings: 0?)")
    else:
        lo, hi = min(p["n_embedded"] for p in inputs), max(p["n_embedded"] for p in inputs)
        recorded = f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"
        cap = _caption(used, f"One panel per strategy: its lowest-seed complete run; t-SNE (scikit-learn, PCA init, "
                             f"random_state 0) of at most {tsne_max:,} embeddings of that run's final-cycle model (a "
                             f"seeded random subset of the {recorded} recorded), up to two thirds of them images "
                             "queried at the marked cycles. Each panel is its own model's feature space (the paper "
                             "embeds all strategies with one fully trained model).")
        w.figure(tsne_figure(inputs, dataset=dataset, caption=cap, flagged=flagged),
                 f"tsne-{ds}", dataset, "t-SNE of queried images", cap)


def build_report(results_dir: str | Path, out: str | Path, *, expected: list[tuple[str, str, str, int]] | None = None,
                 tsne_max: int = DEFAULT_POINTS, tsne_threads: int | None = 1, alpha: float = ALPHA,
                 log: Callable[[str], None] = lambda m: None, tsne_jobs: int | None = None,
                 reach: tuple[float, ...] = (), only: tuple[str, ...] = ()) -> ReportIndex:
    """Write every figure and table of the runs under ``results_dir`` into ``out``; return the index.

    ``expected`` (sweep, dataset, strategy label, seed) lists planned runs so absent ones are named;
    without it the plan is inferred from the runs present (see :func:`find_missing`). ``tsne_max``
    caps the points per t-SNE panel; ``tsne_threads`` caps its threads (None: library default);
    ``tsne_jobs`` panels are embedded at a time, in worker processes (None: the usable cores).
    ``reach``: metric thresholds in percent for the label-efficiency table and figure (none: skipped).
    ``only``: globs over run ids (``dataset/strategy/seed-N``); the report covers the matching runs
    alone, and ``expected`` is restricted the same way (ConfigError naming ``--only`` when a glob
    matches no run).
    """
    import matplotlib

    matplotlib.use("Agg")
    sweep = load_sweep_runs(results_dir)
    if only:
        try:
            sweep = sweep.only(only)
        except ValueError as exc:
            raise ConfigError("--only", str(exc), "use a glob over run ids such as '*/bald/*' or 'mnist/*/seed-0'") from exc
        if expected is not None:
            expected = [e for e in expected if any(fnmatch.fnmatchcase(run_id(*e[1:]), p) for p in only)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = ReportIndex(out=out, missing=find_missing(sweep, expected), unreadable=sweep.unreadable)
    w = _Writer(out, index, log)
    for dataset in sweep.datasets:
        _report_dataset(w, sweep, dataset, index.missing, tsne_max=tsne_max, tsne_threads=tsne_threads, alpha=alpha,
                        tsne_jobs=tsne_jobs, reach=tuple(reach))
    write_index(index, sweep)
    return index


# ---------------------------------------------------------------------------------------------
# index


def _rel(p: Path, out: Path) -> str:
    try:
        return str(p.relative_to(out))
    except ValueError:
        return str(p)


def write_index(index: ReportIndex, sweep: Sweep) -> None:
    """Write ``index.md`` (human) and ``report.json`` (machine) into the report folder."""
    out = index.out
    lines = [f"# albench report: {sweep.root}", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by albench {albench.__version__} from "
             f"{len(sweep.runs)} run(s): {sum(r.complete for r in sweep.runs)} complete.", ""]
    if sweep.selected:
        lines += [f"Restricted to the runs whose id matches {' or '.join(f'`{p}`' for p in sweep.selected)} "
                  "(`--only`); the folder's other runs are left out of every table and figure.", ""]
    lines += ["## Missing or unfinished runs", ""]
    if index.missing:
        lines += [f"- {m.line()}" for m in index.missing]
    else:
        lines.append("None: every run of the (inferred) plan is complete.")
    if index.unreadable:
        lines += [f"- unreadable run folder {d}: {err}" for d, err in index.unreadable]
    lines.append("")
    for dataset in sweep.datasets:
        lines += [f"## {dataset}", ""]
        for a in (a for a in index.artefacts if a.dataset == dataset):
            links = " · ".join(f"[{p.suffix[1:]}]({_rel(p, out)})" for p in a.files)
            lines += [f"### {a.kind.capitalize()} `{a.name}`: {a.title}", "", links, ""]
            png = next((p for p in a.files if p.suffix == ".png"), None)
            if png is not None:
                lines += [f"![{a.title}]({_rel(png, out)})", ""]
            lines += [a.caption, ""]
        skipped = [s for s in index.skipped if s.dataset == dataset]
        if skipped:
            lines += ["### Skipped", ""] + [f"- {s.what}: {s.reason}" for s in skipped] + [""]
    lines += ["## Definitions", "",
              "- Metric values are test-set metrics in percent; ± is the sample standard deviation over seeds.",
              "- AUBC: trapezoidal area under the metric vs labeled-count curve divided by the labeled range "
              "(the mean metric over the budget); only runs with every planned cycle.",
              f"- Wilcoxon: two-sided paired signed-rank test over shared seeds, zero differences dropped; "
              f"win/loss when p < α = {ALPHA}. With n non-zero differences the exact test cannot go below "
              "p = 2/2^n (0.25 for 3 seeds, 0.0625 for 5): with fewer than 6 seeds every outcome is a tie.",
              "- Win/tie/loss matrix: one paired Wilcoxon test per labeled count; cell = W/T/L of row vs column.",
              "- Quirk impact (strategies ablated with 'ablate: quirks'): official − (official without the row's "
              "quirks), paired by seed, in percentage points, per labeled count and for the AUBC; mean, 95% "
              "percentile bootstrap CI of the mean over seeds (10,000 resamples, generator seed 0), two-sided exact "
              "Wilcoxon signed-rank p; a positive difference means the quirk raises the metric.",
              "- Wall-clock: seconds summed over a run's cycles, mean over complete runs, charged: each run pays "
              "the compute time of every cached artifact it used (pretext losses, a representation), whether it "
              "computed the entry or reused it; 'incurred' is the run's own clock; × Random divides by the mean total of the "
              "sweep's baseline (the strategy label run.json names; random unless the sweep's config sets "
              "'baseline').",
              f"- {DAGGER} marks strategies whose runs carry flags: "
              + "; ".join(f"{k}: {v}" for k, v in FLAG_MEANING.items()) + ".", ""]
    atomic_write_text(out / "index.md", "\n".join(lines))
    atomic_write_json(out / "report.json", {
        "results_dir": str(sweep.root), "albench": albench.__version__,
        "artefacts": [{"kind": a.kind, "name": a.name, "dataset": a.dataset, "title": a.title, "caption": a.caption,
                       "files": [_rel(p, out) for p in a.files]} for a in index.artefacts],
        "skipped": [vars(s) for s in index.skipped],
        "missing": [vars(m) for m in index.missing],
        "unreadable": [[str(d), e] for d, e in index.unreadable],
    })
