"""What every dataset yields: uint8 images and int64 targets, in memory, plus how to normalise them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from albench.errors import ConfigError


@dataclass
class ImageDataset:
    """A train pool and a test set, held in memory.

    ``x_*`` are uint8 tensors (N, C, H, W) in 0..255; ``y_*`` are int64 tensors: (N,) class ids for
    classification, (N, H, W) class maps for segmentation (``ignore_index`` marks unlabeled pixels;
    maps may be uint8, 8x smaller, when every id and ``ignore_index`` fit in 0..255).
    ``mean`` / ``std`` are per-channel, in 0..1 units. ``crop_padding`` and ``hflip`` are the
    dataset's default train augmentation (a config may override them).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    task: str = "classification"
    crop_padding: int = 4
    hflip: bool = True
    ignore_index: int | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(f"{self.name}: x_{split} must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
            dense = self.task == "segmentation"
            ok_dtype = y.dtype == torch.int64 or (dense and y.dtype == torch.uint8)
            ok_shape = (y.shape == (x.shape[0], x.shape[2], x.shape[3])) if dense else y.shape[0] == x.shape[0]
            if not ok_dtype or not ok_shape:
                want = f"maps (N, H, W) = {(x.shape[0], x.shape[2], x.shape[3])}, int64 or uint8" if dense \
                    else f"int64 with {x.shape[0]} rows"
                raise ValueError(f"{self.name}: y_{split} must be {want}, got {y.dtype} {tuple(y.shape)}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"{self.name}: mean/std need {self.channels} channels")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])

    def class_counts(self, split: str = "train") -> list[int]:
        """Images per class in a split (classification only), in class-id order."""
        y = getattr(self, f"y_{split}")
        return torch.bincount(y, minlength=self.num_classes).tolist()


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in 0..1 units."""
    xf = x.to(torch.float64) / 255.0
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


class DatasetSpec:
    """A registered dataset: validates its config cheaply, reports its pool size, and loads it.

    Subclasses set ``name``, ``description`` and ``needs_root``; they implement :meth:`load` and,
    when the size is knowable without loading pixels, :meth:`train_size`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    task: ClassVar[str] = "classification"
    needs_root: ClassVar[bool] = True
    params: ClassVar[dict] = {}  # known params and their defaults
    # the class names in class-id order when the dataset fixes them (known without its files): reports
    # label records that predate run.json's 'classes' with them
    class_names: ClassVar[list[str] | None] = None

    def check(self, cfg, path: str) -> None:
        """Raise ConfigError when the config cannot load (missing root, unknown param)."""
        from albench.data.pool import POOL_PARAMS, parse_pool_options

        for key in cfg.params:
            if key in POOL_PARAMS and self.task != "classification":
                raise ConfigError(f"{path}.params.{key}", "is a pool option for classification datasets only",
                                  f"remove it: {self.name!r} is a {self.task} dataset")
            if key not in self.params and key not in POOL_PARAMS:
                known = ", ".join([*self.params, *(POOL_PARAMS if self.task == "classification" else ())]) or "none"
                raise ConfigError(f"{path}.params.{key}", f"unknown parameter for dataset {self.name!r}",
                                  f"remove it; known parameters: {known}")
        parse_pool_options(cfg.params, path)  # the shape of the options; their fit to the data: pool.pool_size
        if self.needs_root:
            root = cfg.resolved_root()
            if root is None:
                raise ConfigError(f"{path}.root", f"dataset {self.name!r} needs a data root",
                                  f"set {path}.root or the ALBENCH_DATA environment variable")
            if not Path(root).exists() and not cfg.download:
                raise ConfigError(f"{path}.root", "does not exist",
                                  f"point {path}.root at the folder holding the data "
                                  "(or set download: true where the dataset supports it)", root)

    def param(self, cfg, key: str):
        return cfg.params.get(key, self.params[key])

    def train_labels(self, cfg) -> np.ndarray:
        """The train pool's class ids (int64, before pool options); override to skip decoding images."""
        return self.load(cfg).y_train.numpy()

    def train_size(self, cfg) -> int:
        """Number of images in the train pool."""
        return int(self.load(cfg).x_train.shape[0])

    def channels(self, cfg) -> int | None:
        """Image channels when knowable without loading pixels (config-time checks), else None."""
        return None

    def image_shape(self, cfg) -> tuple[int, int, int] | None:
        """(channels, height, width) of the images when knowable without loading pixels (``--dry-run``'s
        cost estimates), else None."""
        return None

    def load(self, cfg) -> ImageDataset:
        raise NotImplementedError
