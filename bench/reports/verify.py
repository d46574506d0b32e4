"""``albench verify``: compare a results folder with a paper's reported numbers, held as data.

The reference file (e.g. ``results/reference/pt4al-eccv2022.yaml``) lists checks. Each names a
quantity, the dataset, strategy (registry name plus the params that pick the variant), protocol and
scale it claims, the reported value (or a range of reruns), units, tolerance and source. For each
check verify finds the matching runs, refuses (saying which field differs) when none matches the
claimed dataset, protocol or scale, and otherwise prints ours (mean ± std, n seeds), theirs, the
difference and whether it is within tolerance.

Outcomes: ``pass``, ``fail``, ``refused`` (runs exist but measure something else), ``missing`` (no
run of that strategy, or none has reached the cycle yet) and ``too-few`` (a statistic needs more
seeds than there are, e.g. a std from one seed). The CLI exits 1 when any check fails, 0 when at
least one passes and none fails, and 2 when nothing was comparable (every check refused, missing or
too-few) or the reference file is malformed.

Quantities:

- ``metric``: the run's metric at ``cycle`` (``first``, ``last`` or an index) in percent, and
  ``statistic`` over seeds: ``mean``, ``std`` (sample, ddof = 1), ``min`` or ``max``.
- ``wallclock-ratio``: per seed, the run's charged total wall-clock (each cached artifact's compute
  time charged in full, computed or reused; see :mod:`albench.cached`) divided by that of the sweep's baseline
  run (the strategy label run.json designates; random for records older than that field) with the
  same seed in the same sweep and dataset; ours is the mean over seeds, and the outcome names the
  baseline. Complete runs only.
- ``spearman-rho``: per complete run, Spearman's rho between ``pretext_loss_test`` and the final
  cycle's per-image ``test_loss``; ours is the mean over seeds.
- ``labels-to-reach``: the labels a learning curve needs to reach ``threshold`` (the metric in
  percent; see :mod:`albench.reports.efficiency`), by ``convention`` (``first`` count at or past it,
  or ``interpolated``), on the ``curve`` of the mean over seeds (``mean``) or as the mean of the
  seeds' counts (``per-seed``), counted as ``labels`` or ``acquired`` (labels minus the initial
  set). Runs that have not reached the threshold count as "> N" (N their largest count): the check
  fails when that alone puts ours beyond the tolerance, and is ``missing`` (not yet decidable)
  otherwise, never compared as a number.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
import yaml

from albench.errors import ConfigError
from albench.typed import MAX_IMAGES, Bounds, from_dict, to_dict
from albench.reports.data import Run, Sweep
from albench.reports.provenance import DAGGER
from albench.reports.stats import spearman_rho
from albench.reports.tables import describe, fmt_mean_std, run_seconds

Quantity = Literal["metric", "wallclock-ratio", "spearman-rho", "labels-to-reach"]
Statistic = Literal["mean", "std", "min", "max"]
QUANTITIES = get_args(Quantity)
STATISTICS = get_args(Statistic)
PASS, FAIL, REFUSED, MISSING, TOO_FEW = "pass", "fail", "refused", "missing", "too-few"


@dataclass
class Check:
    """One reported number and what it claims to measure."""

    id: str
    source: str
    dataset: str
    strategy: str
    protocol: str  # paper | official | any
    scale_name: str
    scale: dict
    quantity: str
    units: str
    value: float | None = None
    range: tuple[float, float] | None = None
    tolerance: float | None = None
    tolerance_rel: float | None = None
    params: dict = field(default_factory=dict)
    quirks: list[str] | None = None
    metric: str | None = None
    cycle: Any = None  # 'first' | 'last' | int
    statistic: str = "mean"
    note: str = ""
    threshold: float | None = None  # labels-to-reach: the metric threshold, percent
    convention: str = "first"  # labels-to-reach: first | interpolated
    curve: str = "mean"  # labels-to-reach: mean (the mean-over-seeds curve) | per-seed (mean of the seeds' counts)
    count: str = "labels"  # labels-to-reach: labels | acquired (labels minus the initial set)

    def tol(self) -> float:
        """The allowed absolute difference, in the check's units."""
        if self.tolerance is not None:
            return float(self.tolerance)
        ref = self.value if self.value is not None else float(np.mean(self.range))
        return float(self.tolerance_rel) * abs(ref)

    def theirs(self) -> str:
        u, d = _unit(self.units), _digits(self.units)
        if self.range is not None:
            return f"{self.range[0]:.{d}f}-{self.range[1]:.{d}f}{u} (range)"
        return f"{self.value:.{d}f}{u}"

    def describe(self) -> str:
        """What the check measures, in words."""
        variant = ", ".join(f"{k}={v}" for k, v in self.params.items())
        who = f"{self.strategy}" + (f" [{variant}]" if variant else "")
        if self.quantity == "metric":
            cyc = f"{self.cycle}-cycle" if isinstance(self.cycle, str) else f"cycle-{self.cycle}"
            what = f"{cyc} {self.metric}, {self.statistic} over seeds"
        elif self.quantity == "wallclock-ratio":
            what = "wall-clock per run / Random's"
        elif self.quantity == "labels-to-reach":
            curve = "mean-over-seeds curve" if self.curve == "mean" else "mean of the seeds' counts"
            what = (f"{self.count} to reach {self.threshold:g}% {self.metric} ({self.convention} count, {curve})")
        else:
            what = "Spearman's rho, pretext vs main-task test loss"
        return f"{self.dataset} · {who} · {what} · protocol {self.protocol} · scale {self.scale_name}"


