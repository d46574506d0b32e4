"""PAL: Pretext-based Active Learning (Bhatnagar, Goyal, Tank & Sethi, 2020;
shubhangb97/PAL_pretext_based_active_learning, folder Classification_PAL).

Each query trains a fresh scoring network on the LABELED set: a backbone with two heads, one
predicting which of the four rotations (0, 90, 180, 270 degrees) an image is shown in, one
predicting its class; loss = CE(rotation, over all four rotations) + CE(class, unrotated). An
unlabeled image scores

    lambda_rot x (-sum_r p(rotation r | image rotated by r)) + lambda_kl x (-KL(uniform || p(class)))

(KL in bits), high = hard to place and of uncertain class. The budget is queried in sub-queries of
``sub_query`` images: the first by that score; before each later one a copy of the scoring network
is fine-tuned on the rotation task alone on every image picked so far in this query (plain SGD at
0.1 x lr, ``finetune_epochs`` epochs), and the rest are scored

    lambda_div x (-sum_r p_finetuned(rotation r)) + (the first score)

so images like those already picked, whose rotation the fine-tuned network now finds easy, drop
back (diversity). Defaults follow the official CIFAR-10 arguments: SGD lr 0.01, Nesterov momentum
0.9, weight decay 5e-4, lr / 10 every epochs // 4 epochs, 100 epochs, batch 64, all weights 1,
sub-queries of 512, 5 fine-tune epochs; training views are random-crop (pad 4) + flip.

Differences from the official code:

- the scoring network is a registry model (default ``resnet18-cifar``, the harness's CIFAR
  ResNet-18) plus a rotation head on its pooled embedding; the official one is torchvision's
  ImageNet ResNet-18 (7x7 stem, max-pool) with two linear heads;
- the official code keeps the scoring network's checkpoint with the lowest loss on a 5,000-image
  labeled validation split, labels that are not counted in the budget; we keep the final epoch
  (no such split is offered: it would need labels the strategy has not paid for);
- candidates are scored in eval mode with the test transform; the official code scores them
  through its training transform (random crop and flip), switchable as the quirk
  ``augment-at-scoring``;
- the class head reads the unrotated rows (every 4th) of the one forward pass over the rotated 4B
  batch, so in training its BatchNorm statistics are those of all four rotations; the official
  code makes a separate forward pass over the B unrotated images for the class head (BatchNorm
  statistics of upright images only). Not a switch (documented only): scoring runs in eval mode in
  both, on running statistics, but those are accumulated from different batches, so the scorers
  differ slightly.

The four rotations of an image always share a batch (as in the official loader), so BatchNorm's
batch statistics cannot give the rotation away. Rotations need square images.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from albench.data.augment import BatchTransform
from albench.toolkit.batches import epoch_batches, eval_batches
from albench.toolkit.seeding import seeded_init
from albench.typed import MAX_IMAGES, Bounds
from albench.strategies.base import (Inputs, PoolState, PrepareContext, Quirk, Strategy, check_model_params,
                             top_k_highest)
from albench.strategies.registry import register_strategy
from albench.strategies.vaal import pool_stats


def rotate4(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(4B, C, H, W) images and (4B,) rotation labels: image i in rotations 0..3 at rows 4i..4i+3
    (rotation k = ``torch.rot90`` by k quarter turns)."""
    b = x.shape[0]
    rots = torch.stack([torch.rot90(x, k, dims=(2, 3)) for k in range(4)], dim=1)  # (B, 4, C, H, W)
    labels = torch.arange(4, device=x.device).repeat(b)
    return rots.reshape(b * 4, *x.shape[1:]), labels


def rotation_score(rot_probs: torch.Tensor) -> torch.Tensor:
    """(B,) minus the summed probability of the correct rotation; ``rot_probs`` is (B, 4, 4): image,
    rotation shown, predicted rotation. In [-4, 0]; higher: the rotation is harder to tell."""
    return -rot_probs.diagonal(dim1=1, dim2=2).sum(dim=1)


def kl_score(class_probs: torch.Tensor) -> torch.Tensor:
    """(B,) minus KL(uniform || p) in bits for class posteriors ``p`` (B, C); 0 when p is uniform,
    more negative the more confident p is."""
    c = class_probs.shape[1]
    p = class_probs.clamp_min(1e-12)  # a zero probability would give -inf
    return -(torch.log2((1.0 / c) / p).sum(dim=1) / c)


class PALScorer(nn.Module):
    """A registry backbone (its logits: the class head) plus a linear rotation head on its embedding."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.rotation = nn.Linear(int(backbone.embedding_dim), 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rotation logits (B, 4), class logits (B, classes))."""
        out = self.backbone(x)
        return self.rotation(out.embedding), out.logits


