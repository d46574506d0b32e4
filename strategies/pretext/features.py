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
CPU the retraining gives bit-identical weights.)
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
            return {"features": z["features"].astype(np.float32), "meta": json.loads(str(z["meta"]))}
    except (OSError, ValueError, KeyError):
        return None  # foreign or damaged: recompute and overwrite


def _store(cache: PretextCache, key: str, features: np.ndarray, meta: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, features=np.asarray(features, dtype=np.float32), meta=np.array(json.dumps(meta, default=str)))
    atomic_write_bytes(cache.path(key), buf.getvalue())
    atomic_write_text(cache.root / f"{key}.json", json.dumps(meta, indent=1, default=str) + "\n")


def pretext_features(spec: PretextSpec, *, pool_images: torch.Tensor, test_images: torch.Tensor | None = None,
                     mean, std, device: torch.device | str = "cpu", amp: bool = False,
                     cache_dir: str | Path | None = None, pool_fingerprint: str | None = None,
                     normalize: bool = True, log: Callable[[str], None] = print,
                     progress: Callable[[int, int], None] | None = None) -> FeaturesResult:
    """The pool's (N, D) pretext embeddings under ``spec``, from the cache or trained now; each row
    L2-normalised unless ``normalize`` is False (the cache holds the raw embeddings).

    ``test_images`` only serve the loss entry written alongside (see the module docstring).
    Concurrent callers with the same key wait for the first one instead of training twice.
    ``progress(done, total)``: epochs, when it trains.
    """
    res = _features(spec, pool_images=pool_images, test_images=test_images, mean=mean, std=std,
                    device=torch.device(device), amp=amp, cache_dir=cache_dir, pool_fingerprint=pool_fingerprint,
                    log=log, progress=progress)
    if normalize:
        res.features = l2_normalize(res.features)
    return res


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float32; an all-zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def _features(spec: PretextSpec, *, pool_images, test_images, mean, std, device: torch.device, amp: bool,
              cache_dir, pool_fingerprint, log, progress=None) -> FeaturesResult:
    task = make_task(spec.task, spec.options)
    pool_fp = pool_fingerprint or tensor_fingerprint(pool_images)
    fields = features_key_fields(spec, pool_fingerprint=pool_fp, mean=mean, std=std, device=device, amp=amp)
    key = cache_key(fields)

    def fit() -> tuple[np.ndarray, float, int, list, np.ndarray, np.ndarray | None]:
        cap = _Capture(task)
        f = fit_pretext(cap, spec, pool_images=pool_images, test_images=test_images, mean=mean, std=std,
                        device=device, amp=amp, log=log, progress=progress)
        t0 = time.perf_counter()
        feats = extract_embeddings(task, cap.net, pool_images, mean=mean, std=std, device=device, amp=amp,
                                   batch_size=2 * spec.batch_size)
        secs = f.seconds + time.perf_counter() - t0
        return feats, secs, f.selected_epoch, f.history, f.pool_loss, f.test_loss

    if cache_dir is None:
        feats, secs, sel, hist, _, _ = fit()
        return FeaturesResult(feats, "off", key, secs, sel, hist)
    cache = PretextCache(cache_dir)

    def from_entry(entry: dict, wait: float = 0.0) -> FeaturesResult:
        m = entry["meta"]
        log(f"pretext features cache hit {key} ({spec.task}; trained in {m['train_seconds']:.1f}s)")
        return FeaturesResult(entry["features"], "hit", key, float(m["train_seconds"]), int(m["selected_epoch"]),
                              list(m.get("history", [])), wait)

    entry = _load(cache, key)
    if entry is not None:
        return from_entry(entry)
    asked = time.perf_counter()
    with cache.lock(key, log=log):
        wait = time.perf_counter() - asked
        entry = _load(cache, key)
        if entry is not None:
            return from_entry(entry, wait)
        log(f"pretext features cache miss {key}: training {spec.task} on {pool_images.shape[0]} images")
        feats, secs, sel, hist, pool_loss, test_loss = fit()
        meta = {"key": key, "fields": fields, "train_seconds": secs, "selected_epoch": sel, "history": hist,
                "created": time.time(), "pool_size": int(pool_images.shape[0]), "dim": int(feats.shape[1])}
        _store(cache, key, feats, meta)
        # the same network's losses, where pretext_losses would look for them
        loss_fields = key_fields(spec, pool_fingerprint=pool_fp,
                                 test_fingerprint=None if test_images is None else tensor_fingerprint(test_images),
                                 mean=mean, std=std, device=device, amp=amp)
        loss_key = cache_key(loss_fields)
        if cache.load(loss_key) is None:
            cache.store(loss_key, pool_loss, test_loss,
                        {"key": loss_key, "fields": loss_fields, "train_seconds": secs, "selected_epoch": sel,
                         "history": hist, "created": time.time(), "pool_size": int(pool_images.shape[0])})
    return FeaturesResult(feats, "miss", key, secs, sel, hist, wait)
