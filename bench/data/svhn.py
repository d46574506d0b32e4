"""SVHN (cropped digits) from torchvision's layout: ``train_32x32.mat``, ``test_32x32.mat`` and,
with ``extra: true``, ``extra_32x32.mat`` (531,131 more train images) directly under the root.
Each .mat holds ``X`` uint8 (32, 32, 3, N) and ``y`` (N, 1) in 1..10, where 10 is the digit 0; as
torchvision, labels are mapped to 0..9 with 10 -> 0."""

from __future__ import annotations

import numpy as np
import torch

from albench.data.base import ImageDataset
from albench.data.fetch import TorchvisionLayout, tv_download
from albench.data.registry import register_dataset
from albench.errors import ConfigError

MEAN = (0.4377, 0.4438, 0.4728)  # the usual SVHN train statistics (0..1 units)
STD = (0.1980, 0.2010, 0.1970)


def read_mat(path, labels_only: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
    """(images uint8 (N, 3, 32, 32) or None, labels int64 (N,) in 0..9) from one SVHN .mat file."""
    import scipy.io as sio

    mat = sio.loadmat(path, variable_names=["y"] if labels_only else ["X", "y"])
    y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    y[y == 10] = 0
    if labels_only:
        return None, y
    x = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 2, 0, 1))
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: {x.shape[0]} images but {y.shape[0]} labels")
    return x, y


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
