"""Features files: frozen features computed elsewhere (DINOv2 on a GPU, then thousands of CPU runs).

A features file is an ``.npz`` (``numpy.savez``, no pickles) holding:

- ``train``: float (N_train, D), one row per image of the dataset's train split, in the order albench
  loads it, after the dataset's pool options (``subsample``, ``imbalance``); a validation split
  carved from train (``train.validation.source: train``) is taken from these rows too;
- ``test``: float (N_test, D), one row per test image, in albench's order;
- ``train_fingerprint``: the fingerprint of the train images those rows were computed from
  (:func:`albench.data.fingerprint.pool_fingerprint` of the uint8 (N, C, H, W) train images, a
  64-hex-digit sha256), so a file made for another pool, another pool option or another order is
  refused; optional ``test_fingerprint`` likewise for the test images;
- optional ``compute_seconds``: the wall-clock the features took where they were computed (each run
  is charged it, as a cached entry's compute time; without it the charge is 0 and reports say the
  time is unknown); optional ``description``: free text.

:func:`save_features_file` writes one with both fingerprints for a dataset config, and
:func:`dataset_fingerprints` gives them, for pipelines that write the file themselves. Config load
refuses a file whose row counts or fingerprints do not match the sweep's dataset, naming the file
and the mismatch (exit code 2).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from albench.data.npzfile import npz_headers
from albench.errors import ConfigError

REQUIRED = ("train", "test", "train_fingerprint")
FIX = ("write it with albench.features.save_features_file(path, train=..., test=..., dataset=...) "
       "(rows in albench's order of the dataset after its pool options)")


def _bad(field: str, path: str, problem: str, fix: str = FIX) -> ConfigError:
    return ConfigError(field, f"features file {path}: {problem}", fix, path)


def read_header(path: str, field: str = "model.params.features.file") -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{array name: (shape, dtype)} of the features file ``path``, read from the npy headers only;
    ConfigError naming ``field`` and the file when it is missing, not an npz, lacks a required array
    or holds arrays of the wrong kind."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise _bad(field, path, "does not exist (or is not a file)", "give the path of an npz of train and test "
                   "features (albench.features.save_features_file writes one)")
    try:
        # the dataset npz reader's headers: sizes checked against the zip entries before anything is read
        out = {k: (tuple(int(n) for n in shape), np.dtype(dtype)) for k, (shape, dtype) in npz_headers(p).items()}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise _bad(field, path, f"is not a readable npz ({type(exc).__name__}: {str(exc)[:120]})") from None
    missing = [k for k in REQUIRED if k not in out]
    if missing:
        raise _bad(field, path, f"has no {', '.join(repr(k) for k in missing)} array (it holds "
                   f"{', '.join(sorted(out)) or 'nothing'})")
    for split in ("train", "test"):
        shape, dtype = out[split]
        if len(shape) != 2 or shape[1] < 1 or dtype.kind != "f":
            raise _bad(field, path, f"{split!r} must be a 2-D float array (rows x feature width), got {dtype} "
                       f"{shape}")
    if out["train"][0][1] != out["test"][0][1]:
        raise _bad(field, path, f"'train' has {out['train'][0][1]} features per row but 'test' has "
                   f"{out['test'][0][1]}")
    for key in ("train_fingerprint", "test_fingerprint"):
        if key in out and (out[key][0] != () or out[key][1].kind != "U"):
            raise _bad(field, path, f"{key!r} must be a string (a 64-hex-digit sha256), got {out[key][1]} "
                       f"{out[key][0]}")
    return out


def dataset_fingerprints(dataset: Any) -> tuple[str, str]:
    """(train, test) fingerprints of the images of ``dataset`` (a DatasetConfig), its pool options
    applied: the values a features file for it must record."""
    from albench.data.fingerprint import pool_fingerprint
    from albench.data.registry import load_dataset

    ds = load_dataset(dataset)
    return pool_fingerprint(ds.x_train), pool_fingerprint(ds.x_test)


def check_file_against(path: str, dataset: Any, dataset_path: str, field: str) -> None:
    """ConfigError naming ``field`` and the file unless its rows and fingerprints match ``dataset``
    (a DatasetConfig): the row counts are checked against the pool size first (no pixels read),
    then the dataset is loaded for the test count and the fingerprints."""
    from albench.data.fingerprint import pool_fingerprint
    from albench.data.pool import pool_size
    from albench.data.registry import get_dataset, load_dataset

    header = read_header(path, field)
    n_train = header["train"][0][0]
    pool = pool_size(get_dataset(dataset.name), dataset, dataset_path)
    if n_train != pool:
        raise _bad(field, path, f"'train' has {n_train} rows but dataset {dataset.name!r} has {pool} train images "
                   "(after its pool options); the rows must be one per train image, in albench's order")
    ds = load_dataset(dataset)
    n_test = header["test"][0][0]
    if n_test != ds.x_test.shape[0]:
        raise _bad(field, path, f"'test' has {n_test} rows but dataset {dataset.name!r} has {ds.x_test.shape[0]} test "
                   "images; the rows must be one per test image, in albench's order")
    stored = read_fingerprints(path, field)
    for split, x in (("train", ds.x_train), ("test", ds.x_test)):
        want = stored.get(split)
        if want is None:
            continue
        have = pool_fingerprint(x)
        if want != have:
            raise _bad(field, path, f"its {split}_fingerprint {want[:16]}... is not that of dataset {dataset.name!r}'s "
                       f"{split} images ({have[:16]}..., after its pool options): it was computed for other images "
                       "or another order")


def read_fingerprints(path: str, field: str = "model.params.features.file") -> dict[str, str]:
    """{'train': ..., 'test': ... (when recorded)} fingerprints of a features file."""
    with np.load(Path(path).expanduser(), allow_pickle=False) as z:
        return {split: str(z[f"{split}_fingerprint"]) for split in ("train", "test") if f"{split}_fingerprint" in z.files}


def file_digest(path: str) -> str:
    """sha256 of the file's bytes (the key a run records for the features it read)."""
    h = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def load_features_file(path: str, *, train_fingerprint: str, test_fingerprint: str, n_train: int, n_test: int,
                       field: str = "model.params.features.file") -> dict:
    """{'train', 'test' (float32), 'compute_seconds' (float or None), 'description', 'sha256'} of the
    features file, checked again against the run's images (the file may have changed since the
    config was loaded): row counts, fingerprints, finite values. ConfigError naming the file."""
    header = read_header(path, field)
    if header["train"][0][0] != n_train or header["test"][0][0] != n_test:
        raise _bad(field, path, f"holds {header['train'][0][0]} train and {header['test'][0][0]} test rows; the run's "
                   f"dataset has {n_train} and {n_test} images")
    digest = file_digest(path)
    with np.load(Path(path).expanduser(), allow_pickle=False) as z:
        stored = {s: str(z[f"{s}_fingerprint"]) for s in ("train", "test") if f"{s}_fingerprint" in z.files}
        for split, have in (("train", train_fingerprint), ("test", test_fingerprint)):
            if split in stored and stored[split] != have:
                raise _bad(field, path, f"its {split}_fingerprint does not match the run's {split} images")
        train = z["train"].astype(np.float32)
        test = z["test"].astype(np.float32)
        secs = float(z["compute_seconds"]) if "compute_seconds" in z.files else None
        desc = str(z["description"]) if "description" in z.files else None
    for split, x in (("train", train), ("test", test)):
        if not np.isfinite(x).all():
            raise _bad(field, path, f"{split!r} holds NaN or infinite values ({int((~np.isfinite(x)).sum())} of them)")
    if secs is not None and not (np.isfinite(secs) and secs >= 0):
        raise _bad(field, path, f"compute_seconds must be a non-negative number, got {secs}")
    return {"train": train, "test": test, "compute_seconds": secs, "description": desc, "sha256": digest}


