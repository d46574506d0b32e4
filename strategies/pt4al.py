"""PT4AL (Yi et al., ECCV 2022; johnsk95/PT4AL) and the two ablations of its section 6.1.

PT4AL, as the paper describes it (``protocol: paper``):

1. Before the cycle loop, a pretext network (rotation prediction by default) is trained on the
   unlabeled pool, and every pool image gets its per-image pretext loss (:mod:`strategies.pretext`;
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
- Ties (equal losses or scores) go to the earlier position, so selections are reproducible.

The official code's behaviours are :class:`~strategies.base.Quirk` switches, all on under
``protocol: official``: ``string_sort``, ``normalized_softmax``, ``warm_start`` and ``best_on_test``
(flagged). Module-level functions hold each step, so tests pin their exact output.

Segmentation (the paper's section 5.2, with ``pretext_task: colorization``, its choice for a
pixel-level task, section 6.2): the in-batch sampler's confidence of an image is the engine's
segmentation confidence, the mean over its pixels of the top-1 posterior (so (B, C, H, W) logits
are never kept); the lowest are taken. ``sampler: entropy`` and ``normalized_softmax`` have no
per-image counterpart there and are refused at config load. ``pt4al-pretext-only`` needs no model
output and works on segmentation pools as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from strategies.base import Inputs, Need, PoolState, PrepareContext, Quirk, Strategy, top_k_highest
from strategies.pretext import TASKS, PretextSpec, derive_seed, pretext_losses
from strategies.registry import register_strategy
from strategies.representation import cold_start_spec, make_cold_start

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
    leading digit (1.94e-05 before 0.97). Identical strings keep a stable order (reversed along with
    the rest); the official numpy quicksort leaves their order unspecified.
    """
    losses = np.asarray(losses)
    if losses.ndim != 1:
        raise ValueError(f"losses must be one-dimensional, got shape {losses.shape}")
    if as_strings:
        ascending = np.argsort(loss_strings(losses), kind="stable")
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

STRING_SORT = Quirk(
    "string_sort",
    "sort pretext losses as text, as make_batches.py does (str(float) values, lexicographic): the ~8% "
    "printed in scientific notation land by their leading digit",
    params={"loss_sort": "string"})
NORMALIZED_SOFTMAX = Quirk(
    "normalized_softmax",
    "take the in-batch sampler's softmax over L2-normalised logits, as main.py (caps confidence near "
    "0.23 with 10 classes)",
    params={"normalized_softmax": True})
WARM_START = Quirk(
    "warm_start",
    "each cycle's model starts from the previous cycle's weights instead of a fresh initialisation",
    train={"init": "warm"})
BEST_ON_TEST = Quirk(
    "best_on_test",
    "keep the epoch with the best TEST accuracy (reported, and warm-starting the next cycle): a "
    "test-set selection, flagged in the records and in every report made from them",
    train={"selection": "best-on-test"}, flag=True)


# ------------------------------------------------------------------------------------------------
# shared by the three strategies

