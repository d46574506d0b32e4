"""The paper's large-image classification datasets, both at 224 x 224: Caltech-101 and ImageNet-67.

Images are decoded once (RGB, bilinear resize to ``image_size``, aspect ratio not kept: the paper
"resizes into 224 x 224") by :mod:`albench.data.decoded`, into RAM or a memory-mapped ``.npy`` cache
under ``params.cache_dir`` (relative paths are under the data root; ``null`` = RAM, decoded again by
every run). Disk cost of the cache: 150,528 bytes per 224 x 224 image: ~1.4 GB for Caltech-101,
~190 GB for ImageNet-67's train pool plus ~7.5 GB for its test set. Both normalise with the
ImageNet channel statistics.

Augmentation: the paper uses random-resized crops and horizontal flips. The harness's batched
augmentation is a random shift with zero padding plus flips; the defaults (``crop_padding: 28``,
1/8 of the side as CIFAR's 4/32, and ``hflip: true``) stand in for the random-resized crop.

Caltech-101 (``root``): torchvision's ``caltech101/101_ObjectCategories/<class>/*.jpg``, or
``101_ObjectCategories/`` itself, or any folder of class folders (an ImageFolder). The paper's
9,144 images = 8,677 of the 101 object classes + 467 of ``BACKGROUND_Google``; so that the
8,046 / 1,098 split is the paper's, the background folder is kept as a class of its own (class
ids follow the sorted folder names, so it is class 0 in torchvision's layout); ``background:
false`` drops it (101 classes, as torchvision's loader). The split is stratified and seeded
(``split_seed``); its test size is 1,098 / 9,144 of the images (exactly 1,098 of 9,144; for other
folders scaled proportionally and rounded), or ``test_size`` images when given.

ImageNet-67 (``root``): an ImageFolder ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (the val
images sorted into wnid folders, as torchvision's ImageNet class or the usual valprep script lays
them out) plus ``params.mapping``, a file mapping WordNet ids to superclasses, one of:

- CSV: one ``wnid,superclass`` pair per line (an optional header ``wnid,superclass``; ``#`` starts a
  comment line);
- JSON: an object ``{"n01440764": "fish", ...}``.

Class ids follow the sorted superclass names. wnid folders missing from the mapping are dropped
(the paper's 1,279,867 / 49,950 images are ImageNet without the classes left out of its 67
superclasses); mapped wnids with no folder are reported in the run's dataset info.
"""

from __future__ import annotations

import csv
import json
import os
from functools import partial
from pathlib import Path

import numpy as np
import torch

from albench.data.base import DatasetSpec, ImageDataset
from albench.data.byo import IMAGE_SUFFIXES
from albench.data.decoded import (IMAGENET_MEAN, IMAGENET_STD, cache_key, check_cache_dir, decoded_array,
                                default_workers, read_rgb, resolve_cache_dir)
from albench.data.registry import register_dataset
from albench.data.segmentation import _positive_int, _size_param
from albench.errors import ConfigError

CALTECH_IMAGES, CALTECH_TEST = 9144, 1098  # the paper's counts (background folder included)
BACKGROUND = "BACKGROUND_Google"


def _images_in(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted by name)."""
    with os.scandir(folder) as it:
        return sorted(Path(e.path) for e in it if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES)


def _subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _common(spec: DatasetSpec, cfg, path: str) -> None:
    _size_param(spec, cfg, path)
    if spec.param(cfg, "workers") is not None:
        _positive_int(spec, cfg, path, "workers")
    _positive_int(spec, cfg, path, "crop_padding", minimum=0)
    if not isinstance(spec.param(cfg, "hflip"), bool):
        raise ConfigError(f"{path}.params.hflip", "must be true or false", "set hflip: true", spec.param(cfg, "hflip"))
    check_cache_dir(resolve_cache_dir(cfg.resolved_root(), spec.param(cfg, "cache_dir")), f"{path}.params.cache_dir")


def _decode(spec: DatasetSpec, cfg, files: list[Path], base: Path, name: str) -> torch.Tensor:
    size = tuple(spec.param(cfg, "image_size"))
    rel = [str(f.relative_to(base)) for f in files]
    return decoded_array([str(f) for f in files], partial(read_rgb, size=size), (3, *size),
                         cache_dir=resolve_cache_dir(cfg.resolved_root(), spec.param(cfg, "cache_dir")),
                         name=name, key=cache_key(dataset=spec.name, files=rel, size=list(size)),
                         workers=default_workers(spec.param(cfg, "workers")))


# ------------------------------------------------------------------------------------------------
# Caltech-101


def caltech_folder(root: str | Path) -> Path | None:
    """The folder of class folders: ``caltech101/101_ObjectCategories``, ``101_ObjectCategories`` or
    ``root`` itself when it holds folders of images; None when none of these exists."""
    root = Path(root)
    for cand in (root / "caltech101" / "101_ObjectCategories", root / "101_ObjectCategories"):
        if cand.is_dir():
            return cand
    if root.is_dir() and any(_images_in(root / d) for d in _subfolders(root)):
        return root
    return None


def paper_test_size(n: int) -> int:
    """The paper's test share (1,098 of 9,144) of ``n`` images, rounded: 1,098 for n = 9,144."""
    return int(round(n * CALTECH_TEST / CALTECH_IMAGES))


