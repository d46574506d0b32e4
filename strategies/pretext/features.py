"""Per-image representations from a pretext network, computed once per pool and reused from the cache.

``pretext_features(spec, pool_images=..., ...)`` trains the pretext network of ``spec`` (any task of
:mod:`albench.strategies.pretext.tasks`: ``simclr`` for TypiClust and ProbCover, or the rotation network
PT4AL trains) and returns the backbone's pooled embedding of every un-augmented pool image, before
any task head, as float32 (N, D), *not* normalised (callers normalise, or not, as their protocol
says). The entry is keyed by everything that determines the features: the full spec (task options,
epochs, batch size, optimiser, backbone and its width, selection rule, seed), the pool's fingerprint,
the normalisation, the device type, AMP and the torch version, plus a features version.

When it trains, it also stores the per-image losses of the same network under the key
:func:`albench.strategies.pretext.pretext_losses` uses, so a PT4AL run with the same spec afterwards reads
them instead of training again. (The converse is not possible: a loss entry holds no network. On
CPU the retraining gives bit-identical weights.) The use is reported as artifact ``representation``
(:mod:`albench.cached`); the loss entry written alongside names the features entry as its origin.

Given ``test_images``, the entry also holds the same network's embedding of every test image
(``test_features``, with the test set's fingerprint), so a ``head`` model over this representation
(:mod:`albench.features`) reads the entry a TypiClust or ProbCover run wrote, and vice versa. A caller
that needs them (``need_test``) treats an entry without them, or with another test set's, as
absent: it trains again and overwrites it. The test embeddings never enter the key (the features
are still those of the pool).
"""

from __future__ import annotations

import io
import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from albench.cached import Entry, load_or_compute
from albench.records import atomic_write_bytes, atomic_write_text
from albench.strategies.pretext.cache import PretextCache, cache_key, tensor_fingerprint
from albench.strategies.pretext.losses import key_fields
from albench.strategies.pretext.spec import PretextSpec
from albench.strategies.pretext.tasks import Normalizer, PretextTask, make_task
from albench.strategies.pretext.train import fit_pretext

FEATURES_VERSION = 1  # bump when the embedding extraction changes, so old entries stop matching


@dataclass
class FeaturesResult:
    """A pool's pretext embeddings and where they came from."""

    features: np.ndarray  # float32 (N, D), pool order, not normalised
    cache: str  # 'hit', 'miss' (trained now) or 'off' (no cache folder given)
    key: str
    train_seconds: float  # wall-clock seconds of the original training (and extraction), even on a hit
    selected_epoch: int
    history: list[dict] = field(default_factory=list)
    wait_seconds: float = 0.0
    test_features: np.ndarray | None = None  # float32 (n_test, D) of the same network, when stored


class _Capture:
    """Wraps a task so the network ``fit_pretext`` builds (and leaves at its selected weights) is kept."""

    def __init__(self, task: PretextTask) -> None:
        self._task = task
        self.net: torch.nn.Module | None = None

    def build(self, *args: Any, **kwargs: Any) -> torch.nn.Module:
        self.net = self._task.build(*args, **kwargs)
        return self.net

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


@torch.inference_mode()
def extract_embeddings(task: PretextTask, net: torch.nn.Module, images: torch.Tensor, *, mean, std,
                       device: torch.device, amp: bool = False, batch_size: int = 512) -> np.ndarray:
    """float32 (N, D) pooled backbone embeddings of uint8 ``images`` (eval mode, no augmentation)."""
    net.eval()
    norm = Normalizer(mean, std, device)
    out = []
    for s in range(0, images.shape[0], batch_size):
        xb = images[s:s + batch_size].to(device, non_blocking=True)
        with (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else nullcontext()):
            out.append(task.embed(net, xb, norm=norm).float().cpu())
    return torch.cat(out).numpy().astype(np.float32)


def features_key_fields(spec: PretextSpec, *, pool_fingerprint: str, mean, std, device: torch.device,
                        amp: bool) -> dict:
    """Everything that determines the features, as plain data (the cache key hashes it)."""
    fields = key_fields(spec, pool_fingerprint=pool_fingerprint, test_fingerprint=None, mean=mean, std=std,
                        device=device, amp=amp)
    fields.pop("test")  # the features are of the pool only
    return {**fields, "kind": "features", "features_version": FEATURES_VERSION}


def _load(cache: PretextCache, key: str) -> dict | None:
    p = cache.path(key)
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            return {"features": z["features"].astype(np.float32), "meta": json.loads(str(z["meta"])),
                    "test_features": z["test_features"].astype(np.float32) if "test_features" in z.files else None}
    except (OSError, ValueError, KeyError):
        return None  # foreign or damaged: recompute and overwrite


def _store(cache: PretextCache, key: str, features: np.ndarray, meta: dict,
           test_features: np.ndarray | None = None) -> None:
    buf = io.BytesIO()
    arrays = {"features": np.asarray(features, dtype=np.float32), "meta": np.array(json.dumps(meta, default=str))}
    if test_features is not None:
        arrays["test_features"] = np.asarray(test_features, dtype=np.float32)
    np.savez(buf, **arrays)
    atomic_write_bytes(cache.path(key), buf.getvalue())
    atomic_write_text(cache.root / f"{key}.json", json.dumps(meta, indent=1, default=str) + "\n")


