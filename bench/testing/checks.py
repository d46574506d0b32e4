"""The contract checks, one function each: ``check_*(name, params, workdir)`` returns None or raises
:class:`~albench.testing.harness.ContractError` (an AssertionError) saying what is broken.

``name`` is a registered strategy, ``params`` its (fast) params, ``workdir`` an empty folder the
check may write to. They need no pytest: call them from any test runner.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from albench.testing.harness import SCHEDULE, ContractError, Schedule, SyntheticRun, global_rng_guard

UNKNOWN_PARAM = "albench_contract_no_such_param"

#: the tiny end-to-end run (as tests/conftest.py's TINY): digits, a width-8 small CNN, 3 cycles of 20
END_TO_END = {
    "name": "contract",
    "dataset": {"name": "digits"},
    "model": {"name": "small-cnn", "params": {"width": 8, "dropout": 0.25}},  # dropout: for MC-dropout strategies
    "train": {"epochs": 1, "batch_size": 32, "optimizer": {"lr": 0.05}, "schedule": {"name": "constant"}},
    "al": {"initial": 20, "budget": 20, "cycles": 3},
    "seeds": [0],
    "threads": 1,
    "record": {"embeddings": 0},
}


def _ids(q) -> list:
    return np.asarray(q).reshape(-1).tolist()


def _hook(cycle: int) -> str:
    return "initial()" if cycle == 0 else f"select() at cycle {cycle}"


# ---------------------------------------------------------------------- the same rng, the same query
def check_same_rng_same_query(name: str, params: dict, workdir: Path, *, cycles: int = 3) -> None:
    """Two fresh instances, each with its own cache folder, given the same generators: the same queries."""
    a = SyntheticRun(name, params, workdir=Path(workdir) / "a").run(cycles)
    b = SyntheticRun(name, params, workdir=Path(workdir) / "b").run(cycles)
    for cycle, (qa, qb) in enumerate(zip(a, b)):
        if _ids(qa) != _ids(qb):
            raise ContractError(
                f"strategy {name!r}: {_hook(cycle)} returned {_ids(qa)} and then {_ids(qb)} for the same rng and "
                "inputs. Every random draw must come from the rng argument (or a generator seeded from it), "
                "never from an unseeded or global generator")


# ---------------------------------------------------------------------- global generators untouched
def check_global_rng_untouched(name: str, params: dict, workdir: Path) -> None:
    """prepare / initial / candidates / select leave torch's (CPU, CUDA), NumPy's and Python's global
    generators as they found them (raises :class:`GlobalRNGTouched`)."""
    import random

    torch.manual_seed(20240611)
    np.random.seed(20240611)
    random.seed(20240611)
    SyntheticRun(name, params, workdir=workdir, guard=global_rng_guard(name)).run()


# ---------------------------------------------------------------------- what a query is
def validate_query(name: str, query: Any, *, size: int, labeled: np.ndarray, pool_size: int, hook: str) -> None:
    """ContractError unless ``query`` is a 1-D int64 ndarray of ``size`` distinct in-pool indices not in ``labeled``."""
    where = f"strategy {name!r}: {hook}"
    if not isinstance(query, np.ndarray):
        raise ContractError(f"{where} returned a {type(query).__name__}; it must return a NumPy int64 array")
    if query.ndim != 1 or query.shape[0] != size:
        raise ContractError(f"{where} returned shape {query.shape}; it must return {size} indices, shape ({size},)")
    if query.dtype != np.int64:
        raise ContractError(f"{where} returned {query.dtype} indices; they must be int64 (np.int64)")
    if query.size and (query.min() < 0 or query.max() >= pool_size):
        raise ContractError(f"{where} returned indices outside the pool [0, {pool_size}): {query.tolist()}")
    values, counts = np.unique(query, return_counts=True)
    if (counts > 1).any():
        raise ContractError(f"{where} returned duplicate indices {values[counts > 1].tolist()}")
    again = np.intersect1d(query, labeled)
    if again.size:
        raise ContractError(f"{where} returned already-labeled indices {again.tolist()}")


def check_queries_are_valid(name: str, params: dict, workdir: Path, *, schedule: Schedule = SCHEDULE) -> None:
    """Each cycle of the schedule: ``initial`` returns ``initial`` and ``select`` ``budget`` distinct,
    unlabeled, in-pool int64 indices."""
    run = SyntheticRun(name, params, workdir=workdir, schedule=schedule)
    run.prepare()
    for cycle in range(schedule.cycles):
        labeled = run.labeled.copy()
        query = run.query()
        validate_query(name, query, size=schedule.initial if cycle == 0 else schedule.budget, labeled=labeled,
                       pool_size=schedule.pool_size, hook=_hook(cycle))


# ---------------------------------------------------------------------- state_dict and resume
def checkpoint_round_trip(state: Any) -> Any:
    """``state`` through the engine's checkpoint codec and ``torch.save`` / ``torch.load(weights_only=True)``,
    as a checkpoint and a resume carry a strategy's ``state_dict``."""
    from albench.engine import checkpoint as codec

    buf = io.BytesIO()
    torch.save({"strategy": codec.encode(state)}, buf)
    buf.seek(0)
    return codec.decode(torch.load(buf, map_location="cpu", weights_only=True)["strategy"])