def _digits(units: str) -> int:
    return 3 if units in ("rho", "ratio") else 1 if units in ("labels", "images") else 2


def _unit(units: str) -> str:
    return " %" if units == "percent" else (" × Random" if units == "ratio" else "")


# ---------------------------------------------------------------------------------------------
# reading the reference


@dataclass(frozen=True)
class ScaleSpec:
    """The scale a check claims: fields compared with each run's config.yaml (null: not compared)."""

    model: str | None = None
    epochs: Annotated[int | None, Bounds(ge=1)] = None
    batch_size: Annotated[int | None, Bounds(ge=1)] = None
    initial: Annotated[int | None, Bounds(ge=1, le=MAX_IMAGES)] = None
    budget: Annotated[int | None, Bounds(ge=1, le=MAX_IMAGES)] = None
    cycles: Annotated[int | None, Bounds(ge=1)] = None


SCALE_FIELDS = tuple(f.name for f in fields(ScaleSpec))

@dataclass(frozen=True)
class CheckSpec:
    """One entry of a reference file's ``checks`` list, as written (see the module docstring)."""

    id: str
    source: str
    dataset: str
    strategy: str
    protocol: Literal["paper", "official", "any"]
    scale: str | ScaleSpec  # the name of an entry of 'scales', or the scale inline
    quantity: Quantity
    units: str
    value: Annotated[float | None, Bounds(finite=True)] = None
    range: list[Annotated[float, Bounds(finite=True)]] | None = None
    tolerance: Annotated[float | None, Bounds(ge=0, finite=True)] = None
    tolerance_rel: Annotated[float | None, Bounds(ge=0, finite=True)] = None
    params: dict | None = None
    quirks: list[str] | None = None
    metric: str | None = None
    cycle: Literal["first", "last"] | Annotated[int, Bounds(ge=0)] | None = None
    statistic: Statistic = "mean"
    note: str = ""
    threshold: Annotated[float | None, Bounds(gt=0, le=100)] = None
    convention: Literal["first", "interpolated"] = "first"
    curve: Literal["mean", "per-seed"] = "mean"
    count: Literal["labels", "acquired"] = "labels"
    # documentation for readers of the file; verify does not use them
    protocol_note: str = ""
    paper_seeds: Annotated[int | None, Bounds(ge=1)] = None
    reported: dict | None = None
    samples: list | None = None
    derived: bool = False

    def check(self, path: str) -> None:
        """The cross-field rules: one of value/range, one of tolerance/tolerance_rel, a metric check's
        metric and cycle."""
        if (self.value is None) == (self.range is None):
            raise ConfigError(path, "needs exactly one of 'value' and 'range'",
                              "give the reported number as value or a [low, high] range")
        if self.range is not None and not (len(self.range) == 2 and self.range[0] <= self.range[1]):
            raise ConfigError(f"{path}.range", "must be [low, high] numbers", "write e.g. [91.99, 92.83]",
                              self.range)
        if (self.tolerance is None) == (self.tolerance_rel is None):
            raise ConfigError(path, "needs exactly one of 'tolerance' and 'tolerance_rel'",
                              "give an absolute tolerance in the check's units or a relative one")
        if self.quantity == "metric":
            for key in ("metric", "cycle"):
                if getattr(self, key) is None:
                    raise ConfigError(f"{path}.{key}", "is missing", f"add {key} to the check "
                                      "(cycle: first, last or a cycle index)")
        if self.quantity == "labels-to-reach":
            for key, fix in (("metric", "the metric the threshold is on, e.g. accuracy"),
                             ("threshold", "the metric threshold in percent, e.g. 90")):
                if getattr(self, key) is None:
                    raise ConfigError(f"{path}.{key}", "is missing", f"add {key}: {fix}")


