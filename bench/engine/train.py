"""Main-task training: tensors in memory, batched augmentation on the device, no per-sample Python.

One :class:`Trainer` trains one cycle's model (and the strategy's auxiliary module, if any) with
the run's protocol, optionally keeping the best checkpoint on a validation (or, flagged, the test)
set, and can save and restore its full state between epochs.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from albench.config import OptimizerConfig, TrainConfig
from albench.data.augment import BatchTransform
from albench.divergence import check_finite
from albench.toolkit.amp import autocast
from albench.toolkit.batches import batches_per_epoch, epoch_batches
from albench.toolkit.device import cpu_state
from albench.toolkit.fit import BestEpoch, FitResult, fit_with_selection


def make_optimizer(params, cfg: OptimizerConfig, *, n_labeled: int | None = None) -> torch.optim.Optimizer:
    """The optimiser a config names, over ``params`` (parameters, or param groups: a group may set its
    own ``weight_decay``). Its weight decay is ``cfg.weight_decay``, divided by ``n_labeled`` under
    ``weight_decay_scaling: per-label`` (ValueError when ``n_labeled`` is not given then)."""
    wd = effective_weight_decay(cfg, n_labeled)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd)


def effective_weight_decay(cfg: OptimizerConfig, n_labeled: int | None) -> float:
    """The weight-decay coefficient of a cycle training on ``n_labeled`` images (PyTorch's: the
    gradient gains ``coefficient x weight``; Keras's ``l2(c)`` is the coefficient ``2c``)."""
    if cfg.weight_decay_scaling == "constant":
        return cfg.weight_decay
    if not n_labeled:
        raise ValueError("train.optimizer.weight_decay_scaling 'per-label' needs the number of labeled images")
    return cfg.weight_decay / n_labeled


def decay_groups(model: nn.Module) -> list[dict] | object:
    """``model.parameters()``, or, when the model defines ``weight_decay_parameters()`` (the only
    parameters it wants decayed, e.g. Keras-style per-layer regularisers), two param groups: those
    (with the optimiser's weight decay) and the rest (weight decay 0)."""
    pick = getattr(model, "weight_decay_parameters", None)
    if not callable(pick):
        return model.parameters()
    decayed = list(pick())
    ids = {id(p) for p in decayed}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": decayed}, {"params": rest, "weight_decay": 0.0}]


def steps_per_epoch(n: int, cfg: TrainConfig) -> int:
    """Optimizer steps in one epoch over ``n`` training images under ``cfg``'s batch size and batching."""
    return batches_per_epoch(n, cfg.batch_size, drop_last=cfg.batching == "drop-last", even=cfg.batching == "even")


def cycle_epochs(n: int, cfg: TrainConfig) -> int:
    """Epochs a cycle trains on ``n`` images: ``train.epochs``, or more when that gives fewer than
    ``train.min_steps`` optimizer steps (then the fewest epochs that reach it)."""
    per_epoch = steps_per_epoch(n, cfg)
    if cfg.min_steps <= 0 or per_epoch == 0:
        return cfg.epochs
    return max(cfg.epochs, -(-cfg.min_steps // per_epoch))


def lr_factor(epoch: int, cfg: TrainConfig, epochs: int | None = None) -> float:
    """Multiplier of the base lr during ``epoch`` (0-based) of an ``epochs``-epoch training (default
    ``train.epochs``): stateless, so resuming needs no scheduler."""
    s = cfg.schedule
    epochs = cfg.epochs if epochs is None else epochs
    if s.name == "constant":
        return 1.0
    if s.name == "multistep":
        return s.gamma ** sum(1 for m in s.resolved_milestones(epochs, configured=cfg.epochs) if epoch >= m)
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


class Trainer:
    """Trains ``model`` (+ ``aux``) on uint8 images ``x`` and targets ``y`` for ``epochs`` epochs
    (default ``cfg.epochs``; see :func:`cycle_epochs`).

    ``order_gen`` (CPU) fixes the data order and ``aug_gen`` (on the device) the augmentation, so a
    seed fixes the whole run; both are part of the saved state. ``n_labeled``: the images trained on
    (for ``weight_decay_scaling: per-label``).
    """

    def __init__(self, *, model: nn.Module, aux: nn.Module | None, task, transform: BatchTransform,
                 cfg: TrainConfig, device: torch.device, amp: bool, order_gen: torch.Generator,
                 aug_gen: torch.Generator, epochs: int | None = None, n_labeled: int | None = None) -> None:
        self.model = model
        self.aux = aux
        self.task = task
        self.transform = transform
        self.cfg = cfg
        self.epochs = cfg.epochs if epochs is None else epochs
        self.device = device
        self.amp = amp
        self.order_gen = order_gen
        self.aug_gen = aug_gen
        self.opt = make_optimizer(decay_groups(model), cfg.optimizer, n_labeled=n_labeled)
        self.aux_opt = make_optimizer(aux.parameters(), cfg.optimizer, n_labeled=n_labeled) if aux is not None else None
        self.epoch = 0
        self.last_loss = float("nan")  # mean train loss (nats) of the last epoch trained
        self.keeper = BestEpoch({"model": model, "aux": aux})  # its ``best`` is part of the saved state
        self.forward = torch.compile(model) if cfg.compile else model

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """Everything needed to continue training bit-identically (weights_only-loadable)."""
        return {
            "epoch": self.epoch,
            "model": cpu_state(self.model),
            "aux": cpu_state(self.aux),
            "opt": self.opt.state_dict(),
            "aux_opt": self.aux_opt.state_dict() if self.aux_opt is not None else None,
            "order_gen": self.order_gen.get_state(),
            "aug_gen": self.aug_gen.get_state(),
            # dropout and other module-level draws use torch's global generators
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "best": self.keeper.best,
        }

    def load_state(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.model.load_state_dict(state["model"])
        if self.aux is not None and state["aux"] is not None:
            self.aux.load_state_dict(state["aux"])
        self.opt.load_state_dict(state["opt"])
        if self.aux_opt is not None and state["aux_opt"] is not None:
            self.aux_opt.load_state_dict(state["aux_opt"])
        self.order_gen.set_state(state["order_gen"])
        self.aug_gen.set_state(state["aug_gen"])
        if state.get("torch_rng") is not None:
            torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.keeper.best = state["best"]

    # ------------------------------------------------------------------ training
    def _set_lr(self, epoch: int) -> None:
        factor = lr_factor(epoch, self.cfg, self.epochs)
        for opt in (self.opt, self.aux_opt):
            if opt is None:
                continue
            for group in opt.param_groups:
                group["lr"] = self.cfg.optimizer.lr * factor

    def train_epoch(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None = None) -> float:
        """One pass over (x, y), or over the given ``rows`` of them; returns the mean training loss (nats).

        Passing ``rows`` trains on a subset without copying it out of a large (or memory-mapped) pool.
        """
        self.model.train()
        if self.aux is not None:
            self.aux.train()
        self._set_lr(self.epoch)
        n = x.shape[0] if rows is None else rows.numel()
        bs = self.cfg.batch_size
        rows = rows.to(x.device) if rows is not None else None
        total, count = 0.0, 0
        channels_last = self.cfg.channels_last
        batches = epoch_batches(n, bs, self.order_gen, device=x.device, drop_last=self.cfg.batching == "drop-last",
                                even=self.cfg.batching == "even")  # keep-last: a last batch of one is dropped
        for batch, idx in enumerate(batches):
            if rows is not None:
                idx = rows[idx]
            xb = x[idx].to(self.device, non_blocking=True)
            yb = y[idx].to(self.device, non_blocking=True)
            if yb.ndim > 1:  # target maps (segmentation) are cropped and flipped with their images
                xb, yb = self.transform.train_pair(xb, yb, self.aug_gen, fill=self.task.ignore_index)
            else:
                xb = self.transform.train(xb, self.aug_gen)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.amp):
                out = self.forward(xb)
                per_item = self.task.loss(out.logits, yb)
                loss = per_item.mean()
                if self.aux is not None:
                    loss = loss + self.aux.training_loss(out, per_item, epoch=self.epoch, epochs=self.epochs)
            loss_value = float(loss.detach())
            check_finite(loss_value, phase="train", what="the training loss",
                         detail=f"epoch {self.epoch + 1}, batch {batch + 1}")
            self.opt.zero_grad(set_to_none=True)
            if self.aux_opt is not None:
                self.aux_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if self.aux_opt is not None:
                self.aux_opt.step()
            total += loss_value * idx.numel()
            count += idx.numel()
        self.epoch += 1
        self.last_loss = total / max(1, count)  # read by the loop's trackers after each epoch
        return self.last_loss

    def fit(self, x: torch.Tensor, y: torch.Tensor, *, rows: torch.Tensor | None = None,
            score_fn: Callable[[], float] | None = None,
            on_epoch: Callable[["Trainer"], None] | None = None) -> FitResult:
        """Train up to ``self.epochs`` (continuing from ``self.epoch``) on ``rows`` of (x, y) (all by default).

        ``score_fn`` (higher is better), when given, is called after every epoch; the best epoch's
        weights are restored at the end. ``on_epoch`` runs after each epoch (checkpointing).
        """
        return fit_with_selection(lambda _: self.train_epoch(x, y, rows), epochs=self.epochs, start=self.epoch,
                                  score=score_fn, keeper=self.keeper,
                                  on_epoch=None if on_epoch is None else lambda _: on_epoch(self))
