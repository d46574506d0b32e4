"""Frozen features of a dataset, computed once per (images, source, transform) and shared through a cache.

:func:`frozen_features` returns float32 features of every train image (the dataset's train split
after its pool options; a validation split carved from train takes its rows from them) and every
test image, for a :class:`~albench.features.source.FeatureSource`:

- a **representation** goes through the pretext features cache (``<output>/.cache/pretext``,
  :func:`albench.strategies.pretext.pretext_features`), trained on the train images; TypiClust and
  ProbCover runs with the same representation params read the same entry;
- a **backbone** with local weights embeds the images once, in eval mode (no augmentation), into
  ``<output>/.cache/features/<key>.npz``; the key hashes the train and test images' fingerprints,
  the model and its params, the weights file's sha256, the transform (resize, mean, std), the
  device type, AMP, the torch version and :data:`FEATURES_VERSION`;
- a **file** is read as it is (checked against the images).

Every use is recorded through :mod:`albench.cached` as artifact ``frozen-features``: the entry,
whether this run computed or reused it, and its compute time, which each run is charged either
way; runs that need one entry at once serialise on its lock. (A representation's entry is the one
TypiClust and ProbCover read as ``representation``: one computation, so a run that uses both is
charged it once.)
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from albench.cached import CacheUse, Entry, load_or_compute, note_use
from albench.features.source import FeatureSource
from albench.records import atomic_write_bytes, atomic_write_text

FEATURES_VERSION = 1  # bump when the backbone extraction changes, so old entries stop matching
ARTIFACT = "frozen-features"


@dataclass
class FrozenFeatures:
    """Features of a dataset's train and test images, and what run.json records about them."""

    train: np.ndarray  # float32 (N_train, D), the dataset's train order (pool options applied)
    test: np.ndarray  # float32 (N_test, D)
    info: dict

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


def frozen_features(source: FeatureSource, *, x_train: torch.Tensor, x_test: torch.Tensor, train_fingerprint: str,
                    test_fingerprint: str, mean, std, num_classes: int, seed: int,
                    device: torch.device | str = "cpu", amp: bool = False, cache_root: str | Path | None = None,
                    log: Callable[[str], None] = print,
                    progress: Callable[[str, int, int], None] | None = None) -> FrozenFeatures:
    """Features of uint8 ``x_train``/``x_test`` from ``source`` (see the module docstring).

    ``mean``/``std``: the run's normalisation (a representation trains with it; a backbone uses its
    own ``mean``/``std`` when given); ``seed``: the run's seed (a representation with ``seed: null``
    trains one network per run seed); ``cache_root``: the output root's ``.cache`` folder (None: no
    cache, everything computed now); ``progress(what, done, total)``: a representation's training
    epochs, when it trains."""
    device = torch.device(device)
    if source.kind == "representation":
        out = _representation(source, x_train=x_train, x_test=x_test, train_fp=train_fingerprint, mean=mean, std=std,
                              seed=seed, device=device, amp=amp, cache_root=cache_root, log=log, progress=progress)
    elif source.kind == "backbone":
        out = _backbone(source, x_train=x_train, x_test=x_test, train_fp=train_fingerprint,
                        test_fp=test_fingerprint, mean=mean, std=std, num_classes=num_classes, device=device,
                        amp=amp, cache_root=cache_root, log=log)
    else:
        out = _file(source, train_fp=train_fingerprint, test_fp=test_fingerprint, n_train=x_train.shape[0],
                    n_test=x_test.shape[0])
    for split, x, n in (("train", out.train, x_train.shape[0]), ("test", out.test, x_test.shape[0])):
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"frozen features: {split} features are {x.shape}, expected {n} rows")
        if not np.isfinite(x).all():
            raise ValueError(f"frozen features of {source.describe()} hold NaN or infinite values ({split}); "
                             "a representation's training diverged (lower its lr) or the weights are broken")
    out.info.update(dim=out.dim, train_rows=int(out.train.shape[0]), test_rows=int(out.test.shape[0]))
    return out


# ------------------------------------------------------------------------------------------------
# a representation the harness trains


def _representation(source: FeatureSource, *, x_train, x_test, train_fp, mean, std, seed, device, amp, cache_root,
                    log, progress=None) -> FrozenFeatures:
    from albench.features.source import representation_spec_of
    from albench.strategies.pretext import pretext_features

    spec = representation_spec_of(source, seed)
    res = pretext_features(spec, pool_images=x_train, test_images=x_test, mean=mean, std=std, device=device, amp=amp,
                           cache_dir=None if cache_root is None else Path(cache_root) / "pretext",
                           pool_fingerprint=train_fp, normalize=False, need_test=True, artifact=ARTIFACT, log=log,
                           progress=None if progress is None else
                           lambda done, total: progress(f"features {spec.task}", done, total))
    info = {"source": source.describe(), "artifact": ARTIFACT, "key": res.key, "cache": res.cache,
            "compute_seconds": round(float(res.train_seconds), 3), "spec": spec.fields(),
            "selected_epoch": res.selected_epoch}
    return FrozenFeatures(np.asarray(res.features, np.float32), np.asarray(res.test_features, np.float32), info)


# ------------------------------------------------------------------------------------------------
# a registered backbone with local weights