@dataclass(frozen=True)
class ReferenceSpec:
    """A reference file: named scales, the checks, and what the file is about."""

    checks: list[dict]  # each read as a CheckSpec, its id in the error path
    scales: dict[str, ScaleSpec] | None = None
    defaults: dict | None = None  # YAML anchors the checks refer to
    schema: Literal[1] = 1
    name: str = ""
    paper: str = ""
    note: str = ""


def load_reference(path: str | Path) -> tuple[dict, list[Check]]:
    """(file-level fields, checks) of a reference YAML, read by :class:`ReferenceSpec` and
    :class:`CheckSpec`; ConfigError names the bad field (``checks[i] (id).field``)."""
    from albench.config import MAX_CONFIG_BYTES, YamlRefused, load_yaml_text
    from albench.paths import read_input_file

    # a regular file, bounded like a config and checked before reading: a folder or a FIFO (which
    # would block the reader forever) is refused unopened
    blob = read_input_file(path, "--reference", MAX_CONFIG_BYTES,
                           "pass a reference file such as results/reference/pt4al-eccv2022.yaml")
    path = Path(path)
    try:
        raw = load_yaml_text(blob.decode("utf-8"))
    except (YamlRefused, UnicodeDecodeError) as exc:  # an alias bomb, deep nesting, a key twice, not UTF-8
        raise ConfigError("--reference", str(exc).splitlines()[0][:200], "write the file as plain YAML",
                          str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError("--reference", f"is not valid YAML ({str(exc).splitlines()[0]})", "fix the file",
                          str(path)) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("checks"), list):
        raise ConfigError("--reference", "holds no 'checks' list", "use a file like results/reference/"
                          "pt4al-eccv2022.yaml", str(path))
    ref = from_dict(ReferenceSpec, {**raw, "checks": []})  # each check is read below, its id in the path
    scales = {name: to_dict(s) for name, s in (ref.scales or {}).items()}
    checks, seen = [], set()
    for i, c in enumerate(raw["checks"]):
        where = f"checks[{i}]"
        if not isinstance(c, dict):
            raise ConfigError(where, "must be a mapping", "write each check as key: value lines", c)
        if c.get("id") is not None:
            where = f"checks[{i}] ({c['id']})"
        spec = from_dict(CheckSpec, c, where)
        if spec.id in seen:
            raise ConfigError(f"{where}.id", "is used twice", "give every check its own id", spec.id)
        seen.add(spec.id)
        if isinstance(spec.scale, ScaleSpec):
            scale_name, scale = "inline", to_dict(spec.scale)
        elif spec.scale in scales:
            scale_name, scale = spec.scale, scales[spec.scale]
        else:
            raise ConfigError(f"{where}.scale", "names no entry of 'scales'",
                              f"use one of {', '.join(scales) or '(none defined)'}", spec.scale)
        checks.append(Check(
            id=spec.id, source=spec.source, dataset=spec.dataset, strategy=spec.strategy, protocol=spec.protocol,
            scale_name=scale_name, scale=dict(scale), quantity=spec.quantity, units=spec.units, value=spec.value,
            range=(spec.range[0], spec.range[1]) if spec.range is not None else None,
            tolerance=spec.tolerance, tolerance_rel=spec.tolerance_rel, params=dict(spec.params or {}),
            quirks=spec.quirks, metric=spec.metric, cycle=spec.cycle, statistic=spec.statistic, note=spec.note,
            threshold=spec.threshold, convention=spec.convention, curve=spec.curve, count=spec.count))
    meta = {"schema": ref.schema, "name": ref.name, "paper": ref.paper, "note": ref.note}
    return meta, checks


# ---------------------------------------------------------------------------------------------
# matching runs


