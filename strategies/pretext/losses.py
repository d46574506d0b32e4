"""Per-image pretext losses of a pool, computed once and reused from the cache."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from albench.cached import Entry, load_or_compute
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
    for the first one instead of training twice. The use is reported as artifact ``pretext-losses``
    (:mod:`albench.cached`). ``progress(done, total)``: epochs, when it trains.
    """
    device = torch.device(device)
    task = make_task(spec.task, spec.options)
    fields = key_fields(spec, pool_fingerprint=pool_fingerprint or tensor_fingerprint(pool_images),
                        test_fingerprint=None if test_images is None else tensor_fingerprint(test_images),
                        mean=mean, std=std, device=device, amp=amp)
    key = cache_key(fields)

    def compute() -> Entry:
        if cache is not None:
            log(f"pretext cache miss {key}: training {spec.task} on {pool_images.shape[0]} images")
        f = fit_pretext(task, spec, pool_images=pool_images, test_images=test_images, mean=mean, std=std,
                        device=device, amp=amp, log=log, progress=progress)
        return Entry({"pool_loss": f.pool_loss, "test_loss": f.test_loss, "selected_epoch": f.selected_epoch,
                      "history": f.history}, f.seconds)

    cache = PretextCache(cache_dir) if cache_dir is not None else None

    def load() -> Entry | None:
        stored = cache.load(key)
        if stored is None:
            return None
        m = stored["meta"]
        log(f"pretext cache hit {key} ({spec.task}; trained in {m['train_seconds']:.1f}s)")
        return Entry({"pool_loss": stored["pool_loss"], "test_loss": stored["test_loss"],
                      "selected_epoch": int(m["selected_epoch"]), "history": list(m.get("history", []))},
                     float(m["train_seconds"]), m.get("origin"))

    def store(entry: Entry) -> None:
        v = entry.value
        cache.store(key, v["pool_loss"], v["test_loss"],
                    {"key": key, "fields": fields, "train_seconds": entry.compute_seconds,
                     "selected_epoch": v["selected_epoch"], "history": v["history"], "created": time.time(),
                     "pool_size": int(pool_images.shape[0])})

    entry, use = load_or_compute("pretext-losses", key, lock_dir=None if cache is None else cache.root, load=load,
                                 compute=compute, store=store, log=log)
    v = entry.value
    return PretextResult(v["pool_loss"], v["test_loss"], use.status, key, entry.compute_seconds, v["selected_epoch"],
                         v["history"], float(use.wait_seconds or 0.0))
