"""PT4AL (Yi et al., ECCV 2022; johnsk95/PT4AL) and the two ablations of its section 6.1.

PT4AL, as the paper describes it (``protocol: paper``):

1. Before the cycle loop, a pretext network (rotation prediction by default) is trained on the
   unlabeled pool, and every pool image gets its per-image pretext loss (:mod:`albench.strategies.pretext`;
   cached on disk and shared by every run that needs the same losses).
2. The pool is sorted by that loss, descending (``batch_order: high-first``) or ascending
   (``low-first``), and cut into I batches, I = the number of cycles (or ``batches``).
3. Cycle 0 samples from batch 0 with the pretext loss alone: ``uniform`` (every |b|/K-th image of the
   sorted batch, the official ``j * 5``), ``top-k`` (its first K) or ``random``.
4. Cycle c > 0 scores batch c with the previous cycle's model and takes the K images with the lowest
   top-1 posterior (``sampler: confidence``) or the highest entropy (``sampler: entropy``).

Design choices where the paper is silent:

- Remainder of the split: with N = q * I + r, the first r batches get q + 1 images and the others q
  (``numpy.array_split``); no image is left out. (The official code slices 5,000-image batches and
  would drop the remainder; CIFAR-10's 50,000 / 10 has none.)
- Uniform sampling of K from a batch of b: positions floor(j * b / K), j = 0..K-1 (j * 5 when b = 5,000
  and K = 1,000, as the official code).
- A batch with fewer unlabeled images than needed: all of them are taken, and the rest comes from the
  following batches in order (wrapping around to the first ones), chosen within each batch by the
  same sampler. So ``initial`` > |b0|, or a ``batches`` count below the number of cycles, still works.
- Ties (equal losses or scores) go to the earlier position, so selections are reproducible (under
  ``string_sort``, identical loss strings keep numpy's quicksort order instead, as the official
  code: deterministic for a given numpy).

The official code's behaviours are :class:`~albench.strategies.base.Quirk` switches, all on under
``protocol: official``: ``string_sort``, ``normalized_softmax``, ``warm_start``, ``best_on_test``
(flagged) and ``bgr_normalization`` (the run's ``train.augment`` set to BGR channel order with the
official mean/std; the pretext network then sees BGR images too). Module-level functions hold
each step, so tests pin their exact output.

Segmentation (the paper's section 5.2, with ``pretext_task: colorization``, its choice for a
pixel-level task, section 6.2): the in-batch sampler's confidence of an image is the engine's
segmentation confidence, the mean over its pixels of the top-1 posterior (so (B, C, H, W) logits
are never kept); the lowest are taken. ``sampler: entropy`` and ``normalized_softmax`` have no
per-image counterpart there and are refused at config load. ``pt4al-pretext-only`` needs no model
output and works on segmentation pools as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from albench.errors import ConfigError
from albench.typed import Bounds
from albench.strategies.base import (Inputs, Need, PoolState, PrepareContext, Quirk, Strategy, check_model_params,
                             top_k_highest)
from albench.strategies.pretext import TASKS, PretextSpec, derive_seed, pretext_losses
from albench.strategies.registry import register_strategy
from albench.strategies.representation import cold_start_spec, make_cold_start

# ------------------------------------------------------------------------------------------------
# the pieces


def loss_strings(losses: np.ndarray) -> np.ndarray:
    """Each loss as the official code writes it to rotation_loss.txt: ``str`` of a Python float.

    A float32 loss becomes the Python float of that float32 value (what ``tensor.item()`` returns),
    so e.g. 1.94e-05 is written '1.94e-05' (or its float32 spelling) and sorts after '0.97' as text.
    """
    return np.array([str(float(v)) for v in np.asarray(losses).ravel()])


def sort_losses(losses: np.ndarray, *, descending: bool = True, as_strings: bool = False) -> np.ndarray:
    """Pool positions ordered by loss (int64): highest first when ``descending``.

    Numeric order (the paper) breaks ties by position. ``as_strings`` reproduces the official
    make_batches.py: the losses' text (:func:`loss_strings`) is argsorted lexicographically and the
    result reversed for high-loss-first, so values printed in scientific notation land by their
    leading digit (1.94e-05 before 0.97). The argsort is numpy's default (quicksort, not stable), as
    the official call: identical strings come out in the order that algorithm leaves them, which is
    what the authors' batch files hold (a stable sort differs on every tied position).
    """
    losses = np.asarray(losses)
    if losses.ndim != 1:
        raise ValueError(f"losses must be one-dimensional, got shape {losses.shape}")
    if as_strings:
        # numpy's default kind on purpose: the official tie order (see the docstring)
        ascending = np.argsort(loss_strings(losses))
        return (ascending[::-1] if descending else ascending).astype(np.int64)
    if not np.all(np.isfinite(losses)):
        raise ValueError("pretext losses contain NaN or infinity; the pretext training diverged")
    keys = -losses.astype(np.float64) if descending else losses.astype(np.float64)
    return np.argsort(keys, kind="stable").astype(np.int64)


def split_batches(order: np.ndarray, count: int) -> list[np.ndarray]:
    """``order`` cut into ``count`` consecutive batches; with N = q * count + r, the first r batches
    hold q + 1 images and the rest q."""
    order = np.asarray(order, dtype=np.int64)
    if not 1 <= count <= len(order):
        raise ValueError(f"cannot split {len(order)} images into {count} batches")
    return [b.astype(np.int64) for b in np.array_split(order, count)]


def uniform_positions(size: int, k: int) -> np.ndarray:
    """``k`` evenly spaced positions in a batch of ``size``: floor(j * size / k) for j = 0..k-1."""
    if not 0 <= k <= size:
        raise ValueError(f"cannot take {k} of {size}")
    return (np.arange(k, dtype=np.int64) * size) // max(k, 1)


def first_cycle_pick(batch: np.ndarray, k: int, how: str, rng: np.random.Generator) -> np.ndarray:
    """``k`` images of a loss-sorted ``batch`` (pool indices) for the cold start.

    ``uniform``: the images at :func:`uniform_positions`; ``top-k``: the first ``k`` (the highest
    losses under high-first order); ``random``: ``k`` drawn without replacement from ``rng``.
    """
    batch = np.asarray(batch, dtype=np.int64)
    if how == "uniform":
        return batch[uniform_positions(len(batch), k)]
    if how == "top-k":
        return batch[:k]
    if how == "random":
        return rng.choice(batch, size=k, replace=False).astype(np.int64)
    raise ValueError(f"unknown first-cycle sampler {how!r}")


def batch_visit_order(count: int, start: int) -> list[int]:
    """Batch indices from ``start`` to the last, then from the first up to ``start`` (the top-up order)."""
    start = min(max(start, 0), count - 1)
    return list(range(start, count)) + list(range(0, start))


def _labeled_mask(batches: list[np.ndarray], labeled: np.ndarray) -> np.ndarray:
    labeled = np.asarray(labeled, dtype=np.int64)
    size = 1 + max([int(b.max(initial=-1)) for b in batches] + [int(labeled.max(initial=-1))])
    mask = np.zeros(size, dtype=bool)
    mask[labeled] = True
    return mask


def take_from_batches(batches: list[np.ndarray], start: int, k: int, labeled: np.ndarray,
                      pick: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """``k`` unlabeled pool indices, from batch ``start`` first.

    ``pick(available, m)`` chooses ``m`` of a batch's unlabeled images (in batch order). A batch with
    no more unlabeled images than still needed is taken whole and the rest comes from the next batch
    of :func:`batch_visit_order`.
    """
    mask = _labeled_mask(batches, labeled)
    out, need = [], int(k)
    for bi in batch_visit_order(len(batches), start):
        if need == 0:
            break
        avail = batches[bi][~mask[batches[bi]]]
        if len(avail) == 0:
            continue
        chosen = avail if len(avail) <= need else np.asarray(pick(avail, need), dtype=np.int64)
        out.append(chosen)
        need -= len(chosen)
    if need:
        raise ValueError(f"only {k - need} unlabeled images are left in the batches; {k} were asked for")
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def batches_needed(batches: list[np.ndarray], start: int, k: int, labeled: np.ndarray) -> np.ndarray:
    """The unlabeled images of every batch :func:`take_from_batches` may draw from for ``k`` images
    (batch ``start``, plus the following ones while the count is short), sorted pool indices."""
    mask = _labeled_mask(batches, labeled)
    out, have = [], 0
    for bi in batch_visit_order(len(batches), start):
        if have >= k:
            break
        avail = batches[bi][~mask[batches[bi]]]
        out.append(avail)
        have += len(avail)
    return np.sort(np.concatenate(out)).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def posteriors(logits: torch.Tensor, *, normalized: bool = False) -> torch.Tensor:
    """Softmax of ``logits`` (n, C); with ``normalized``, of the L2-normalised logits, as the official
    main.py (which caps the top-1 probability at e / (e + C - 1), about 0.23 with 10 classes)."""
    z = logits.float()
    if normalized:
        z = F.normalize(z, dim=1)
    return torch.softmax(z, dim=1)


def uncertainty(logits: torch.Tensor, *, sampler: str, normalized: bool = False) -> np.ndarray:
    """(n,) float64, higher = more uncertain: minus the top-1 posterior (``confidence``, so the K
    highest are the K least confident) or the posterior entropy in nats (``entropy``)."""
    p = posteriors(logits, normalized=normalized).double()
    if sampler == "confidence":
        return (-p.max(dim=1).values).cpu().numpy()
    if sampler == "entropy":
        return (-(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)).cpu().numpy()
    raise ValueError(f"unknown in-batch sampler {sampler!r}")


def in_batch_pick(candidates: np.ndarray, scores: np.ndarray) -> Callable[[np.ndarray, int], np.ndarray]:
    """A ``pick`` for :func:`take_from_batches`: the ``m`` most uncertain of the available images.

    ``scores`` (higher = more uncertain) are aligned with pool indices ``candidates``; ties go to the
    earlier position in the batch.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    lookup = np.full(int(candidates.max(initial=-1)) + 1, -1, dtype=np.int64)
    lookup[candidates] = np.arange(len(candidates))

    def pick(avail: np.ndarray, m: int) -> np.ndarray:
        idx = lookup[avail] if avail.max(initial=-1) < len(lookup) else np.full(len(avail), -1)
        if (idx < 0).any():
            raise ValueError("an available image of the batch was not among the scored candidates")
        return avail[top_k_highest(np.asarray(scores)[idx], m)]

    return pick


