"""Decoding image files once, in parallel, into RAM or into a memory-mapped ``.npy`` cache.

The large datasets (Cityscapes, Caltech-101, ImageNet-67) are folders of compressed files. Each
is decoded and resized once into a uint8 array (N, C, H, W) (or label maps (N, H, W)). With a
cache folder the array is written there as a plain ``.npy`` file, then memory-mapped on every later
load (copy-on-write: the run can never change the file), so a pool larger than RAM (ImageNet-67 at
224 x 224 is ~190 GB) works: the engine only ever indexes rows of it.

Cache files are named by a hash of what determines their content (the dataset, split, relative file
names, output shape and the decoding recipe); a different file list or size gives a new file. A
file edited in place keeps its name: delete the cache folder after changing images. Concurrent
runs may build the same file at once; each writes a private temporary file and renames it into
place, so readers only ever see a complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

RECIPE_VERSION = 1  # bump when the decoding recipe changes, so old caches are not reused

# the ImageNet channel statistics (0..1 units) used with ImageNet-pretrained backbones; the large
# datasets normalise with them instead of scanning every pixel of a pool that may not fit in RAM
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_rgb(path: str, size: tuple[int, int]) -> np.ndarray:
    """(3, H, W) uint8: the image at ``path`` as RGB, resized bilinearly to ``size`` = (H, W)."""
    from PIL import Image

    h, w = size
    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.uint8)
    return arr.transpose(2, 0, 1)


def read_label(path: str, size: tuple[int, int], lut: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint8: a label image resized with nearest neighbours (ids never blend), then mapped
    through ``lut`` (256 entries) when given."""
    from PIL import Image

    h, w = size
    with Image.open(path) as img:
        if img.mode not in ("L", "P"):
            img = img.convert("L")
        arr = np.asarray(img.resize((w, h), Image.NEAREST), dtype=np.uint8)
    return lut[arr] if lut is not None else arr


def _decode_chunk(paths: Sequence[str], reader: Callable[[str], np.ndarray]) -> np.ndarray:
    return np.stack([reader(p) for p in paths])


def decode_into(out: np.ndarray, paths: Sequence[str], reader: Callable[[str], np.ndarray], *,
                workers: int = 1, chunk: int = 64, log: Callable[[str], None] | None = None) -> None:
    """Fill ``out[i] = reader(paths[i])`` for every i; ``workers`` > 1 decodes in that many processes."""
    starts = list(range(0, len(paths), chunk))
    pieces = [list(paths[s:s + chunk]) for s in starts]
    report = max(1, len(starts) // 20)
    if workers <= 1:
        results = (_decode_chunk(p, reader) for p in pieces)
        _store(out, starts, results, report, len(paths), log)
        return
    with ProcessPoolExecutor(max_workers=workers) as ex:
        _store(out, starts, ex.map(partial(_decode_chunk, reader=reader), pieces), report, len(paths), log)


def _store(out, starts, results, report, total, log) -> None:
    for k, (s, arr) in enumerate(zip(starts, results)):
        out[s:s + len(arr)] = arr
        if log is not None and (k + 1) % report == 0:
            log(f"decoded {min(s + len(arr), total)}/{total} images")


def cache_key(**parts) -> str:
    """16 hex digits identifying a decoded array (``parts`` must be JSON-serialisable)."""
    text = json.dumps({"recipe": RECIPE_VERSION, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def decoded_array(paths: Sequence[str], reader: Callable[[str], np.ndarray], shape: tuple[int, ...], *,
                  cache_dir: str | Path | None, name: str, key: str, workers: int = 1,
                  log: Callable[[str], None] | None = None) -> torch.Tensor:
    """uint8 tensor (len(paths), *shape): ``reader`` applied to each path.

    Without ``cache_dir`` the array is decoded into RAM. With one, ``<cache_dir>/<name>-<key>.npy``
    is memory-mapped, after being decoded into it if it does not exist yet (disk cost: N x prod(shape)
    bytes, e.g. 150,528 bytes per 224 x 224 RGB image).
    """
    full = (len(paths), *shape)
    if cache_dir is None:
        out = np.empty(full, dtype=np.uint8)
        decode_into(out, paths, reader, workers=workers, log=log)
        return torch.from_numpy(out)
    folder = Path(cache_dir)
    target = folder / f"{name}-{key}.npy"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        if log is not None:
            log(f"decoding {len(paths)} images into {target} ({np.prod(full) / 2**30:.2f} GiB)")
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".npy", dir=folder)
        os.close(fd)
        try:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=full)
            decode_into(arr, paths, reader, workers=workers, log=log)
            arr.flush()
            del arr
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    arr = np.load(target, mmap_mode="c")  # copy-on-write: writable view, the file never changes
    if arr.shape != full or arr.dtype != np.uint8:
        raise ValueError(f"{target} holds {arr.dtype} {arr.shape}, expected uint8 {full}; delete it to rebuild")
    return torch.from_numpy(arr)


def default_workers(requested: int | None) -> int:
    """Decoding processes: ``requested``, or all cores (at most 8) when None."""
    if requested is not None:
        return max(1, int(requested))
    return max(1, min(8, os.cpu_count() or 1))


def resolve_cache_dir(root: str | Path, value: str | None) -> Path | None:
    """``params.cache_dir`` as a folder: None stays None (decode into RAM); a relative path is
    taken under the data root."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(root) / p


def check_cache_dir(folder: Path | None, field: str) -> None:
    """ConfigError unless ``folder`` (when set) is a folder or can be created (an existing read-only
    folder is accepted: it may already hold the cache files)."""
    from albench.errors import ConfigError

    if folder is None or folder.is_dir():
        return
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not (probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)):
        raise ConfigError(field, f"cannot write the decoded-image cache under {folder}",
                          "set it to a writable folder (decoded images are cached there), or null to decode "
                          "into RAM on every run", str(folder))
