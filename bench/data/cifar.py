"""CIFAR-10 from torchvision's ``cifar-10-batches-py`` folder or an npz, and the paper's imbalanced
composition of it."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from albench.data.base import DatasetSpec, ImageDataset
from albench.data.npzfile import check_npz, load_npz_arrays, npz_shapes, to_nchw_uint8
from albench.data.registry import register_dataset
from albench.errors import ConfigError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# the usual CIFAR-10 train statistics (0..1 units)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
BATCH_DIR = "cifar-10-batches-py"
NPZ_NAME = "cifar10.npz"
# the paper's class-imbalanced composition, in CIFAR-10's class order (section 5.3)
IMBALANCED_COUNTS = [500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000]


def locate(root: str | Path) -> tuple[str, Path] | None:
    """('batches', folder) or ('npz', file) for the CIFAR-10 copy under ``root``, or None."""
    root = Path(root)
    if root.is_file() and root.suffix == ".npz":
        return "npz", root
    if (root / BATCH_DIR / "data_batch_1").is_file():
        return "batches", root / BATCH_DIR
    if (root / "data_batch_1").is_file():
        return "batches", root
    if (root / NPZ_NAME).is_file():
        return "npz", root / NPZ_NAME
    return None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    return data, labels


def read_batches(folder: Path) -> dict[str, np.ndarray]:
    """torchvision's pickled layout: data_batch_1..5 and test_batch, rows of 3072 bytes (R, G, B planes)."""
    parts = [_read_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = _read_batch(folder / "test_batch")
    return {
        "x_train": np.concatenate([p[0] for p in parts]),
        "y_train": np.concatenate([p[1] for p in parts]),
        "x_test": x_test,
        "y_test": y_test,
    }


class _CifarBase(DatasetSpec):
    class_names = CLASSES

    def channels(self, cfg) -> int:
        return 3

    def image_shape(self, cfg) -> tuple[int, int, int]:
        return 3, 32, 32

    def check(self, cfg, path: str) -> None:
        super().check(cfg, path)
        root = cfg.resolved_root()
        if locate(root) is None and not cfg.download:
            raise ConfigError(
                f"{path}.root", f"holds no CIFAR-10: looked for {BATCH_DIR}/data_batch_1, data_batch_1 and {NPZ_NAME}",
                f"point {path}.root at the folder that holds {BATCH_DIR} or {NPZ_NAME} (or set download: true)",
                root)
        found = locate(root)
        if found is not None and found[0] == "npz":  # labels 0..9, uint8 images: refused now, not mid-run
            check_npz(found[1], f"{path}.root", n_classes=len(CLASSES), dense_classes=False)

    def _arrays(self, cfg) -> dict[str, np.ndarray]:
        root = cfg.resolved_root()
        found = locate(root)
        if found is None:
            if not cfg.download:
                raise ConfigError("dataset.root", "holds no CIFAR-10", "set download: true to fetch it", root)
            import torchvision

            torchvision.datasets.CIFAR10(root, train=True, download=True)
            found = locate(root)
        layout, where = found
        arrays = read_batches(where) if layout == "batches" else load_npz_arrays(where)
        arrays["layout"] = layout
        return arrays

    def _dataset(self, arrays: dict, x_train, y_train, info: dict) -> ImageDataset:
        return ImageDataset(
            name=self.name,
            x_train=x_train, y_train=y_train,
            x_test=to_nchw_uint8(arrays["x_test"], "x_test"),
            y_test=torch.from_numpy(np.asarray(arrays["y_test"], dtype=np.int64)),
            classes=list(CLASSES), mean=MEAN, std=STD, crop_padding=4, hflip=True,
            info={"layout": arrays["layout"], **info},
        )


@register_dataset
class Cifar10(_CifarBase):
    name = "cifar10"
    description = "CIFAR-10 (50,000 / 10,000) from torchvision's cifar-10-batches-py folder or cifar10.npz"

    def train_size(self, cfg) -> int:
        found = locate(cfg.resolved_root())
        if found and found[0] == "npz":
            return int(npz_shapes(found[1])["x_train"][0])
        return 50000

    def train_labels(self, cfg) -> np.ndarray:
        found = locate(cfg.resolved_root())
        if found is None:
            return super().train_labels(cfg)
        layout, where = found
        if layout == "npz":  # one array read, the images stay on disk
            with np.load(where, allow_pickle=False) as data:
                return np.asarray(data["y_train"], dtype=np.int64)
        return np.concatenate([_read_batch(where / f"data_batch_{i}")[1] for i in range(1, 6)])

    def load(self, cfg) -> ImageDataset:
        arrays = self._arrays(cfg)
        return self._dataset(arrays, to_nchw_uint8(arrays["x_train"], "x_train"),
                             torch.from_numpy(np.asarray(arrays["y_train"], dtype=np.int64)), {})


def imbalanced_indices(labels: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """Sorted train indices holding ``counts[c]`` images of class c, drawn without replacement."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c, n in enumerate(counts):
        members = np.flatnonzero(labels == c)
        if n > len(members):
            raise ConfigError("dataset.params.counts", f"class {c} has only {len(members)} images",
                              f"ask for at most {len(members)} of class {c}", n)
        chosen.append(rng.choice(members, size=n, replace=False))
    return np.sort(np.concatenate(chosen))


@register_dataset
class Cifar10Imbalanced(_CifarBase):
    name = "cifar10-imbalanced"
    description = ("CIFAR-10 with the paper's imbalanced train pool (airplane 500 ... truck 5,000; "
                   "27,500 images); test set untouched")
    params = {"counts": IMBALANCED_COUNTS, "subsample_seed": 0}

    def check(self, cfg, path: str) -> None:
        super().check(cfg, path)
        counts = self.param(cfg, "counts")
        if not (isinstance(counts, list) and len(counts) == len(CLASSES)
                and all(isinstance(c, int) and c > 0 for c in counts)):
            raise ConfigError(f"{path}.params.counts", "must list 10 positive per-class counts",
                              "list one count per CIFAR-10 class, airplane first", counts)

    def train_size(self, cfg) -> int:
        return int(sum(self.param(cfg, "counts")))

    def load(self, cfg) -> ImageDataset:
        arrays = self._arrays(cfg)
        counts = list(self.param(cfg, "counts"))
        seed = int(self.param(cfg, "subsample_seed"))
        y = np.asarray(arrays["y_train"], dtype=np.int64)
        keep = imbalanced_indices(y, counts, seed)
        x_train = to_nchw_uint8(arrays["x_train"], "x_train")[torch.from_numpy(keep)]
        return self._dataset(arrays, x_train, torch.from_numpy(y[keep]),
                             {"counts": counts, "subsample_seed": seed})
