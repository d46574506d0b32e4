"""CIFAR's pickled batch files (torchvision's cifar-10-batches-py and cifar-100-python layouts), read
with an unpickler that builds plain data and NumPy arrays only: a file that is not such a batch (a
garbled download, or a pickle that would run code) is refused as bad input naming the file."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from albench.errors import ConfigError

# what a CIFAR batch pickle may name: NumPy's array reconstruction, and the latin-1 codec that
# Python 2 pickles of bytes go through; anything else is refused before it is looked up
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
MAX_BATCH_BYTES = 1 << 30  # CIFAR-100's train file is 155 MB


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a CIFAR batch never does")
        return super().find_class(module, name)


def _bad(path: Path, field: str, problem: str) -> ConfigError:
    return ConfigError(field, f"{path.name} {problem}", "replace it with torchvision's original file (or set "
                       "download: true)", str(path))


def read_pickle(path: Path, field: str = "dataset.root") -> dict:
    """The dict pickled in ``path`` (plain data and NumPy arrays only); ConfigError naming ``field``
    and the file otherwise."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BATCH_BYTES:
            raise _bad(path, field, f"is larger than {MAX_BATCH_BYTES} bytes, not a CIFAR batch")
        with open(path, "rb") as fh:
            data = fh.read()
        entry = _PlainUnpickler(io.BytesIO(data), encoding="latin1").load()
    except ConfigError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, UnicodeDecodeError, ImportError, OSError) as exc:
        raise _bad(path, field, f"is not a readable pickle ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(entry, dict):
        raise _bad(path, field, f"holds a {type(entry).__name__}, not a CIFAR batch dict")
    return entry


def read_batch(path: Path, label_key: str | tuple[str, ...], num_classes: int,
               field: str = "dataset.root") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of one CIFAR batch file: ``data`` rows of
    3,072 bytes (R, G, B planes) and the first of ``label_key`` present, each in 0..num_classes-1."""
    path = Path(path)
    entry = read_pickle(path, field)
    keys = (label_key,) if isinstance(label_key, str) else label_key
    key = next((k for k in keys if k in entry), None)
    if "data" not in entry or key is None:
        raise _bad(path, field, f"lacks 'data' or '{keys[0]}'")
    try:
        data = np.asarray(entry["data"])
        labels = np.asarray(entry[key])
    except (ValueError, TypeError) as exc:
        raise _bad(path, field, f"holds arrays of another shape ({str(exc)[:60]})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise _bad(path, field, f"holds data of {data.dtype} {data.shape}; CIFAR's is uint8 (N, 3072)")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise _bad(path, field, f"holds {labels.shape} {labels.dtype} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise _bad(path, field, f"holds labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)
