"""SVHN (cropped digits) from torchvision's layout: ``train_32x32.mat``, ``test_32x32.mat`` and,
with ``extra: true``, ``extra_32x32.mat`` (531,131 more train images) directly under the root.
Each .mat holds ``X`` uint8 (32, 32, 3, N) and ``y`` (N, 1) in 1..10, where 10 is the digit 0; as
torchvision, labels are mapped to 0..9 with 10 -> 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from albench.data.base import ImageDataset
from albench.data.fetch import TorchvisionLayout, tv_download
from albench.data.registry import register_dataset
from albench.errors import ConfigError

MEAN = (0.4377, 0.4438, 0.4728)  # the usual SVHN train statistics (0..1 units)
STD = (0.1980, 0.2010, 0.1970)


def read_mat(path, labels_only: bool = False, field: str = "dataset.root") -> tuple[np.ndarray | None, np.ndarray]:
    """(images uint8 (N, 3, 32, 32) or None, labels int64 (N,) in 0..9) from one SVHN .mat file."""
    import scipy.io as sio

    def bad(problem: str) -> ConfigError:
        return ConfigError(field, f"{Path(path).name} {problem}", "replace it with torchvision's original "
                           "SVHN file (or set download: true)", str(path))

    try:
        mat = sio.loadmat(path, variable_names=["y"] if labels_only else ["X", "y"])
    except Exception as exc:  # noqa: BLE001 - scipy raises MatReadError, ValueError, TypeError ... on garbage
        raise bad(f"is not a readable .mat file ({type(exc).__name__}: {str(exc)[:80]})") from None
    try:
        y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
        if not labels_only:
            xm = np.asarray(mat["X"])
    except (KeyError, ValueError, TypeError) as exc:
        raise bad(f"does not hold SVHN's X and y arrays ({type(exc).__name__}: {str(exc)[:60]})") from None
    if y.size == 0 or y.min() < 1 or y.max() > 10:
        raise bad("holds labels outside 1..10 (SVHN's, 10 for the digit 0)")
    y[y == 10] = 0
    if labels_only:
        return None, y
    if xm.ndim != 4 or xm.shape[:3] != (32, 32, 3) or xm.dtype != np.uint8:
        raise bad(f"holds X of {xm.dtype} {xm.shape}; SVHN's is uint8 (32, 32, 3, N)")
    x = np.ascontiguousarray(xm.transpose(3, 2, 0, 1))
    if x.shape[0] != y.shape[0]:
        raise bad(f"holds {x.shape[0]} images but {y.shape[0]} labels")
    return x, y


def check_mat_images(path, n: int, field: str) -> None:
    """ConfigError unless the .mat file at ``path`` declares X as uint8 (32, 32, 3, n), read from its
    variable headers (scipy's whosmat), not its data."""
    import scipy.io as sio

    try:
        found = {name: (shape, cls) for name, shape, cls in sio.whosmat(path)}
    except Exception as exc:  # noqa: BLE001 - as read_mat: scipy raises several kinds on garbage
        raise ConfigError(field, f"{Path(path).name} is not a readable .mat file ({type(exc).__name__})",
                          "replace it with torchvision's original SVHN file (or set download: true)", str(path)) from None
    shape, cls = found.get("X", (None, None))
    if shape is None or tuple(shape) != (32, 32, 3, n) or cls != "uint8":
        raise ConfigError(field, f"{Path(path).name} declares X as {cls} {shape}; SVHN's is uint8 (32, 32, 3, {n}), "
                          "one image per label", "replace it with torchvision's original SVHN file", str(path))


@register_dataset
class Svhn(TorchvisionLayout):
    name = "svhn"
    description = ("SVHN digits (73,257 / 26,032, 32x32) from torchvision's train_32x32.mat / test_32x32.mat; "
                   "params: extra (add extra_32x32.mat to the pool)")
    params = {"extra": False}
    published_train_size = 73257

    def channels(self, cfg) -> int:  # known without reading pixels (config-time checks)
        return 3

    def image_shape(self, cfg) -> tuple[int, int, int]:
        return 3, 32, 32

    def _train_files(self, cfg) -> list[str]:
        return ["train_32x32.mat"] + (["extra_32x32.mat"] if self.param(cfg, "extra") else [])

    def files(self, cfg):
        return [(f,) for f in self._train_files(cfg)] + [("test_32x32.mat",)]

    def fetch(self, root: str) -> None:
        tv_download("SVHN", root, {"split": "train"}, {"split": "test"}, {"split": "extra"})

    def check(self, cfg, path: str) -> None:
        if not isinstance(self.param(cfg, "extra"), bool):
            raise ConfigError(f"{path}.params.extra", "must be true or false", "set extra: false",
                              self.param(cfg, "extra"))
        super().check(cfg, path)
        if not self.missing(cfg):  # every file's labels and X's declared shape (cheap: X is not read)
            for f in [*self._train_files(cfg), "test_32x32.mat"]:
                _, y = read_mat(self.path(cfg, f), labels_only=True, field=f"{path}.root")
                check_mat_images(self.path(cfg, f), len(y), f"{path}.root")

    def read_train_labels(self, cfg) -> np.ndarray:
        return np.concatenate([read_mat(self.path(cfg, f), labels_only=True)[1] for f in self._train_files(cfg)])

    def load(self, cfg) -> ImageDataset:
        self.ensure(cfg)
        parts = [read_mat(self.path(cfg, f)) for f in self._train_files(cfg)]
        x_test, y_test = read_mat(self.path(cfg, "test_32x32.mat"))
        return ImageDataset(name=self.name,
                            x_train=torch.from_numpy(np.concatenate([p[0] for p in parts])),
                            y_train=torch.from_numpy(np.concatenate([p[1] for p in parts])),
                            x_test=torch.from_numpy(x_test), y_test=torch.from_numpy(y_test),
                            classes=[str(i) for i in range(10)], mean=MEAN, std=STD,
                            crop_padding=4, hflip=False,  # a flipped digit is another symbol
                            info={"layout": "mat", "extra": bool(self.param(cfg, "extra"))})
