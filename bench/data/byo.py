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

from albench.data.base import (MAX_IMAGE_SIDE, DatasetSpec, ImageDataset, channel_stats, check_memory,
                               param_image_size, param_int)
from albench.typed import INT64_MAX
from albench.data.npzfile import check_npz, load_npz_arrays, npz_shapes, to_nchw_uint8
from albench.data.registry import register_dataset
from albench.errors import ConfigError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


def _augment_params(spec: DatasetSpec, cfg) -> dict:
    return {"crop_padding": int(spec.param(cfg, "crop_padding")), "hflip": bool(spec.param(cfg, "hflip"))}


def check_augment_params(spec: DatasetSpec, cfg, path: str) -> None:
    """ConfigError unless ``crop_padding`` is 0..MAX_IMAGE_SIDE pixels and ``hflip`` true or false."""
    param_int(spec, cfg, path, "crop_padding", minimum=0, maximum=MAX_IMAGE_SIDE)
    if not isinstance(spec.param(cfg, "hflip"), bool):
        raise ConfigError(f"{path}.params.hflip", "must be true or false", f"set {path}.params.hflip: true",
                          spec.param(cfg, "hflip"))


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
        check_augment_params(self, cfg, path)
        p = self._path(cfg)
        if not p.is_file():
            raise ConfigError(f"{path}.root", f"no npz file at {p}", "point root (or params.file) at your .npz", str(p))
        check_npz(p, f"{path}.root")

    def train_size(self, cfg) -> int:
        return int(npz_shapes(self._path(cfg))["x_train"][0])

    def load(self, cfg) -> ImageDataset:
        check_npz(self._path(cfg), "dataset.root")  # also when loaded without a config check (or changed since)
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


def _check_decodable(files: list[tuple[Path, int]], field: str) -> None:
    """ConfigError naming the first file PIL cannot identify as an image (its header is read, not its
    pixels: a few microseconds a file), so a stray non-image is refused at load, not mid-run."""
    from PIL import Image, UnidentifiedImageError

    for f, _ in files:
        try:
            with Image.open(f) as img:
                img.size  # noqa: B018 - the header parsed
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ConfigError(field, f"image {f} cannot be decoded ({type(exc).__name__})",
                              "remove or replace the file", str(f)) from None


def _decode(files: list[tuple[Path, int]], size: tuple[int, int], mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image, UnidentifiedImageError

    h, w = size
    x = np.empty((len(files), h, w, len(mode)), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        try:
            with Image.open(f) as img:
                x[i] = np.asarray(img.convert(mode).resize((w, h), Image.BILINEAR)).reshape(h, w, len(mode))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ConfigError("dataset.root", f"image {f} cannot be decoded ({type(exc).__name__})",
                              "remove or replace the file", str(f)) from None
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
        check_augment_params(self, cfg, path)
        param_int(self, cfg, path, "split_seed", minimum=0, maximum=INT64_MAX)
        train = Path(cfg.resolved_root()) / "train"
        if not train.is_dir() or not any(p.is_dir() for p in train.iterdir()):
            raise ConfigError(f"{path}.root", f"has no train/<class>/ folders under {train.parent}",
                              "lay images out as root/train/<class>/<image>", str(train.parent))
        test = train.parent / "test"
        frac = self.param(cfg, "test_fraction")
        if not test.is_dir() and (isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1):
            raise ConfigError(f"{path}.params.test_fraction", "must be a fraction strictly between 0 and 1",
                              "set e.g. test_fraction: 0.2, or give a root/test/<class>/ folder", frac)
        for split in (train, test) if test.is_dir() else (train,):
            classes, files = _class_files(split)
            counts = np.bincount([c for _, c in files], minlength=len(classes))
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            if not files:
                raise ConfigError(f"{path}.root", f"the class folders under {split} hold no images ({suffixes})",
                                  "put each class's images in its folder", str(split))
            empty = [classes[c] for c in np.flatnonzero(counts == 0)]
            if empty:
                raise ConfigError(f"{path}.root", f"class folder(s) {empty[:5]} under {split} hold no images "
                                  f"({suffixes})", "add images to them or remove the folders", str(split))
            if split == train and len(classes) < 2:
                raise ConfigError(f"{path}.root", f"{split} holds a single class folder {classes}; active "
                                  "learning needs at least two classes", "add a folder per class", str(split))
            if split == train and not test.is_dir() and counts.min() < 2:
                raise ConfigError(f"{path}.root", f"class {classes[int(counts.argmin())]!r} under {split} has "
                                  "one image, too few to hold out a stratified test share",
                                  "add images, or give a root/test/<class>/ folder", str(split))
            if split == train and not test.is_dir():
                n_test = int(np.ceil(frac * len(files)))  # as train_test_split rounds it
                if not len(classes) <= n_test <= len(files) - len(classes):
                    raise ConfigError(f"{path}.params.test_fraction", f"holds out {n_test} of {len(files)} images, "
                                      f"but each split needs one image of each of the {len(classes)} classes",
                                      "pick a fraction that leaves every class in both splits, or give a "
                                      "root/test/<class>/ folder", frac)
        if test.is_dir() and _class_files(test)[0] != _class_files(train)[0]:
            raise ConfigError(f"{path}.root", "train/ and test/ hold different class folders",
                              "give test/ the same class folders as train/", str(train.parent))
        h, w = param_image_size(self, cfg, path)
        mode = self.param(cfg, "mode")
        if mode not in ("RGB", "L"):
            raise ConfigError(f"{path}.params.mode", "must be 'RGB' or 'L'", "set mode: RGB", mode)
        n = 0
        for split in (train, test) if test.is_dir() else (train,):
            files = _class_files(split)[1]
            n += len(files)
            _check_decodable(files, f"{path}.root")
        check_memory(n * h * w * len(mode), f"{path}.params.image_size", f"{n} images decoded at {h}x{w}",
                     "lower image_size (the images are held in memory)")

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