def same_state(a: Any, b: Any, path: str = "state") -> str | None:
    """None when ``a`` and ``b`` hold the same data (arrays: dtype, shape and values; a tuple equals a list
    of the same items, as the codec stores tuples), else where they first differ."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return f"{path}: {type(a).__name__} vs {type(b).__name__}"
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{path}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        eq = np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        return None if eq else f"{path}: array values differ"
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        ok = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
              and a.shape == b.shape and torch.equal(a.cpu(), b.cpu()))
        return None if ok else f"{path}: tensors differ"
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)):
            return f"{path}: {type(a).__name__} vs {type(b).__name__}"
        if set(a) != set(b):
            return f"{path}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for k in a:
            diff = same_state(a[k], b[k], f"{path}[{k!r}]")
            if diff:
                return diff
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            diff = same_state(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if isinstance(a, np.generic):
        a = a.item()
    if isinstance(b, np.generic):
        b = b.item()
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return None
    return None if (type(a) is type(b) or {type(a), type(b)} <= {int, float}) and a == b else f"{path}: {a!r} vs {b!r}"


def check_state_dict_round_trip(name: str, params: dict, workdir: Path, *, resume_at: int = 2,
                                cycles: int = 4) -> None:
    """After cycle ``resume_at`` - 1, ``state_dict`` survives the checkpoint codec unchanged; a fresh
    instance, prepared and given it (as the engine resumes a run), reports the same ``state_dict`` and
    picks at cycles ``resume_at`` .. ``cycles`` - 1 what the uninterrupted instance picks."""
    run = SyntheticRun(name, params, workdir=workdir)
    run.run(resume_at)
    state = run.strategy.state_dict()
    if not isinstance(state, dict):
        raise ContractError(f"strategy {name!r}: state_dict() returned a {type(state).__name__}; it must return a dict")
    try:
        restored = checkpoint_round_trip(state)
    except Exception as exc:
        raise ContractError(f"strategy {name!r}: state_dict() does not survive a checkpoint ({type(exc).__name__}: "
                            f"{exc}); return plain data: NumPy arrays, numbers, strings, lists and dicts") from exc
    diff = same_state(state, restored)
    if diff:
        raise ContractError(f"strategy {name!r}: state_dict() changes through a checkpoint at {diff}; return plain "
                            "data: NumPy arrays, numbers, strings, lists and dicts")
    resumed = run.resumed(restored)
    diff = same_state(state, resumed.strategy.state_dict())
    if diff:
        raise ContractError(f"strategy {name!r}: load_state_dict() on a fresh instance does not restore its "
                            f"state_dict() (differs at {diff})")
    for cycle in range(resume_at, cycles):
        expected = run.query()
        try:
            got = resumed.query()
        except Exception as exc:
            raise ContractError(f"strategy {name!r}: resumed from its state_dict() before cycle {cycle}, "
                                f"{_hook(cycle)} raised {type(exc).__name__}: {exc}") from exc
        if _ids(got) != _ids(expected):
            raise ContractError(
                f"strategy {name!r}: resumed from its state_dict() before cycle {cycle}, {_hook(cycle)} picked "
                f"{_ids(got)}; uninterrupted it picks {_ids(expected)}. Put everything select depends on "
                "(beyond what prepare() rebuilds) in state_dict() and restore it in load_state_dict()")


# ---------------------------------------------------------------------- params
def check_unknown_param_refused(name: str, params: dict, workdir: Path | None = None) -> None:
    """``make_strategy(name, {**params, <unknown>: 1})`` raises a ConfigError naming the unknown param."""
    from albench.errors import ConfigError
    from albench.strategies.registry import make_strategy

    try:
        make_strategy(name, {**params, UNKNOWN_PARAM: 1})
    except ConfigError as err:
        if UNKNOWN_PARAM not in str(err.field):
            raise ContractError(f"strategy {name!r}: an unknown param was refused, but the ConfigError names "
                                f"{err.field!r}, not {UNKNOWN_PARAM!r}") from err
        return
    except Exception as exc:
        raise ContractError(f"strategy {name!r}: an unknown param raised {type(exc).__name__}: {exc}; it must "
                            "raise a ConfigError naming it (declare params as keyword-only __init__ arguments "
                            "and let Strategy.validate_params check them)") from exc
    raise ContractError(f"strategy {name!r}: the unknown param {UNKNOWN_PARAM!r} was accepted; it must be refused "
                        "with a ConfigError naming it (no **kwargs in __init__)")


# ---------------------------------------------------------------------- end to end
def check_end_to_end(name: str, params: dict, workdir: Path) -> None:
    """A tiny run (``END_TO_END``) through config, plan and the engine's cycle loop completes, recording
    one row per cycle and queries of the scheduled sizes, all distinct."""
    import copy

    from albench.config import build_config
    from albench.engine.loop import execute_run
    from albench.plan import make_plan
    from albench.records import read_cycles

    raw = copy.deepcopy(END_TO_END)
    raw["strategies"] = [{"name": name, "params": copy.deepcopy(params)}]
    raw["output"] = str(Path(workdir) / "results")
    (rc,) = make_plan(build_config(raw))
    outcome = execute_run(rc)
    if outcome.state != "complete":
        raise ContractError(f"strategy {name!r}: the tiny end-to-end run ended {outcome.state}: {outcome.error}")
    al = raw["al"]
    queries = json.loads((rc.run_dir / "queries.json").read_text())
    sizes = [len(queries.get(str(c), [])) for c in range(al["cycles"])]
    want = [al["initial"]] + [al["budget"]] * (al["cycles"] - 1)
    if sizes != want:
        raise ContractError(f"strategy {name!r}: the end-to-end run recorded queries of sizes {sizes}, not {want}")
    every = [i for c in range(al["cycles"]) for i in queries[str(c)]]
    if len(set(every)) != len(every):
        raise ContractError(f"strategy {name!r}: the end-to-end run queried an image twice")
    if len(read_cycles(rc.run_dir)) != al["cycles"]:
        raise ContractError(f"strategy {name!r}: the end-to-end run recorded {len(read_cycles(rc.run_dir))} cycles, "
                            f"not {al['cycles']}")


#: every check, by the name the suite's tests carry
CHECKS = {
    "same_rng_same_query": check_same_rng_same_query,
    "global_rng_untouched": check_global_rng_untouched,
    "queries_are_valid": check_queries_are_valid,
    "state_dict_round_trip": check_state_dict_round_trip,
    "unknown_param_refused": check_unknown_param_refused,
    "end_to_end": check_end_to_end,
}

__all__ = ["CHECKS", "END_TO_END", "UNKNOWN_PARAM", "check_end_to_end", "check_global_rng_untouched",
           "check_queries_are_valid", "check_same_rng_same_query", "check_state_dict_round_trip",
           "check_unknown_param_refused", "checkpoint_round_trip", "same_state", "validate_query"]