def scale_differences(run: Run, scale: dict) -> list[str]:
    """'field ours (reference theirs)' for each non-null scale field where the run differs."""
    ours = run.scale()
    return [f"{k} {ours.get(k)} (reference {v})" for k, v in scale.items()
            if v is not None and ours.get(k) != v]


def _params_match(run: Run, params: dict) -> bool:
    got = (run.config.get("strategy") or {}).get("params") or {}
    return all(k in got and got[k] == v for k, v in params.items())


def _most_common(items: list[str]) -> str:
    return Counter(items).most_common(1)[0][0]


@dataclass
class Outcome:
    """The result of one check on one group of runs (a strategy label of one sweep)."""

    check: Check
    status: str
    message: str = ""
    group: str = ""
    ours: float | None = None
    std: float | None = None
    n: int = 0
    diff: float | None = None
    ours_text: str | None = None  # labels-to-reach: '> N' when the runs never reached the threshold
    flags: list[str] = field(default_factory=list)
    quirks: list[str] = field(default_factory=list)
    protocol: str = ""


def _select(check: Check, sweep: Sweep) -> tuple[list[Run], Outcome | None]:
    """The runs the check may use, or an outcome saying why there are none."""
    cands = [r for r in sweep.runs if r.strategy_name == check.strategy and _params_match(r, check.params)]
    variant = f" with {', '.join(f'{k}={v}' for k, v in check.params.items())}" if check.params else ""
    if not cands:
        return [], Outcome(check, MISSING, f"no {check.strategy} runs{variant} under the results folder")
    runs = [r for r in cands if r.dataset == check.dataset]
    if not runs:
        got = ", ".join(sorted({r.dataset for r in cands}))
        return [], Outcome(check, REFUSED, f"dataset differs: the {check.strategy} runs are on {got}; "
                                           f"this number is for {check.dataset}")
    if check.protocol != "any":
        same = [r for r in runs if r.protocol == check.protocol]
        if not same:
            got = ", ".join(sorted({r.protocol for r in runs}))
            return [], Outcome(check, REFUSED, f"protocol differs: the runs use protocol {got}; this number claims "
                                               f"protocol {check.protocol}")
        runs = same
    if check.quirks is not None:
        same = [r for r in runs if sorted(r.quirks) == sorted(check.quirks)]
        if not same:
            got = _most_common([",".join(sorted(r.quirks)) or "none" for r in runs])
            return [], Outcome(check, REFUSED, f"quirks differ: the runs have {got}; this number claims "
                                               f"{','.join(sorted(check.quirks)) or 'none'}")
        runs = same
    diffs = {id(r): scale_differences(r, check.scale) for r in runs}
    same = [r for r in runs if not diffs[id(r)]]
    if not same:
        got = _most_common(["; ".join(diffs[id(r)]) for r in runs])
        return [], Outcome(check, REFUSED, f"scale differs: {got}")
    if check.quantity in ("metric", "labels-to-reach"):
        same_metric = [r for r in same if r.metric == check.metric]
        if not same_metric:
            got = ", ".join(sorted({r.metric for r in same}))
            return [], Outcome(check, REFUSED, f"metric differs: the runs report {got}; this number is {check.metric}")
        same = same_metric
    return same, None


def _cycle_index(check: Check, run: Run) -> int | None:
    if check.cycle == "first":
        return 0
    if check.cycle == "last":
        planned = check.scale.get("cycles") or run.cycles_planned
        return None if planned is None else int(planned) - 1
    return int(check.cycle)


def _values_metric(check: Check, runs: list[Run]) -> tuple[list[float], str]:
    vals, waiting = [], 0
    for r in runs:
        c = _cycle_index(check, r)
        row = next((row for row in r.rows if c is not None and int(row["cycle"]) == c), None)
        if row is None or row.get("value") is None:
            waiting += 1
            continue
        vals.append(float(row["value"]) * 100.0)
    why = f"{waiting} run(s) have not finished that cycle yet" if waiting else ""
    return vals, why