def backbone_key_fields(source: FeatureSource, *, train_fp: str, test_fp: str, mean, std, device: torch.device,
                        amp: bool) -> dict:
    """Everything that determines a backbone's features, as plain data (the cache key hashes it): the
    weights enter by their file's sha256, not their path."""
    from albench.features.files import file_digest

    params = dict(source.params)
    weights = params.pop("weights")
    return {"kind": "backbone-features", "version": FEATURES_VERSION, "model": source.name, "params": params,
            "weights_sha256": file_digest(weights), "resize": source.resize,
            "mean": [float(m) for m in mean], "std": [float(s) for s in std], "train": train_fp, "test": test_fp,
            "torch": torch.__version__, "device": device.type, "amp": bool(amp)}


@torch.inference_mode()
def embed_images(net: torch.nn.Module, images: torch.Tensor, *, mean, std, resize: int | None, batch_size: int,
                 device: torch.device, amp: bool = False) -> np.ndarray:
    """float32 (N, D) pooled embeddings (``ModelOutput.embedding``) of uint8 ``images`` in eval mode:
    scaled to 0..1, resized to ``resize`` x ``resize`` (bilinear, antialiased) when given, normalised."""
    net.eval()
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    out = []
    for start in range(0, images.shape[0], batch_size):
        xb = images[start:start + batch_size].to(device, non_blocking=True).float().div_(255.0)
        if resize is not None and tuple(xb.shape[-2:]) != (resize, resize):
            xb = F.interpolate(xb, size=(resize, resize), mode="bilinear", align_corners=False, antialias=True)
        xb = ((xb - m) / s).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(net(xb).embedding.float().cpu())
    return torch.cat(out).numpy().astype(np.float32)


def _backbone(source: FeatureSource, *, x_train, x_test, train_fp, test_fp, mean, std, num_classes, device, amp,
              cache_root, log) -> FrozenFeatures:
    from albench.models.registry import build_model
    from albench.strategies.pretext.cache import cache_key
    from albench.toolkit.seeding import derive_seed, seeded_init

    mean = source.mean if source.mean is not None else tuple(mean)
    std = source.std if source.std is not None else tuple(std)
    fields = backbone_key_fields(source, train_fp=train_fp, test_fp=test_fp, mean=mean, std=std, device=device, amp=amp)
    key = cache_key(fields)
    root = None if cache_root is None else Path(cache_root) / "features"

    def compute() -> Entry:
        log(f"frozen features: embedding {x_train.shape[0]} train and {x_test.shape[0]} test images with "
            f"{source.name} (entry {key})")
        t0 = time.perf_counter()
        # layers the weights file does not fill (a swapped stem, another class count's classifier) start
        # from a fixed draw, never from the run's random streams
        with seeded_init(derive_seed(0, "frozen-features-init")):
            net = build_model(source.name, num_classes=num_classes, in_channels=int(x_train.shape[1]),
                              image_size=(int(x_train.shape[2]), int(x_train.shape[3])), params=source.params,
                              path="model.params.features.params")
        net.to(device).to(memory_format=torch.channels_last)
        kw = dict(mean=mean, std=std, resize=source.resize, batch_size=source.batch_size, device=device, amp=amp)
        train = embed_images(net, x_train, **kw)
        test = embed_images(net, x_test, **kw)
        return Entry({"train": train, "test": test}, time.perf_counter() - t0)

    def load() -> Entry | None:
        p = root / f"{key}.npz"
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                value = {"train": z["train"].astype(np.float32), "test": z["test"].astype(np.float32)}
        except (OSError, ValueError, KeyError):
            return None  # foreign or damaged: compute again and overwrite
        log(f"frozen features cache hit {key} ({source.name}; computed in {meta['compute_seconds']:.1f}s)")
        return Entry(value, float(meta["compute_seconds"]))

    def store(entry: Entry) -> None:
        meta = {"key": key, "fields": fields, "compute_seconds": entry.compute_seconds, "created": time.time(),
                "source": source.describe(), "dim": int(entry.value["train"].shape[1])}
        buf = io.BytesIO()
        np.savez(buf, train=entry.value["train"], test=entry.value["test"], meta=np.array(json.dumps(meta, default=str)))
        atomic_write_bytes(root / f"{key}.npz", buf.getvalue())
        atomic_write_text(root / f"{key}.json", json.dumps(meta, indent=1, default=str) + "\n")

    entry, use = load_or_compute(ARTIFACT, key, lock_dir=root, load=load, compute=compute, store=store, log=log)
    info = {"source": source.describe(), "artifact": ARTIFACT, "key": key, "cache": use.status,
            "compute_seconds": round(float(entry.compute_seconds), 3), "weights_sha256": fields["weights_sha256"],
            "mean": list(mean), "std": list(std)}
    return FrozenFeatures(entry.value["train"], entry.value["test"], info)


# ------------------------------------------------------------------------------------------------
# a file the user brings


def _file(source: FeatureSource, *, train_fp, test_fp, n_train, n_test) -> FrozenFeatures:
    from albench.features.files import load_features_file

    f = load_features_file(source.file, train_fingerprint=train_fp, test_fingerprint=test_fp, n_train=n_train,
                           n_test=n_test)
    key = f["sha256"][:32]
    secs = f["compute_seconds"]
    # computed elsewhere: a read of an entry this run did not compute, charged the time the file records
    note_use(CacheUse(ARTIFACT, key, "hit", 0.0 if secs is None else secs, 0.0))
    info = {"source": source.describe(), "artifact": ARTIFACT, "key": key, "cache": "file", "sha256": f["sha256"],
            "compute_seconds": None if secs is None else round(float(secs), 3), "description": f["description"]}
    return FrozenFeatures(f["train"], f["test"], info)


__all__ = ["ARTIFACT", "FEATURES_VERSION", "FrozenFeatures", "backbone_key_fields", "embed_images", "frozen_features"]
