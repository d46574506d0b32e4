"""Learning Loss for Active Learning (Yoo & Kweon, CVPR 2019).

A small loss-prediction module reads the main network's four stage outputs and is trained jointly
with it to rank the items of each batch by their true loss; at query time it predicts the loss of a
random subset of the unlabeled pool and the K highest predictions are labeled.

The authors released no code; the facts below follow the paper and the widely used reproduction
(Mephisto405/Learning-Loss-for-Active-Learning):

- module: per stage global average pool -> Linear(C_i, 128) -> ReLU, concatenated -> Linear(., 1);
- pair loss: item i is paired with item B-1-i, hinge max(0, xi - s * (pred_i - pred_j)) with
  s = +1 if loss_i > loss_j else -1 (a tie counts as -1, as in the paper's indicator), mean over
  the pairs, xi = 1; total loss = CE + lambda * pair loss, lambda = 1; the true losses are targets
  (no gradient flows into them);
- the stage features fed to the module are detached after 60% of the epochs (120 of 200), so the
  module stops shaping the backbone; ``learning-loss-detached`` detaches from the first epoch;
- query: a random subset of 10,000 unlabeled images, the K with the highest predicted loss.

Where we differ on purpose: the reproduction detaches when ``epoch > 120`` (0-based), i.e. after
121 epochs; we detach at ``epoch >= ceil(0.6 * epochs)``, i.e. after exactly 120 of 200, as the
paper states. The reproduction also steps its MultiStepLR schedulers at the start of each epoch,
before training it, so its milestone 160 takes effect after 159 epochs (159 at lr 0.1, 41 at 0.01);
the harness steps after each epoch (160 + 40, as the paper states). This is not a quirk switch
because a milestone is an absolute epoch: to reproduce it, set ``train.schedule.milestones: [159]``
with 200 epochs. With an odd batch size the middle item is left out of the pairs (the reproduction
asserts an even batch); it still counts in the main loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from torch import nn

from albench.errors import ConfigError
from albench.typed import Bounds
from albench.strategies.base import (Auxiliary, Inputs, ModelInfo, Need, PoolState, Quirk, Strategy, Subset, random_subset,
                             top_k_highest)
from albench.strategies.registry import register_strategy

LL_REPO = "Mephisto405/Learning-Loss-for-Active-Learning@3c11ff7"  # HEAD (2020-08-04), read for the quirks


def pair_ranking_loss(pred: torch.Tensor, target: torch.Tensor, *, margin: float = 1.0) -> torch.Tensor:
    """The loss-prediction loss of a batch: a scalar (units of predicted loss, >= 0).

    Item i is paired with item B-1-i for i < B // 2 (with odd B the middle item is unused). Per
    pair: ``max(0, margin - s * (pred_i - pred_j))`` with ``s = +1`` when ``target_i > target_j``
    and ``-1`` otherwise; the result is the mean over the B // 2 pairs. ``target`` (the true
    per-item losses) is treated as a constant. A batch with fewer than two items gives 0 (still
    connected to ``pred`` so that ``backward`` works).
    """
    pred = pred.reshape(-1)
    target = target.reshape(-1).detach()
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.numel()} items but target has {target.numel()}")
    half = pred.shape[0] // 2
    if half == 0:
        return pred.sum() * 0.0
    diff_pred = pred[:half] - pred.flip(0)[:half]
    diff_true = target[:half] - target.flip(0)[:half]
    sign = torch.where(diff_true > 0, 1.0, -1.0).to(diff_pred.dtype)
    return torch.clamp(margin - sign * diff_pred, min=0).mean()


def detach_epoch(detach_at: float, epochs: int) -> int:
    """The first 0-based epoch whose stage features reach the module detached: ceil(detach_at * epochs)."""
    # the small tolerance keeps e.g. 0.6 * 200 = 120.00000000000001 from rounding up to 121
    return max(0, math.ceil(detach_at * epochs - 1e-9))


def global_average(s: torch.Tensor) -> torch.Tensor:
    """(B, C) spatial mean of a (B, C, H, W) stage output, the value of a global average pool.

    Written as a sum times 1 / (H W) because of its backward: the backward of
    ``adaptive_avg_pool2d`` hands the stage a contiguous gradient, which, summed with the
    channels_last gradient from the next stage, turned every stage gradient contiguous and made the
    convolutions' backward copy full-size feature maps (about 12 ms of a 70 ms small-cnn step on 2
    CPU cores); the broadcast gradient of a sum leaves the layout alone.
    """
    return s.sum(dim=(2, 3)) * (1.0 / (s.shape[2] * s.shape[3]))


class LossPredictionModule(Auxiliary):
    """Predicts each item's main-task loss from the main network's stage outputs.

    Stage i: global average pool -> Linear(C_i, hidden) -> ReLU; the concatenation goes through
    Linear(len(stages) * hidden, 1).
    """

    def __init__(self, stage_channels: tuple[int, ...], *, hidden: int = 128, margin: float = 1.0,
                 weight: float = 1.0, detach_at: float = 0.6) -> None:
        super().__init__()
        if not stage_channels:
            raise ValueError("the main model exposes no stage outputs (stage_channels is empty); "
                             "Learning Loss needs a model with stages, e.g. small-cnn or resnet18-cifar")
        self.stage_fc = nn.ModuleList(nn.Linear(c, hidden) for c in stage_channels)
        self.head = nn.Linear(hidden * len(stage_channels), 1)
        self.margin = margin
        self.weight = weight
        self.detach_at = detach_at

    def forward(self, stages: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """(B,) predicted loss of each item."""
        if len(stages) != len(self.stage_fc):
            raise ValueError(f"expected {len(self.stage_fc)} stage outputs, got {len(stages)}")
        parts = [torch.relu(fc(global_average(s))) for fc, s in zip(self.stage_fc, stages)]
        return self.head(torch.cat(parts, dim=1)).reshape(-1)

    def training_loss(self, out, per_sample_loss: torch.Tensor, *, epoch: int, epochs: int) -> torch.Tensor:
        """``weight`` x the pair ranking loss of this batch (a scalar added to the main loss)."""
        stages = tuple(out.stages)
        if epoch >= detach_epoch(self.detach_at, epochs):
            stages = tuple(s.detach() for s in stages)
        return self.weight * pair_ranking_loss(self(stages), per_sample_loss, margin=self.margin)

    def score(self, out) -> torch.Tensor:
        """(B,) predicted loss (higher: more informative)."""
        return self(tuple(out.stages))


@dataclass(frozen=True)
class LossModuleParams:
    """The loss-prediction module (``hidden`` units per stage), its pair loss (``margin``, added to the
    main loss times ``weight``) and the query's random ``subset`` (None: the whole unlabeled pool)."""

    margin: Annotated[float, Bounds(ge=0)] = 1.0
    weight: Annotated[float, Bounds(ge=0)] = 1.0
    hidden: Annotated[int, Bounds(ge=1)] = 128
    subset: Subset = 10000