def _values_wallclock(check: Check, runs: list[Run], sweep: Sweep) -> tuple[list[float], str]:
    mine = [r for r in runs if r.complete]
    if not mine:
        return [], "no complete run (wall-clock needs finished runs)"
    sweep_name = mine[0].sweep
    peers = [r for r in sweep.runs if r.sweep == sweep_name and r.dataset == check.dataset and r.complete
             and not scale_differences(r, check.scale)]
    label = sweep.baseline(sweep_name, peers)
    bases = [r for r in peers if label is not None and r.label == label]
    if not bases:
        who = label or "none: its run.json files designate none, or different ones"
        return [], f"no complete baseline run (baseline {who}) of the same scale in sweep {sweep_name} " \
                   "to form the ratio"
    frame = sweep.cycles(check.dataset)
    secs = run_seconds(frame[frame["run_dir"].isin({str(r.dir) for r in mine + bases})])
    tot = {(row.series, row.seed): row.total for row in secs.itertuples()}
    base = bases[0].series
    vals = [tot[(r.series, r.seed)] / tot[(base, r.seed)] for r in mine if (base, r.seed) in tot
            and tot[(base, r.seed)] > 0]
    if not vals:
        return [], f"the strategy's and {label}'s complete runs share no seed"
    return vals, f"ratio to baseline {label}"


def _values_rho(runs: list[Run]) -> tuple[list[float], str]:
    vals = []
    for r in runs:
        if not r.complete:
            continue
        pre, main = r.artifact("pretext_loss_test"), r.artifact("test_loss")
        if pre is None or main is None or main.ndim != 2 or main.shape[1] != len(pre):
            continue
        vals.append(spearman_rho(pre, main[-1]))
    return vals, "" if vals else "no complete run records pretext_loss_test and test_loss"


def _initial(run: Run) -> int:
    return int(((run.config.get("al") or {}).get("initial")) or 0)


def _check_reach(check: Check, runs: list[Run], base: dict) -> Outcome:
    """The labels-to-reach outcome of one group of runs (see the module docstring)."""
    from albench.reports.efficiency import labels_to_reach, mean_curve

    curves = []
    for r in sorted(runs, key=lambda r: r.seed):
        rows = sorted((row for row in r.rows if row.get("value") is not None), key=lambda row: row["n_labeled"])
        if rows:
            curves.append(([int(row["n_labeled"]) for row in rows], [float(row["value"]) * 100.0 for row in rows]))
    if not curves:
        return Outcome(status=MISSING, message="no run has finished a cycle yet", **base)
    offset = _initial(runs[0]) if check.count == "acquired" else 0
    if check.count == "acquired" and len({_initial(r) for r in runs}) > 1:
        return Outcome(status=REFUSED, message="the runs start from different initial sets (al.initial)", **base)
    if check.curve == "mean":
        c, v = mean_curve(curves)
        reaches = [labels_to_reach(c, v, check.threshold, check.convention).minus(offset)]
    else:
        reaches = [labels_to_reach(c, v, check.threshold, check.convention).minus(offset) for c, v in curves]
    n = len(curves)
    tol = check.tol()
    bound = float(check.value) if check.value is not None else float(check.range[1])
    if all(r.reached for r in reaches):
        vals = [r.labels for r in reaches]
        d = describe(vals)
        diff, ok = _compare(check, d["mean"])
        text = reaches[0].text(0 if check.convention == "first" else 1) if check.curve == "mean" else None
        return Outcome(status=PASS if ok else FAIL, ours=d["mean"], std=d["std"] if check.curve == "per-seed" else None,
                       n=n, diff=diff, ours_text=text,
                       message=("within" if ok else "outside") + f" tolerance ±{tol:g}", **base)
    # some curve has not reached the threshold: a lower bound on ours, never a number
    low = float(np.mean([r.labels if r.reached else r.max_labels for r in reaches]))
    most = max(r.max_labels for r in reaches if not r.reached)
    text = f"> {most}" if check.curve == "mean" else f"> {low:g} (lower bound: {sum(not r.reached for r in reaches)} "                                                      f"of {n} seeds not reached by {most})"
    if low > bound + tol:
        return Outcome(status=FAIL, n=n, ours_text=text,
                       message=f"not reached by {most} {check.count}, already beyond {bound:g} + {tol:g}", **base)
    return Outcome(status=MISSING, n=n, ours_text=text,
                   message=f"not reached by {most} {check.count} yet; deciding needs curves up to "
                           f"{bound + tol:g} {check.count}", **base)


def _compare(check: Check, x: float) -> tuple[float, bool]:
    if check.range is not None:
        lo, hi = check.range
        diff = 0.0 if lo <= x <= hi else (x - hi if x > hi else x - lo)
    else:
        diff = x - float(check.value)
    return diff, abs(diff) <= check.tol() + 1e-12


