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

import dataclasses
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from albench.divergence import check_finite
from albench.errors import ConfigError
from albench.typed import MAX_IMAGES, NO_DEFAULT, Bounds, param_spec, signature_spec, validate_params


class Need(str, Enum):
    """Inputs a strategy can ask the engine for (computed in eval mode, test transform)."""

    LOGITS = "logits"  # (n, C) raw scores of the current model
    POSTERIORS = "posteriors"  # (n, C) softmax of the logits
    CONFIDENCE = "confidence"  # (n,) top-1 posterior; for segmentation the mean over pixels
    EMBEDDINGS = "embeddings"  # (n, D) pooled penultimate features
    AUX = "aux"  # (n,) the score of the strategy's auxiliary module (e.g. predicted loss)
    LABELED = "labeled"  # also compute the declared outputs for the labeled set


@dataclass(frozen=True)
class StochasticPasses:
    """A parametrised need: ``passes`` stochastic forward passes of each candidate (MC dropout).

    A strategy declares it by putting an instance in its ``needs`` (next to :class:`Need` members);
    the engine then fills ``Outputs.stochastic`` without knowing the strategy:

    - every dropout layer (``nn.Dropout``, ``nn.Dropout1d/2d/3d``) draws a fresh mask on each pass,
      from a generator seeded with ``seed`` (numpy's PCG64 on the CPU, torch's on CUDA; never a global
      RNG), with the layer's own p;
    - a model that declares its stochastic split (``forward_prefix`` / ``forward_suffix``) runs the
      deterministic prefix once per chunk and the suffix ``passes`` times, with the same masks and
      posteriors as full passes;
    - ``batchnorm="eval"``: every other layer stays in eval mode (BatchNorm uses its running
      statistics; baal's MC dropout). ``"train"``: every other layer is in train mode (BatchNorm uses
      the statistics of the batch of candidates; ``model.train()`` in the official code of some
      repositories); running statistics are restored afterwards;
    - the posteriors of one chunk of candidates (the evaluation batch), a (b, passes, C) float32
      tensor, are handed to ``reduce``, a pure function returning one row per candidate; the rows are
      concatenated, so memory is bounded by one chunk, whatever the pool size. ``reduce=None``
      returns the (n, passes, C) posteriors themselves, refused when they exceed
      ``albench.engine.inference.STOCHASTIC_RAW_LIMIT`` bytes.

    ``seed``: None (the usual case) lets the engine seed the masks from the run's seed and the
    cycle; a strategy may instead set its own draw from the run's generator.

    ``consistent``: False (BALD's case) draws a fresh mask for every candidate on every pass, as
    ``nn.Dropout`` in train mode does. True is *consistent* MC dropout (Kirsch et al., NeurIPS 2019;
    BlackHC/batchbald_redux ``ConsistentMCDropout``): each dropout layer draws one mask per pass,
    shared by every candidate of every chunk, so pass t is one draw of the weights for the whole
    candidate set. A score of several candidates together (BatchBALD's joint entropy) needs it;
    a per-candidate score is the same in distribution either way.
    """

    passes: int
    batchnorm: str = "eval"  # "eval" | "train"
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    seed: int | None = None
    consistent: bool = False


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
    stochastic: torch.Tensor | None = None  # StochasticPasses: reduce's rows, or (n, passes, C) posteriors


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
    mean: tuple[float, ...]  # the run's normalisation (train.augment, else the dataset's)
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
    channel_order: str = "rgb"  # 'bgr': the run reverses channels before normalising (train.augment)
    # progress(what, done, total) of a long phase in epochs, e.g. ("pretext rotation", 3, 15): the progress
    # display shows it with an ETA. Call it with done=0 when the phase starts, then after each epoch.
    progress: Callable[[str, int, int], None] = lambda what, done, total: None
    # the frozen features a model over features (``head``) reads, one float32 row per pool image (pool
    # order), and what run.json records about them (source, cache key); None for a model over images
    features: np.ndarray | None = None
    features_info: dict | None = None


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
    ``flag`` quirk taints every number made with it (reports print the flag). ``source`` names what
    the quirk reproduces, ``"owner/repo@commit path"`` (e.g.
    ``"johnsk95/PT4AL@9a0da4a make_batches.py"``). ``official``: whether ``protocol: official``
    switches it on (False for a behaviour the authors' current code no longer has, kept so older
    published numbers stay reproducible). ``group``: quirks of one strategy that share a non-empty
    group only make sense together (one behaviour of the code that the harness switches in several
    places): a config's ``quirks:`` list names all of them or none, and an ablation
    (``ablate: quirks``) removes them as one unit, named by the group. Members of a group share
    ``official``.
    """

    name: str
    doc: str
    params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    flag: bool = False
    source: str = ""
    official: bool = True
    group: str = ""

    @property
    def summary(self) -> str:
        """The doc on one line, whitespace collapsed (for ``albench list quirks``)."""
        return " ".join(self.doc.split())


def quirk_units(quirks) -> list[tuple[str, tuple[str, ...]]]:
    """``quirks`` (Quirk objects, in declaration order) as ablation units: ``(unit name, quirk names)``.

    A quirk without a group is a unit of its own, named by the quirk; the quirks of one group form a
    single unit named by the group, placed where its first member is declared."""
    units: dict[str, list[str]] = {}
    for q in quirks:
        units.setdefault(q.group or q.name, []).append(q.name)
    return [(name, tuple(members)) for name, members in units.items()]


def check_quirk_declarations(name: str, quirks) -> None:
    """ValueError unless the quirks a strategy declares are well formed: distinct names, no group named
    like another quirk, and the members of a group all on (or all off) under protocol ``official``."""
    names = [q.name for q in quirks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"strategy {name!r} declares quirk {dup[0]!r} twice")
    groups: dict[str, list] = {}
    for q in quirks:
        if q.group:
            groups.setdefault(q.group, []).append(q)
    for group, members in groups.items():
        if group in names and [m.name for m in members] != [group]:
            raise ValueError(f"strategy {name!r}: quirk group {group!r} has the name of another quirk")
        if len({m.official for m in members}) > 1:
            raise ValueError(f"strategy {name!r}: the quirks of group {group!r} ("
                             f"{', '.join(m.name for m in members)}) only make sense together, so protocol "
                             "'official' must switch all of them on or none (same 'official')")


# what Quirk.source must look like: owner/repo@commit (7-40 hex digits), a space, a file path
QUIRK_SOURCE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+@[0-9a-f]{7,40} \S+")


class Strategy(ABC):
    """Base class. A strategy declares its params as ``Params``, a frozen dataclass whose fields carry
    their type, default and range (``Annotated[int, Bounds(ge=1)]``); ``__init__(**params)`` builds
    ``self.params`` from them and mirrors each field as an attribute of the same name. A strategy
    without ``Params`` (a third-party plugin, say) declares its params as keyword-only ``__init__``
    arguments with type hints, plain or ``Annotated``, which are validated the same way."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs: ClassVar[frozenset[Need]] = frozenset()
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})
    quirks: ClassVar[tuple[Quirk, ...]] = ()  # what protocol 'official' switches on
    Params: ClassVar[type | None] = None  # frozen dataclass of the params; None: the keyword-only __init__

    def __init__(self, **params: Any) -> None:
        if self.Params is None:
            if params:
                raise TypeError(f"{type(self).__name__} declares no Params and takes no {sorted(params)}")
            return
        self.params = self.Params(**params)
        for f in dataclasses.fields(self.params):
            setattr(self, f.name, getattr(self.params, f.name))

    # ------------------------------------------------------------------ params and protocols
    @classmethod
    def param_types(cls) -> dict[str, tuple[Any, Any]]:
        """``{param: (type, default)}`` from ``Params``, or else from the keyword-only ``__init__``
        signature; a param without a default maps to ``inspect.Parameter.empty``."""
        if cls._declares_params():
            return param_spec(cls.Params)
        return signature_spec(cls.__init__)

    @classmethod
    def _declares_params(cls) -> bool:
        """Whether ``Params`` holds the params: it does unless a subclass below the one declaring it
        (a plugin extending a built-in, say) overrides ``__init__`` with named keyword arguments."""
        if cls.Params is None:
            return False
        for k in cls.__mro__:
            if "Params" in vars(k):
                return True
            if "__init__" in vars(k) and set(signature_spec(vars(k)["__init__"])):
                return False
        return True

    @classmethod
    def validate_params(cls, params: dict, path: str = "params") -> dict:
        """Typed copy of the given ``params``; ConfigError naming ``path.key`` on an unknown name, a
        wrong type or a value outside its declared bounds, then the :meth:`check_params` hook on the
        full params (defaults filled in)."""
        spec = cls.param_types()
        out = validate_params(spec, params, path, f"strategy {cls.name!r}")
        cls.check_params({**{k: d for k, (_, d) in spec.items() if d is not NO_DEFAULT}, **out}, path)
        return out

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        """Checks a declared bound cannot express (several params together, a registry name), on the
        full params (defaults filled in). Raise ConfigError naming the field to refuse."""

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
    def check_model(cls, params: dict, *, model: str, model_params: dict, path: str) -> None:
        """Checks of the resolved params against the sweep's model (its registered name and its
        ``model.params`` as configured; ``path`` is ``"model.params"``), run when the config is
        loaded (e.g. BALD refuses a model without dropout). Raise ConfigError to refuse."""

    @classmethod
    def quirk(cls, name: str) -> Quirk:
        for q in cls.quirks:
            if q.name == name:
                return q
        raise KeyError(name)

    # ------------------------------------------------------------------ hooks
    def needs_for(self, task: str) -> frozenset[Need]:
        """The inputs the engine computes for each query on a dataset of ``task`` (e.g.
        ``"segmentation"``), asked once per run. Default: the class's ``needs``; override when they
        depend on the task or on params (never assign ``needs`` on an instance)."""
        return frozenset(self.needs)

    def prepare(self, ctx: PrepareContext) -> dict | None:
        """Runs once before the cycle loop (timed as the 'pretext' phase), and again on a resume
        before :meth:`load_state_dict`.

        Returns plain data about what it did (numbers, strings, lists, dicts; NumPy scalars and
        arrays are converted), recorded in run.json under ``prepare`` on a fresh start; None records
        ``{}``. Anything else fails the run.
        """
        return None

    def pretext_specs(self, seed: int) -> list:
        """The self-supervised trainings ``prepare`` runs for a run of ``seed``, as
        :class:`~albench.strategies.pretext.PretextSpec` (epochs, backbone, task): ``--dry-run``
        estimates their cost on a CPU from them. Default: none."""
        return []

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


