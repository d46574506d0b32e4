"""What a report reads: every run under a results folder, its state, and which runs are missing.

A report works from partial sweeps. Each run's finished cycles are final once written (the engine
rewrites cycles.csv atomically and never changes a finished row), so curves use every finished
cycle of every run; whole-run quantities (AUBC, wall-clock, t-SNE, class counts) use complete runs
only. :func:`find_missing` lists the runs a report could not use in full.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from albench.cached import CacheUse, charged_seconds, legacy_uses
from albench.errors import RecordError
from albench.records import (find_runs, load_run, pick_baseline, read_artifact, read_queries, recorded_baseline,
                           recorded_phases, recorded_quirk_docs, run_id, stopped_note)

@dataclass
class Run:
    """One run folder as a report sees it (identity, status, resolved config, environment, cycles)."""

    dir: Path
    identity: dict
    status: dict
    config: dict
    env: dict
    rows: list[dict]
    series: str = ""  # the name a report shows: the strategy label (prefixed by the sweep when several)

    @property
    def sweep(self) -> str:
        return str(self.identity.get("sweep"))

    @property
    def dataset(self) -> str:
        return str(self.identity.get("dataset"))

    @property
    def label(self) -> str:
        return str(self.identity.get("strategy"))

    @property
    def run_id(self) -> str:
        """``dataset/strategy label/seed-N``, the id ``albench run --only`` and ``report --only`` match."""
        return run_id(self.dataset, self.label, self.seed)

    @property
    def strategy_name(self) -> str:
        return str(self.identity.get("strategy_name") or self.label)

    @property
    def seed(self) -> int:
        return int(self.identity.get("seed", -1))

    @property
    def protocol(self) -> str:
        return str(self.identity.get("protocol") or "unknown")

    @property
    def quirks(self) -> list[str]:
        return list(self.identity.get("quirks") or [])

    @property
    def flags(self) -> list[str]:
        return list(self.identity.get("flags") or [])

    @property
    def quirk_docs(self) -> dict[str, str]:
        """{active quirk: its documentation}, as run.json records it ({} for runs older than the field)."""
        return recorded_quirk_docs(self.identity)

    @property
    def phases(self) -> tuple[str, ...]:
        """The timed phases, in order (run.json ``phases``; the engine's five for older runs)."""
        return recorded_phases(self.identity)

    @property
    def baseline(self) -> tuple[bool, str | None]:
        """(whether run.json designates the sweep's baseline, that strategy label or None)."""
        return recorded_baseline(self.identity)

    @property
    def metric(self) -> str:
        m = self.identity.get("metric")
        if not m and self.rows:
            m = self.rows[0].get("metric")
        return str(m or "metric")

    @property
    def state(self) -> str:
        return str(self.status.get("state", "unknown"))

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def cycles_planned(self) -> int | None:
        al = self.config.get("al") or {}
        return int(al["cycles"]) if "cycles" in al else None

    @property
    def cycles_done(self) -> int:
        return len(self.rows)

    @property
    def prepare(self) -> dict:
        return dict(self.identity.get("prepare") or {})

    @property
    def cache_uses(self) -> list[CacheUse]:
        """The cached artifacts the run used (run.json ``cache_uses``, see :mod:`albench.cached`); for
        runs recorded before that field, what ``prepare``'s pretext_* and representation_* fields say.
        A record that cannot be read as a use is skipped."""
        recs = self.identity.get("cache_uses")
        if not isinstance(recs, list):
            return legacy_uses(self.prepare)
        out = []
        for rec in recs:
            try:
                out.append(CacheUse.from_record(rec))
            except (ValueError, AttributeError):
                continue
        return out

    def artifact(self, name: str) -> np.ndarray | None:
        """The run's ``artifacts/<name>.npy`` array, or None when it was not recorded."""
        return read_artifact(self.dir, name)

    def queries(self) -> dict[int, np.ndarray]:
        """{cycle: train-set indices queried at that cycle}."""
        return read_queries(self.dir)

    def scale(self) -> dict[str, Any]:
        """The size of the experiment, from config.yaml: model, epochs, the floor on optimizer steps per
        cycle (``min_steps``, 0 when off or recorded before it existed), batch size, AL schedule."""
        model = self.config.get("model") or {}
        train = self.config.get("train") or {}
        al = self.config.get("al") or {}
        name = model.get("name")
        feats = self.identity.get("features")
        if isinstance(feats, dict):  # a model over frozen features: say which, and where they came from
            name = f"{name} ({_head_shape(model.get('params') or {})}) on frozen features {features_summary(feats)}"
        return {"model": name, "epochs": train.get("epochs"), "min_steps": train.get("min_steps") or 0,
                "batch_size": train.get("batch_size"),
                "initial": al.get("initial"), "budget": al.get("budget"), "cycles": al.get("cycles")}


def _head_shape(params: dict) -> str:
    hidden = params.get("hidden") or 0
    shape = f"MLP, hidden {hidden}" if hidden else "linear"
    extra = [f"dropout {params['dropout']:g}"] if params.get("dropout") else []
    if params.get("normalize"):
        extra.append("L2-normalised input")
    return ", ".join([shape, *extra])


def features_summary(info: dict) -> str:
    """One phrase naming where a run's frozen features came from (run.json ``features``): the
    representation and its training, the backbone and its weights, or the file; their width and
    cache entry; for a file without a recorded compute time, that it was not charged."""
    src = info.get("source") or {}
    dim = f"{info.get('dim')}-d"
    kind = src.get("kind")
    if kind == "representation":
        spec = info.get("spec") or {}
        width = (spec.get("model_params") or {}).get("width")
        net = f"{spec.get('model')}{f' width {width}' if width else ''}"
        return (f"{src.get('name')} ({net}, {spec.get('epochs')} epochs on the train images, seed {spec.get('seed')}; "
                f"{dim}; entry {str(info.get('key'))[:8]})")
    if kind == "backbone":
        resize = f", resized to {src.get('resize')}" if src.get("resize") else ""
        return (f"{src.get('name')} (weights sha256 {str(info.get('weights_sha256'))[:8]}{resize}; {dim}; entry "
                f"{str(info.get('key'))[:8]})")
    if kind == "file":
        secs = info.get("compute_seconds")
        cost = (f"computed elsewhere in {secs:g} s, charged to each run" if isinstance(secs, (int, float))
                else "computed elsewhere; the file records no compute time, so none is charged")
        return f"from file {src.get('file')} (sha256 {str(info.get('sha256'))[:8]}; {dim}; {cost})"
    return f"({dim})"


def charged_pretext_seconds(recorded: float, prepare: dict) -> tuple[float, bool]:
    """(pretext seconds to charge, whether a reused entry's compute time is in them) for a run
    recorded before run.json ``cache_uses``, from its ``prepare`` dict: :func:`albench.cached.charged_seconds`
    of the uses :func:`albench.cached.legacy_uses` reads from it."""
    return charged_seconds(recorded, legacy_uses(prepare))


@dataclass
class Sweep:
    """Every run under a results folder, plus the folders that could not be read."""

    root: Path
    runs: list[Run]
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    selected: tuple[str, ...] = ()  # the --only globs the runs were restricted to (none: every run)

    @property
    def datasets(self) -> list[str]:
        return sorted({r.dataset for r in self.runs})

    def runs_of(self, dataset: str) -> list[Run]:
        return [r for r in self.runs if r.dataset == dataset]

    def only(self, patterns: list[str] | tuple[str, ...]) -> "Sweep":
        """The same folder restricted to the runs whose :attr:`Run.run_id` matches one of the globs
        ``patterns`` (every run when there are none); series names are kept. ValueError naming the
        first pattern that matches no run, with the run ids it could have matched."""
        if not patterns:
            return self
        for pat in patterns:
            if not any(fnmatch.fnmatchcase(r.run_id, pat) for r in self.runs):
                ids = sorted({r.run_id for r in self.runs})
                raise ValueError(f"{pat!r} matches no run under {self.root} (run ids such as "
                                 f"{', '.join(ids[:3]) or 'none'})")
        keep = [r for r in self.runs if any(fnmatch.fnmatchcase(r.run_id, pat) for pat in patterns)]
        return Sweep(root=self.root, runs=keep, unreadable=self.unreadable, selected=tuple(patterns))

    def baseline(self, sweep: str, runs: list[Run] | None = None) -> str | None:
        """The strategy label ``sweep``'s ratios divide by (see :func:`albench.records.pick_baseline`).

        ``runs`` (default: all) limits the runs consulted; None when there is no baseline.
        """
        mine = [r for r in (self.runs if runs is None else runs) if r.sweep == sweep]
        return pick_baseline([(r.label, r.strategy_name, *r.baseline) for r in mine])

    def cycles(self, dataset: str | None = None) -> pd.DataFrame:
        """One row per run x finished cycle: identity columns, series, state and the cycles.csv columns.

        ``value`` is the metric as a fraction in [0, 1]. ``seconds_<phase>_charged`` (for ``pretext`` and
        every phase a cache use fell in) is that phase's charged time: on cycle 0 the incurred
        ``seconds_<phase>`` adjusted by :func:`albench.cached.charged_seconds` for the run's cache uses
        (:attr:`Run.cache_uses`), so every run is charged the compute time of each cached entry it used;
        ``cache_reused``: whether that includes an entry another run computed; ``cached_artifacts``: the
        artifacts the run used (comma-joined). From run.json: ``phases`` (the timed phases,
        comma-joined), ``baseline_designated`` and ``baseline`` (see :meth:`Run.baseline`).
        """
        recs = []
        for run in self.runs if dataset is None else self.runs_of(dataset):
            for row in run.rows:
                rec = {"sweep": run.sweep, "dataset": run.dataset, "series": run.series, "strategy": run.label,
                       "strategy_name": run.strategy_name, "seed": run.seed, "protocol": run.protocol,
                       "quirks": ",".join(run.quirks), "flags": ",".join(run.flags), "state": run.state,
                       "complete": run.complete, "cycles_planned": run.cycles_planned, "run_dir": str(run.dir),
                       "phases": ",".join(run.phases), "baseline_designated": run.baseline[0],
                       "baseline": run.baseline[1], **row}
                uses = run.cache_uses if int(row.get("cycle", -1)) == 0 else []
                reused = False
                for ph in dict.fromkeys(("pretext", *(u.phase for u in uses))):
                    incurred = float(row.get(f"seconds_{ph}") or 0.0)
                    charged, r = charged_seconds(incurred, [u for u in uses if u.phase == ph])
                    rec[f"seconds_{ph}_charged"] = charged
                    reused = reused or r
                rec["cache_reused"] = reused
                rec["cached_artifacts"] = ",".join(sorted({u.artifact for u in uses}))
                recs.append(rec)
        df = pd.DataFrame.from_records(recs)
        if df.empty:
            return df
        return df.sort_values(["dataset", "series", "seed", "cycle"], kind="stable").reset_index(drop=True)


def load_sweep_runs(root: str | Path, *, allow_empty: bool = False) -> Sweep:
    """Every run folder under ``root`` (a run, a sweep, or an output root holding several sweeps).

    The one reader of a results folder: reports, verify and the CLI's summary all start here
    (:meth:`Sweep.cycles` is the tidy one-row-per-run-x-cycle DataFrame). Raises RecordError when
    ``root`` does not exist, or holds no run at all unless ``allow_empty``. Series names are the
    strategy labels, prefixed by ``<sweep>/`` when the folder holds more than one sweep.
    """
    root = Path(root)
    dirs = find_runs(root)
    if not dirs and not allow_empty:
        raise RecordError(f"{root}: holds no albench runs (no run.json below it); pass a sweep folder such as "
                          "results/quickstart")
    runs, bad = [], []
    for d in dirs:
        try:
            raw = load_run(d)
            read_queries(d)  # read lazily later: a damaged one must be found here, not mid-report
        except (OSError, ValueError, yaml.YAMLError) as exc:  # a hand-edited or foreign file: report it, go on
            bad.append((d, f"{type(exc).__name__}: {exc}"))
            continue
        runs.append(Run(dir=d, identity=raw["identity"], status=raw["status"], config=raw["config"] or {},
                        env=raw["env"], rows=raw["rows"]))
    sweeps = {r.sweep for r in runs}
    for r in runs:
        r.series = f"{r.sweep}/{r.label}" if len(sweeps) > 1 else r.label
    return Sweep(root=root, runs=runs, unreadable=bad)


@dataclass
class Missing:
    """A run a report could not use in full: absent from disk, unfinished, or failed."""

    sweep: str
    dataset: str
    strategy: str
    seed: int
    state: str  # absent | running | stopped | failed | unknown
    cycles_done: int = 0
    cycles_planned: int | None = None
    note: str = ""

    def line(self) -> str:
        where = f"{self.sweep}/{self.dataset}/{self.strategy}/seed-{self.seed}"
        if self.state == "absent":
            return f"{where}: absent (no run folder: not started yet, or removed)"
        planned = "?" if self.cycles_planned is None else str(self.cycles_planned)
        text = f"{where}: {self.state}, {self.cycles_done}/{planned} cycles recorded"
        return f"{text}; {self.note}" if self.note else text


def find_missing(sweep: Sweep, expected: list[tuple[str, str, str, int]] | None = None) -> list[Missing]:
    """Runs that are absent or not complete.

    ``expected`` lists (sweep, dataset, strategy label, seed) of the planned runs. Without it the
    plan is inferred per sweep as every dataset x strategy x seed that appears in that sweep, so a
    strategy none of whose runs has started cannot be noticed: pass the sweep config for that.
    """
    present = {(r.sweep, r.dataset, r.label, r.seed): r for r in sweep.runs}
    if expected is None:
        expected = []
        for name in sorted({r.sweep for r in sweep.runs}):
            mine = [r for r in sweep.runs if r.sweep == name]
            for ds in sorted({r.dataset for r in mine}):
                for label in sorted({r.label for r in mine}):
                    for seed in sorted({r.seed for r in mine}):
                        expected.append((name, ds, label, seed))
    out = []
    for key in sorted(set(expected) | set(present)):
        run = present.get(key)
        if run is None:
            out.append(Missing(*key, state="absent"))
        elif not run.complete:
            note = ""
            if run.state == "failed":
                note = str(run.status.get("error", "")).splitlines()[0][:200] if run.status.get("error") else ""
            elif run.state == "running":
                note = "still running, or interrupted (rerun the sweep to resume)"
            elif run.state == "stopped":
                note = stopped_note(run.status)
            out.append(Missing(*key, state=run.state, cycles_done=run.cycles_done,
                               cycles_planned=run.cycles_planned, note=note))
    return out


def class_counts(runs: list[Run], *, first_query: bool = False) -> tuple[pd.DataFrame, str]:
    """(one row per (series, seed, class) with the ``count`` of that class, what is counted).

    Classification: from each run's ``labeled_targets`` artifact (the label of every queried image,
    initial set included), counting images. Segmentation: from ``labeled_class_pixels`` (queried
    images x classes), counting labeled pixels. Classes are 0..K-1 (K the largest label + 1, or the
    pixel table's width), zeros included. Runs without either artifact are left out. The second
    value is ``"images"`` or ``"pixels"`` (``"images"`` when nothing was found).

    ``first_query``: count only the cold-start query, the first ``al.initial`` entries (the engine
    appends each cycle's query to the labeled set in order, the initial set first). A run whose
    config lacks ``al.initial`` or whose artifact is shorter than it is left out rather than
    counted short.
    """
    per_run, unit = [], "images"
    for r in runs:
        n = None
        if first_query:
            n = r.scale().get("initial")
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                continue
        t = r.artifact("labeled_targets")
        if t is not None and t.ndim == 1 and len(t):
            if n is not None and len(t) < n:
                continue
            t = np.asarray(t[:n], dtype=np.int64)
            per_run.append((r, np.bincount(t[t >= 0])))
            continue
        px = r.artifact("labeled_class_pixels")
        if px is not None and px.ndim == 2:
            if n is not None and len(px) < n:
                continue
            per_run.append((r, np.asarray(px[:n], dtype=np.int64).sum(axis=0)))
            unit = "pixels"
    if not per_run:
        return pd.DataFrame(columns=["series", "seed", "class", "count"]), unit
    k = max(len(c) for _, c in per_run)
    rows = []
    for r, c in per_run:
        c = np.pad(c, (0, k - len(c)))
        rows += [{"series": r.series, "seed": r.seed, "class": i, "count": int(n)} for i, n in enumerate(c)]
    return pd.DataFrame(rows), unit
