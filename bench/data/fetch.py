"""Datasets read from torchvision's own on-disk layouts: the shared check for their files and the one
place that ever downloads (torchvision's own download, only when a config says ``download: true``)."""

from __future__ import annotations

from pathlib import Path
import numpy as np

from albench.data.base import DatasetSpec
from albench.errors import ConfigError


class TorchvisionLayout(DatasetSpec):
    """A dataset whose files sit under the data root as torchvision lays them out.

    Subclasses name the files (:meth:`files`, relative to the root, each a tuple of accepted
    alternatives, e.g. an idx file gzipped or not) and how torchvision fetches them (:meth:`fetch`).
    """

    def files(self, cfg) -> list[tuple[str, ...]]:
        raise NotImplementedError

    def fetch(self, root: str) -> None:
        """Download into ``root`` with torchvision's own dataset class."""
        raise NotImplementedError

    def missing(self, cfg) -> list[str]:
        """The required files (first accepted name of each) absent under the root."""
        root = Path(cfg.resolved_root())
        return [alts[0] for alts in self.files(cfg) if not any((root / a).is_file() for a in alts)]

    def path(self, cfg, *alternatives: str) -> Path:
        """The first of ``alternatives`` present under the root."""
        root = Path(cfg.resolved_root())
        for a in alternatives:
            if (root / a).is_file():
                return root / a
        raise ConfigError("dataset.root", f"holds no {alternatives[0]}", f"place it under {root}", str(root))

    def check(self, cfg, path: str) -> None:
        super().check(cfg, path)
        missing = self.missing(cfg)
        if missing and not cfg.download:
            root = cfg.resolved_root()
            raise ConfigError(f"{path}.root", f"holds no {self.name} in torchvision's layout: missing {', '.join(missing)}",
                              f"point {path}.root at the folder holding {missing[0]} (torchvision's layout), "
                              "or set download: true to let torchvision fetch it (needs internet)", root)

    def ensure(self, cfg) -> None:
        """Make sure the files are there: download them only when ``download: true``."""
        missing = self.missing(cfg)
        if not missing:
            return
        root = cfg.resolved_root()
        if not cfg.download:
            raise ConfigError("dataset.root", f"holds no {self.name}: missing {', '.join(missing)}",
                              "place the files in torchvision's layout there, or set download: true", root)
        Path(root).mkdir(parents=True, exist_ok=True)
        try:
            self.fetch(root)
        except Exception as exc:  # torchvision raises URLError, RuntimeError, OSError ... when offline
            raise ConfigError("dataset.download", f"torchvision could not download {self.name} into {root}: "
                              f"{type(exc).__name__}: {exc}",
                              f"without internet, copy the files ({', '.join(missing)}) under {root} in "
                              "torchvision's layout and set download: false") from None
        still = self.missing(cfg)
        if still:
            raise ConfigError("dataset.download", f"torchvision's download left {', '.join(still)} missing",
                              f"copy the files under {root} in torchvision's layout", root)

    published_train_size: int = 0  # the pool size before a download has put the files there

    def train_labels(self, cfg) -> np.ndarray:
        self.ensure(cfg)
        return self.read_train_labels(cfg)

    def read_train_labels(self, cfg) -> np.ndarray:
        """The train pool's class ids, read without decoding the images."""
        raise NotImplementedError

    def train_size(self, cfg) -> int:
        if self.missing(cfg):  # download: true and not there yet: the published size
            return self.published_train_size
        return int(len(self.read_train_labels(cfg)))


def tv_download(cls_name: str, root: str, *splits: dict) -> None:
    """``torchvision.datasets.<cls_name>(root, download=True, **split)`` for each split."""
    import torchvision

    for split in splits:
        getattr(torchvision.datasets, cls_name)(root, download=True, **split)
