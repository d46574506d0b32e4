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
        absent = self.absent(cfg)
        if absent and not cfg.download:
            root = cfg.resolved_root()
            where = self.misplaced_hint(cfg, path, absent) or f"point {path}.root at the folder holding the files"
            raise ConfigError(f"{path}.root", f"holds no {self.name} in torchvision's layout: missing "
                              f"{len(absent)} of {len(self.files(cfg))} files: {accepted_names(absent)}",
                              f"{where}, laid out as torchvision does under the root: {self.layout(cfg)}; or set "
                              "download: true to let torchvision fetch it (needs internet)", root)

    def absent(self, cfg) -> list[tuple[str, ...]]:
        """The required files absent under the root, each as the tuple of its accepted names."""
        root = Path(cfg.resolved_root())
        return [alts for alts in self.files(cfg) if not any((root / a).is_file() for a in alts)]

    def layout(self, cfg) -> str:
        """The expected layout under the root, in words, every accepted name of every file."""
        folders: dict[str, list[tuple[str, ...]]] = {}
        for alts in self.files(cfg):
            folders.setdefault(str(Path(alts[0]).parent), []).append(tuple(Path(a).name for a in alts))
        return "; ".join((f"{d}/ holding " if d != "." else "") + accepted_names(f) for d, f in folders.items())

    def misplaced_hint(self, cfg, path: str, absent: list[tuple[str, ...]]) -> str:
        """What to do when the first absent file is there but misplaced: the root set inside the layout,
        the layout one or two folders below the root, or the files lying flat in the root; else ''."""
        root = Path(cfg.resolved_root())
        if not root.is_dir():
            return ""
        rels = [Path(a) for a in absent[0]]
        parts = rels[0].parent.parts
        for k in range(len(parts), 0, -1):  # root = <good>/MNIST/raw or <good>/MNIST
            if root.parts[-k:] == parts[:k] and any(root.joinpath(*parts[k:], r.name).is_file() for r in rels):
                return f"{root} is inside the layout: set {path}.root to {root.parents[k - 1]}"
        for pattern in ("*/{}", "*/*/{}"):
            for found in sorted(f for r in rels for f in root.glob(pattern.format(r.as_posix())) if f.is_file()):
                rel = next(r for r in rels if found.as_posix().endswith("/" + r.as_posix()))
                return f"found {found}: set {path}.root to {found.as_posix()[: -len(rel.as_posix()) - 1]}"
        flat = [root / r.name for r in rels if r.parent.parts and (root / r.name).is_file()]
        if flat:
            return (f"{root} holds {flat[0].name} directly, but the layout wants it in {rels[0].parent}/ (the "
                    f"folder name tells apart datasets whose files share names): move the files into "
                    f"{root / rels[0].parent}/")
        return ""

    def ensure(self, cfg) -> None:
        """Make sure the files are there: download them only when ``download: true``."""
        missing = self.missing(cfg)
        if not missing:
            return
        root = cfg.resolved_root()
        if not cfg.download:
            raise ConfigError("dataset.root", f"holds no {self.name}: missing {accepted_names(self.absent(cfg))}",
                              f"place the files there as torchvision lays them out ({self.layout(cfg)}), or set "
                              "download: true", root)
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


def accepted_names(files: list[tuple[str, ...]]) -> str:
    """Files, each with every name it is accepted under: ``a[.gz]`` when the others are ``a`` plus a
    suffix (followed by what the suffixes mean), else ``a or b``."""
    out, suffixes = [], set()
    for alts in files:
        first, rest = alts[0], alts[1:]
        if rest and all(a.startswith(first) and len(a) > len(first) for a in rest):
            tails = [a[len(first):] for a in rest]
            suffixes.update(tails)
            out.append(f"{first}[{'|'.join(tails)}]")
        else:
            out.append(" or ".join(alts))
    text = ", ".join(out)
    if suffixes == {".gz"}:
        text += " (each uncompressed or gzipped: both are read)"
    return text


def tv_download(cls_name: str, root: str, *splits: dict) -> None:
    """``torchvision.datasets.<cls_name>(root, download=True, **split)`` for each split."""
    import torchvision

    for split in splits:
        getattr(torchvision.datasets, cls_name)(root, download=True, **split)
