"""The strategy plugin interface.

A strategy declares the inputs it needs (:class:`Need`); each cycle the engine computes them once,
in one batched pass over the strategy's candidates, and hands them to :meth:`Strategy.select`.
Optional hooks cover what the published methods need without the engine knowing any of them:

- :meth:`Strategy.prepare`: a phase before the cycle loop (PT4AL's pretext training);
- :meth:`Strategy.initial`: the cold-start query (uniform random unless overridden);
- :meth:`Strategy.candidates`: which unlabeled images to score this cycle (a subset, a batch);
- :meth:`Strategy.auxiliary`: a module trained jointly with the main model (Learning Loss);
- a strategy-owned model trained at query time lives inside ``select`` (VAAL, GCN).

Official-protocol quirks are declared as :class:`Quirk` objects, so every switch is named,
documented and recorded with the run.
"""

from __future__ import annotations

import inspect
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from bench.divergence import check_finite
from bench.errors import ConfigError
from bench.typed import coerce


class Need(str, Enum):
    """Inputs a strategy can ask the engine for (computed in eval mode, test transform)."""

    LOGITS = "logits"  # (n, C) raw scores of the current model
    POSTERIORS = "posteriors"  # (n, C) softmax of the logits
    CONFIDENCE = "confidence"  # (n,) top-1 posterior; for segmentation the mean over pixels
    EMBEDDINGS = "embeddings"  # (n, D) pooled penultimate features
    AUX = "aux"  # (n,) the score of the strategy's auxiliary module (e.g. predicted loss)
    LABELED = "labeled"  # also compute the declared outputs for the labeled set


@dataclass
class PoolState:
    """The train pool as a strategy may see it: all images, labels of labeled images only."""

    images: torch.Tensor  # uint8 (N, C, H, W), CPU
    labeled: np.ndarray  # pool indices, in acquisition order
    labeled_targets: torch.Tensor  # targets of ``labeled``, same order
    num_classes: int
    task: str = "classification"

    @property
    def size(self) -> int:
        return int(self.images.shape[0])

    @property
    def unlabeled(self) -> np.ndarray:
        """Sorted pool indices not yet labeled."""
        mask = np.ones(self.size, dtype=bool)
        mask[self.labeled] = False
        return np.flatnonzero(mask)


@dataclass
class ModelInfo:
    """What a strategy may know about the main network when building auxiliary modules."""

    stage_channels: tuple[int, ...]
    embedding_dim: int
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]


@dataclass
class Outputs:
    """Model outputs over a set of pool indices; fields the strategy did not declare are None."""

    indices: np.ndarray
    logits: torch.Tensor | None = None
    posteriors: torch.Tensor | None = None
    confidence: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None
    aux: torch.Tensor | None = None


@dataclass
class Inputs:
    """Everything the engine computed for one ``select`` call."""

    candidates: Outputs
    labeled: Outputs | None
    device: torch.device


@dataclass
class PrepareContext:
    """What :meth:`Strategy.prepare` gets: the unlabeled pool, the run's seed and where to cache."""

    pool: PoolState
    test_images: torch.Tensor  # uint8, for analysis artefacts (never for selection)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    seed: int
    cycles: int
    initial: int
    budget: int
    pool_fingerprint: str  # hash of the pool's images: a cache key part
    cache_dir: Path  # shared by the runs of one output root
    run_dir: Path
    log: Callable[[str], None] = print
    amp: bool = False