@register_dataset
class Caltech101(DatasetSpec):
    name = "caltech101"
    description = ("Caltech-101 (torchvision layout or an ImageFolder) at 224x224, seeded stratified "
                   "8,046 / 1,098 split as in the paper (BACKGROUND_Google kept as a class)")
    params = {"image_size": [224, 224], "background": True, "test_size": None, "split_seed": 0,
              "cache_dir": None, "workers": None, "crop_padding": 28, "hflip": True}

    def image_shape(self, cfg) -> tuple[int, int, int]:  # RGB, resized to image_size when decoded
        return (3, *(int(v) for v in self.param(cfg, "image_size")))

    def check(self, cfg, path: str) -> None:
        super().check(cfg, path)
        if caltech_folder(cfg.resolved_root()) is None:
            raise ConfigError(f"{path}.root", "holds no caltech101/101_ObjectCategories/<class>/ folders of images",
                              f"point {path}.root at torchvision's Caltech-101 root or at a folder of class folders",
                              cfg.resolved_root())
        if not isinstance(self.param(cfg, "background"), bool):
            raise ConfigError(f"{path}.params.background", "must be true or false",
                              "set background: true (the paper's 9,144 images)", self.param(cfg, "background"))
        if self.param(cfg, "test_size") is not None:
            _positive_int(self, cfg, path, "test_size")
        _positive_int(self, cfg, path, "split_seed", minimum=0)
        _common(self, cfg, path)
        self._split(cfg, path)  # a split that cannot be made is bad input too

    def _files(self, cfg) -> tuple[Path, list[str], list[tuple[Path, int]]]:
        folder = caltech_folder(cfg.resolved_root())
        classes = [c for c in _subfolders(folder) if self.param(cfg, "background") or c != BACKGROUND]
        classes = [c for c in classes if _images_in(folder / c)]
        files = [(f, k) for k, c in enumerate(classes) for f in _images_in(folder / c)]
        return folder, classes, files

    def _split(self, cfg, path: str = "dataset"):
        from sklearn.model_selection import train_test_split

        folder, classes, files = self._files(cfg)
        n = len(files)
        test = self.param(cfg, "test_size")
        test = paper_test_size(n) if test is None else int(test)
        labels = np.array([k for _, k in files])
        counts = np.bincount(labels, minlength=len(classes))
        if not len(classes) <= test <= n - len(classes) or counts.min() < 2:
            raise ConfigError(f"{path}.params.test_size",
                              f"cannot split {n} images of {len(classes)} classes (smallest class: {counts.min()}) "
                              f"into a stratified test set of {test}",
                              "give every class at least 2 images and a test size between the class count and "
                              "the image count minus it", test)
        tr, te = train_test_split(np.arange(n), test_size=test, random_state=int(self.param(cfg, "split_seed")),
                                  stratify=labels)
        return folder, classes, [files[i] for i in np.sort(tr)], [files[i] for i in np.sort(te)]

    def train_size(self, cfg) -> int:
        return len(self._split(cfg)[2])

    def train_labels(self, cfg) -> np.ndarray:  # from the file list: pool options are checked without decoding
        return np.array([k for _, k in self._split(cfg)[2]], dtype=np.int64)

    def load(self, cfg) -> ImageDataset:
        folder, classes, train, test = self._split(cfg)
        seed = int(self.param(cfg, "split_seed"))
        x_train = _decode(self, cfg, [f for f, _ in train], folder, f"caltech101-train-seed{seed}")
        x_test = _decode(self, cfg, [f for f, _ in test], folder, f"caltech101-test-seed{seed}")
        return ImageDataset(
            name=self.name, x_train=x_train, y_train=torch.tensor([k for _, k in train], dtype=torch.int64),
            x_test=x_test, y_test=torch.tensor([k for _, k in test], dtype=torch.int64), classes=classes,
            mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_padding=int(self.param(cfg, "crop_padding")),
            hflip=bool(self.param(cfg, "hflip")),
            info={"classes": classes, "background": BACKGROUND in classes, "split_seed": seed,
                  "train_images": len(train), "test_images": len(test)})


# ------------------------------------------------------------------------------------------------
# ImageNet-67


