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


def check_dropout(params: dict, path: str = "model.params", train=None) -> None:
    """ConfigError unless ``params['dropout']`` (when given) is a number in [0, 1): the p of the dropout
    layer before the final linear layer (0: no layer)."""
    from bench.errors import ConfigError

    p = params.get("dropout", 0.0)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ConfigError(f"{path}.dropout", "must be a number >= 0 and < 1",
                          f"set {path}.dropout to e.g. 0.5 (or 0 for no dropout layer)", p)
