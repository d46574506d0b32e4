"""Networks of the pretext tasks, built around any backbone of the model registry.

Every backbone returns a :class:`albench.models.base.ModelOutput` (logits, pooled embedding, stage maps),
so image-level tasks use its logits, SimSiam its embedding and the pixel-level colorization head
its stage maps, whatever the backbone is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from albench.models.registry import build_model


def backbone(name: str, params: dict | None, *, outputs: int, in_channels: int,
             image_size: tuple[int, int]) -> nn.Module:
    """A freshly initialised registry model with ``outputs`` logits (draws from torch's global RNG)."""
    return build_model(name, num_classes=outputs, in_channels=in_channels, image_size=image_size,
                       params=dict(params or {}), path="params.pretext_model_params")


class DenseHead(nn.Module):
    """Per-pixel classifier: each backbone stage -> 1x1 conv -> upsampled to the input size, summed.

    Works at any input resolution (a segmentation pool's images as well as CIFAR's), because the
    stages are resized to the input and every layer is convolutional.
    """

    def __init__(self, net: nn.Module, classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = net
        self.lateral = nn.ModuleList(nn.Conv2d(c, hidden, 1) for c in net.stage_channels)
        self.bn = nn.BatchNorm2d(hidden)
        self.out = nn.Conv2d(hidden, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, classes, H, W) logits for (B, C, H, W) inputs."""
        size = x.shape[-2:]
        stages = self.net(x).stages
        h = 0
        for lat, s in zip(self.lateral, stages):
            h = h + F.interpolate(lat(s), size=size, mode="bilinear", align_corners=False)
        return self.out(torch.relu(self.bn(h)))


class SimSiamNet(nn.Module):
    """Backbone embedding -> projector (2-layer MLP) -> predictor (bottleneck MLP), as in SimSiam."""

    def __init__(self, net: nn.Module, dim: int, pred_dim: int) -> None:
        super().__init__()
        self.net = net
        d = int(net.embedding_dim)
        self.projector = nn.Sequential(
            nn.Linear(d, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(inplace=True),
            nn.Linear(d, dim, bias=False), nn.BatchNorm1d(dim, affine=False))
        self.predictor = nn.Sequential(
            nn.Linear(dim, pred_dim, bias=False), nn.BatchNorm1d(pred_dim), nn.ReLU(inplace=True),
            nn.Linear(pred_dim, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, p): projection and prediction, (B, dim) each."""
        z = self.projector(self.net(x).embedding)
        return z, self.predictor(z)


class SimCLRNet(nn.Module):
    """Backbone embedding -> projection head (Linear, ReLU, Linear to ``dim``), as SCAN's SimCLR model."""

    def __init__(self, net: nn.Module, dim: int) -> None:
        super().__init__()
        self.net = net
        d = int(net.embedding_dim)
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim) projections (not normalised; the loss normalises)."""
        return self.head(self.net(x).embedding)
