"""STL-10 from torchvision's ``stl10_binary`` folder: ``train_X.bin`` / ``test_X.bin`` (uint8,
N x 3 x 96 x 96, each plane stored column-major as the dataset's MATLAB origin), ``train_y.bin`` /
``test_y.bin`` (uint8 labels 1..10, mapped to 0..9) and ``class_names.txt``.

The pool is the 5,000 labeled train images. ``unlabeled_X.bin`` (100,000 images without labels) is
never read: an AL pool needs a label behind every image for the oracle to reveal, so those images
cannot be queried or scored. The 10 predefined folds (``fold_indices.txt``) are not used either: use
``subsample`` to shrink the pool."""

from __future__ import annotations

import numpy as np
import torch

from albench.data.base import ImageDataset
from albench.data.fetch import TorchvisionLayout, tv_download
from albench.data.registry import register_dataset

FOLDER = "stl10_binary"
SIDE = 96
CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
MEAN = (0.4467, 0.4398, 0.4066)  # the usual STL-10 statistics (0..1 units)
STD = (0.2603, 0.2566, 0.2713)


def read_images(path) -> np.ndarray:
    """uint8 (N, 3, 96, 96) from an STL-10 ``*_X.bin`` (planes column-major, hence the transpose)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % (3 * SIDE * SIDE):
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of 3x96x96 images")
    return np.ascontiguousarray(raw.reshape(-1, 3, SIDE, SIDE).transpose(0, 1, 3, 2))


def read_labels(path) -> np.ndarray:
    """int64 class ids 0..9 from an STL-10 ``*_y.bin`` (stored as 1..10)."""
    y = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{path}: labels must be 1..10")
    return y


@register_dataset
class Stl10(TorchvisionLayout):
    name = "stl10"
    class_names = CLASSES  # also the order of the binary release's class_names.txt
    description = ("STL-10 labeled splits (5,000 / 8,000, 96x96) from torchvision's stl10_binary folder; "
                   "the unlabeled split is not read")
    published_train_size = 5000

    def channels(self, cfg) -> int:  # known without reading pixels (config-time checks)
        return 3

    def image_shape(self, cfg) -> tuple[int, int, int]:
        return 3, 96, 96

    def files(self, cfg):
        return [(f"{FOLDER}/{f}",) for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")]

    def fetch(self, root: str) -> None:
        tv_download("STL10", root, {"split": "train"})

    def read_train_labels(self, cfg) -> np.ndarray:
        return read_labels(self.path(cfg, f"{FOLDER}/train_y.bin"))

    def load(self, cfg) -> ImageDataset:
        self.ensure(cfg)
        split = {}
        for s in ("train", "test"):
            x = read_images(self.path(cfg, f"{FOLDER}/{s}_X.bin"))
            y = read_labels(self.path(cfg, f"{FOLDER}/{s}_y.bin"))
            if len(x) != len(y):
                raise ValueError(f"STL-10 {s}: {len(x)} images but {len(y)} labels")
            split[s] = torch.from_numpy(x), torch.from_numpy(y)
        names = self.path(cfg, f"{FOLDER}/train_X.bin").parent / "class_names.txt"
        classes = names.read_text().split() if names.is_file() else list(CLASSES)
        return ImageDataset(name=self.name, x_train=split["train"][0], y_train=split["train"][1],
                            x_test=split["test"][0], y_test=split["test"][1], classes=classes,
                            mean=MEAN, std=STD, crop_padding=12, hflip=True, info={"layout": FOLDER})
