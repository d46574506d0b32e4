"""The model registry: a name maps to a builder ``(num_classes, in_channels, image_size, **params)``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from bench.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    tasks: frozenset[str]
    check: Callable[..., None] | None = None  # (params, path, train): ConfigError on a bad value, at config load


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, description: str, tasks=("classification",), check=None):
    """Decorator registering a builder under ``name``; ``check(params, path, train)``, when given,
    validates params (e.g. that a weights file exists, or that they suit the training protocol
    ``train``) when a config is loaded."""

    def deco(fn):
        _REGISTRY[name] = ModelEntry(name, fn, description, frozenset(tasks), check)
        return fn

    return deco


def _load_all() -> None:
    import models.deeplab  # noqa: F401
    import models.resnet_cifar  # noqa: F401
    import models.small_cnn  # noqa: F401
    import models.small_seg  # noqa: F401


def model_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    _load_all()
    return _REGISTRY[name]


def build_model(name: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int],
                params: dict | None = None, path: str = "model.params") -> nn.Module:
    """A freshly initialised network (uses torch's global RNG: seed it first)."""
    entry = model_entry(name)
    params = dict(params or {})
    sig = inspect.signature(entry.builder)
    known = [p for p in sig.parameters if p not in ("num_classes", "in_channels", "image_size")]
    for key in params:
        if key not in known:
            raise ConfigError(f"{path}.{key}", f"unknown parameter for model {name!r}",
                              f"remove it; known parameters: {', '.join(known) or 'none'}")
    return entry.builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **params)
