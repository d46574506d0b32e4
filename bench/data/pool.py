"""Pool options every classification dataset takes: ``subsample`` and ``imbalance``.

Both pick a subset of the train pool before any run starts; the test set is never touched. The
subset is a fixed variant of the dataset, drawn with the option's own ``seed`` (default 0), not the
run's seed: every strategy and every run seed of a sweep sees the same pool, as with a published
long-tailed CIFAR-10-LT. What was kept is recorded in run.json (``dataset_info.pool``).

- ``subsample: N`` or ``{total: N}``: N images, split over the classes in proportion to their
  sizes (largest remainder, ties to the lower class id), drawn per class without replacement.
  ``{per_class: N}``: N images of every class. Optional ``seed``.
- ``imbalance: r`` or ``{ratio: r, n_max: M, seed: s}``: the exponential long-tail profile of
  CIFAR-10-LT (Cao et al. 2019): class c keeps ``n_c = floor(M * r ** (c / (C - 1)))`` images, so
  class 0 keeps M and the last class ``M * r``. Convention: ``r = n_min / n_max`` in (0, 1]
  (0.01 is the "imbalance factor 100" of the papers; 1 is balanced). ``n_max`` defaults to the
  smallest class's size, so every class can supply its share. On CIFAR-10 with r = 0.01 the pool
  is 5,000, 2,997, 1,796, 1,077, 645, 387, 232, 139, 83, 50 (12,406 images).

The two are exclusive (``imbalance.n_max`` sets the head size). The paper's fixed composition is
the dataset ``cifar10-imbalanced``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch

from albench.data.base import ImageDataset
from albench.errors import ConfigError
from albench.typed import IMAGES, SEED, coerce

POOL_PARAMS = ("subsample", "imbalance")


def _int(value, field: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ConfigError(field, "must be a positive integer", fix, value)
    return coerce(IMAGES, int(value), field)


def _seed(spec: dict, field: str) -> int:
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ConfigError(f"{field}.seed", "must be a non-negative integer", "set seed: 0", seed)
    return coerce(SEED, int(seed), f"{field}.seed")


def parse_pool_options(params: dict, path: str) -> dict:
    """``{"subsample": {...} | None, "imbalance": {...} | None}``, normalised; ConfigError naming
    ``path.params.<option>`` for a malformed value. Checks the text only (no data)."""
    sub, imb = params.get("subsample"), params.get("imbalance")
    out = {"subsample": None, "imbalance": None}
    if sub is not None:
        f = f"{path}.params.subsample"
        fix = "set subsample: N (a total), or {per_class: N} or {total: N}, optionally with seed"
        if isinstance(sub, dict):
            unknown = set(sub) - {"per_class", "total", "seed"}
            if unknown or ("per_class" in sub) == ("total" in sub):
                raise ConfigError(f, "needs exactly one of per_class or total (and optionally seed)", fix, sub)
            kind = "per_class" if "per_class" in sub else "total"
            out["subsample"] = {kind: _int(sub[kind], f"{f}.{kind}", fix), "seed": _seed(sub, f)}
        else:
            out["subsample"] = {"total": _int(sub, f, fix), "seed": 0}
    if imb is not None:
        f = f"{path}.params.imbalance"
        fix = ("set imbalance: r with r = n_min / n_max in (0, 1] (0.01 = imbalance factor 100), or "
               "{ratio: r, n_max: M, seed: s}")
        spec = imb if isinstance(imb, dict) else {"ratio": imb}
        unknown = set(spec) - {"ratio", "n_max", "seed"}
        if unknown or "ratio" not in spec:
            raise ConfigError(f, "needs ratio (and optionally n_max, seed)", fix, imb)
        r = spec["ratio"]
        rf = f if not isinstance(imb, dict) else f"{f}.ratio"
        if isinstance(r, bool) or not isinstance(r, Real) or not math.isfinite(r) or not 0 < r <= 1:
            raise ConfigError(rf, "must be a ratio n_min / n_max in (0, 1]", fix, r)
        n_max = spec.get("n_max")
        out["imbalance"] = {"ratio": float(r), "n_max": None if n_max is None else _int(n_max, f"{f}.n_max", fix),
                            "seed": _seed(spec, f)}
    if out["subsample"] and out["imbalance"]:
        raise ConfigError(f"{path}.params.subsample", "cannot be combined with imbalance",
                          "drop subsample and set imbalance.n_max for the head class's size")
    return out


def long_tail_counts(n_max: int, ratio: float, num_classes: int) -> list[int]:
    """Images per class of the exponential profile: ``floor(n_max * ratio ** (c / (C - 1)))``."""
    if num_classes == 1:
        return [n_max]
    return [int(n_max * ratio ** (c / (num_classes - 1))) for c in range(num_classes)]


def proportional_counts(sizes: list[int], total: int) -> list[int]:
    """``total`` split over classes in proportion to ``sizes`` (largest remainder, ties to lower id)."""
    n = sum(sizes)
    exact = [total * s / n for s in sizes]
    counts = [int(math.floor(e)) for e in exact]
    order = sorted(range(len(sizes)), key=lambda c: (-(exact[c] - counts[c]), c))
    for c in order[: total - sum(counts)]:
        counts[c] += 1
    return counts


def target_counts(options: dict, sizes: list[int], path: str) -> list[int] | None:
    """Per-class images to keep for ``options`` on a pool with ``sizes`` images per class (None: the
    whole pool); ConfigError naming the field when the pool cannot supply them."""
    sub, imb = options["subsample"], options["imbalance"]
    n = sum(sizes)
    if sub is not None:
        f = f"{path}.params.subsample"
        if "total" in sub:
            if sub["total"] > n:
                raise ConfigError(f, f"asks for {sub['total']} images but the pool has {n}",
                                  f"ask for at most {n}", sub["total"])
            return proportional_counts(sizes, sub["total"])
        smallest = min(range(len(sizes)), key=lambda c: sizes[c])
        if sub["per_class"] > sizes[smallest]:
            raise ConfigError(f"{f}.per_class", f"is larger than class {smallest}, which has {sizes[smallest]} images",
                              f"ask for at most {sizes[smallest]} per class", sub["per_class"])
        return [sub["per_class"]] * len(sizes)
    if imb is not None:
        f = f"{path}.params.imbalance"
        n_max = imb["n_max"] if imb["n_max"] is not None else min(sizes)
        counts = long_tail_counts(n_max, imb["ratio"], len(sizes))
        for c, (want, have) in enumerate(zip(counts, sizes)):
            if want > have:
                raise ConfigError(f"{f}.n_max", f"gives class {c} {want} images but it has {have}",
                                  f"lower n_max (at most {min(sizes)} fits every class) or leave it unset", n_max)
        if counts[-1] < 1:
            raise ConfigError(f"{f}.ratio", f"leaves the last class no image (n_max {n_max} x ratio < 1)",
                              f"raise the ratio to at least {1 / n_max:.3g} or raise n_max", imb["ratio"])
        return counts
    return None


def pool_indices(labels: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """Sorted pool indices holding ``counts[c]`` images of class c, drawn without replacement."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c, n in enumerate(counts)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _sizes(labels: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(labels, minlength=num_classes).tolist()