class Auxiliary(nn.Module):
    """A module trained together with the main model (the engine optimises it with the same protocol)."""

    def training_loss(self, out, per_sample_loss: torch.Tensor, *, epoch: int, epochs: int) -> torch.Tensor:
        """Scalar loss added to the main task loss; ``per_sample_loss`` is the main loss per item."""
        raise NotImplementedError

    def score(self, out) -> torch.Tensor:
        """(B,) per-item score, handed to ``select`` as ``inputs.candidates.aux``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Quirk:
    """One named behaviour of an official codebase, switchable per run.

    ``params`` override strategy params, ``train`` overrides the run's training protocol. A
    ``flag`` quirk taints every number made with it (reports print the flag).
    """

    name: str
    doc: str
    params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    flag: bool = False


class Strategy(ABC):
    """Base class. Subclasses declare params as keyword-only ``__init__`` arguments with types."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs: ClassVar[frozenset[Need]] = frozenset()
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})
    quirks: ClassVar[tuple[Quirk, ...]] = ()  # what protocol 'official' switches on

    def __init__(self) -> None:  # subclasses take keyword-only params
        pass

    # ------------------------------------------------------------------ params and protocols
    @classmethod
    def param_types(cls) -> dict[str, tuple[Any, Any]]:
        """``{param: (type, default)}`` read from the keyword-only ``__init__`` signature."""
        sig = inspect.signature(cls.__init__)
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
        out = {}
        for name, p in sig.parameters.items():
            if name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            out[name] = (hints.get(name, Any), p.default)
        return out

    @classmethod
    def validate_params(cls, params: dict, path: str = "params") -> dict:
        """Typed copy of ``params``; ConfigError on an unknown name or a bad value."""
        if not isinstance(params, dict):
            raise ConfigError(path, "must be a mapping", f"write {path} as 'key: value' lines", params)
        spec = cls.param_types()
        out = {}
        for key, value in params.items():
            if key not in spec:
                known = ", ".join(spec) or "none"
                raise ConfigError(f"{path}.{key}", f"unknown parameter for strategy {cls.name!r}",
                                  f"remove it; known parameters: {known}")
            out[key] = coerce(spec[key][0], value, f"{path}.{key}")
        cls.check_params({**{k: d for k, (_, d) in spec.items() if d is not inspect.Parameter.empty}, **out}, path)
        return out

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        """Range and cross-parameter checks on the full params (defaults filled in)."""

    @classmethod
    def check_schedule(cls, params: dict, *, pool_size: int, initial: int, budget: int, cycles: int,
                       path: str) -> None:
        """Checks that need the pool size and the AL schedule (e.g. a memory bound that grows with the
        labeled set); run when the config is loaded, before any job is queued. ``params`` are the
        resolved params (defaults and protocol quirks applied). Raise ConfigError to refuse."""

    @classmethod
    def check_task(cls, params: dict, *, task: str, path: str) -> None:
        """Checks of the resolved params that depend on the dataset's task (e.g. an option defined for
        classification only), run when the config is loaded, after ``tasks`` admitted the task.
        Raise ConfigError to refuse."""

    @classmethod
    def quirk(cls, name: str) -> Quirk:
        for q in cls.quirks:
            if q.name == name:
                return q
        raise KeyError(name)

    # ------------------------------------------------------------------ hooks
    def prepare(self, ctx: PrepareContext) -> None:
        """Runs once before the cycle loop (timed as the 'pretext' phase)."""

    def initial(self, *, size: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        """The cold-start query: ``size`` pool indices. Default: uniform without replacement."""
        return np.sort(rng.choice(pool.unlabeled, size=size, replace=False))

    def candidates(self, *, cycle: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        """Unlabeled pool indices to score this cycle. Default: all of them."""
        return pool.unlabeled

    def auxiliary(self, info: ModelInfo) -> Auxiliary | None:
        """A module to train jointly with the main model, or None."""
        return None

    @abstractmethod
    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        """Return ``budget`` distinct unlabeled pool indices to label next (int64 array)."""

    # ------------------------------------------------------------------ persistence and analysis
    def state_dict(self) -> dict:
        """Plain data (numpy arrays, numbers, strings) needed to resume after a checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def artifacts(self) -> dict[str, np.ndarray]:
        """Arrays saved with the run for analyses (e.g. per-image pretext losses)."""
        return {}


def top_k_lowest(scores: torch.Tensor | np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` lowest scores; ties broken by position (stable), so selections are
    reproducible across devices."""
    s = scores.detach().float().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    check_finite(s, phase="select", what="a strategy score")  # NaN would sort last, inf first: never rank them
    return np.argsort(s, kind="stable")[:k]


def top_k_highest(scores: torch.Tensor | np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores; ties broken by position (stable)."""
    s = scores.detach().float().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    check_finite(s, phase="select", what="a strategy score")
    return np.argsort(-s, kind="stable")[:k]


def check_subset(params: dict, path: str) -> None:
    """Refuse a ``subset`` param that is neither null nor a positive integer (ConfigError naming it)."""
    if params.get("subset") is not None and params["subset"] < 1:
        raise ConfigError(f"{path}.subset", "must be a positive integer or null",
                          f"set {path}.subset to e.g. 10000, or null for the whole pool", params["subset"])


def random_subset(indices: np.ndarray, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """A sorted uniform subset of ``indices`` (all of them when ``size`` is None or larger)."""
    if size is None or size >= len(indices):
        return indices
    return np.sort(rng.choice(indices, size=size, replace=False))