# ------------------------------------------------------------------------------------------------
# the official code's quirks

PT4AL_REPO = "johnsk95/PT4AL@9a0da4a"  # the repository's HEAD (2023-01-02) the quirks were read from
STRING_SORT = Quirk(
    "string_sort",
    "sort pretext losses as text, as make_batches.py does (str(float) values, numpy's default argsort, "
    "reversed): the ~8% printed in scientific notation land by their leading digit, ties in quicksort order",
    params={"loss_sort": "string"}, source=f"{PT4AL_REPO} make_batches.py")
NORMALIZED_SOFTMAX = Quirk(
    "normalized_softmax",
    "take the in-batch sampler's softmax over L2-normalised logits, as main.py (caps confidence near "
    "0.23 with 10 classes)",
    params={"normalized_softmax": True}, source=f"{PT4AL_REPO} main.py")
WARM_START = Quirk(
    "warm_start",
    "each cycle's model starts from the previous cycle's weights instead of a fresh initialisation",
    train={"init": "warm"}, source=f"{PT4AL_REPO} main.py")
BEST_ON_TEST = Quirk(
    "best_on_test",
    "keep the epoch with the best TEST accuracy (reported, and warm-starting the next cycle): a "
    "test-set selection, flagged in the records and in every report made from them",
    train={"selection": "best-on-test"}, flag=True, source=f"{PT4AL_REPO} main.py")
