"""The output contract shared by all networks, so strategies can ask for embeddings or stages."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ModelOutput(NamedTuple):
    """What a forward pass returns.

    ``logits``: (B, num_classes) for classification, (B, num_classes, H, W) for segmentation.
    ``embedding``: (B, D) globally pooled penultimate features (D = ``model.embedding_dim``).
    ``stages``: the outputs of the backbone's stages, (B, C_i, H_i, W_i), C_i = ``model.stage_channels[i]``.
    """

    logits: torch.Tensor
    embedding: torch.Tensor
    stages: tuple[torch.Tensor, ...]


# Optional methods a network may define, which the engine uses when present:
#
# - ``forward_prefix(x) -> Tensor`` and ``forward_suffix(h) -> ModelOutput``: where the network's
#   stochastic part starts. The prefix holds no dropout and no other randomness (the engine refuses a
#   prefix that runs a dropout layer); ``forward_suffix(forward_prefix(x)).logits`` equals
#   ``forward(x).logits`` (the suffix's ModelOutput may leave ``stages`` empty). MC-dropout passes
#   then compute the prefix once per batch and run only the suffix T times.
# - ``weight_decay_parameters() -> list[Parameter]``: the only parameters weight decay applies to
#   (e.g. a Keras model's per-layer regulariser); without it every parameter is decayed.


def resnet_stages(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """A torchvision-style ResNet's stem and four stages on ``x``: (the last stage's map, the four
    stage maps); ``net`` has ``conv1, bn1, relu, maxpool, layer1..layer4``."""
    h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    stages = []
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        h = layer(h)
        stages.append(h)
    return h, tuple(stages)
