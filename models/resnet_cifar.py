"""The CIFAR ResNet-18 used by the official PT4AL, Learning Loss and CoreGCN code: a 3x3 stride-1
stem without max-pool, four stages of two basic blocks, 512-d pooled embedding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from albench.typed import Bounds
from albench.models.base import ModelOutput
from albench.models.registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, blocks=(2, 2, 2, 2), width: int = 64,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers, cin = [], width
        for i, (n, cout) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            blocks_i = []
            for j in range(n):
                blocks_i.append(BasicBlock(cin, cout, stride if j == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks_i))
        self.layers = nn.ModuleList(layers)
        # dropout before the final linear layer (MC dropout for BALD); p = 0 adds no layer
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(widths[-1], num_classes)
        self.stage_channels = tuple(widths)
        self.embedding_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        x = torch.relu(self.bn1(self.conv1(x)))
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        emb = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return ModelOutput(self.linear(self.dropout(emb)), emb, tuple(outs))

    # The stochastic split (MC-dropout passes run the backbone once per batch, then dropout + linear T times)
    def forward_prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic part: stem, stages and global pooling, (B, embedding_dim)."""
        x = torch.relu(self.bn1(self.conv1(x)))
        for layer in self.layers:
            x = layer(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward_suffix(self, h: torch.Tensor) -> ModelOutput:
        """From the dropout on: the logits of :meth:`forward_prefix`'s embedding (no stage outputs)."""
        return ModelOutput(self.linear(self.dropout(h)), h, ())


@dataclass(frozen=True)
class ResNetCifarParams:
    """``width``: channels of the stem and first stage, doubling per stage (64: ResNet-18);
    ``dropout``: p of a dropout layer before the final linear layer (0: no layer)."""

    width: Annotated[int, Bounds(ge=1)] = 64
    dropout: Annotated[float, Bounds(ge=0, lt=1)] = 0.0


@register_model("resnet18-cifar", "CIFAR ResNet-18 of the official AL repos (3x3 stem, no max-pool, 512-d embedding)",
                params=ResNetCifarParams)
def resnet18_cifar(*, num_classes: int, in_channels: int, image_size: tuple[int, int], width: int = 64,
                   dropout: float = 0.0) -> nn.Module:
    return ResNetCifar(num_classes, in_channels, (2, 2, 2, 2), width, dropout)