def pool_size(spec, cfg, path: str) -> int:
    """The train pool's size after the pool options (checked against the class sizes on disk)."""
    options = parse_pool_options(cfg.params, path)
    if options["subsample"] is None and options["imbalance"] is None:
        return spec.train_size(cfg)
    labels = np.asarray(spec.train_labels(cfg), dtype=np.int64)
    counts = target_counts(options, _sizes(labels, int(labels.max()) + 1 if labels.size else 0), path)
    return int(sum(counts))


def apply_pool_options(ds: ImageDataset, cfg, path: str = "dataset") -> ImageDataset:
    """``ds`` with its train pool cut down as ``cfg.params`` asks; the test set untouched. The kept
    composition goes into ``ds.info["pool"]``."""
    options = parse_pool_options(cfg.params, path)
    if options["subsample"] is None and options["imbalance"] is None:
        return ds
    if ds.task != "classification":
        raise ConfigError(f"{path}.params", "subsample and imbalance apply to classification datasets only",
                          "remove them", ds.task)
    labels = ds.y_train.numpy()
    sizes = _sizes(labels, ds.num_classes)
    counts = target_counts(options, sizes, path)
    seed = (options["subsample"] or options["imbalance"])["seed"]
    keep = pool_indices(labels, counts, seed)
    if options["imbalance"] is not None and options["imbalance"]["n_max"] is None:  # record what it resolved to
        options["imbalance"]["n_max"] = counts[0]
    idx = torch.from_numpy(keep)
    ds.x_train, ds.y_train = ds.x_train[idx], ds.y_train[idx]
    ds.info = {**ds.info, "pool": {
        "subsample": options["subsample"], "imbalance": options["imbalance"],
        "source_size": int(len(labels)), "source_class_counts": sizes,
        "size": int(len(keep)), "class_counts": ds.class_counts(),
    }}
    return ds