# CIFAR-10 mean with the std of the kuangliu/pytorch-cifar recipe (not CIFAR-10's, 0.247/0.243/0.261)
CIFAR_MEAN_OFFICIAL = [0.4914, 0.4822, 0.4465]
CIFAR_STD_OFFICIAL = [0.2023, 0.1994, 0.2010]
BGR_NORMALIZATION = Quirk(
    "bgr_normalization",
    "images read as BGR (cv2.imread in loader.py) and normalised with mean (0.4914, 0.4822, 0.4465), std "
    "(0.2023, 0.1994, 0.2010) by channel position, in the pretext task, the loss extraction and the main task",
    train={"augment.channel_order": "bgr", "augment.mean": CIFAR_MEAN_OFFICIAL, "augment.std": CIFAR_STD_OFFICIAL},
    source=f"{PT4AL_REPO} loader.py")


# ------------------------------------------------------------------------------------------------
# shared by the three strategies

class _Batched(Strategy):
    """A pool cut into ordered batches, cycle c drawing from batch c (topping up from the next)."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._order: np.ndarray | None = None  # pool indices in batch order
        self._bounds: np.ndarray | None = None  # batch b = order[bounds[b]:bounds[b + 1]]
        self._budget = 0  # images per query, from the AL schedule (prepare)

    def _set_batches(self, batches: list[np.ndarray]) -> None:
        self._order = np.concatenate(batches).astype(np.int64)
        self._bounds = np.cumsum([0] + [len(b) for b in batches]).astype(np.int64)

    @property
    def batches_(self) -> list[np.ndarray]:
        """The batches, each in its sorted order (pool indices)."""
        if self._order is None:
            raise RuntimeError(f"strategy {self.name!r} has no batches: prepare() has not run")
        return [self._order[a:b] for a, b in zip(self._bounds[:-1], self._bounds[1:])]

    def candidates(self, *, cycle: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return batches_needed(self.batches_, cycle, self._budget, pool.labeled)

    def state_dict(self) -> dict:
        return {"order": self._order, "bounds": self._bounds}

    def load_state_dict(self, state: dict) -> None:
        if state.get("order") is not None:
            self._order = np.asarray(state["order"], dtype=np.int64)
            self._bounds = np.asarray(state["bounds"], dtype=np.int64)

    def artifacts(self) -> dict[str, np.ndarray]:
        if self._order is None:
            return {}
        batch_of = np.empty(len(self._order), dtype=np.int64)
        for b, (lo, hi) in enumerate(zip(self._bounds[:-1], self._bounds[1:])):
            batch_of[self._order[lo:hi]] = b
        return {"pt4al_batch": batch_of, "pt4al_order": self._order}


def _batch_count(requested: int | None, ctx: PrepareContext) -> int:
    count = requested if requested is not None else ctx.cycles
    if count > ctx.pool.size:
        raise ValueError(f"cannot cut a pool of {ctx.pool.size} images into {count} batches; lower params.batches")
    return count


class _PretextMixin:
    """The pretext params shared by ``pt4al`` and ``pt4al-pretext-only`` and the stage that uses them."""

    pool_loss: np.ndarray | None = None
    test_loss: np.ndarray | None = None

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.pretext_model_params = dict(self.pretext_model_params or {})
        self.pretext_options = TASKS[self.pretext_task].resolve_options(self.pretext_options,
                                                                        "params.pretext_options")

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        check_model_params(params, "pretext_model", "pretext_model_params", path)
        TASKS[params["pretext_task"]].resolve_options(params.get("pretext_options"), f"{path}.pretext_options")

    def pretext_specs(self, seed: int) -> list[PretextSpec]:
        cold = getattr(self, "cold_start", None)
        return [self._spec(seed)] + (cold.pretext_specs(seed) if cold is not None else [])

    def _spec(self, seed: int) -> PretextSpec:
        """The pretext training these params describe, for a run of ``seed``."""
        return PretextSpec(task=self.pretext_task, options=self.pretext_options, epochs=self.pretext_epochs,
                           batch_size=self.pretext_batch_size, lr=self.pretext_lr, momentum=self.pretext_momentum,
                           weight_decay=self.pretext_weight_decay, model=self.pretext_model,
                           model_params=self.pretext_model_params, selection=self.pretext_selection,
                           seed=seed if self.pretext_seed is None else self.pretext_seed)

    def _pretext(self, ctx: PrepareContext) -> tuple[np.ndarray, dict]:
        """Per-image pool losses (cached), and what run.json should record about them."""
        spec = self._spec(ctx.seed)
        pool_images, test_images, fingerprint = ctx.pool.images, ctx.test_images, ctx.pool_fingerprint
        if ctx.channel_order == "bgr" and spec.task == "colorization":
            raise ConfigError("train.augment.channel_order", "colorization predicts colour from RGB images; the "
                              "run reverses channels to BGR (the bgr_normalization quirk)",
                              "list the strategy's other quirks under strategies[i].quirks, or set "
                              "train.augment.channel_order: rgb", "bgr")
        if ctx.channel_order == "bgr":  # the pretext network sees what the main model sees (rotation.py reads BGR)
            pool_images, test_images = pool_images.flip(1), (None if test_images is None else test_images.flip(1))
            fingerprint = f"{fingerprint}:bgr"  # its own cache entry
        res = pretext_losses(spec, pool_images=pool_images, test_images=test_images, mean=ctx.mean,
                             std=ctx.std, device=ctx.device, amp=ctx.amp, cache_dir=Path(ctx.cache_dir) / "pretext",
                             pool_fingerprint=fingerprint, log=ctx.log,
                             progress=lambda done, total: ctx.progress(f"pretext {spec.task}", done, total))
        self.pool_loss, self.test_loss = res.pool_loss, res.test_loss
        info = {"pretext_cache": res.cache, "pretext_key": res.key,
                "pretext_train_seconds": round(float(res.train_seconds), 3),
                "pretext_wait_seconds": round(float(res.wait_seconds), 3), "pretext_task": spec.task,
                "pretext_seed": spec.seed, "pretext_selected_epoch": res.selected_epoch,
                "pretext_pool_score": (res.history[res.selected_epoch - 1].get("pool_score")
                                       if len(res.history) >= res.selected_epoch else None),
                "loss_sort": self.loss_sort}
        return res.pool_loss, info

    def _loss_state(self) -> dict:
        return {"pool_loss": self.pool_loss, "test_loss": self.test_loss}

    def _load_loss_state(self, state: dict) -> None:
        if state.get("pool_loss") is not None:
            self.pool_loss = np.asarray(state["pool_loss"], dtype=np.float32)
        if state.get("test_loss") is not None:
            self.test_loss = np.asarray(state["test_loss"], dtype=np.float32)

    def _loss_artifacts(self) -> dict[str, np.ndarray]:
        out = {}
        if self.pool_loss is not None:
            out["pretext_loss_pool"] = self.pool_loss.astype(np.float32)
        if self.test_loss is not None:
            out["pretext_loss_test"] = self.test_loss.astype(np.float32)
        return out


PretextTaskName = Literal["rotation", "colorization", "jigsaw", "simsiam"]


@dataclass(frozen=True)
class PretextParams:
    """The pretext stage shared by ``pt4al`` and ``pt4al-pretext-only`` (equal values share the cached
    losses). ``pretext_seed``: None trains the pretext network with the run's seed; a number shares
    one network (and its cached losses) across every seed of a sweep. ``pretext_options``:
    task-specific options (colorization: bins, hidden; jigsaw: grid, permutations,
    eval_permutations; simsiam: dim, pred_dim, hflip, jitter). ``loss_sort``: ``string`` sorts the
    losses as the official code's text file does."""

    pretext_task: PretextTaskName = "rotation"
    loss_sort: Literal["numeric", "string"] = "numeric"
    pretext_epochs: Annotated[int, Bounds(ge=1)] = 15
    pretext_batch_size: Annotated[int, Bounds(ge=2)] = 256  # >= 2: BatchNorm
    pretext_lr: Annotated[float, Bounds(gt=0)] = 0.1
    pretext_momentum: Annotated[float, Bounds(ge=0, lt=1)] = 0.9
    pretext_weight_decay: Annotated[float, Bounds(ge=0)] = 5e-4
    pretext_model: str = "resnet18-cifar"
    pretext_model_params: dict | None = None
    pretext_selection: Literal["best", "final"] = "best"
    pretext_seed: Annotated[int | None, Bounds(ge=0)] = 0
    pretext_options: dict | None = None


