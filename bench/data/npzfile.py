"""Reading image arrays from ``.npz`` files (the shared CIFAR-10 copy and bring-your-own data)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from albench.errors import ConfigError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
MAX_CLASSES = 100_000  # more than any classification benchmark (ImageNet-21k has 21,841)


# deflate cannot compress better than about 1032:1; an entry claiming more holds a lie
MAX_DEFLATE_RATIO = 1100


def npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of each array in an npz, read from the headers without loading the data.

    Each header is checked against the zip entry holding it before anything would be allocated: the
    declared data must be exactly what the entry holds, and no more than its compressed bytes can
    hold (an npz whose headers declare 10**12 images is refused here, not by a 7 TiB allocation).
    Raises zipfile.BadZipFile / ValueError / OSError for a file that is not such an npz."""
    headers = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                offset = fh.tell()
            name = info.filename[:-4]
            if dtype.hasobject:
                raise ValueError(f"array {name!r} holds Python objects (a pickle), which cannot be read safely")
            declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
            ratio = 1 if info.compress_type == zipfile.ZIP_STORED else MAX_DEFLATE_RATIO
            if declared != info.file_size - offset or declared > ratio * info.compress_size + 4096:
                raise ValueError(f"array {name!r} is truncated or damaged: it declares {dtype} {tuple(shape)} "
                                 f"({declared} bytes), but its entry holds {info.file_size - offset} bytes "
                                 f"({info.compress_size} compressed)")
            headers[name] = (shape, dtype)
    return headers


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in an npz, read from the headers without loading the data."""
    return {k: shape for k, (shape, _) in npz_headers(path).items()}


def check_npz(path: Path, field: str, *, n_classes: int | None = None, dense_classes: bool = True) -> None:
    """ConfigError naming ``field``, the file and the array unless ``path`` is an npz in the documented
    layout: uint8 images x_train / x_test of 3 or 4 dimensions with the same image shape, integer labels
    y_train / y_test (one per image) in 0..K-1, at least two classes in y_train, and an optional 1-D
    string array ``classes``. K is ``n_classes`` when the dataset fixes it, else ``len(classes)``, else
    the largest label + 1; with ``dense_classes`` every class 0..K-1 must have a train image.
    Reads the headers and the label arrays only, never the images."""
    p = Path(path)

    def bad(array: str | None, problem: str, fix: str) -> ConfigError:
        where = f"{p.name}: " + (f"array {array!r} " if array else "")
        return ConfigError(field, where + problem, fix, str(p))

    try:
        headers = npz_headers(p)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise bad(None, f"is not a readable npz file ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
                  "save the arrays with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)") from None
    missing = [k for k in REQUIRED if k not in headers]
    if missing:
        raise bad(None, f"lacks arrays {missing}",
                  "save x_train, y_train, x_test, y_test (and optionally classes) with np.savez")
    for split in ("train", "test"):
        (xs, xt), (ys, yt) = headers[f"x_{split}"], headers[f"y_{split}"]
        if xt != np.uint8:
            raise bad(f"x_{split}", f"holds {xt} images; they must be uint8 in 0..255",
                      "convert with (x * 255).round().astype(np.uint8) if they are floats in 0..1")
        if len(xs) not in (3, 4) or xs[0] == 0:
            raise bad(f"x_{split}", f"has shape {xs}; it must be (N, H, W), (N, H, W, C) or (N, C, H, W) with N >= 1",
                      "stack the images along the first axis")
        if yt.kind not in "iu":
            raise bad(f"y_{split}", f"holds {yt} labels; they must be integer class ids 0..K-1",
                      "map each class to an integer id (e.g. np.unique(labels, return_inverse=True)) and save "
                      "the names as 'classes'")
        if ys != (xs[0],):
            raise bad(f"y_{split}", f"has shape {ys}; it must hold one label per image of x_{split}, shape ({xs[0]},)",
                      f"give y_{split} as many labels as x_{split} has images")
    shape_of = {s: _image_shape(headers[f"x_{s}"][0]) for s in ("train", "test")}
    if shape_of["train"] != shape_of["test"]:
        raise bad("x_test", f"holds images of shape {shape_of['test']} (C, H, W) but x_train {shape_of['train']}",
                  "give both splits images of one size and channel count")
    with np.load(p, allow_pickle=False) as data:
        try:
            labels = {s: np.asarray(data[f"y_{s}"]) for s in ("train", "test")}
            classes = np.asarray(data["classes"]) if "classes" in data.files else None
        except (ValueError, OSError, zipfile.BadZipFile) as exc:  # object arrays need pickle; corrupt members
            raise bad(None, f"cannot be read ({str(exc).splitlines()[0][:120]})",
                      "save plain arrays with numpy.savez (no Python objects)") from None
    if classes is not None:
        if classes.ndim != 1 or classes.dtype.kind not in "US":
            raise bad("classes", f"must be a 1-D array of class names, got {classes.dtype} {classes.shape}",
                      "save classes=np.array(['cat', 'dog', ...]) or leave it out")
        if n_classes is not None and len(classes) != n_classes:
            raise bad("classes", f"lists {len(classes)} classes; this dataset has {n_classes}",
                      f"list the {n_classes} class names, or leave classes out")
    for split, y in labels.items():
        if y.max() > MAX_CLASSES:  # before K is derived from it: a label of 2**40 would mean 2**40 classes
            raise bad(f"y_{split}", f"holds label {int(y.max())}; albench takes at most {MAX_CLASSES} classes",
                      "relabel the classes 0..K-1")
    k = n_classes if n_classes is not None else len(classes) if classes is not None else \
        int(max(labels["train"].max(), labels["test"].max())) + 1
    for split, y in labels.items():
        if y.min() < 0:
            raise bad(f"y_{split}", f"holds negative labels (min {int(y.min())}); class ids run 0..{k - 1}",
                      "relabel the classes 0..K-1")
        if y.max() >= k:
            src = "the dataset's classes" if n_classes is not None else "'classes'" if classes is not None \
                else "the largest label"
            raise bad(f"y_{split}", f"holds label {int(y.max())}, out of range for {k} classes (from {src})",
                      "relabel the classes 0..K-1, or list every class name in 'classes'")
    present = np.unique(labels["train"])
    if len(present) < 2:
        raise bad("y_train", f"holds a single class ({int(present[0])}); active learning needs at least two",
                  "include images of at least two classes")
    if dense_classes and len(present) < k:
        absent = np.setdiff1d(np.arange(k), present).tolist()
        raise bad("y_train", f"has no image of class(es) {absent[:10]}{' ...' if len(absent) > 10 else ''} "
                  f"of 0..{k - 1}", "relabel the classes that occur 0..K-1 (and list only those in 'classes')")


def _image_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(C, H, W) of the images of an array laid out as :func:`to_nchw_uint8` reads it."""
    if len(shape) == 3:
        return (1, shape[1], shape[2])
    if shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4):
        return (shape[3], shape[1], shape[2])
    return tuple(shape[1:])


def to_nchw_uint8(x: np.ndarray, what: str) -> torch.Tensor:
    """uint8 (N, C, H, W) tensor from an (N, H, W), (N, H, W, C) or (N, C, H, W) uint8 array."""
    if x.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 images in 0..255, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = x.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"{what} must have 3 or 4 dimensions, got shape {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x))


def load_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an npz in the documented layout (x_train, y_train, x_test, y_test, [classes])."""
    npz_headers(path)  # each header against its entry's size, before anything is allocated
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in REQUIRED if k not in data.files]
        if missing:
            raise ValueError(f"{path} lacks the arrays {missing}; the layout needs {list(REQUIRED)} "
                             "(and optionally 'classes')")
        return {k: data[k] for k in data.files}
