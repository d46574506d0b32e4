"""The self-supervised representation TypiClust and ProbCover select from (their ``prepare`` phase).

A strategy using it declares these params: ``representation`` names a pretext task of
:mod:`albench.strategies.pretext` (``simclr`` by default, as the official code; ``rotation`` gives the
embedding of the network PT4AL trains), and ``pretext_*`` size its training. A param left ``None``
takes the representation's default: for ``simclr`` the official SCAN/TypiClust values (CIFAR
ResNet-18, 500 epochs, batch 512, SGD lr 0.4, momentum 0.9, weight decay 1e-4, the last epoch's
weights; SCAN's cosine schedule is not reproduced: the pretext trainer keeps the lr constant);
for every other task PT4AL's (ResNet-18, 15 epochs, batch 256, lr 0.1, momentum 0.9, weight decay
5e-4, the best epoch on the pool), so ``representation: rotation`` with PT4AL's pretext params
reads the same cached network. The network is trained once per pool and shared by every run and
seed (``pretext_seed: 0``) through the pretext cache.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from albench.errors import ConfigError
from albench.typed import Bounds
from albench.strategies.base import PrepareContext
from albench.strategies.pretext import TASKS, PretextSpec, pretext_features

RepresentationName = Literal["simclr", "rotation", "jigsaw", "simsiam", "colorization"]

SIMCLR_DEFAULTS = {"epochs": 500, "batch_size": 512, "lr": 0.4, "momentum": 0.9, "weight_decay": 1e-4,
                   "model": "resnet18-cifar", "selection": "final"}
PT4AL_DEFAULTS = {"epochs": 15, "batch_size": 256, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                  "model": "resnet18-cifar", "selection": "best"}


def representation_defaults(name: str) -> dict:
    """The pretext hyperparameters a representation uses when its params are left None."""
    return dict(SIMCLR_DEFAULTS if name == "simclr" else PT4AL_DEFAULTS)


@dataclass(frozen=True)
class RepresentationParams:
    """``representation``: the pretext task whose pooled backbone embedding is used. ``pretext_*``
    (None: the representation's default, see :func:`representation_defaults`): its training epochs,
    batch size, backbone width, backbone, lr; ``pretext_seed`` 0 shares one network across the
    seeds (None: the run's seed); ``pretext_options``: the task's options."""

    representation: RepresentationName = "simclr"
    pretext_epochs: Annotated[int | None, Bounds(ge=1)] = None
    pretext_batch_size: Annotated[int | None, Bounds(ge=2)] = None
    pretext_width: Annotated[int | None, Bounds(ge=1)] = None
    pretext_model: str | None = None
    pretext_lr: Annotated[float | None, Bounds(gt=0)] = None
    pretext_seed: Annotated[int | None, Bounds(ge=0)] = 0
    pretext_options: dict | None = None


class RepresentationMixin:
    """Holds the representation params and computes the pool's features in ``prepare``."""

    features_: np.ndarray | None = None  # float32 (N, D), set by prepare

    def _init_representation(self) -> None:
        """Resolve the task options of the declared params (defaults filled in)."""
        self.pretext_options = TASKS[self.representation].resolve_options(self.pretext_options,
                                                                          "params.pretext_options")

    @staticmethod
    def _check_representation(params: dict, path: str) -> None:
        """ConfigError for an unknown backbone, a backbone without ``width``, or bad task options."""
        from albench.models.registry import model_entry, model_names

        name = params["representation"]
        model = params.get("pretext_model") or representation_defaults(name)["model"]
        if model not in model_names():
            raise ConfigError(f"{path}.pretext_model", "unknown model", f"use one of {', '.join(model_names())}",
                              model)
        if params.get("pretext_width") is not None:
            accepted = inspect.signature(model_entry(model).builder).parameters
            if "width" not in accepted:
                raise ConfigError(f"{path}.pretext_width", f"model {model!r} has no width parameter",
                                  f"remove {path}.pretext_width or pick a model with one (small-cnn, resnet18-cifar)",
                                  params["pretext_width"])
        TASKS[name].resolve_options(params.get("pretext_options"), f"{path}.pretext_options")

    def pretext_specs(self, seed: int) -> list[PretextSpec]:
        return [self.pretext_spec(seed)]

    def pretext_spec(self, seed: int) -> PretextSpec:
        """The pretext training these params describe, for a run of ``seed``."""
        d = representation_defaults(self.representation)
        return PretextSpec(
            task=self.representation, options=self.pretext_options,
            epochs=self.pretext_epochs if self.pretext_epochs is not None else d["epochs"],
            batch_size=self.pretext_batch_size if self.pretext_batch_size is not None else d["batch_size"],
            lr=self.pretext_lr if self.pretext_lr is not None else d["lr"], momentum=d["momentum"],
            weight_decay=d["weight_decay"], model=self.pretext_model or d["model"],
            model_params={} if self.pretext_width is None else {"width": int(self.pretext_width)},
            selection=d["selection"], seed=seed if self.pretext_seed is None else self.pretext_seed)

    def _prepare_features(self, ctx: PrepareContext, *, normalize: bool) -> dict:
        """Set ``features_`` (the pool's embeddings, L2-normalised if ``normalize``); return what
        run.json records about them."""
        spec = self.pretext_spec(ctx.seed)
        res = pretext_features(spec, pool_images=ctx.pool.images, test_images=ctx.test_images, mean=ctx.mean,
                               std=ctx.std, device=ctx.device, amp=ctx.amp, cache_dir=Path(ctx.cache_dir) / "pretext",
                               pool_fingerprint=ctx.pool_fingerprint, normalize=normalize, log=ctx.log,
                               progress=lambda done, total: ctx.progress(f"representation {spec.task}", done, total))
        if not np.isfinite(res.features).all():
            raise ValueError(f"the {spec.task} representation has NaN or infinite features; its training "
                             "diverged (lower params.pretext_lr)")
        self.features_ = res.features
        return {"representation": spec.task, "representation_cache": res.cache, "representation_key": res.key,
                "representation_train_seconds": round(float(res.train_seconds), 3),
                "representation_wait_seconds": round(float(res.wait_seconds), 3),
                "representation_seed": spec.seed, "representation_dim": int(res.features.shape[1]),
                "representation_normalized": bool(normalize)}

    def _require_features(self) -> np.ndarray:
        if self.features_ is None:
            raise RuntimeError(f"strategy {getattr(self, 'name', '?')!r} has no features: prepare() has not run")
        return self.features_


# ------------------------------------------------------------------------------------------------
# another strategy's cold start (PT4AL's first_cycle_strategy)

COLD_START_STRATEGIES = ("typiclust", "probcover")


def cold_start_spec(value: str | dict | None, path: str) -> tuple[str, dict] | None:
    """(name, validated params) of a cold-start strategy given as ``typiclust`` or
    ``{name: typiclust, params: {...}}``, or None for none; ConfigError naming ``path`` otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        name, params = value, {}
    else:
        unknown = sorted(set(value) - {"name", "params"})
        if unknown:
            raise ConfigError(f"{path}.{unknown[0]}", "unknown key", "keep only 'name' and 'params'")
        name, params = value.get("name"), value.get("params") or {}
    if name not in COLD_START_STRATEGIES:
        raise ConfigError(path if isinstance(value, str) else f"{path}.name",
                          f"must be one of {', '.join(COLD_START_STRATEGIES)}",
                          "set it to typiclust, or {name: probcover, params: {...}}", name)
    from albench.strategies.registry import get_strategy

    cls = get_strategy(name)
    return name, cls.validate_params(params, f"{path}.params" if not isinstance(value, str) else path)


def make_cold_start(value: str | dict | None, path: str = "params.first_cycle_strategy"):
    """An instance of the cold-start strategy ``value`` describes (see :func:`cold_start_spec`), or None."""
    spec = cold_start_spec(value, path)
    if spec is None:
        return None
    from albench.strategies.registry import get_strategy

    name, params = spec
    return get_strategy(name)(**params)