@dataclass(frozen=True)
class PT4ALParams(PretextParams):
    """``batches``: how many batches to cut (None: one per cycle, the paper's I).
    ``first_cycle_strategy``: ``typiclust`` or ``probcover`` (or ``{name: ..., params: {...}}``) picks
    the cold-start query from the whole pool instead of batch 0 (None: batch 0 by ``first_cycle``)."""

    batch_order: Literal["high-first", "low-first"] = "high-first"
    first_cycle: Literal["uniform", "top-k", "random"] = "uniform"
    sampler: Literal["confidence", "entropy"] = "confidence"
    normalized_softmax: bool = False
    batches: Annotated[int | None, Bounds(ge=1)] = None
    first_cycle_strategy: str | dict | None = None


@dataclass(frozen=True)
class PretextOnlyParams(PretextParams):
    """``take``: the top-K (``highest``) or bottom-K (``lowest``) pretext losses each cycle."""

    take: Literal["highest", "lowest"] = "highest"


@dataclass(frozen=True)
class SamplingOnlyParams:
    """``batches``: how many random batches (None: one per cycle)."""

    batches: Annotated[int | None, Bounds(ge=1)] = None


# ------------------------------------------------------------------------------------------------
# the strategies

@register_strategy
class PT4AL(_PretextMixin, _Batched):
    name = "pt4al"
    description = ("pretext-loss batches, uniform first cycle, least-confident K per batch "
                   "(params: pretext_task, batch_order, first_cycle, sampler, pretext_*)")
    needs = frozenset({Need.LOGITS})  # on segmentation pools: CONFIDENCE instead (needs_for)
    tasks = frozenset({"classification", "segmentation"})
    quirks = (STRING_SORT, NORMALIZED_SOFTMAX, WARM_START, BEST_ON_TEST, BGR_NORMALIZATION)

    Params = PT4ALParams

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.cold_start = make_cold_start(self.first_cycle_strategy)

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        super().check_params(params, path)
        cold_start_spec(params.get("first_cycle_strategy"), f"{path}.first_cycle_strategy")

    @classmethod
    def check_task(cls, params: dict, *, task: str, path: str) -> None:
        if task != "segmentation":
            return
        if params.get("first_cycle_strategy") is not None:  # TypiClust and ProbCover are classification-only
            raise ConfigError(f"{path}.first_cycle_strategy", "TypiClust and ProbCover select for classification "
                              "pools only", f"remove {path}.first_cycle_strategy on a segmentation dataset",
                              params["first_cycle_strategy"])
        if params.get("sampler", "confidence") != "confidence":
            raise ConfigError(f"{path}.sampler", "only 'confidence' (the mean pixel top-1 posterior) is defined "
                              "for segmentation", f"set {path}.sampler: confidence", params["sampler"])
        if params.get("normalized_softmax"):
            raise ConfigError(f"{path}.normalized_softmax", "the official code's normalised softmax is for image "
                              "logits and has no segmentation counterpart",
                              "drop the normalized_softmax quirk: list the others in the strategy's quirks", True)

    def prepare(self, ctx: PrepareContext) -> dict:
        if ctx.pool.task == "segmentation":
            self.check_task({"sampler": self.sampler, "normalized_softmax": self.normalized_softmax},
                            task="segmentation", path="params")
        losses, info = self._pretext(ctx)
        order = sort_losses(losses, descending=self.batch_order == "high-first", as_strings=self.loss_sort == "string")
        batches = split_batches(order, _batch_count(self.batches, ctx))
        self._set_batches(batches)
        self._budget = ctx.budget
        cold = self.cold_start.prepare(ctx) if self.cold_start is not None else {}
        return {**info, **(cold or {}), "pt4al_batch_sizes": [len(b) for b in batches]}

    def needs_for(self, task: str) -> frozenset[Need]:
        # segmentation: one number per image (the mean pixel top-1 posterior), not (C, H, W) logits
        return frozenset({Need.CONFIDENCE}) if task == "segmentation" else frozenset(self.needs)

    def initial(self, *, size: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        if self.cold_start is not None:
            return self.cold_start.initial(size=size, pool=pool, rng=rng)
        return take_from_batches(self.batches_, 0, size, pool.labeled,
                                 lambda avail, m: first_cycle_pick(avail, m, self.first_cycle, rng))

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        c = inputs.candidates
        if c.logits is None:  # segmentation: the mean pixel top-1 posterior, lowest = most uncertain
            scores = -c.confidence.double().cpu().numpy()
        else:
            scores = uncertainty(c.logits, sampler=self.sampler, normalized=self.normalized_softmax)
        return take_from_batches(self.batches_, cycle, budget, pool.labeled, in_batch_pick(c.indices, scores))

    def state_dict(self) -> dict:
        return {**_Batched.state_dict(self), **self._loss_state()}

    def load_state_dict(self, state: dict) -> None:
        _Batched.load_state_dict(self, state)
        self._load_loss_state(state)

    def artifacts(self) -> dict[str, np.ndarray]:
        return {**_Batched.artifacts(self), **self._loss_artifacts()}


@register_strategy
class PT4ALSamplingOnly(_Batched):
    name = "pt4al-sampling-only"
    description = "PT4AL ablation: random batches, random first cycle, highest-entropy K per batch (params: batches)"
    needs = frozenset({Need.LOGITS})
    quirks = (WARM_START, BEST_ON_TEST, BGR_NORMALIZATION)

    Params = SamplingOnlyParams

    def prepare(self, ctx: PrepareContext) -> dict:
        # the random split is a fixed function of the run's seed, so a resumed run cuts the same batches
        rng = np.random.default_rng(derive_seed(ctx.seed, "pt4al-random-batches"))
        batches = split_batches(rng.permutation(ctx.pool.size).astype(np.int64), _batch_count(self.batches, ctx))
        self._set_batches(batches)
        self._budget = ctx.budget
        return {"pt4al_batch_sizes": [len(b) for b in batches]}

    def initial(self, *, size: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return take_from_batches(self.batches_, 0, size, pool.labeled,
                                 lambda avail, m: first_cycle_pick(avail, m, "random", rng))

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        c = inputs.candidates
        scores = uncertainty(c.logits, sampler="entropy")
        return take_from_batches(self.batches_, cycle, budget, pool.labeled, in_batch_pick(c.indices, scores))


@register_strategy
class PT4ALPretextOnly(_PretextMixin, Strategy):
    name = "pt4al-pretext-only"
    description = "PT4AL ablation: the K highest (or lowest) pretext losses of the pool, no main model (params: take)"
    needs: frozenset = frozenset()
    tasks = frozenset({"classification", "segmentation"})
    quirks = (STRING_SORT, WARM_START, BEST_ON_TEST, BGR_NORMALIZATION)

    Params = PretextOnlyParams

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._order: np.ndarray | None = None

    def prepare(self, ctx: PrepareContext) -> dict:
        losses, info = self._pretext(ctx)
        self._order = sort_losses(losses, descending=self.take == "highest", as_strings=self.loss_sort == "string")
        return info

    def _next(self, k: int, labeled: np.ndarray) -> np.ndarray:
        if self._order is None:
            raise RuntimeError("pt4al-pretext-only has no loss order: prepare() has not run")
        free = self._order[~np.isin(self._order, labeled)]
        if len(free) < k:
            raise ValueError(f"only {len(free)} unlabeled images are left; {k} were asked for")
        return free[:k].astype(np.int64)

    def initial(self, *, size: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return self._next(size, pool.labeled)

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        return self._next(budget, pool.labeled)

    def state_dict(self) -> dict:
        return {"order": self._order, **self._loss_state()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("order") is not None:
            self._order = np.asarray(state["order"], dtype=np.int64)
        self._load_loss_state(state)

    def artifacts(self) -> dict[str, np.ndarray]:
        out = self._loss_artifacts()
        if self._order is not None:
            out["pt4al_order"] = self._order
        return out


__all__ = [
    "PT4AL", "PT4ALPretextOnly", "PT4ALSamplingOnly", "batch_visit_order", "batches_needed", "first_cycle_pick",
    "in_batch_pick", "loss_strings", "posteriors", "sort_losses", "split_batches", "take_from_batches",
    "uncertainty", "uniform_positions",
]