# ``subset`` params: how many random unlabeled images to score (None: all of them)
Subset = Annotated[int | None, Bounds(ge=1, le=MAX_IMAGES)]


def check_model_params(params: dict, model_key: str, params_key: str, path: str) -> None:
    """Refuse a strategy-owned network (``params[model_key]``, with ``params[params_key]`` for it)
    that the model registry does not know, or params the model does not declare or accept
    (ConfigError naming ``path.model_key`` or ``path.params_key.<key>``)."""
    import difflib

    from albench.models.registry import has_model, model_entry, model_names, validate_model_params

    name = params[model_key]
    if not isinstance(name, str) or not has_model(name):  # a family name (timm:<name>) is checked by its family
        close = difflib.get_close_matches(str(name), model_names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{path}.{model_key}", "unknown model",
                          f"{hint}set {path}.{model_key} to one of {', '.join(model_names())}", name)
    try:
        entry = model_entry(name)  # a family resolves the name here (e.g. timm absent, or no such timm model)
    except ConfigError as exc:
        raise ConfigError(f"{path}.{model_key}", exc.problem, exc.fix, name) from None
    if entry.inputs != "images":
        raise ConfigError(f"{path}.{model_key}", "reads frozen features, not images; a strategy-owned network "
                          "trains on the pool's images", f"set {path}.{model_key} to an image model such as small-cnn",
                          name)
    validate_model_params(name, params.get(params_key), f"{path}.{params_key}")


def random_subset(indices: np.ndarray, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """A sorted uniform subset of ``indices`` (all of them when ``size`` is None or larger)."""
    if size is None or size >= len(indices):
        return indices
    return np.sort(rng.choice(indices, size=size, replace=False))
