"""The dataset registry: built-ins register on import; other packages use the ``albench.datasets``
entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from albench.data.base import DatasetSpec, ImageDataset

_REGISTRY: dict[str, type[DatasetSpec]] = {}
_LOADED_PLUGINS = False


def register_dataset(cls: type[DatasetSpec]) -> type[DatasetSpec]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"dataset {cls.name!r} is already registered by {_REGISTRY[cls.name].__module__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _LOADED_PLUGINS
    import albench.data.builtin  # noqa: F401  (registers the built-ins)

    if not _LOADED_PLUGINS:
        _LOADED_PLUGINS = True
        for ep in entry_points(group="albench.datasets"):
            ep.load()


def dataset_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_dataset(name: str) -> DatasetSpec:
    _load_all()
    return _REGISTRY[name]()


def load_dataset(cfg) -> ImageDataset:
    """Load the dataset a :class:`~albench.config.DatasetConfig` names, its pool options
    (``subsample``, ``imbalance``) applied."""
    from albench.data.pool import apply_pool_options

    return apply_pool_options(get_dataset(cfg.name).load(cfg), cfg)