@dataclass(frozen=True)
class LearningLossParams(LossModuleParams):
    """``detach_at``: the fraction of the epochs after which the stage features reach the module
    detached (1.0: never)."""

    detach_at: Annotated[float, Bounds(ge=0, le=1)] = 0.6


class _LearningLossBase(Strategy):
    Params = LearningLossParams
    needs = frozenset({Need.AUX})
    quirks = (
        Quirk("warm-start",
              "each cycle continues from the previous cycle's backbone and loss module (the reproduction "
              "never re-initialises them)",
              train={"init": "warm"}, source=f"{LL_REPO} main.py"),
        Quirk("official-std",
              "the task model's images are normalised with mean (0.4914, 0.4822, 0.4465) and std (0.2023, "
              "0.1994, 0.2010), not CIFAR-10's std (0.2470, 0.2435, 0.2616)",
              train={"augment.mean": [0.4914, 0.4822, 0.4465], "augment.std": [0.2023, 0.1994, 0.2010]},
              source=f"{LL_REPO} main.py"),
    )

    @classmethod
    def check_model(cls, params: dict, *, model: str, model_params: dict, path: str) -> None:
        """Refuse a model whose outputs carry no stage maps (a ``head`` over frozen features): the
        loss-prediction module reads the backbone's stages and is trained jointly with it."""
        from albench.models.registry import model_entry

        if not model_entry(model).stages:
            raise ConfigError("model.name", f"has no stage outputs, so strategy {cls.name!r} cannot run on it: Learning "
                              "Loss's module reads the backbone's intermediate stage maps and trains jointly with "
                              f"the backbone, and {model!r} exposes none (a head over frozen features trains no "
                              "backbone)", f"leave {cls.name} out of this sweep, or use a model with stages "
                              "(small-cnn, resnet18-cifar, tv:resnet18)", model)

    def auxiliary(self, info: ModelInfo) -> LossPredictionModule:
        return LossPredictionModule(tuple(info.stage_channels), hidden=self.hidden, margin=self.margin,
                                    weight=self.weight, detach_at=self.detach_at)

    def candidates(self, *, cycle: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return random_subset(pool.unlabeled, self.subset, rng)

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        c = inputs.candidates
        if c.aux is None:
            raise RuntimeError("learning-loss got no predicted losses; the engine must train its auxiliary module")
        return c.indices[top_k_highest(c.aux, budget)]


@register_strategy
class LearningLoss(_LearningLossBase):
    name = "learning-loss"
    description = ("loss-prediction module on the 4 stage outputs, trained jointly (features detached after "
                   "60% of the epochs); the K highest predicted losses of a random 10k subset "
                   "(params: margin, weight, hidden, subset, detach_at)")


@register_strategy
class LearningLossDetached(_LearningLossBase):
    name = "learning-loss-detached"
    description = ("learning-loss with the stage features detached from the first epoch, so the module never "
                   "shapes the backbone (params: margin, weight, hidden, subset)")

    Params = LossModuleParams

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.detach_at = 0.0
