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
