"""MNIST and Fashion-MNIST from torchvision's layout: ``<root>/MNIST/raw/`` and
``<root>/FashionMNIST/raw/`` holding the idx files ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
uncompressed (as torchvision leaves them) or gzipped (``.gz``, as downloaded)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from albench.data.base import ImageDataset
from albench.data.fetch import TorchvisionLayout, tv_download
from albench.data.registry import register_dataset

STEMS = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
         "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array of an idx file (gzipped when the name ends in .gz): magic 0x0000 08 <ndim>,
    then ndim big-endian int32 sizes, then the bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file (magic {raw[:4].hex()}, expected 000008nn)")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} ({int(np.prod(dims))} bytes) but holds {data.size} bytes")
    return data.reshape(dims)


class _IdxDataset(TorchvisionLayout):
    folder: str
    tv_class: str
    class_names: list[str]
    mean: tuple[float]
    std: tuple[float]
    hflip: bool
    published_train_size = 60000

    def channels(self, cfg) -> int:  # known without reading pixels (config-time checks)
        return 1

    def image_shape(self, cfg) -> tuple[int, int, int]:
        return 1, 28, 28

    def files(self, cfg):
        return [(f"{self.folder}/raw/{s}", f"{self.folder}/raw/{s}.gz") for s in STEMS.values()]

    def fetch(self, root: str) -> None:
        tv_download(self.tv_class, root, {"train": True}, {"train": False})

    def _read(self, cfg, key: str) -> np.ndarray:
        s = STEMS[key]
        return read_idx(self.path(cfg, f"{self.folder}/raw/{s}", f"{self.folder}/raw/{s}.gz"))

    def read_train_labels(self, cfg) -> np.ndarray:
        return self._read(cfg, "y_train").astype(np.int64)

    def load(self, cfg) -> ImageDataset:
        self.ensure(cfg)
        a = {k: self._read(cfg, k) for k in STEMS}
        return ImageDataset(name=self.name,
                            x_train=torch.from_numpy(a["x_train"][:, None].copy()),
                            y_train=torch.from_numpy(a["y_train"].astype(np.int64)),
                            x_test=torch.from_numpy(a["x_test"][:, None].copy()),
                            y_test=torch.from_numpy(a["y_test"].astype(np.int64)),
                            classes=list(self.class_names), mean=self.mean, std=self.std,
                            crop_padding=2, hflip=self.hflip, info={"layout": f"{self.folder}/raw"})


@register_dataset
class Mnist(_IdxDataset):
    name = "mnist"
    description = "MNIST (60,000 / 10,000, 28x28 gray) from torchvision's MNIST/raw idx files (gzipped or not)"
    folder, tv_class = "MNIST", "MNIST"
    class_names = [str(i) for i in range(10)]
    mean, std = (0.1307,), (0.3081,)  # the usual MNIST train statistics (0..1 units)
    hflip = False  # a flipped digit is another symbol


@register_dataset
class FashionMnist(_IdxDataset):
    name = "fashion-mnist"
    description = ("Fashion-MNIST (60,000 / 10,000, 28x28 gray) from torchvision's FashionMNIST/raw idx files "
                   "(gzipped or not)")
    folder, tv_class = "FashionMNIST", "FashionMNIST"
    class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
    mean, std = (0.2860,), (0.3530,)
    hflip = True  # a mirrored garment is still the same garment
