"""The caption every figure and table carries: protocol and quirks, flags, scale, hardware, software.

A number in a paper is only as good as the statement of what produced it. Each report artefact
states, for the runs it draws on: the protocol (``paper`` or ``official``) and the quirks that were
on, per strategy when they differ; the flags (e.g. ``best-on-test``, marked with a dagger wherever
the strategy is named); the scale (model, epochs, AL schedule, seeds); and the hardware and
software the runs executed on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from albench.reports.data import Run

DAGGER = "†"
FLAG_MEANING = {
    "best-on-test": "the reported number was selected on the test set (best epoch on test)",
}


def flag_meaning(flag: str, quirk_docs: dict[str, str] | None = None) -> str:
    """What ``flag`` means: the harness's own wording, else the doc of the quirk of that name as the
    runs recorded it (run.json ``quirk_docs``), else a generic phrase (runs older than that field)."""
    if flag in FLAG_MEANING:
        return FLAG_MEANING[flag]
    doc = (quirk_docs or {}).get(flag)
    return doc if doc else "a flagged protocol switch"


def display_name(series: str, flagged: bool) -> str:
    """The series name as tables and legends show it: with a dagger when its runs carry flags."""
    return f"{series} {DAGGER}" if flagged else series


def flagged_series(runs: list[Run]) -> set[str]:
    """Series any of whose runs carries a flag."""
    return {r.series for r in runs if r.flags}


def _join(items) -> str:
    items = list(items)
    return ", ".join(items) if items else "none"


def _protocol_part(runs: list[Run]) -> str:
    by_series: dict[str, tuple[str, tuple[str, ...]]] = {}
    mixed = set()
    for r in runs:
        key = (r.protocol, tuple(r.quirks))
        if r.series in by_series and by_series[r.series] != key:
            mixed.add(r.series)
        by_series.setdefault(r.series, key)
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for s, key in sorted(by_series.items()):
        groups.setdefault(key, []).append(s)
    if len(groups) == 1:
        (proto, quirks), = groups
        text = f"Protocol: {proto}" + (f" with quirks {_join(quirks)}" if quirks else " (no quirks)")
    else:
        parts = []
        for (proto, quirks), series in groups.items():
            q = f" with quirks {_join(quirks)}" if quirks else " (no quirks)"
            parts.append(f"{proto}{q} for {_join(series)}")
        text = "Protocols: " + "; ".join(parts)
    if mixed:
        text += f" (runs of {_join(sorted(mixed))} differ in protocol or quirks)"
    return text + "."


def _flags_part(runs: list[Run]) -> str:
    flags: dict[str, set[str]] = {}
    for r in runs:
        for f in r.flags:
            flags.setdefault(f, set()).add(r.series)
    if not flags:
        return ""
    # a quirk flag and the harness flag it implies (best_on_test -> best-on-test) are one statement
    for f in list(flags):
        twin = f.replace("_", "-")
        if twin != f and twin in flags:
            flags[twin] |= flags.pop(f)
    parts = []
    for f, series in sorted(flags.items()):
        docs = {k: v for r in sorted(runs, key=lambda r: (r.series, r.seed)) if f in r.flags
                for k, v in r.quirk_docs.items()}
        meaning = flag_meaning(f, docs)
        parts.append(f"{DAGGER} {f} ({_join(sorted(series))}): {meaning}; not comparable with unflagged numbers")
    return " ".join(p + "." for p in parts)


def _scale_part(runs: list[Run]) -> str:
    scales = Counter()
    for r in runs:
        s = r.scale()
        scales[(s["model"], s["epochs"], s["min_steps"], s["batch_size"], s["initial"], s["budget"],
                s["cycles"])] += 1
    parts = []
    for (model, epochs, min_steps, bs, init, budget, cycles), _ in sorted(scales.items(), key=lambda kv: -kv[1]):
        sched = f"{init} initial + {budget} x {None if cycles is None else cycles - 1} labels ({cycles} cycles)"
        # with min_steps a small labeled set trains longer than train.epochs (cycles.csv has each cycle's epochs)
        length = f"{epochs} epochs" + (f" or more, at least {min_steps} optimizer steps a cycle" if min_steps else "")
        parts.append(f"{model}, {length}, batch {bs}, {sched}")
    seeds = Counter(r.series for r in runs)
    lo, hi = (min(seeds.values()), max(seeds.values())) if seeds else (0, 0)
    n = (f"{hi} seed{'s' if hi != 1 else ''} per strategy" if lo == hi
         else f"{lo}-{hi} seeds per strategy")
    return f"Scale: {'; '.join(parts) or 'unknown'}; {n}."


def _hardware_part(runs: list[Run]) -> str:
    hw = Counter()
    sw = Counter()
    git = Counter()
    for r in runs:
        env = r.env or {}
        dev = str(env.get("device", "?"))
        kind = "GPU" if dev.startswith("cuda") else ("CPU" if dev == "cpu" else dev)
        threads = env.get("threads")
        extra = f", {threads} thread{'s' if threads != 1 else ''}" if kind == "CPU" and threads else ""
        hw[f"{env.get('device_name', 'unknown device')} ({kind}{extra})"] += 1
        cuda = f", CUDA {env['cuda']}" if env.get("cuda") and kind == "GPU" else ""
        sw[f"torch {env.get('torch', '?')}{cuda}"] += 1
        g = env.get("git") or {}
        sha = (g.get("sha") or "")[:7] or "unknown"
        git[f"{sha}{' (dirty)' if g.get('dirty') else ''}{' (archive)' if g.get('source') == 'archive' else ''}"] += 1
    hw_text = "; ".join(f"{n} run{'s' if n != 1 else ''} on {h}" for h, n in hw.most_common())
    return (f"Hardware: {hw_text or 'unknown'}. Software: {_join(s for s, _ in sw.most_common())}; "
            f"albench git {_join(g for g, _ in git.most_common())}.")


@dataclass
class Provenance:
    """The statement of what produced a figure's or table's numbers."""

    protocol: str
    flags: str
    scale: str
    hardware: str
    n_runs: int

    def text(self) -> str:
        """One paragraph, as printed under figures and above tables."""
        return " ".join(p for p in (self.protocol, self.flags, self.scale, self.hardware) if p)


def provenance(runs: list[Run]) -> Provenance:
    """The provenance of ``runs`` (those a figure or table draws on)."""
    return Provenance(protocol=_protocol_part(runs), flags=_flags_part(runs), scale=_scale_part(runs),
                      hardware=_hardware_part(runs), n_runs=len(runs))