def run_check(check: Check, sweep: Sweep) -> list[Outcome]:
    """Outcomes of ``check``: one per matching (sweep, strategy label) group, or one saying why none."""
    runs, refusal = _select(check, sweep)
    if refusal is not None:
        return [refusal]
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.series, []).append(r)
    out = []
    for series, grp in sorted(groups.items()):
        flags = sorted({f for r in grp for f in r.flags})
        quirks = sorted({q for r in grp for q in r.quirks})
        if check.quantity == "metric":
            vals, why = _values_metric(check, grp)
        elif check.quantity == "wallclock-ratio":
            vals, why = _values_wallclock(check, grp, sweep)
        elif check.quantity == "labels-to-reach":
            vals, why = [], ""
        else:
            vals, why = _values_rho(grp)
        protocol = ", ".join(sorted({r.protocol for r in grp}))
        base = dict(check=check, group=series, flags=flags, quirks=quirks, protocol=protocol)
        if check.quantity == "labels-to-reach":
            out.append(_check_reach(check, grp, base))
            continue
        if not vals:
            out.append(Outcome(status=MISSING, message=why, **base))
            continue
        d = describe(vals)
        stat = check.statistic if check.quantity == "metric" else "mean"
        x = d[stat]
        if not np.isfinite(x):
            out.append(Outcome(status=TOO_FEW, message=f"a {stat} needs at least 2 seeds; {d['n']} recorded",
                               ours=d["mean"], std=d["std"], n=d["n"], **base))
            continue
        diff, ok = _compare(check, x)
        note = f" ({why})" if why else ""
        out.append(Outcome(status=PASS if ok else FAIL, ours=x, std=d["std"] if stat == "mean" else None, n=d["n"],
                           diff=diff, message=("within" if ok else "outside") + f" tolerance ±{check.tol():g}{note}",
                           **base))
    return out


def verify(sweep: Sweep, checks: list[Check]) -> list[Outcome]:
    """Every check's outcomes, in file order."""
    return [o for c in checks for o in run_check(c, sweep)]


# ---------------------------------------------------------------------------------------------
# printing


def format_outcome(o: Outcome) -> str:
    """Two or three lines: status, id and source; what is measured; ours vs theirs or the reason."""
    c = o.check
    u = _unit(c.units)
    digits = _digits(c.units)
    head = f"{o.status.upper():8s}{c.id}  [{c.source}]"
    lines = [head, f"        {c.describe()}"]
    if o.status in (PASS, FAIL, TOO_FEW) and (o.ours is not None or o.ours_text is not None):
        dagger = f" {DAGGER}" if o.flags else ""
        stat = c.statistic if c.quantity == "metric" else "mean"
        if c.quantity == "labels-to-reach":
            stat = "mean curve" if c.curve == "mean" else "mean of seeds"
        value = o.ours_text if o.ours_text is not None and o.ours is None else fmt_mean_std(o.ours, o.std, digits)
        ours = f"{value}{u} ({stat}, n={o.n} seed{'s' if o.n != 1 else ''})"
        diff = f"{o.diff:+.{digits}f}" if o.diff is not None else "n/a"
        lines.append(f"        ours {ours} [{o.group}{dagger}] | theirs {c.theirs()} | diff {diff} | {o.message}")
        flags = f"; {DAGGER} flags: {', '.join(o.flags)}" if o.flags else ""
        lines.append(f"        runs {o.group}: protocol {o.protocol}, quirks on: {', '.join(o.quirks) or 'none'}{flags}")
    else:
        who = f" [{o.group}]" if o.group else ""
        ours = f" ours {o.ours_text} (n={o.n}) |" if o.ours_text is not None else ""
        lines.append(f"       {ours} theirs {c.theirs()}{who}: {o.message}")
    return "\n".join(lines)


def summary_counts(outcomes: list[Outcome]) -> Counter:
    return Counter(o.status for o in outcomes)


def format_counts(outcomes: list[Outcome]) -> str:
    """One line: how many checks passed, failed, were refused, missing or had too few seeds."""
    n = summary_counts(outcomes)
    parts = [f"{n.get(s, 0)} {label}" for s, label in ((PASS, "passed"), (FAIL, "failed"), (REFUSED, "refused"),
                                                          (MISSING, "missing"), (TOO_FEW, "too few seeds"))]
    return "verify: " + ", ".join(parts)
