"""CIFAR-100 from torchvision's ``cifar-100-python`` folder: the pickled ``train`` and ``test`` dicts
(``data``: rows of 3,072 bytes, R, G, B planes of 32 x 32; ``fine_labels``, ``coarse_labels``) and
``meta`` (``fine_label_names``, ``coarse_label_names``). ``labels: fine`` (100 classes, default) or
``coarse`` (the 20 superclasses)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from albench.data.base import ImageDataset
from albench.data.fetch import TorchvisionLayout, tv_download
from albench.data.registry import register_dataset
from albench.errors import ConfigError

FOLDER = "cifar-100-python"
# the usual CIFAR-100 train statistics (0..1 units)
MEAN = (0.5071, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2762)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


@register_dataset
class Cifar100(TorchvisionLayout):
    name = "cifar100"
    description = ("CIFAR-100 (50,000 / 10,000, 32x32) from torchvision's cifar-100-python folder; "
                   "params: labels fine (100) | coarse (20)")
    params = {"labels": "fine"}
    published_train_size = 50000

    def channels(self, cfg) -> int:  # known without reading pixels (config-time checks)
        return 3

    def image_shape(self, cfg) -> tuple[int, int, int]:
        return 3, 32, 32

    def files(self, cfg):
        return [(f"{FOLDER}/train",), (f"{FOLDER}/test",), (f"{FOLDER}/meta",)]

    def fetch(self, root: str) -> None:
        tv_download("CIFAR100", root, {"train": True}, {"train": False})

    def check(self, cfg, path: str) -> None:
        super().check(cfg, path)
        if self.param(cfg, "labels") not in ("fine", "coarse"):
            raise ConfigError(f"{path}.params.labels", "must be 'fine' or 'coarse'", "set labels: fine",
                              self.param(cfg, "labels"))

    def _key(self, cfg) -> str:
        return f"{self.param(cfg, 'labels')}_labels"

    def read_train_labels(self, cfg) -> np.ndarray:
        return np.asarray(_unpickle(self.path(cfg, f"{FOLDER}/train"))[self._key(cfg)], dtype=np.int64)

    def load(self, cfg) -> ImageDataset:
        self.ensure(cfg)
        key = self._key(cfg)
        splits = {}
        for split in ("train", "test"):
            entry = _unpickle(self.path(cfg, f"{FOLDER}/{split}"))
            x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            splits[split] = (torch.from_numpy(x), torch.from_numpy(np.asarray(entry[key], dtype=np.int64)))
        meta = _unpickle(self.path(cfg, f"{FOLDER}/meta"))
        classes = [str(c) for c in meta[f"{self.param(cfg, 'labels')}_label_names"]]
        return ImageDataset(name=self.name, x_train=splits["train"][0], y_train=splits["train"][1],
                            x_test=splits["test"][0], y_test=splits["test"][1], classes=classes,
                            mean=MEAN, std=STD, crop_padding=4, hflip=True,
                            info={"layout": FOLDER, "labels": self.param(cfg, "labels")})
