"""Bring-your-own datasets: an ``.npz`` of arrays, or an image folder tree (one folder per class).

npz layout (the same as ../shared/data/cifar10.npz): ``x_train`` / ``x_test`` uint8 images as
(N, H, W), (N, H, W, C) or (N, C, H, W); ``y_train`` / ``y_test`` integer class ids; optional
``classes`` (strings). ``root`` is the .npz file itself or a folder holding ``params.file``.

imagefolder layout: ``root/train/<class>/*.png|jpg|...`` and optionally ``root/test/<class>/...``;
without a test folder, a seeded stratified ``test_fraction`` of train is held out. Class ids follow
the sorted folder names. Images are decoded once, resized to ``image_size`` and held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.data.base import DatasetSpec, ImageDataset, channel_stats
from bench.data.npzfile import load_npz_arrays, npz_shapes, to_nchw_uint8
from bench.data.registry import register_dataset
from bench.errors import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


def _augment_params(spec: DatasetSpec, cfg) -> dict:
    return {"crop_padding": int(spec.param(cfg, "crop_padding")), "hflip": bool(spec.param(cfg, "hflip"))}


@register_dataset
class NpzDataset(DatasetSpec):
    name = "npz"
    description = "your own arrays: an .npz with x_train, y_train, x_test, y_test [, classes]"
    params = {"file": None, "crop_padding": 4, "hflip": True}

    def _path(self, cfg) -> Path:
        root = Path(cfg.resolved_root())
        if root.is_file():
            return root
        name = self.param(cfg, "file")
        if name is None:
            raise ConfigError("dataset.params.file", "is needed when root is a folder",
                              "set root to the .npz file, or params.file to its name inside root")
        return root / name

    def check(self, cfg, path: str) -> None:
        super().check(cfg, path)
        p = self._path(cfg)
        if not p.is_file():
            raise ConfigError(f"{path}.root", f"no npz file at {p}", "point root (or params.file) at your .npz", str(p))
        shapes = npz_shapes(p)
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in shapes]
        if missing:
            raise ConfigError(f"{path}.root", f"{p.name} lacks arrays {missing}",
                              "save x_train, y_train, x_test, y_test (and optionally classes) with np.savez", str(p))

    def train_size(self, cfg) -> int:
        return int(npz_shapes(self._path(cfg))["x_train"][0])

    def load(self, cfg) -> ImageDataset:
        arrays = load_npz_arrays(self._path(cfg))
        x_train = to_nchw_uint8(arrays["x_train"], "x_train")
        y_train = torch.from_numpy(np.asarray(arrays["y_train"], dtype=np.int64))
        y_test = torch.from_numpy(np.asarray(arrays["y_test"], dtype=np.int64))
        n_classes = int(max(y_train.max(), y_test.max())) + 1
        classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else [str(i) for i in range(n_classes)]
        mean, std = channel_stats(x_train)
        return ImageDataset(name=self.name, x_train=x_train, y_train=y_train,
                            x_test=to_nchw_uint8(arrays["x_test"], "x_test"), y_test=y_test,
                            classes=classes, mean=mean, std=std, **_augment_params(self, cfg))


def _class_files(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = []
    for c, name in enumerate(classes):
        for f in sorted((folder / name).rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append((f, c))
    return classes, files


def _decode(files: list[tuple[Path, int]], size: tuple[int, int], mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    h, w = size
    x = np.empty((len(files), h, w, len(mode)), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        with Image.open(f) as img:
            x[i] = np.asarray(img.convert(mode).resize((w, h), Image.BILINEAR)).reshape(h, w, len(mode))
    y = np.array([c for _, c in files], dtype=np.int64)
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)


@register_dataset
class ImageFolderDataset(DatasetSpec):
    name = "imagefolder"
    description = "your own images: root/train/<class>/*.png [+ root/test/<class>/...], resized to image_size"
    params = {"image_size": [32, 32], "mode": "RGB", "test_fraction": 0.2, "split_seed": 0,
              "crop_padding": 4, "hflip": True}

    def check(self, cfg, path: str) -> None:
        super().check(cfg, path)
        train = Path(cfg.resolved_root()) / "train"
        if not train.is_dir() or not any(p.is_dir() for p in train.iterdir()):
            raise ConfigError(f"{path}.root", f"has no train/<class>/ folders under {train.parent}",
                              "lay images out as root/train/<class>/<image>", str(train.parent))
        size = self.param(cfg, "image_size")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
            raise ConfigError(f"{path}.params.image_size", "must be [height, width]", "set e.g. image_size: [32, 32]",
                              size)
        if self.param(cfg, "mode") not in ("RGB", "L"):
            raise ConfigError(f"{path}.params.mode", "must be 'RGB' or 'L'", "set mode: RGB", self.param(cfg, "mode"))

    def _split(self, cfg):
        root = Path(cfg.resolved_root())
        classes, train_files = _class_files(root / "train")
        if (root / "test").is_dir():
            test_classes, test_files = _class_files(root / "test")
            if test_classes != classes:
                raise ConfigError("dataset.root", "train/ and test/ hold different class folders",
                                  "give test/ the same class folders as train/", str(root))
            return classes, train_files, test_files
        from sklearn.model_selection import train_test_split

        labels = [c for _, c in train_files]
        tr, te = train_test_split(np.arange(len(train_files)), test_size=float(self.param(cfg, "test_fraction")),
                                  random_state=int(self.param(cfg, "split_seed")), stratify=labels)
        return classes, [train_files[i] for i in sorted(tr)], [train_files[i] for i in sorted(te)]

    def train_size(self, cfg) -> int:
        return len(self._split(cfg)[1])

    def load(self, cfg) -> ImageDataset:
        classes, train_files, test_files = self._split(cfg)
        size = tuple(self.param(cfg, "image_size"))
        mode = self.param(cfg, "mode")
        x_train, y_train = _decode(train_files, size, mode)
        x_test, y_test = _decode(test_files, size, mode)
        mean, std = channel_stats(x_train)
        return ImageDataset(name=self.name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                            classes=classes, mean=mean, std=std, **_augment_params(self, cfg))
