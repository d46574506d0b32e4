"""The summary table of a sweep: strategy x labeled count, mean +- std over seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from albench.reports.data import Sweep
from albench.reports.tables import fmt_mean_std


def summary_table(df: pd.DataFrame, scale: float = 100.0) -> dict[str, pd.DataFrame]:
    """{dataset: table} with one row per strategy and one column per labeled count.

    Cells read ``mean ± std (n)`` of the metric over seeds, times ``scale`` (100: percent); ``n`` is
    shown only where fewer seeds than the most any cell has, and a one-seed cell shows its value
    alone (a sample std needs two). Strategies carrying flags (e.g.
    best-on-test selection) get a '†' after their name.
    """
    tables = {}
    if df.empty:
        return tables
    for dataset, part in df.groupby("dataset", sort=True):
        g = part.groupby(["strategy", "n_labeled"])["value"]
        stats = pd.DataFrame({"mean": g.mean() * scale, "std": g.std(ddof=1) * scale, "n": g.count()})
        n_max = int(stats["n"].max())
        cells = stats.apply(lambda r: fmt_mean_std(r["mean"], r["std"], 2, int(r["n"]), n_max), axis=1)
        table = cells.unstack("n_labeled").fillna("")
        flagged = set(part.loc[part["flags"].fillna("") != "", "strategy"])
        table.index = [f"{s} †" if s in flagged else s for s in table.index]
        table.index.name = "strategy"
        table.columns.name = "n_labeled"
        tables[str(dataset)] = table
    return tables


def format_summary(df: pd.DataFrame) -> str:
    """Printable summary of every dataset in ``df`` (metric in percent)."""
    tables = summary_table(df)
    if not tables:
        return "no finished cycles yet"
    blocks = []
    for dataset, table in tables.items():
        part = df[df["dataset"] == dataset]
        metric = part["metric"].dropna().iloc[0] if part["metric"].notna().any() else "metric"
        seeds = part.groupby("strategy")["seed"].nunique()
        head = (f"{dataset}: {metric} (%) by labeled count, mean ± std over {seeds.max()} seed(s) "
                f"(seeds {fmt_seeds(part['seed'].unique())})")
        protos = sorted(set(part["protocol"].dropna()))
        if protos:
            head += f"; protocol {', '.join(protos)}"
        lines = [head, table.to_string()]
        if table.index.str.endswith("†").any():
            flags = sorted({f for fl in part["flags"].dropna() for f in fl.split(",") if f})
            lines.append(f"† flagged runs: {', '.join(flags)} (not comparable to unflagged numbers)")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def fmt_seeds(seeds) -> str:
    """Sorted seeds, runs of consecutive ones as ``a-b``: ``0-4, 7``."""
    vals = sorted({int(s) for s in seeds})
    parts, i = [], 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        parts.append(str(vals[i]) if j == i else f"{vals[i]}, {vals[j]}" if j == i + 1 else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ", ".join(parts)


def sweep_summary(sweep: Sweep, run_dirs: set[Path] | None = None) -> str:
    """:func:`format_summary` of ``sweep`` (only the runs in ``run_dirs`` when given); run folders that
    could not be read are in ``sweep.unreadable`` for the caller to name."""
    df = sweep.cycles()
    if run_dirs is not None and not df.empty:
        df = df[df["run_dir"].map(lambda d: Path(d) in run_dirs)]
    return format_summary(df)