def save_features_file(path: str | Path, *, train: np.ndarray, test: np.ndarray, dataset: Any,
                       compute_seconds: float | None = None, description: str | None = None) -> Path:
    """Write a features file for ``dataset`` (a DatasetConfig, or a mapping such as ``{name: cifar10,
    root: ...}``): ``train``/``test`` rows in albench's order of that dataset (after its pool options),
    with both fingerprints; the rows are checked against the dataset. Returns the path."""
    from albench.config import DatasetConfig
    from albench.data.fingerprint import pool_fingerprint
    from albench.data.registry import load_dataset
    from albench.typed import from_dict

    cfg = dataset if isinstance(dataset, DatasetConfig) else from_dict(DatasetConfig, dict(dataset), "dataset")
    ds = load_dataset(cfg)
    train, test = np.asarray(train), np.asarray(test)
    for split, x, n in (("train", train, ds.x_train.shape[0]), ("test", test, ds.x_test.shape[0])):
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"{split} must be ({n}, D) for dataset {cfg.name!r}, got {x.shape}")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train has {train.shape[1]} features per row but test has {test.shape[1]}")
    arrays = {"train": train.astype(np.float32), "test": test.astype(np.float32),
              "train_fingerprint": np.array(pool_fingerprint(ds.x_train)),
              "test_fingerprint": np.array(pool_fingerprint(ds.x_test))}
    if compute_seconds is not None:
        arrays["compute_seconds"] = np.array(float(compute_seconds))
    if description is not None:
        arrays["description"] = np.array(str(description))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    from albench.records import atomic_write_bytes

    out = Path(path)
    atomic_write_bytes(out, buf.getvalue())
    return out


__all__ = ["check_file_against", "dataset_fingerprints", "file_digest", "load_features_file", "read_header",
           "save_features_file"]