@dataclass(frozen=True)
class PALParams:
    """``scorer_model`` / ``scorer_params``: the backbone, any model of the registry. ``sub_query``:
    images per sub-query (the budget's remainder forms a last, smaller one). ``crop_padding`` and
    ``hflip``: the scorer's training augmentation (set ``hflip: false`` where a flip changes the
    class, as on digits)."""

    scorer_model: str = "resnet18-cifar"
    scorer_params: dict | None = None
    epochs: Annotated[int, Bounds(ge=1)] = 100
    batch_size: Annotated[int, Bounds(ge=1)] = 64
    lr: Annotated[float, Bounds(gt=0)] = 0.01
    momentum: Annotated[float, Bounds(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Bounds(ge=0)] = 5e-4
    rot_loss_weight: Annotated[float, Bounds(ge=0)] = 1.0
    cls_loss_weight: Annotated[float, Bounds(ge=0)] = 1.0
    lambda_rot: Annotated[float, Bounds(ge=0)] = 1.0
    lambda_kl: Annotated[float, Bounds(ge=0)] = 1.0
    lambda_div: Annotated[float, Bounds(ge=0)] = 1.0
    sub_query: Annotated[int, Bounds(ge=1, le=MAX_IMAGES)] = 512
    finetune_epochs: Annotated[int, Bounds(ge=0)] = 5  # 0: no diversity fine-tune
    crop_padding: Annotated[int, Bounds(ge=0)] = 4
    hflip: bool = True
    score_batch_size: Annotated[int, Bounds(ge=1)] = 256
    score_augment: bool = False


@register_strategy
class PAL(Strategy):
    name = "pal"
    description = ("scoring network (rotation + class heads) trained on the labeled set; queries hard-to-rotate, "
                   "class-uncertain images in sub-queries with a rotation fine-tune between them for diversity "
                   "(params: scorer_model, scorer_params, epochs, batch_size, lr, sub_query, finetune_epochs, ...)")
    Params = PALParams
    quirks = (
        Quirk("augment-at-scoring", "candidates are scored through the training transform (random crop and "
              "horizontal flip), as the official code does", params={"score_augment": True},
              source="shubhangb97/PAL_pretext_based_active_learning@5078e10 Classification_PAL/main.py"),
    )

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.scorer_params = dict(self.scorer_params or {})
        self._stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @classmethod
    def check_params(cls, params: dict, path: str) -> None:
        check_model_params(params, "scorer_model", "scorer_params", path)

    # ------------------------------------------------------------------ pieces
    def prepare(self, ctx: PrepareContext) -> None:
        self._stats = (tuple(ctx.mean), tuple(ctx.std))
        self._bgr = ctx.channel_order == "bgr"  # the run's channel order: its mean/std index channels in it

    def _transform(self, images: torch.Tensor, device: torch.device) -> BatchTransform:
        if self._stats is None:  # called without prepare (tests, notebooks): the pool's own statistics
            self._stats = pool_stats(images)
        return BatchTransform(*self._stats, crop_padding=self.crop_padding, hflip=self.hflip,
                              bgr=getattr(self, "_bgr", False), device=device)

    def build_scorer(self, pool: PoolState, seed: int) -> PALScorer:
        """A freshly initialised scoring network (torch's global RNG is left as it was)."""
        from albench.models.registry import build_model

        c, h, w = pool.images.shape[1:]
        if h != w:
            raise ValueError(f"PAL rotates images by 90 degrees and needs square images, got {h}x{w}")
        with seeded_init(seed):
            net = build_model(self.scorer_model, num_classes=pool.num_classes, in_channels=int(c),
                              image_size=(int(h), int(w)), params=self.scorer_params, path="params.scorer_params")
            return PALScorer(net)

    def _fit(self, net: PALScorer, images: torch.Tensor, targets: torch.Tensor | None, *, epochs: int,
             opt: torch.optim.Optimizer, lr_at, tf: BatchTransform, order: torch.Generator,
             aug: torch.Generator, device: torch.device) -> None:
        """Train ``net`` on uint8 ``images``: rotation loss, plus the class loss when ``targets`` is given."""
        net.train()
        for epoch in range(epochs):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch)
            # a short last batch dropped, as the official loaders; a set smaller than a batch is one batch
            for idx in epoch_batches(images.shape[0], self.batch_size, order, drop_last=True):
                x = tf.train(images[idx].to(device, non_blocking=True), aug)
                xr, yr = rotate4(x)
                rot_logits, cls_logits = net(xr)
                loss = self.rot_loss_weight * F.cross_entropy(rot_logits, yr)
                if targets is not None:
                    # the class head sees each image unrotated (rows 0, 4, 8, ...)
                    loss = loss + self.cls_loss_weight * F.cross_entropy(cls_logits[0::4], targets[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

    def train_scorer(self, pool: PoolState, device: torch.device, rng: np.random.Generator) -> PALScorer:
        """A scoring network trained on the labeled images (rotation + class loss)."""
        if len(pool.labeled) == 0:
            raise ValueError("PAL trains its scoring network on the labeled set, which is empty")
        init, order, aug = (int(s) for s in rng.integers(2 ** 63 - 1, size=3))
        net = self.build_scorer(pool, init).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                              nesterov=self.momentum > 0)
        step = max(1, self.epochs // 4)  # the official decay_step: lr / 10 every epochs // 4 epochs
        images = pool.images[torch.from_numpy(np.asarray(pool.labeled, dtype=np.int64))]
        self._fit(net, images, pool.labeled_targets, epochs=self.epochs, opt=opt,
                  lr_at=lambda e: self.lr * 0.1 ** (e // step), tf=self._transform(pool.images, device),
                  order=torch.Generator().manual_seed(order), aug=torch.Generator(device=device).manual_seed(aug),
                  device=device)
        return net

    def finetune(self, net: PALScorer, images: torch.Tensor, device: torch.device,
                 rng: np.random.Generator) -> PALScorer:
        """A copy of ``net`` fine-tuned on the rotation task alone on uint8 ``images`` (plain SGD, 0.1 x lr)."""
        tuned = copy.deepcopy(net)
        order, aug = (int(s) for s in rng.integers(2 ** 63 - 1, size=2))
        opt = torch.optim.SGD(tuned.parameters(), lr=0.1 * self.lr)
        self._fit(tuned, images, None, epochs=self.finetune_epochs, opt=opt, lr_at=lambda e: 0.1 * self.lr,
                  tf=self._transform(images, device), order=torch.Generator().manual_seed(order),
                  aug=torch.Generator(device=device).manual_seed(aug), device=device)
        return tuned

    @torch.no_grad()
    def score(self, net: nn.Module, images: torch.Tensor, indices: np.ndarray, device: torch.device,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(rotation score, KL score), each (n,) on the CPU, of ``images[indices]`` (see the module docstring)."""
        net.eval()
        tf = self._transform(images, device)
        rot_parts, kl_parts = [], []
        for _, x in eval_batches(images, np.asarray(indices, dtype=np.int64), self.score_batch_size, device):
            x = tf.train(x, generator) if self.score_augment else tf.test(x)
            xr, _ = rotate4(x)
            rot_logits, cls_logits = net(xr)
            rot_probs = torch.softmax(rot_logits.float(), dim=1).view(x.shape[0], 4, 4)
            rot_parts.append(rotation_score(rot_probs).cpu())
            kl_parts.append(kl_score(torch.softmax(cls_logits[0::4].float(), dim=1)).cpu())
        if not rot_parts:
            return torch.zeros(0), torch.zeros(0)
        return torch.cat(rot_parts), torch.cat(kl_parts)

    def sub_query_sizes(self, budget: int) -> list[int]:
        """Sizes of the sub-queries: ``budget // sub_query`` of ``sub_query``, then the remainder."""
        sizes = [self.sub_query] * (budget // self.sub_query)
        if budget % self.sub_query:
            sizes.append(budget % self.sub_query)
        return sizes

    # ------------------------------------------------------------------ the query
    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        device = inputs.device
        cand = np.asarray(inputs.candidates.indices, dtype=np.int64)
        net = self.train_scorer(pool, device, rng)
        aug = torch.Generator(device=device).manual_seed(int(rng.integers(2 ** 63 - 1)))
        rot, kl = self.score(net, pool.images, cand, device, aug)
        base = self.lambda_rot * rot + self.lambda_kl * kl
        score = base
        taken = np.zeros(len(cand), dtype=bool)
        sizes = self.sub_query_sizes(budget)
        for i, size in enumerate(sizes):
            free = np.flatnonzero(~taken)
            taken[free[top_k_highest(score[torch.from_numpy(free)], size)]] = True
            if i + 1 == len(sizes):
                break
            free = torch.from_numpy(np.flatnonzero(~taken))
            if self.finetune_epochs > 0:
                tuned = self.finetune(net, pool.images[torch.from_numpy(cand[taken])], device, rng)
                rot_free, _ = self.score(tuned, pool.images, cand[free.numpy()], device, aug)
            else:  # an un-tuned copy scores as the network itself
                rot_free = rot[free]
            score = torch.full_like(base, -math.inf)
            score[free] = self.lambda_div * rot_free + base[free]
        return cand[taken]
