"""Drive one strategy through its hooks as the engine's cycle loop does, without training a model.

:class:`SyntheticRun` builds a small seeded pool (``Schedule``: 60 random 1x8x8 images, 4 classes),
calls ``prepare`` with a :class:`~albench.strategies.base.PrepareContext`, the cold-start ``initial`` and
then, per cycle, ``candidates`` -> the declared model outputs -> ``select``, in the engine's order
(``albench/engine/loop.py``: ``_query``). The model outputs come from a freshly initialised tiny
network per cycle (a fixed function of the schedule's seed and the cycle, so two runs see the same
inputs) and the strategy's auxiliary module, through the engine's own ``compute_outputs``.

Every hook that gets an explicit ``rng`` (and ``prepare``) can be watched by a ``guard``: a context
manager factory ``guard(hook_name)`` wrapped around each call (see :func:`global_rng_guard`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch

from albench.strategies.base import Inputs, ModelInfo, Need, Outputs, PoolState, PrepareContext, Strategy
from albench.strategies.registry import make_strategy

#: the environment variable choosing the device the suite hands strategies ("cpu", "cuda", "auto")
DEVICE_ENV = "ALBENCH_CONTRACT_DEVICE"

# one code per purpose, so each hook's generator is distinct yet a fixed function of (seed, cycle)
_PURPOSES = {"initial": 1, "candidates": 2, "select": 3}


def hook_rng(seed: int, purpose: str, cycle: int = 0) -> np.random.Generator:
    """The NumPy generator the harness hands ``purpose`` ('initial', 'candidates', 'select') at ``cycle``."""
    return np.random.default_rng([seed, _PURPOSES[purpose], cycle])


def needs_of(strategy: Strategy, task: str) -> frozenset[Need]:
    """The outputs ``strategy`` declares for ``task`` (the one place the suite reads ``needs``)."""
    needs_for = getattr(strategy, "needs_for", None)
    return frozenset(needs_for(task) if callable(needs_for) else strategy.needs)


def contract_device() -> torch.device:
    """The device strategies get: ``$ALBENCH_CONTRACT_DEVICE`` ('cpu' by default; 'auto': CUDA when present)."""
    name = os.environ.get(DEVICE_ENV, "cpu").strip() or "cpu"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@dataclass(frozen=True)
class Schedule:
    """The synthetic pool and AL schedule of a :class:`SyntheticRun` (small enough for seconds on a CPU)."""

    pool_size: int = 60
    num_classes: int = 4
    channels: int = 1
    image_size: tuple[int, int] = (8, 8)
    test_size: int = 16
    initial: int = 10
    budget: int = 10
    cycles: int = 4  # cycle 0 is the cold start
    seed: int = 0
    model: str = "small-cnn"
    # a dropout layer (inert in eval mode) so that strategies with MC-dropout needs (BALD) can run
    model_params: dict = field(default_factory=lambda: {"width": 4, "dropout": 0.25})


SCHEDULE = Schedule()


def synthetic_pool(schedule: Schedule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pool images uint8 (N, C, H, W), pool targets int64 (N,), test images uint8): seeded, class-dependent
    brightness so the images are not pure noise."""
    g = torch.Generator().manual_seed(int(hash_seed(schedule.seed, "pool")))
    n, c, (h, w) = schedule.pool_size, schedule.channels, schedule.image_size
    targets = torch.arange(n, dtype=torch.int64) % schedule.num_classes
    targets = targets[torch.randperm(n, generator=g)]
    noise = torch.randint(0, 128, (n + schedule.test_size, c, h, w), generator=g, dtype=torch.int64)
    level = torch.cat([targets, torch.randint(0, schedule.num_classes, (schedule.test_size,), generator=g)])
    images = (noise + level.view(-1, 1, 1, 1) * (127 // max(schedule.num_classes - 1, 1))).clamp(0, 255)
    images = images.to(torch.uint8)
    return images[:n].contiguous(), targets, images[n:].contiguous()


def hash_seed(seed: int, purpose: str, cycle: int = 0) -> int:
    """A 63-bit integer seed for (seed, purpose, cycle)."""
    digest = hashlib.sha256(f"{seed}/{purpose}/{cycle}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def _rng_state() -> dict:
    state = {"torch": torch.random.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _changed(before: dict, after: dict) -> list[str]:
    out = []
    if not torch.equal(before["torch"], after["torch"]):
        out.append("torch's global CPU generator (torch.manual_seed / torch.rand / module init / dropout "
                   "outside torch.random.fork_rng)")
    if "cuda" in before and (len(before["cuda"]) != len(after["cuda"])
                             or not all(torch.equal(a, b) for a, b in zip(before["cuda"], after["cuda"]))):
        out.append("torch's global CUDA generator (torch.cuda.manual_seed / random ops on the GPU without an "
                   "explicit generator)")
    nb, na = before["numpy"], after["numpy"]
    if nb[0] != na[0] or not np.array_equal(nb[1], na[1]) or nb[2:] != na[2:]:
        out.append("NumPy's global generator (np.random.seed / np.random.choice ...)")
    if before["python"] != after["python"]:
        out.append("Python's random module")
    return out


class ContractError(AssertionError):
    """A strategy breaks the plugin contract (the message names the check and what to fix)."""


class GlobalRNGTouched(ContractError):
    """A hook changed a process-wide random generator."""


@contextlib.contextmanager
def _watch(strategy_name: str, hook: str):
    before = _rng_state()
    yield
    changed = _changed(before, _rng_state())
    if changed:
        raise GlobalRNGTouched(
            f"strategy {strategy_name!r}: {hook}() changed {'; '.join(changed)}. Draw from the rng argument, or "
            "from a torch.Generator seeded from it, or wrap the draws in torch.random.fork_rng()")


def global_rng_guard(strategy_name: str) -> Callable[[str], ContextManager]:
    """A ``guard`` for :class:`SyntheticRun` raising :class:`GlobalRNGTouched` when a hook changes torch's
    global generator (CPU, and CUDA when present), NumPy's or Python's."""
    return lambda hook: _watch(strategy_name, hook)


class SyntheticRun:
    """One strategy on the synthetic pool of ``schedule``, driven like the engine drives it.

    ``params`` are validated by :func:`~albench.strategies.registry.make_strategy`. ``workdir`` holds the
    prepare cache and run folder. Call :meth:`prepare` once, then :meth:`query` for cycles 0, 1, ...
    (:meth:`run` does both); each query is appended to :attr:`queries` and labeled.
    """

    def __init__(self, name: str, params: dict | None, *, workdir: Path, schedule: Schedule = SCHEDULE,
                 device: torch.device | None = None, guard: Callable[[str], ContextManager] | None = None) -> None:
        self.name = name
        self.params = dict(params or {})
        self.schedule = schedule
        self.workdir = Path(workdir)
        self.device = device if device is not None else contract_device()
        self.guard = guard or (lambda hook: contextlib.nullcontext())
        self.strategy: Strategy = make_strategy(name, self.params)
        self.images, self.targets, self.test_images = synthetic_pool(schedule)
        self.labeled = np.zeros(0, dtype=np.int64)
        self.queries: list[np.ndarray] = []
        self.prepare_info = None
        self._built = None  # (cycle, model, aux) of the last outputs() call
        x = self.images.to(torch.float64) / 255.0
        self.mean = tuple(float(v) for v in x.mean(dim=(0, 2, 3)))
        self.std = tuple(float(v) for v in x.std(dim=(0, 2, 3)).clamp_min(1e-6))

    # ------------------------------------------------------------------ what the engine builds
    def pool_state(self) -> PoolState:
        return PoolState(images=self.images, labeled=self.labeled.copy(),
                         labeled_targets=self.targets[torch.from_numpy(self.labeled)],
                         num_classes=self.schedule.num_classes, task="classification")

    def prepare_context(self) -> PrepareContext:
        s = self.schedule
        empty = np.zeros(0, dtype=np.int64)
        pool = PoolState(images=self.images, labeled=empty, labeled_targets=self.targets[:0],
                         num_classes=s.num_classes, task="classification")
        fp = hashlib.sha256(self.images.numpy().tobytes()).hexdigest()
        run_dir = self.workdir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        return PrepareContext(pool=pool, test_images=self.test_images, mean=self.mean, std=self.std,
                              device=self.device, seed=s.seed, cycles=s.cycles, initial=s.initial, budget=s.budget,
                              pool_fingerprint=fp, cache_dir=self.workdir / ".cache", run_dir=run_dir,
                              log=lambda msg: None, amp=False)

    def _model(self, cycle: int):
        """This cycle's network and the strategy's auxiliary module, freshly initialised from (seed, cycle)
        the way the engine builds them (global RNG seeded, then restored)."""
        from albench.models.registry import build_model

        s = self.schedule
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash_seed(s.seed, "model", cycle))
            model = build_model(s.model, num_classes=s.num_classes, in_channels=s.channels,
                                image_size=s.image_size, params=s.model_params)
            info = ModelInfo(stage_channels=tuple(model.stage_channels), embedding_dim=int(model.embedding_dim),
                             num_classes=s.num_classes, in_channels=s.channels, image_size=s.image_size)
            aux = self.strategy.auxiliary(info)
        model.to(self.device)
        if aux is not None:
            aux.to(self.device)
        return model, aux

    def outputs(self, cycle: int, needs: frozenset, indices: np.ndarray) -> Outputs:
        """The declared outputs of this cycle's network for pool ``indices`` (indices only when none are needed)."""
        if not needs - {Need.LABELED}:
            return Outputs(indices=indices)
        from albench.data.augment import BatchTransform
        from albench.engine.inference import compute_outputs, seed_stochastic
        from albench.tasks import make_task

        if self._built is None or self._built[0] != cycle:
            self._built = (cycle, *self._model(cycle))
        _, model, aux = self._built
        transform = BatchTransform(self.mean, self.std, device=self.device)
        needs = seed_stochastic(needs, hash_seed(self.schedule.seed, "stochastic", cycle))
        return compute_outputs(model=model, aux=aux, task=make_task("classification", self.schedule.num_classes),
                               needs=needs, images=self.images, indices=indices, transform=transform,
                               batch_size=64, device=self.device)

    # ------------------------------------------------------------------ the hooks, in the engine's order
    def prepare(self):
        """Call ``prepare`` (as the engine does before the cycle loop, on a fresh run and on a resume)."""
        with self.guard("prepare"):
            self.prepare_info = self.strategy.prepare(self.prepare_context())
        return self.prepare_info

    def query(self) -> np.ndarray:
        """The next cycle's query, as returned by ``initial`` (cycle 0) or ``select``; then labeled."""
        s, cycle, pool = self.schedule, len(self.queries), self.pool_state()
        if cycle == 0:
            with self.guard("initial"):
                new = self.strategy.initial(size=s.initial, pool=pool, rng=hook_rng(s.seed, "initial"))
        else:
            with self.guard("candidates"):
                cand = self.strategy.candidates(cycle=cycle, pool=pool, rng=hook_rng(s.seed, "candidates", cycle))
            cand = np.asarray(cand, dtype=np.int64)
            needs = needs_of(self.strategy, "classification")
            inputs = Inputs(candidates=self.outputs(cycle, needs, cand),
                            labeled=self.outputs(cycle, needs, self.labeled) if Need.LABELED in needs else None,
                            device=self.device)
            with self.guard("select"):
                new = self.strategy.select(cycle=cycle, budget=s.budget, pool=pool, inputs=inputs,
                                           rng=hook_rng(s.seed, "select", cycle))
        self.queries.append(new)  # as returned: the checks judge its type
        self.labeled = np.concatenate([self.labeled, np.asarray(new).astype(np.int64).reshape(-1)])
        return new

    def run(self, cycles: int | None = None) -> list[np.ndarray]:
        """``prepare`` and the queries of cycles 0 .. ``cycles`` - 1 (default: the schedule's)."""
        self.prepare()
        for _ in range(self.schedule.cycles if cycles is None else cycles):
            self.query()
        return self.queries

    def resumed(self, state: dict) -> "SyntheticRun":
        """A new run of the same strategy and schedule at this run's next cycle, as the engine resumes it:
        a fresh instance, ``prepare``, then ``load_state_dict(state)``, with this run's labeled set."""
        other = SyntheticRun(self.name, self.params, workdir=self.workdir, schedule=self.schedule,
                             device=self.device, guard=self.guard)
        other.prepare()
        other.strategy.load_state_dict(state)
        other.labeled = self.labeled.copy()
        other.queries = list(self.queries)
        return other

