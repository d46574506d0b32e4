"""Where a ``head`` model's frozen features come from: ``model.params.features``, parsed and checked.

Three kinds, each given as a name or a mapping:

- **representation**: a pretext task the harness trains on the dataset's train images (``simclr``,
  ``rotation``, ``jigsaw``, ``simsiam``, ``colorization``), e.g. ``simclr`` or ``{name: simclr,
  params: {epochs: 50, model: small-cnn, width: 64}}``. Params: ``epochs``, ``batch_size``, ``lr``,
  ``model``, ``width``, ``seed`` (0: one network for every seed of a sweep; null: the run's seed),
  ``options`` (the task's), defaults as TypiClust's ``pretext_*`` params
  (:func:`albench.strategies.representation.representation_spec`), so equal values share one
  cached network with TypiClust and ProbCover.
- **backbone**: a registered image model with a local weights file (``tv:<arch>``, ``timm:<name>``),
  e.g. ``{name: tv:resnet18, params: {weights: resnet18.pth}, resize: 224, mean: [...], std: [...]}``.
  ``params`` are the model's own (checked as ``model.params`` would be; ``weights`` is required: a
  frozen random network is refused); ``resize``: square side the images are resized to (bilinear,
  antialiased) before the network, null: their own size; ``mean``/``std``: the normalisation in
  0..1 units (null: the dataset's); ``batch_size``: images per forward pass (speed only). The
  features are the model's pooled embedding (``ModelOutput.embedding``) in eval mode.
- **file**: ``{file: PATH}``, an npz computed elsewhere (see :mod:`albench.features.files`).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Annotated, Any

from albench.errors import ConfigError
from albench.typed import Bounds, param_spec, validate_params

KINDS = ("representation", "backbone", "file")
BACKBONE_KEYS = ("name", "params", "resize", "mean", "std", "batch_size")


@dataclass(frozen=True)
class RepresentationSourceParams:
    """A harness-trained representation's params (None: the representation's default)."""

    epochs: Annotated[int | None, Bounds(ge=1)] = None
    batch_size: Annotated[int | None, Bounds(ge=2)] = None
    lr: Annotated[float | None, Bounds(gt=0, finite=True)] = None
    model: str | None = None
    width: Annotated[int | None, Bounds(ge=1)] = None
    seed: Annotated[int | None, Bounds(ge=0)] = 0
    options: dict | None = None


@dataclass(frozen=True)
class FeatureSource:
    """A parsed ``model.params.features``. ``params``: the representation's or the backbone's params
    as given (typed); ``resize``/``mean``/``std``/``batch_size``: a backbone's transform; ``file``: a
    features file's path."""

    kind: str
    name: str | None = None
    params: dict = field(default_factory=dict)
    resize: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    batch_size: int = 256
    file: str | None = None

    def describe(self) -> dict:
        """Plain data naming the source (recorded in run.json ``features.source``)."""
        if self.kind == "file":
            return {"kind": "file", "file": self.file}
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "params": dict(self.params)}
        if self.kind == "backbone":
            out.update(resize=self.resize, mean=None if self.mean is None else list(self.mean),
                       std=None if self.std is None else list(self.std))
        return out


def representation_spec_of(source: FeatureSource, run_seed: int):
    """The :class:`~albench.strategies.pretext.PretextSpec` a representation source trains for a run of
    ``run_seed`` (its ``seed`` param, 0 by default; null: the run's seed)."""
    from albench.strategies.representation import representation_spec

    p = source.params
    seed = p.get("seed", 0)
    return representation_spec(source.name, seed=run_seed if seed is None else int(seed), epochs=p.get("epochs"),
                               batch_size=p.get("batch_size"), width=p.get("width"), model=p.get("model"),
                               lr=p.get("lr"), options=p.get("options"))


def _pretext_tasks() -> tuple[str, ...]:
    from albench.strategies.pretext import TASKS

    return tuple(TASKS)


def parse_source(value: Any, path: str = "model.params.features", *, check_files: bool = False) -> FeatureSource:
    """The :class:`FeatureSource` ``value`` describes; ConfigError naming ``path`` (or the key under
    it) when it is missing or malformed. ``check_files``: also read a backbone's weights file and a
    features file's header (at config load; nothing is loaded to memory beyond the header)."""
    fix = ("set it to a representation the harness trains (e.g. simclr, or {name: simclr, params: {epochs: 50}}), "
           "a backbone with local weights ({name: tv:resnet18, params: {weights: PATH}}) or a file ({file: PATH})")
    if value is None:
        raise ConfigError(path, "is required for a model over frozen features", fix)
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(path, "must be a name or a mapping", fix, value)
    if "file" in value:
        extra = sorted(set(value) - {"file"})
        if extra:
            raise ConfigError(f"{path}.{extra[0]}", "unknown key beside 'file'", "a features file takes no other key "
                              "(its rows must already be the features)")
        f = value["file"]
        if not isinstance(f, str) or not f.strip():
            raise ConfigError(f"{path}.file", "must be the path of an npz file", "set it to e.g. features.npz", f)
        source = FeatureSource(kind="file", file=f)
        if check_files:
            from albench.features.files import read_header

            read_header(source.file, f"{path}.file")
        return source
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}.name", "is required (or give 'file')", fix, name)
    if name in _pretext_tasks():
        return _representation(name, value, path)
    return _backbone(name, value, path, check_files)


