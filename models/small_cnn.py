"""A four-stage CNN small enough to train on a CPU in seconds, with the same output contract as
ResNet-18 (stage outputs included, so Learning Loss works on it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from albench.typed import Bounds
from albench.models.base import ModelOutput
from albench.models.registry import register_model


def _block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    # conv-BN-ReLU-maxpool, with the ReLU applied after the pool: the two commute exactly (values
    # and gradients), and the ReLU then runs on a quarter of the elements (~5% of a CPU step)
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """conv-BN-ReLU stages of widths (w, 2w, 4w, 8w); each stage after the first halves the
    resolution while it is above 1 pixel. Embedding = global average pool of the last stage."""

    def __init__(self, num_classes: int, in_channels: int, image_size: tuple[int, int], width: int = 32,
                 dropout: float = 0.0) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        size = min(image_size)
        stages, cin = [], in_channels
        for i, cout in enumerate(widths):
            pool = i < 3 and size >= 2
            if pool:
                size //= 2
            stages.append(_block(cin, cout, pool))
            cin = cout
        self.stages = nn.ModuleList(stages)
        # dropout on the pooled embedding, before the final linear layer (MC dropout for BALD); p = 0 adds
        # no layer at all, so default numbers and state dicts are those of the network without it
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(widths[-1], num_classes)
        self.stage_channels = tuple(widths)
        self.embedding_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        emb = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return ModelOutput(self.fc(self.dropout(emb)), emb, tuple(outs))

    # The stochastic split (MC-dropout passes run the stages once per batch, then dropout + fc T times)
    def forward_prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic part: the stages and the global pooling, (B, embedding_dim)."""
        for stage in self.stages:
            x = stage(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward_suffix(self, h: torch.Tensor) -> ModelOutput:
        """From the dropout on: the logits of :meth:`forward_prefix`'s embedding (no stage outputs)."""
        return ModelOutput(self.fc(self.dropout(h)), h, ())


@dataclass(frozen=True)
class SmallCNNParams:
    """``width``: channels of the first stage, doubling per stage; ``dropout``: p of a dropout layer
    before the final linear layer (0: no layer)."""

    width: Annotated[int, Bounds(ge=1)] = 32
    dropout: Annotated[float, Bounds(ge=0, lt=1)] = 0.0


@register_model("small-cnn", "4-stage conv net (widths 32-256), fast on CPU; params: width, dropout", params=SmallCNNParams)
def small_cnn(*, num_classes: int, in_channels: int, image_size: tuple[int, int], width: int = 32,
              dropout: float = 0.0) -> nn.Module:
    return SmallCNN(num_classes, in_channels, image_size, width, dropout)
