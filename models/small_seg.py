"""A small encoder-decoder for segmentation that trains on a CPU in seconds (tests, the demo).

Encoder: four stages of two conv-BN-ReLU layers, widths (w, 2w, 4w, 8w); stages 2-4 first halve the
resolution while the map is at least 4 pixels a side (so output stride <= 8). Decoder: each stage -> 1x1 conv to w
channels, upsampled to the first stage's resolution and summed (a tiny FPN), conv-BN-ReLU, a 1x1
classifier, bilinear upsampling to the input size. The embedding is the global average of the
last stage, as for the classification networks, so Core-Set and the pretext heads work on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from albench.typed import Bounds
from albench.models.base import ModelOutput
from albench.models.registry import register_model


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallSeg(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, image_size: tuple[int, int], width: int = 16) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        size = min(image_size)
        stages, cin = [], in_channels
        for i, cout in enumerate(widths):
            layers = []
            if i > 0 and size >= 4:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            layers += [_conv_bn(cin, cout), _conv_bn(cout, cout)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in widths)
        self.fuse = _conv_bn(width, width)
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.stage_channels = tuple(widths)
        self.embedding_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Logits (B, num_classes, H, W) at the input size, embedding (B, 8w), four stage maps."""
        size = x.shape[-2:]
        outs = []
        h = x
        for stage in self.stages:
            h = stage(h)
            outs.append(h)
        top = outs[0].shape[-2:]
        fused = sum(F.interpolate(lat(s), size=top, mode="bilinear", align_corners=False) if s.shape[-2:] != top
                    else lat(s) for lat, s in zip(self.lateral, outs))
        logits = F.interpolate(self.classifier(self.fuse(fused)), size=size, mode="bilinear", align_corners=False)
        emb = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        return ModelOutput(logits, emb, tuple(outs))


@dataclass(frozen=True)
class SmallSegParams:
    """``width``: channels of the first encoder stage, doubling per stage."""

    width: Annotated[int, Bounds(ge=1)] = 16


@register_model("small-seg", "small encoder-decoder for segmentation (widths 16-128), fast on CPU; params: width",
                tasks=("segmentation",), params=SmallSegParams)
def small_seg(*, num_classes: int, in_channels: int, image_size: tuple[int, int], width: int = 16) -> nn.Module:
    return SmallSeg(num_classes, in_channels, image_size, width)