def pretext_features(spec: PretextSpec, *, pool_images: torch.Tensor, test_images: torch.Tensor | None = None,
                     mean, std, device: torch.device | str = "cpu", amp: bool = False,
                     cache_dir: str | Path | None = None, pool_fingerprint: str | None = None,
                     normalize: bool = True, need_test: bool = False, artifact: str = "representation",
                     log: Callable[[str], None] = print,
                     progress: Callable[[int, int], None] | None = None) -> FeaturesResult:
    """The pool's (N, D) pretext embeddings under ``spec``, from the cache or trained now; each row
    L2-normalised unless ``normalize`` is False (the cache holds the raw embeddings).

    ``test_images`` serve the loss entry written alongside and the test embeddings the entry keeps
    (``FeaturesResult.test_features``, normalised alike); ``need_test``: an entry without them is
    trained again (see the module docstring). Concurrent callers with the same key wait for the
    first one instead of training twice. ``artifact``: the name the run records the use under
    (:mod:`albench.cached`; a ``head``'s frozen features say ``frozen-features``).
    ``progress(done, total)``: epochs, when it trains.
    """
    if need_test and test_images is None:
        raise ValueError("need_test asks for test embeddings: pass test_images")
    res = _features(spec, pool_images=pool_images, test_images=test_images, mean=mean, std=std,
                    device=torch.device(device), amp=amp, cache_dir=cache_dir, pool_fingerprint=pool_fingerprint,
                    need_test=need_test, artifact=artifact, log=log, progress=progress)
    if normalize:
        res.features = l2_normalize(res.features)
        if res.test_features is not None:
            res.test_features = l2_normalize(res.test_features)
    return res


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float32; an all-zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def _features(spec: PretextSpec, *, pool_images, test_images, mean, std, device: torch.device, amp: bool,
              cache_dir, pool_fingerprint, need_test: bool, artifact: str, log, progress=None) -> FeaturesResult:
    task = make_task(spec.task, spec.options)
    pool_fp = pool_fingerprint or tensor_fingerprint(pool_images)
    test_fp = None if test_images is None else tensor_fingerprint(test_images)
    fields = features_key_fields(spec, pool_fingerprint=pool_fp, mean=mean, std=std, device=device, amp=amp)
    key = cache_key(fields)

    cache = PretextCache(cache_dir) if cache_dir is not None else None

    def compute() -> Entry:
        if cache is not None:
            log(f"pretext features cache miss {key}: training {spec.task} on {pool_images.shape[0]} images")
        cap = _Capture(task)
        f = fit_pretext(cap, spec, pool_images=pool_images, test_images=test_images, mean=mean, std=std,
                        device=device, amp=amp, log=log, progress=progress)
        t0 = time.perf_counter()
        feats = extract_embeddings(task, cap.net, pool_images, mean=mean, std=std, device=device, amp=amp,
                                   batch_size=2 * spec.batch_size)
        test_feats = None if test_images is None else extract_embeddings(
            task, cap.net, test_images, mean=mean, std=std, device=device, amp=amp, batch_size=2 * spec.batch_size)
        secs = f.seconds + time.perf_counter() - t0
        return Entry({"features": feats, "test_features": test_feats, "selected_epoch": f.selected_epoch,
                      "history": f.history, "pool_loss": f.pool_loss, "test_loss": f.test_loss}, secs)

    def load() -> Entry | None:
        stored = _load(cache, key)
        if stored is None:
            return None
        m = stored["meta"]
        test_feats = stored["test_features"] if m.get("test_fingerprint") == test_fp else None
        if need_test and test_feats is None:  # an entry of the pool only (or of another test set)
            log(f"pretext features cache entry {key} holds no embeddings of this test set; training again")
            return None
        log(f"pretext features cache hit {key} ({spec.task}; trained in {m['train_seconds']:.1f}s)")
        return Entry({"features": stored["features"], "test_features": test_feats,
                      "selected_epoch": int(m["selected_epoch"]), "history": list(m.get("history", []))},
                     float(m["train_seconds"]), m.get("origin"))

    def store(entry: Entry) -> None:
        v, secs = entry.value, entry.compute_seconds
        meta = {"key": key, "fields": fields, "train_seconds": secs, "selected_epoch": v["selected_epoch"],
                "history": v["history"], "created": time.time(), "pool_size": int(pool_images.shape[0]),
                "dim": int(v["features"].shape[1]),
                "test_fingerprint": test_fp if v.get("test_features") is not None else None,
                "test_size": None if v.get("test_features") is None else int(v["test_features"].shape[0])}
        _store(cache, key, v["features"], meta, v.get("test_features"))
        # the same network's losses, where pretext_losses would look for them; one training fills both
        # entries, so a run that reads both is charged it once (the entry's origin)
        loss_fields = key_fields(spec, pool_fingerprint=pool_fp, test_fingerprint=test_fp,
                                 mean=mean, std=std, device=device, amp=amp)
        loss_key = cache_key(loss_fields)
        if cache.load(loss_key) is None:
            cache.store(loss_key, v["pool_loss"], v["test_loss"],
                        {"key": loss_key, "fields": loss_fields, "train_seconds": secs,
                         "selected_epoch": v["selected_epoch"], "history": v["history"], "created": time.time(),
                         "pool_size": int(pool_images.shape[0]), "origin": key})

    entry, use = load_or_compute(artifact, key, lock_dir=None if cache is None else cache.root, load=load,
                                 compute=compute, store=store, log=log)
    v = entry.value
    return FeaturesResult(v["features"], use.status, key, entry.compute_seconds, v["selected_epoch"], v["history"],
                          float(use.wait_seconds or 0.0), v.get("test_features"))