def read_mapping(path: str | Path) -> dict[str, str]:
    """{wnid: superclass} from a CSV (``wnid,superclass`` lines) or JSON object file.

    Raises ConfigError naming the line or entry that is malformed or maps a wnid twice.
    """
    path = Path(path)
    field = "dataset.params.mapping"
    text = path.read_text()
    out: dict[str, str] = {}

    def add(wnid, sup, where):
        wnid, sup = str(wnid).strip(), str(sup).strip()
        if not wnid or not sup:
            raise ConfigError(field, f"{where} has an empty wnid or superclass", "write 'wnid,superclass'", str(path))
        if wnid in out and out[wnid] != sup:
            raise ConfigError(field, f"{where} maps {wnid} to {sup!r}, but it was mapped to {out[wnid]!r} before",
                              "map each wnid to one superclass", str(path))
        out[wnid] = sup

    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(field, f"is not valid JSON (line {exc.lineno})", "write an object {wnid: superclass}",
                              str(path)) from None
        if not isinstance(data, dict):
            raise ConfigError(field, "must hold a JSON object", "write an object {wnid: superclass}", str(path))
        for wnid, sup in data.items():
            if not isinstance(sup, str):
                raise ConfigError(field, f"maps {wnid} to a {type(sup).__name__}", "map each wnid to a name", str(path))
            add(wnid, sup, f"entry {wnid!r}")
        return out
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 2:
            raise ConfigError(field, f"line {lineno} has {len(row)} fields", "write one 'wnid,superclass' per line",
                              str(path))
        if lineno == 1 and [c.strip().lower() for c in row] == ["wnid", "superclass"]:
            continue
        add(row[0], row[1], f"line {lineno}")
    return out


@register_dataset
class ImageNet67(DatasetSpec):
    name = "imagenet67"
    description = ("ImageNet regrouped into superclasses (paper: 67) by your wnid->superclass mapping file; "
                   "ImageFolder train/ + val/, 224x224, memory-mapped cache")
    params = {"mapping": None, "image_size": [224, 224], "cache_dir": ".albench-cache", "workers": None,
              "crop_padding": 28, "hflip": True}

    def image_shape(self, cfg) -> tuple[int, int, int]:  # RGB, resized to image_size when decoded
        return (3, *(int(v) for v in self.param(cfg, "image_size")))

    def _mapping_path(self, cfg) -> Path | None:
        m = self.param(cfg, "mapping")
        if m is None:
            return None
        p = Path(m).expanduser()
        return p if p.is_absolute() else Path(cfg.resolved_root()) / p

    def check(self, cfg, path: str) -> None:
        super().check(cfg, path)
        root = Path(cfg.resolved_root())
        mp = self._mapping_path(cfg)
        if mp is None or not mp.is_file():
            raise ConfigError(f"{path}.params.mapping", "names no mapping file" if mp is None else "is not a file",
                              "give a CSV (wnid,superclass per line) or JSON {wnid: superclass} file, absolute or "
                              "relative to the root", None if mp is None else str(mp))
        for split in ("train", "val"):
            if not (root / split).is_dir() or not _subfolders(root / split):
                raise ConfigError(f"{path}.root", f"has no {split}/<wnid>/ folders",
                                  "lay ImageNet out as root/train/<wnid>/ and root/val/<wnid>/ (sort the val "
                                  "images into wnid folders, e.g. with torchvision.datasets.ImageNet)", str(root))
        mapping = read_mapping(mp)
        if not set(mapping) & set(_subfolders(root / "train")):
            raise ConfigError(f"{path}.params.mapping", "maps none of the train/<wnid> folders",
                              "use the wnids (e.g. n01440764) of your ImageNet folders as keys", str(mp))
        _common(self, cfg, path)

    def _files(self, cfg, split: str) -> tuple[list[str], list[tuple[Path, int]], dict]:
        root = Path(cfg.resolved_root())
        mapping = read_mapping(self._mapping_path(cfg))
        present = _subfolders(root / split)
        used = [w for w in present if w in mapping]
        classes = sorted(set(mapping[w] for w in used))
        ids = {c: k for k, c in enumerate(classes)}
        files = [(f, ids[mapping[w]]) for w in used for f in _images_in(root / split / w)]
        info = {"wnids_used": len(used), "wnids_dropped": len(present) - len(used),
                "wnids_missing": sorted(set(mapping) - set(present))}
        return classes, files, info

    def train_size(self, cfg) -> int:
        return len(self._files(cfg, "train")[1])

    def train_labels(self, cfg) -> np.ndarray:  # from the file list: pool options are checked without decoding
        return np.array([k for _, k in self._files(cfg, "train")[1]], dtype=np.int64)

    def load(self, cfg) -> ImageDataset:
        root = Path(cfg.resolved_root())
        classes, train, info = self._files(cfg, "train")
        test_classes, test, test_info = self._files(cfg, "val")
        if test_classes != classes:
            raise ConfigError("dataset.root", "train/ and val/ cover different superclasses",
                              "give val/ the same wnid folders as train/", str(root))
        x_train = _decode(self, cfg, [f for f, _ in train], root, "imagenet67-train")
        x_test = _decode(self, cfg, [f for f, _ in test], root, "imagenet67-val")
        return ImageDataset(
            name=self.name, x_train=x_train, y_train=torch.tensor([k for _, k in train], dtype=torch.int64),
            x_test=x_test, y_test=torch.tensor([k for _, k in test], dtype=torch.int64), classes=classes,
            mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_padding=int(self.param(cfg, "crop_padding")),
            hflip=bool(self.param(cfg, "hflip")),
            info={"classes": classes, "train_images": len(train), "test_images": len(test), **info,
                  "val_wnids_dropped": test_info["wnids_dropped"]})
