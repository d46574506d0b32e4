"""Pretext training and per-image loss extraction: whole batches on the device, no per-image Python.

The network is trained on the unlabeled pool only (no labels exist for it). Every random draw
(initialisation, data order, views) comes from generators derived from the pretext seed, so on CPU
the same spec and pool give bit-identical losses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from albench.toolkit.amp import autocast
from albench.toolkit.batches import epoch_batches, eval_batches
from albench.toolkit.device import data_device, synchronize
from albench.toolkit.fit import BestEpoch, fit_with_selection
from albench.toolkit.seeding import derive_seed, seeded_init, torch_generator
from albench.strategies.pretext.spec import PretextSpec
from albench.strategies.pretext.tasks import Normalizer, PretextTask


@dataclass
class PretextFit:
    """The outcome of one pretext training."""

    pool_loss: np.ndarray  # float32 (N,), pool order, the loss the task defines (nats for CE tasks)
    test_loss: np.ndarray | None  # float32 (n_test,) with the same network, or None
    selected_epoch: int  # 1-based epoch whose weights produced the losses
    seconds: float  # wall-clock seconds of training and extraction
    history: list[dict] = field(default_factory=list)  # per epoch: train_loss, pool_score


@torch.inference_mode()
def extract_losses(task: PretextTask, net: nn.Module, images: torch.Tensor, *, norm: Normalizer,
                   device: torch.device, amp: bool, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(per-image loss, per-image score) of ``images`` (uint8, any device), float32, eval mode.

    Views that need randomness are drawn from a generator re-seeded at every call, so the same
    images in the same batches always get the same views.
    """
    net.eval()
    gen = torch_generator(seed, "pretext-extract", device=device)
    losses, scores = [], []
    for _, xb in eval_batches(images, None, batch_size, device):
        with autocast(device, amp):
            loss, score = task.losses(net, xb, norm=norm, generator=gen, train=False)
        losses.append(loss.float().cpu())
        scores.append(score.float().cpu())
    return torch.cat(losses).numpy(), torch.cat(scores).numpy()


def _train_epoch(task: PretextTask, net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, *,
                 batch_size: int, norm: Normalizer, order_gen: torch.Generator, view_gen: torch.Generator,
                 device: torch.device, amp: bool) -> float:
    """One shuffled pass of pretext training over the uint8 pool ``x``; the mean training loss."""
    net.train()
    total, count = torch.zeros((), device=device), 0
    for idx in epoch_batches(x.shape[0], batch_size, order_gen, device=x.device):  # a last batch of one dropped
        xb = x[idx].to(device, non_blocking=True)
        with autocast(device, amp):
            loss, _ = task.losses(net, xb, norm=norm, generator=view_gen, train=True)
            loss = loss.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach() * idx.numel()
        count += idx.numel()
    return float(total) / max(1, count)


def fit_pretext(task: PretextTask, spec: PretextSpec, *, pool_images: torch.Tensor, test_images: torch.Tensor | None,
                mean, std, device: torch.device, amp: bool = False,
                log: Callable[[str], None] = print,
                progress: Callable[[int, int], None] | None = None) -> PretextFit:
    """Train ``task`` on ``pool_images`` (uint8 (N, C, H, W)) and extract per-image losses of the pool
    (and of ``test_images``) with the selected epoch's weights.

    ``selection: best`` keeps the epoch with the best mean pretext score on the pool itself (as the
    official rotation.py), by the same best-epoch rule as the main-task training. ``progress(done, total)``
    is called with 0 epochs done at the start and after every epoch."""
    n, c, h, w = pool_images.shape
    task.check_images(c, (h, w))
    start_time = time.perf_counter()
    with seeded_init(derive_seed(spec.seed, "pretext-init")):  # the caller's global RNG is left untouched
        net = task.build(spec.model, spec.model_params, c, (h, w))
    net.to(device)
    if spec.channels_last:
        net.to(memory_format=torch.channels_last)  # convolutions then pick NHWC kernels for any input
    opt = torch.optim.SGD(net.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    order_gen = torch_generator(spec.seed, "pretext-order")
    view_gen = torch_generator(spec.seed, "pretext-views", device=device)
    norm = Normalizer(mean, std, device)
    x = pool_images.to(data_device(device, pool_images))
    eval_bs = 2 * spec.batch_size

    def pool_losses() -> tuple[np.ndarray, np.ndarray]:
        return extract_losses(task, net, x, norm=norm, device=device, amp=amp, batch_size=eval_bs, seed=spec.seed)

    history: list[dict] = []

    def train(epoch: int) -> None:
        history.append({"epoch": epoch + 1, "train_loss": _train_epoch(
            task, net, opt, x, batch_size=spec.batch_size, norm=norm, order_gen=order_gen, view_gen=view_gen,
            device=device, amp=amp)})

    def score() -> tuple[float, dict]:
        pool_loss, pool_score = pool_losses()
        history[-1]["pool_score"] = float(pool_score.mean())
        return history[-1]["pool_score"], {"pool_loss": pool_loss}

    def logged(epoch: int) -> None:
        e = history[-1]
        log(f"pretext {task.name} epoch {epoch}/{spec.epochs}: train loss {e['train_loss']:.4f}"
            + (f", pool score {e['pool_score']:.4f}" if "pool_score" in e else ""))
        if progress is not None:
            progress(epoch, spec.epochs)

    keeper = BestEpoch({"state": net})
    if progress is not None:
        progress(0, spec.epochs)
    best = spec.selection == "best"
    fit = fit_with_selection(train, epochs=spec.epochs, score=score if best else None, keeper=keeper,
                             on_epoch=logged)
    if fit.selected_epoch is not None:
        pool_loss, selected = keeper.best["pool_loss"], fit.selected_epoch
    else:
        pool_loss, pool_score = pool_losses()
        selected = spec.epochs
        if history:
            history[-1]["pool_score"] = float(pool_score.mean())
    test_loss = None
    if test_images is not None:
        test_loss, _ = extract_losses(task, net, test_images, norm=norm, device=device, amp=amp,
                                      batch_size=eval_bs, seed=spec.seed)
    synchronize(device)
    return PretextFit(pool_loss=pool_loss.astype(np.float32),
                      test_loss=None if test_loss is None else test_loss.astype(np.float32),
                      selected_epoch=selected, seconds=time.perf_counter() - start_time, history=history)