class _Batched(Strategy):
    """A pool cut into ordered batches, cycle c drawing from batch c (topping up from the next)."""

    def __init__(self) -> None:
        super().__init__()
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

    def _init_pretext(self, *, pretext_task, pretext_epochs, pretext_batch_size, pretext_lr, pretext_momentum,
                      pretext_weight_decay, pretext_model, pretext_model_params, pretext_selection, pretext_seed,
                      pretext_options, loss_sort) -> None:
        self.pretext_task = pretext_task
        self.pretext_epochs = pretext_epochs
        self.pretext_batch_size = pretext_batch_size
        self.pretext_lr = pretext_lr
        self.pretext_momentum = pretext_momentum
        self.pretext_weight_decay = pretext_weight_decay
        self.pretext_model = pretext_model
        self.pretext_model_params = dict(pretext_model_params or {})
        self.pretext_selection = pretext_selection
        self.pretext_seed = pretext_seed
        self.pretext_options = TASKS[pretext_task].resolve_options(pretext_options, "params.pretext_options")
        self.loss_sort = loss_sort

    @staticmethod
    def _check_pretext(params: dict, path: str) -> None:
        from models.registry import model_entry, model_names

        def bad(key, problem, fix):
            raise ConfigError(f"{path}.{key}", problem, fix, params[key])

        if params["pretext_epochs"] < 1:
            bad("pretext_epochs", "must be >= 1", f"set {path}.pretext_epochs to e.g. 15")
        if params["pretext_batch_size"] < 2:
            bad("pretext_batch_size", "must be >= 2 (BatchNorm)", f"set {path}.pretext_batch_size to e.g. 256")
        if params["pretext_lr"] <= 0:
            bad("pretext_lr", "must be > 0", f"set {path}.pretext_lr to e.g. 0.1")
        if not 0 <= params["pretext_momentum"] < 1:
            bad("pretext_momentum", "must be in [0, 1)", f"set {path}.pretext_momentum to e.g. 0.9")
        if params["pretext_weight_decay"] < 0:
            bad("pretext_weight_decay", "must be >= 0", f"set {path}.pretext_weight_decay to e.g. 5e-4")
        if params["pretext_seed"] is not None and params["pretext_seed"] < 0:
            bad("pretext_seed", "must be a non-negative integer or null",
                f"set {path}.pretext_seed to 0 (shared by all seeds) or null (the run's seed)")
        if params["pretext_model"] not in model_names():
            bad("pretext_model", "unknown model", f"use one of {', '.join(model_names())}")
        import inspect

        builder = model_entry(params["pretext_model"]).builder
        known = [p for p in inspect.signature(builder).parameters if p not in ("num_classes", "in_channels",
                                                                                "image_size")]
        for key in params.get("pretext_model_params") or {}:
            if key not in known:
                raise ConfigError(f"{path}.pretext_model_params.{key}",
                                  f"unknown parameter for model {params['pretext_model']!r}",
                                  f"remove it; known parameters: {', '.join(known) or 'none'}")
        TASKS[params["pretext_task"]].resolve_options(params.get("pretext_options"), f"{path}.pretext_options")

    def _pretext(self, ctx: PrepareContext) -> tuple[np.ndarray, dict]:
        """Per-image pool losses (cached), and what run.json should record about them."""
        spec = PretextSpec(task=self.pretext_task, options=self.pretext_options, epochs=self.pretext_epochs,
                           batch_size=self.pretext_batch_size, lr=self.pretext_lr, momentum=self.pretext_momentum,
                           weight_decay=self.pretext_weight_decay, model=self.pretext_model,
                           model_params=self.pretext_model_params, selection=self.pretext_selection,
                           seed=ctx.seed if self.pretext_seed is None else self.pretext_seed)
        res = pretext_losses(spec, pool_images=ctx.pool.images, test_images=ctx.test_images, mean=ctx.mean,
                             std=ctx.std, device=ctx.device, amp=ctx.amp, cache_dir=Path(ctx.cache_dir) / "pretext",
                             pool_fingerprint=ctx.pool_fingerprint, log=ctx.log)
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


# ------------------------------------------------------------------------------------------------
# the strategies

