"""Per-image pretext losses of a pool, computed once and reused from the cache."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from albench.strategies.pretext.cache import CACHE_VERSION, PretextCache, cache_key, tensor_fingerprint
from albench.strategies.pretext.spec import PretextSpec
from albench.strategies.pretext.tasks import make_task
from albench.strategies.pretext.train import fit_pretext


@dataclass
class PretextResult:
    """Per-image pretext losses and where they came from."""

    pool_loss: np.ndarray  # float32 (N,), pool order
    test_loss: np.ndarray | None  # float32 (n_test,), same network
    cache: str  # 'hit' (read from the cache), 'miss' (trained now) or 'off' (no cache folder given)
    key: str
    train_seconds: float  # wall-clock seconds of the original training, even on a hit
    selected_epoch: int
    history: list[dict]
    wait_seconds: float = 0.0  # spent waiting for another run that was training the same entry


def key_fields(spec: PretextSpec, *, pool_fingerprint: str, test_fingerprint: str | None, mean, std,
               device: torch.device, amp: bool) -> dict:
    """Everything that determines the losses, as plain data (the cache key hashes it)."""
    return {
        "version": CACHE_VERSION, "spec": spec.fields(), "pool": pool_fingerprint, "test": test_fingerprint,
        "mean": [float(m) for m in mean], "std": [float(s) for s in std], "torch": torch.__version__,
        "device": device.type, "amp": bool(amp),
    }


def pretext_losses(spec: PretextSpec, *, pool_images: torch.Tensor, test_images: torch.Tensor | None = None,
                   mean, std, device: torch.device | str = "cpu", amp: bool = False,
                   cache_dir: str | Path | None = None, pool_fingerprint: str | None = None,
                   log: Callable[[str], None] = print,
                   progress: Callable[[int, int], None] | None = None) -> PretextResult:
    """Per-image pretext losses of ``pool_images`` (and ``test_images``) under ``spec``.

    With ``cache_dir``, a stored entry with the same key is returned without training; otherwise
    the pretext network is trained and the entry stored. Concurrent callers with the same key wait
    for the first one instead of training twice. ``progress(done, total)``: epochs, when it trains.
    """
    device = torch.device(device)
    task = make_task(spec.task, spec.options)
    fields = key_fields(spec, pool_fingerprint=pool_fingerprint or tensor_fingerprint(pool_images),
                        test_fingerprint=None if test_images is None else tensor_fingerprint(test_images),
                        mean=mean, std=std, device=device, amp=amp)
    key = cache_key(fields)

    def fit() -> tuple:
        f = fit_pretext(task, spec, pool_images=pool_images, test_images=test_images, mean=mean, std=std,
                        device=device, amp=amp, log=log, progress=progress)
        return f.pool_loss, f.test_loss, f.seconds, f.selected_epoch, f.history

    if cache_dir is None:
        pool_loss, test_loss, secs, sel, hist = fit()
        return PretextResult(pool_loss, test_loss, "off", key, secs, sel, hist)

    cache = PretextCache(cache_dir)

    def from_entry(entry: dict, wait: float = 0.0) -> PretextResult:
        m = entry["meta"]
        log(f"pretext cache hit {key} ({spec.task}; trained in {m['train_seconds']:.1f}s)")
        return PretextResult(entry["pool_loss"], entry["test_loss"], "hit", key, float(m["train_seconds"]),
                             int(m["selected_epoch"]), list(m.get("history", [])), wait)

    entry = cache.load(key)
    if entry is not None:
        return from_entry(entry)
    asked = time.perf_counter()
    with cache.lock(key, log=log):
        wait = time.perf_counter() - asked
        entry = cache.load(key)  # another run may have written it while we waited
        if entry is not None:
            return from_entry(entry, wait)
        log(f"pretext cache miss {key}: training {spec.task} on {pool_images.shape[0]} images")
        pool_loss, test_loss, secs, sel, hist = fit()
        meta = {"key": key, "fields": fields, "train_seconds": secs, "selected_epoch": sel, "history": hist,
                "created": time.time(), "pool_size": int(pool_images.shape[0])}
        cache.store(key, pool_loss, test_loss, meta)
    return PretextResult(pool_loss, test_loss, "miss", key, secs, sel, hist, wait)
