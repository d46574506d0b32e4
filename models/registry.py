"""The model registry: a name maps to a builder ``(num_classes, in_channels, image_size, **params)``.

Each model declares its params as a frozen dataclass (``params=`` of :func:`register_model`) whose
fields carry type, default and range (``Annotated[int, Bounds(ge=1)]``); the builder takes them as
keyword arguments. A model registered without one has its params read from the builder's signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from albench.typed import param_spec, signature_spec, validate_params

BUILDER_ARGS = ("num_classes", "in_channels", "image_size")  # given by the dataset, not by params
FEATURE_BUILDER_ARGS = ("num_classes", "in_features")  # a features model's: given by the run's features


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    tasks: frozenset[str]
    check: Callable[..., None] | None = None  # (params, path, train): ConfigError on a bad value, at config load
    params: type | None = None  # frozen dataclass of the params; None: read from the builder's signature
    # what the network reads: "images" (uint8 batches through the run's transform) or "features"
    # (rows of a frozen feature matrix the engine resolves from the params, see albench.features)
    inputs: str = "images"
    stages: bool = True  # whether ModelOutput.stages holds the backbone's stage maps (Learning Loss reads them)
    # (params, path, dataset config, dataset path): checks that need the dataset too (a features
    # file's rows against the pool), run at config load for every dataset of the sweep
    check_data: Callable[..., None] | None = None

    def param_types(self) -> dict[str, tuple[Any, Any]]:
        """``{param: (type, default)}``, bounds kept in the ``Annotated`` types."""
        if self.params is not None:
            return param_spec(self.params)
        return signature_spec(self.builder, skip=BUILDER_ARGS if self.inputs == "images" else FEATURE_BUILDER_ARGS)


_REGISTRY: dict[str, ModelEntry] = {}


@dataclass(frozen=True)
class ModelFamily:
    """Models named ``<prefix><name>`` and resolved on demand (e.g. ``timm:<name>``, a thousand
    architectures): ``resolve(name)`` returns the entry or raises ConfigError naming ``model.name``;
    ``available()`` says whether to list the family (its package is installed)."""

    prefix: str
    listing: str  # the line's name in ``albench list models``, e.g. ``timm:<name>``
    description: str
    resolve: Callable[[str], ModelEntry]
    available: Callable[[], bool] = lambda: True


_FAMILIES: dict[str, ModelFamily] = {}
_RESOLVED: dict[str, ModelEntry] = {}


def register_model_family(family: ModelFamily) -> None:
    """Make every ``family.prefix + <name>`` a model name, resolved by ``family.resolve``."""
    _FAMILIES[family.prefix] = family


def _family_of(name: str) -> ModelFamily | None:
    return next((f for p, f in _FAMILIES.items() if name.startswith(p)), None)


def register_model(name: str, description: str, tasks=("classification",), check=None, params: type | None = None,
                   *, inputs: str = "images", stages: bool = True, check_data=None):
    """Decorator registering a builder under ``name``. ``params``: the dataclass declaring its params
    (types, defaults, bounds). ``check(params, path, train)``, when given, runs the checks a bound
    cannot express (e.g. that a weights file exists, or that params suit the training protocol
    ``train``) when a config is loaded with its data; ``check_data(params, path, dataset, dataset_path)``
    the checks that need a dataset of the sweep too. ``inputs="features"``: the network reads frozen
    features, not images; its builder then takes ``in_features`` (the feature width) instead of
    ``in_channels`` and ``image_size``. ``stages=False``: its outputs carry no stage maps."""
    if inputs not in ("images", "features"):
        raise ValueError(f"model inputs must be 'images' or 'features', got {inputs!r}")

    def deco(fn):
        _REGISTRY[name] = ModelEntry(name, fn, description, frozenset(tasks), check, params, inputs, stages, check_data)
        return fn

    return deco


def _load_all() -> None:
    import albench.models.dbal_cnn  # noqa: F401
    import albench.models.deeplab  # noqa: F401
    import albench.models.head  # noqa: F401
    import albench.models.resnet_cifar  # noqa: F401
    import albench.models.small_cnn  # noqa: F401
    import albench.models.small_seg  # noqa: F401
    import albench.models.timm_backbones  # noqa: F401
    import albench.models.tv_backbones  # noqa: F401


def model_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def model_families() -> list[ModelFamily]:
    """The families whose package is installed (for listing)."""
    _load_all()
    return [f for f in _FAMILIES.values() if f.available()]


def has_model(name: str) -> bool:
    """Whether ``name`` is registered or carries a family's prefix (the family then checks the rest)."""
    _load_all()
    return name in _REGISTRY or _family_of(name) is not None


def model_entry(name: str) -> ModelEntry:
    _load_all()
    if name in _REGISTRY:
        return _REGISTRY[name]
    family = _family_of(name)
    if family is None:
        raise KeyError(name)
    if name not in _RESOLVED:
        _RESOLVED[name] = family.resolve(name)
    return _RESOLVED[name]


def validate_model_params(name: str, params: Any, path: str = "model.params") -> dict:
    """Typed copy of the ``params`` given for model ``name`` (defaults not filled in); ConfigError
    naming ``path.key`` for an unknown key, a wrong type or a value outside the declared bounds."""
    return validate_params(model_entry(name).param_types(), params, path, f"model {name!r}")


def dropout_params(name: str, params: dict | None) -> dict[str, float]:
    """{param: p} of model ``name``'s dropout params (named ``dropout`` or ``dropout_*``) as ``params``
    set them, defaults filled in; {} for a model that declares none (its MC-dropout passes would
    have nothing to sample)."""
    spec = model_entry(name).param_types()
    params = params or {}
    return {k: params.get(k, default) for k, (_, default) in spec.items()
            if k == "dropout" or k.startswith("dropout_")}


def build_model(name: str, *, num_classes: int, in_channels: int, image_size: tuple[int, int],
                params: dict | None = None, path: str = "model.params", in_features: int | None = None) -> nn.Module:
    """A freshly initialised network (uses torch's global RNG: seed it first). A model that reads
    frozen features (``inputs="features"``) is built for rows of ``in_features`` values."""
    entry = model_entry(name)
    params = validate_model_params(name, params, path)
    if entry.inputs == "features":
        if in_features is None:
            raise ValueError(f"model {name!r} reads frozen features: build it with in_features (their width)")
        return entry.builder(num_classes=num_classes, in_features=int(in_features), **params)
    return entry.builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **params)