def _representation(name: str, value: dict, path: str) -> FeatureSource:
    from albench.strategies.pretext import TASKS

    extra = sorted(set(value) - {"name", "params"})
    if extra:
        raise ConfigError(f"{path}.{extra[0]}", f"unknown key for representation {name!r}",
                          "keep 'name' and 'params' (epochs, batch_size, lr, model, width, seed, options)")
    params = validate_params(param_spec(RepresentationSourceParams), value.get("params"), f"{path}.params",
                             f"representation {name!r}")
    from albench.models.registry import has_model, model_entry, model_names

    model = params.get("model")
    if model is not None:
        if not has_model(model):
            close = difflib.get_close_matches(model, model_names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{path}.params.model", "unknown model", f"{hint}use one of {', '.join(model_names())}",
                              model)
        if model_entry(model).inputs != "images":
            raise ConfigError(f"{path}.params.model", "reads features, not images: a representation trains an "
                              "image network", "use an image model such as small-cnn or resnet18-cifar", model)
    if params.get("width") is not None:
        from albench.strategies.representation import representation_defaults

        m = model or representation_defaults(name)["model"]
        if "width" not in model_entry(m).param_types():
            raise ConfigError(f"{path}.params.width", f"model {m!r} has no width parameter",
                              f"remove {path}.params.width or pick a model with one (small-cnn, resnet18-cifar)",
                              params["width"])
    TASKS[name].resolve_options(params.get("options"), f"{path}.params.options")
    return FeatureSource(kind="representation", name=name, params=params)


def _float_list(value: Any, key: str, path: str, positive: bool) -> tuple[float, ...] | None:
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and value and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
        for v in value)
    if not ok:
        raise ConfigError(f"{path}.{key}", f"must be a list of finite{' positive' if positive else ''} numbers, one "
                          "per channel (0..1 units), or null for the dataset's",
                          f"set {path}.{key} to e.g. {[0.229, 0.224, 0.225] if positive else [0.485, 0.456, 0.406]}",
                          value)
    return tuple(float(v) for v in value)


def _backbone(name: str, value: dict, path: str, check_files: bool) -> FeatureSource:
    from albench.models.registry import has_model, model_entry, model_names, validate_model_params

    if not has_model(name):
        known = [*_pretext_tasks(), "tv:<arch>", "timm:<name>"]
        close = difflib.get_close_matches(name, [*_pretext_tasks(), *model_names()], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{path}.name", "is neither a representation the harness trains nor a registered model",
                          f"{hint}use one of {', '.join(known)}, or {{file: PATH}}", name)
    try:
        entry = model_entry(name)  # a family resolves the name here (timm absent, no such model)
    except ConfigError as exc:
        raise ConfigError(f"{path}.name", exc.problem, exc.fix, name) from None
    if entry.inputs != "images":
        raise ConfigError(f"{path}.name", "reads features itself; a feature source must be an image backbone",
                          "use tv:<arch>, timm:<name> or a representation such as simclr", name)
    extra = sorted(set(value) - set(BACKBONE_KEYS))
    if extra:
        raise ConfigError(f"{path}.{extra[0]}", f"unknown key for backbone {name!r}",
                          f"keep some of: {', '.join(BACKBONE_KEYS)}")
    params = validate_model_params(name, value.get("params"), f"{path}.params")
    if "weights" not in entry.param_types():
        raise ConfigError(f"{path}.name", "takes no weights file, so it would embed the pool with random weights",
                          "use a backbone with local weights (tv:<arch>, timm:<name>) or a representation the harness "
                          "trains (simclr)", name)
    if params.get("weights") is None:
        raise ConfigError(f"{path}.params.weights", "is required: a frozen backbone with random weights gives "
                          "features no better than noise", f"set {path}.params.weights to a local state dict of "
                          f"{name} (albench never downloads weights), or use a representation the harness trains "
                          "(simclr)", None)
    resize = value.get("resize")
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int) or resize < 1):
        raise ConfigError(f"{path}.resize", "must be a positive image side in pixels, or null for the images' own size",
                          f"set {path}.resize to e.g. 224", resize)
    bs = value.get("batch_size", 256)
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise ConfigError(f"{path}.batch_size", "must be a positive integer", f"set {path}.batch_size to e.g. 256", bs)
    mean = _float_list(value.get("mean"), "mean", path, positive=False)
    std = _float_list(value.get("std"), "std", path, positive=True)
    if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
        raise ConfigError(f"{path}.mean", "mean and std go together, with one value per channel each",
                          f"set both {path}.mean and {path}.std, or neither (the dataset's)", value.get("mean"))
    if check_files and entry.check is not None:
        entry.check(params, f"{path}.params")
    return FeatureSource(kind="backbone", name=name, params=params, resize=resize, mean=mean, std=std, batch_size=bs)


def check_source_data(source: FeatureSource, dataset: Any, dataset_path: str, path: str) -> None:
    """Checks of ``source`` against one dataset of the sweep (its :class:`~albench.config.DatasetConfig`),
    at config load: a features file's row counts and pool fingerprints (ConfigError naming the file
    and the mismatch); a representation's or backbone's fit to the images' channels."""
    from albench.data.registry import get_dataset

    spec = get_dataset(dataset.name)
    if spec.task != "classification":
        raise ConfigError("model.name", f"a head over frozen features classifies images; dataset {dataset.name!r} is "
                          f"a {spec.task} dataset", "use a segmentation model for it", "head")
    if source.kind == "file":
        from albench.features.files import check_file_against

        check_file_against(source.file, dataset, dataset_path, f"{path}.file")
        return
    channels = spec.channels(dataset)
    if source.kind == "backbone" and source.mean is not None and channels is not None and len(source.mean) != channels:
        raise ConfigError(f"{path}.mean", f"has {len(source.mean)} values but dataset {dataset.name!r} has {channels} "
                          "channels", f"give one value per channel in {path}.mean and {path}.std", list(source.mean))


__all__ = ["FeatureSource", "KINDS", "RepresentationSourceParams", "check_source_data", "parse_source",
           "representation_spec_of"]
