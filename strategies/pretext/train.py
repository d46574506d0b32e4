"""Pretext training and per-image loss extraction: whole batches on the device, no per-image Python.

The network is trained on the unlabeled pool only (no labels exist for it). Every random draw
(initialisation, data order, views) comes from generators derived from the pretext seed, so on CPU
the same spec and pool give bit-identical losses.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from strategies.pretext.spec import PretextSpec, derive_seed
from strategies.pretext.tasks import Normalizer, PretextTask

DEVICE_DATA_LIMIT = 2 << 30  # keep the pool on the GPU when its uint8 pixels fit in this many bytes


@dataclass
class PretextFit:
    """The outcome of one pretext training."""

    pool_loss: np.ndarray  # float32 (N,), pool order, the loss the task defines (nats for CE tasks)
    test_loss: np.ndarray | None  # float32 (n_test,) with the same network, or None
    selected_epoch: int  # 1-based epoch whose weights produced the losses
    seconds: float  # wall-clock seconds of training and extraction
    history: list[dict] = field(default_factory=list)  # per epoch: train_loss, pool_score


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def extract_losses(task: PretextTask, net: nn.Module, images: torch.Tensor, *, norm: Normalizer,
                   device: torch.device, amp: bool, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(per-image loss, per-image score) of ``images`` (uint8, any device), float32, eval mode.

    Views that need randomness are drawn from a generator re-seeded at every call, so the same
    images in the same batches always get the same views.
    """
    net.eval()
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, "pretext-extract"))
    losses, scores = [], []
    for start in range(0, images.shape[0], batch_size):
        xb = images[start:start + batch_size].to(device, non_blocking=True)
        with _autocast(device, amp):
            loss, score = task.losses(net, xb, norm=norm, generator=gen, train=False)
        losses.append(loss.float().cpu())
        scores.append(score.float().cpu())
    return torch.cat(losses).numpy(), torch.cat(scores).numpy()


def fit_pretext(task: PretextTask, spec: PretextSpec, *, pool_images: torch.Tensor, test_images: torch.Tensor | None,
                mean, std, device: torch.device, amp: bool = False,
                log: Callable[[str], None] = print) -> PretextFit:
    """Train ``task`` on ``pool_images`` (uint8 (N, C, H, W)) and extract per-image losses of the pool
    (and of ``test_images``) with the selected epoch's weights."""
    n, c, h, w = pool_images.shape
    task.check_images(c, (h, w))
    start_time = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(derive_seed(spec.seed, "pretext-init"))
        net = task.build(spec.model, spec.model_params, c, (h, w))
    net.to(device)
    if spec.channels_last:
        net.to(memory_format=torch.channels_last)  # convolutions then pick NHWC kernels for any input
    opt = torch.optim.SGD(net.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    order_gen = torch.Generator().manual_seed(derive_seed(spec.seed, "pretext-order"))
    view_gen = torch.Generator(device=device)
    view_gen.manual_seed(derive_seed(spec.seed, "pretext-views"))
    norm = Normalizer(mean, std, device)
    on_device = device.type == "cuda" and pool_images.numel() < DEVICE_DATA_LIMIT
    x = pool_images.to(device) if on_device else pool_images
    eval_bs = 2 * spec.batch_size
    history: list[dict] = []
    best: dict | None = None
    for epoch in range(spec.epochs):
        net.train()
        perm = torch.randperm(n, generator=order_gen).to(x.device)
        total, count = torch.zeros((), device=device), 0
        for s in range(0, n, spec.batch_size):
            idx = perm[s:s + spec.batch_size]
            if idx.numel() < 2 and n >= 2:
                continue  # BatchNorm cannot train on one image: drop a last batch of one
            xb = x[idx].to(device, non_blocking=True)
            with _autocast(device, amp):
                loss, _ = task.losses(net, xb, norm=norm, generator=view_gen, train=True)
                loss = loss.float().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * idx.numel()
            count += idx.numel()
        entry = {"epoch": epoch + 1, "train_loss": float(total) / max(1, count)}
        if spec.selection == "best":
            # as the official rotation.py: score the pool itself every epoch, keep the best epoch
            pool_loss, pool_score = extract_losses(task, net, x, norm=norm, device=device, amp=amp,
                                                   batch_size=eval_bs, seed=spec.seed)
            entry["pool_score"] = float(pool_score.mean())
            if best is None or entry["pool_score"] > best["score"]:
                best = {"score": entry["pool_score"], "epoch": epoch + 1, "pool_loss": pool_loss,
                        "state": {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}}
        history.append(entry)
        log(f"pretext {task.name} epoch {epoch + 1}/{spec.epochs}: train loss {entry['train_loss']:.4f}"
            + (f", pool score {entry['pool_score']:.4f}" if "pool_score" in entry else ""))
    if best is not None:
        net.load_state_dict(best["state"])
        pool_loss, selected = best["pool_loss"], best["epoch"]
    else:
        pool_loss, pool_score = extract_losses(task, net, x, norm=norm, device=device, amp=amp, batch_size=eval_bs,
                                               seed=spec.seed)
        selected = spec.epochs
        if history:
            history[-1]["pool_score"] = float(pool_score.mean())
    test_loss = None
    if test_images is not None:
        test_loss, _ = extract_losses(task, net, test_images, norm=norm, device=device, amp=amp,
                                      batch_size=eval_bs, seed=spec.seed)
    _sync(device)
    return PretextFit(pool_loss=pool_loss.astype(np.float32),
                      test_loss=None if test_loss is None else test_loss.astype(np.float32),
                      selected_epoch=selected, seconds=time.perf_counter() - start_time, history=history)
