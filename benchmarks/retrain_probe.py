"""Rebuild one cycle of a recorded run exactly as the engine ran it, or with a protocol change, to
measure what moves a recorded number (a dip in a curve, a disagreement with a paper).

    python -m benchmarks.retrain_probe RUN_DIR --cycle C [--generators-of G ...] [--set KEY=VALUE ...]
    python -m benchmarks.retrain_probe RUN_DIR --cycle C --select [--count-configs]

Train mode (default): the labeled set after cycle C's query (the recorded queries of cycles 0..C),
a model trained with the initialisation, data-order and augmentation generators of cycle G (default
C; several G give several models), scored on the test set as the run scores it
(``train.test_passes``). ``--set`` changes the run's config first (``train.batching=even``,
``train.min_steps=250``, ...), as ``albench run --set`` does. With no ``--set`` and G = C the result
must be the recorded value; each line says whether it is (``reproduces_recorded``).

Select mode: cycle C's acquisition rebuilt, the model of cycle C - 1 retrained, cycle C's
candidates and seeded passes; the picks are compared with the recorded query (``picks_equal_recorded``).
``--count-configs`` records, for BatchBALD, how many distinct label configurations each sampled
pick keeps of its draws (identical draws are merged; the select's cost follows that count).
The acquisition is the engine's own query code, so ``seconds`` is its select phase alone.

One JSON line per result on stdout; ``seconds`` is wall-clock (train + evaluate, or the select
alone). Nothing is written to the run's folder: the probe runs with ``output`` in a temporary folder
and tracking off. Refused (exit 2, with the reason): runs warm-started from the previous cycle
(their model depends on every earlier cycle), models over frozen features (they need the prepare
phase), and, in select mode, strategies with a prepare phase or a state carried between cycles.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml


class ProbeRefused(Exception):
    """The run cannot be rebuilt by this probe; the message says why."""


def load_run_config(run_dir: Path, overrides: list[str], output: str):
    """The run's RunConfig from its config.yaml, with ``overrides`` applied, tracking off and its
    output moved to ``output``."""
    from albench.config import apply_override, parse_override
    from albench.plan import RunConfig

    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    for item in overrides:
        apply_override(raw, *parse_override(item))
    raw["output"] = output
    raw.pop("tracking", None)
    return RunConfig.from_dict(raw)


def _recorded(run_dir: Path) -> tuple[dict[int, np.ndarray], dict[int, dict]]:
    from albench.records import read_cycles, read_queries

    return read_queries(run_dir), {int(r["cycle"]): r for r in read_cycles(run_dir)}


def _positions(ctx, ids: np.ndarray) -> np.ndarray:
    """Pool positions of recorded query ids (queries.json holds ``ctx.pool_map`` of the positions)."""
    where = {int(v): i for i, v in enumerate(np.asarray(ctx.pool_map))}
    return np.array([where[int(v)] for v in ids], dtype=np.int64)


def _context(rc):
    from albench.engine.loop import RunContext
    from albench.models.registry import model_entry

    if rc.train.init == "warm":
        raise ProbeRefused("the run warm-starts each cycle from the previous model (train.init: warm), so a "
                           "cycle's model depends on every earlier cycle; the probe rebuilds fresh-init runs only")
    if model_entry(rc.model.name).inputs == "features":
        raise ProbeRefused(f"model {rc.model.name!r} reads frozen features, which need the run's prepare phase")
    return RunContext(rc, None)


def retrain(run_dir: Path, cycle: int, generators_of: list[int], overrides: list[str]) -> list[dict]:
    """One result per G in ``generators_of``: the labeled set after ``cycle``'s query, trained with
    cycle G's generators and evaluated as the run evaluates; ``value`` in the task's metric (a fraction)."""
    from albench.engine.loop import _train
    from albench.engine.state import LoopState
    from albench.engine.timer import PhaseTimer
    from albench.toolkit.seeding import derive_seed

    queries, rows = _recorded(run_dir)
    if cycle not in queries or cycle not in rows:
        raise ProbeRefused(f"cycle {cycle} is not recorded in {run_dir} (recorded: 0..{max(rows, default=-1)})")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        rc = load_run_config(run_dir, overrides, tmp)
        ctx = _context(rc)
        labeled = _positions(ctx, np.concatenate([queries[c] for c in range(cycle + 1)]))
        for g in generators_of:
            state = LoopState()
            state.labeled = labeled
            t = time.perf_counter()
            model, *_ = _train(ctx, state, g, labeled[-len(queries[cycle]):], PhaseTimer(ctx.device), None)
            metrics, _, _ = ctx.evaluate(model, ctx.x_test, ctx.y_test, per_item=True, passes=rc.train.test_passes,
                                         seed=derive_seed(rc.seed, "test-passes", g))
            value = float(metrics[ctx.task.metric])
            line = {"run": rc.run_id, "cycle": cycle, "n_labeled": int(len(labeled)), "generators_of": g,
                    "overrides": overrides, "metric": ctx.task.metric, "value": value,
                    "recorded": rows[cycle]["value"], "seconds": round(time.perf_counter() - t, 2)}
            if not overrides and g == cycle:
                line["reproduces_recorded"] = value == rows[cycle]["value"]
            out.append(line)
    return out


def reselect(run_dir: Path, cycle: int, overrides: list[str], count_configs: bool = False) -> dict:
    """Cycle ``cycle``'s acquisition rebuilt: the picks, whether they equal the recorded query, the
    select's wall-clock seconds, and (``count_configs``) BatchBALD's distinct sampled configurations
    per sampled pick."""
    import albench.strategies.batchbald as bb
    from albench.engine.loop import _query, _train
    from albench.engine.state import LoopState
    from albench.engine.timer import PhaseTimer
    from albench.strategies.base import Strategy
    from albench.toolkit.device import cpu_state

    queries, rows = _recorded(run_dir)
    if cycle < 1 or cycle not in queries:
        raise ProbeRefused(f"select mode needs a recorded cycle >= 1 (cycle 0 is the cold start); got {cycle}")
    with tempfile.TemporaryDirectory() as tmp:
        rc = load_run_config(run_dir, overrides, tmp)
        ctx = _context(rc)
        strategy = ctx.strategy
        # a strategy's own state_dict carries something between cycles, whatever a fresh one holds
        if type(strategy).prepare is not Strategy.prepare or type(strategy).state_dict is not Strategy.state_dict:
            raise ProbeRefused(f"strategy {rc.strategy.name!r} has a prepare phase or carries state between "
                               "cycles, which the probe does not rebuild")
        state = LoopState()
        state.labeled = _positions(ctx, np.concatenate([queries[c] for c in range(cycle)]))
        model, aux, *_ = _train(ctx, state, cycle - 1, state.labeled[-len(queries[cycle - 1]):],
                                PhaseTimer(ctx.device), None)
        prev = {"model": cpu_state(model), "aux": cpu_state(aux)}  # what the engine keeps of a finished cycle
        timer = PhaseTimer(ctx.device)
        seen: list[int] = []
        original = bb.sampled_joint

        def counting(chosen, samples, generator):
            sample = original(chosen, samples, generator)
            seen.append(int(sample.joint.shape[0]))
            return sample

        if count_configs:
            bb.sampled_joint = counting
        try:  # the engine's own query: candidates, seeded passes, outputs, select
            new = _query(ctx, cycle, state.labeled, prev, timer)
            seconds = timer.seconds.get("select", 0.0)
        finally:
            bb.sampled_joint = original
        picks = np.asarray(ctx.pool_map)[np.asarray(new, dtype=np.int64)]
        line = {"run": rc.run_id, "cycle": cycle, "n_labeled_before": int(len(state.labeled)),
                "overrides": overrides, "picks": picks.tolist(),
                "picks_equal_recorded": bool(np.array_equal(np.sort(picks), np.sort(queries[cycle]))),
                "seconds": round(seconds, 2)}
        if count_configs:
            line["distinct_configs"] = seen
    return line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.retrain_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--cycle", type=int, required=True)
    p.add_argument("--generators-of", type=int, nargs="+", metavar="G",
                   help="train with the generators of these cycles (default: --cycle's own)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--select", action="store_true", help="rebuild the cycle's acquisition instead")
    p.add_argument("--count-configs", action="store_true", help="with --select: BatchBALD's distinct configurations")
    args = p.parse_args(argv)
    if not (args.run_dir / "config.yaml").is_file():
        print(f"retrain_probe: {args.run_dir} is not a run folder (no config.yaml); pass a run's folder, "
              "e.g. results/SWEEP/DATASET/STRATEGY/seed-0", file=sys.stderr)
        return 2
    if args.count_configs and not args.select:
        print("retrain_probe: --count-configs needs --select", file=sys.stderr)
        return 2
    try:
        if args.select:
            lines = [reselect(args.run_dir, args.cycle, args.overrides, args.count_configs)]
        else:
            lines = retrain(args.run_dir, args.cycle, args.generators_of or [args.cycle], args.overrides)
    except ProbeRefused as exc:
        print(f"retrain_probe: refused: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