@register_strategy
class PT4AL(_PretextMixin, _Batched):
    name = "pt4al"
    description = ("pretext-loss batches, uniform first cycle, least-confident K per batch "
                   "(params: pretext_task, batch_order, first_cycle, sampler, pretext_*)")
    needs = frozenset({Need.LOGITS})  # on segmentation pools: CONFIDENCE instead (set in prepare)
    tasks = frozenset({"classification", "segmentation"})
    quirks = (STRING_SORT, NORMALIZED_SOFTMAX, WARM_START, BEST_ON_TEST)

    def __init__(self, *, pretext_task: PretextTaskName = "rotation",
                 batch_order: Literal["high-first", "low-first"] = "high-first",
                 first_cycle: Literal["uniform", "top-k", "random"] = "uniform",
                 sampler: Literal["confidence", "entropy"] = "confidence",
                 loss_sort: Literal["numeric", "string"] = "numeric", normalized_softmax: bool = False,
                 batches: int | None = None, pretext_epochs: int = 15, pretext_batch_size: int = 256,
                 pretext_lr: float = 0.1, pretext_momentum: float = 0.9, pretext_weight_decay: float = 5e-4,
                 pretext_model: str = "resnet18-cifar", pretext_model_params: dict | None = None,
                 pretext_selection: Literal["best", "final"] = "best", pretext_seed: int | None = 0,
                 pretext_options: dict | None = None, first_cycle_strategy: str | dict | None = None) -> None:
        """``first_cycle_strategy``: ``typiclust`` or ``probcover`` (or ``{name: ..., params: {...}}``)
        picks the cold-start query from the whole pool instead of batch 0 (None: batch 0 by
        ``first_cycle``). ``batches``: how many batches to cut (None: one per cycle, the paper's I). ``pretext_seed``:
        None trains the pretext network with the run's seed; a number shares one network (and its
        cached losses) across every seed of a sweep. ``pretext_options``: task-specific options
        (colorization: bins, hidden; jigsaw: grid, permutations, eval_permutations; simsiam: dim,
        pred_dim, hflip, jitter)."""
        super().__init__()
        self._init_pretext(pretext_task=pretext_task, pretext_epochs=pretext_epochs,
                           pretext_batch_size=pretext_batch_size, pretext_lr=pretext_lr,
                           pretext_momentum=pretext_momentum, pretext_weight_decay=pretext_weight_decay,
                           pretext_model=pretext_model, pretext_model_params=pretext_model_params,
                           pretext_selection=pretext_selection, pretext_seed=pretext_seed,
                           pretext_options=pretext_options, loss_sort=loss_sort)
        self.batch_order = batch_order
        self.first_cycle = first_cycle
        self.sampler = sampler
        self.normalized_softmax = normalized_softmax
        self.batches = batches
        self.cold_start = make_cold_start(first_cycle_strategy)

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        cls._check_pretext(params, path)
        cold_start_spec(params.get("first_cycle_strategy"), f"{path}.first_cycle_strategy")
        if params["batches"] is not None and params["batches"] < 1:
            raise ConfigError(f"{path}.batches", "must be a positive integer or null",
                              f"set {path}.batches to null (one batch per cycle)", params["batches"])

    @classmethod
    def check_task(cls, params: dict, *, task: str, path: str) -> None:
        if task != "segmentation":
            return
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
            self.needs = frozenset({Need.CONFIDENCE})  # one number per image, not (C, H, W) logits
        losses, info = self._pretext(ctx)
        order = sort_losses(losses, descending=self.batch_order == "high-first", as_strings=self.loss_sort == "string")
        batches = split_batches(order, _batch_count(self.batches, ctx))
        self._set_batches(batches)
        self._budget = ctx.budget
        cold = self.cold_start.prepare(ctx) if self.cold_start is not None else {}
        return {**info, **(cold or {}), "pt4al_batch_sizes": [len(b) for b in batches]}

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
    quirks = (WARM_START, BEST_ON_TEST)

    def __init__(self, *, batches: int | None = None) -> None:
        """``batches``: how many random batches (None: one per cycle)."""
        super().__init__()
        self.batches = batches

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        if params["batches"] is not None and params["batches"] < 1:
            raise ConfigError(f"{path}.batches", "must be a positive integer or null",
                              f"set {path}.batches to null (one batch per cycle)", params["batches"])

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
    quirks = (STRING_SORT, WARM_START, BEST_ON_TEST)

    def __init__(self, *, take: Literal["highest", "lowest"] = "highest",
                 pretext_task: PretextTaskName = "rotation", loss_sort: Literal["numeric", "string"] = "numeric",
                 pretext_epochs: int = 15, pretext_batch_size: int = 256, pretext_lr: float = 0.1,
                 pretext_momentum: float = 0.9, pretext_weight_decay: float = 5e-4,
                 pretext_model: str = "resnet18-cifar", pretext_model_params: dict | None = None,
                 pretext_selection: Literal["best", "final"] = "best", pretext_seed: int | None = 0,
                 pretext_options: dict | None = None) -> None:
        """``take``: the top-K (``highest``) or bottom-K (``lowest``) pretext losses each cycle. The
        pretext params are those of ``pt4al`` (same values share the cached losses)."""
        super().__init__()
        self._init_pretext(pretext_task=pretext_task, pretext_epochs=pretext_epochs,
                           pretext_batch_size=pretext_batch_size, pretext_lr=pretext_lr,
                           pretext_momentum=pretext_momentum, pretext_weight_decay=pretext_weight_decay,
                           pretext_model=pretext_model, pretext_model_params=pretext_model_params,
                           pretext_selection=pretext_selection, pretext_seed=pretext_seed,
                           pretext_options=pretext_options, loss_sort=loss_sort)
        self.take = take
        self._order: np.ndarray | None = None

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        cls._check_pretext(params, path)

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
