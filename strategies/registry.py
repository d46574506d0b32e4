"""The strategy registry.

Built-in strategies register on import. A third-party package registers its own without editing
ours by declaring an entry point in the ``albench.strategies`` group that points at a Strategy
subclass (or at a module whose import calls :func:`register_strategy`)::

    [project.entry-points."albench.strategies"]
    my-strategy = "my_package.module:MyStrategy"
"""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points

from albench.strategies.base import Strategy, check_quirk_declarations

ENTRY_POINT_GROUP = "albench.strategies"
_REGISTRY: dict[str, type[Strategy]] = {}
_PLUGINS_LOADED = False

_NOT_STRATEGIES = {"base", "registry"}


def _builtin_modules() -> list[str]:
    """Every module of this package (strategies register themselves on import)."""
    import pkgutil

    import albench.strategies

    return [f"albench.strategies.{m.name}" for m in pkgutil.iter_modules(albench.strategies.__path__)
            if m.name not in _NOT_STRATEGIES and not m.name.startswith("_")]


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` selectable by ``cls.name`` in configs."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a Strategy subclass")
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no 'name'")
    check_quirk_declarations(cls.name, cls.quirks)
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"strategy {cls.name!r} is already registered by {existing.__module__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _PLUGINS_LOADED
    import importlib

    for mod in _builtin_modules():
        importlib.import_module(mod)
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the harness down
            warnings.warn(f"albench: could not load strategy plugin {ep.name!r} ({ep.value}): {exc}")
            continue
        if isinstance(obj, type) and issubclass(obj, Strategy):
            register_strategy(obj)


def strategy_names() -> list[str]:
    """Every registered strategy name, sorted."""
    _load()
    return sorted(_REGISTRY)


def available(task: str = "classification") -> list[str]:
    """Registered strategies that support ``task`` (what ``strategies: all`` expands to)."""
    _load()
    return [n for n in sorted(_REGISTRY) if task in _REGISTRY[n].tasks]


def get_strategy(name: str) -> type[Strategy]:
    _load()
    return _REGISTRY[name]


def make_strategy(name: str, params: dict | None = None) -> Strategy:
    """An instance of strategy ``name`` with validated params."""
    cls = get_strategy(name)
    return cls(**cls.validate_params(dict(params or {}), "params"))
