"""``head``: a linear or one-hidden-layer classifier over frozen features (the frozen-backbone protocol).

The network reads rows of a feature matrix the engine resolves from ``features`` (a representation
the harness trains, a registered backbone with local weights, or a user's npz file; see
:mod:`albench.features`), computed once per pool and cached, never images: no decoding, no
augmentation, each cycle trains only this head.

- ``hidden: 0``: a linear layer, ``logits = W · dropout(x) + b``; the embedding Core-Set, BADGE and
  the other embedding strategies read is the head's input ``x`` (the frozen feature row).
- ``hidden: H``: ``logits = W2 · dropout(relu(W1 · x + b1)) + b2``; the embedding is the hidden
  layer ``relu(W1 · x + b1)`` (H values).
- ``dropout``: p of the dropout layer before the final linear layer (0: no layer), the layer MC
  dropout (BALD and its family) samples, as small-cnn's.
- ``normalize``: scale each feature row to unit L2 norm before anything else (the
  self-supervised-embedding + linear framework of the TypiClust/ProbCover papers works on
  L2-normalised SimCLR features); the embedding is then the normalised row.

Outputs carry no stage maps (``stages == ()``), so strategies that read them (Learning Loss) are
refused at config load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

from albench.errors import ConfigError
from albench.models.base import ModelOutput
from albench.models.registry import register_model
from albench.typed import Bounds


class Head(nn.Module):
    """Linear (``hidden == 0``) or one-hidden-layer MLP classifier over (B, in_features) rows."""

    def __init__(self, num_classes: int, in_features: int, hidden: int = 0, dropout: float = 0.0,
                 normalize: bool = False) -> None:
        super().__init__()
        self.normalize = bool(normalize)
        self.hidden = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU()) if hidden > 0 else nn.Identity()
        width = hidden if hidden > 0 else in_features
        # p = 0 adds no layer at all, as small-cnn: state dicts and numbers are those of the net without it
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(width, num_classes)
        self.stage_channels: tuple[int, ...] = ()
        self.embedding_dim = int(width)
        self.embedding_source = "hidden" if hidden > 0 else "input"  # recorded in run.json

    def forward(self, x: torch.Tensor) -> ModelOutput:
        if self.normalize:
            x = F.normalize(x, dim=1)
        emb = self.hidden(x)
        return ModelOutput(self.fc(self.dropout(emb)), emb, ())


@dataclass(frozen=True)
class HeadParams:
    """``features``: where the frozen features come from (required): a name (``simclr``, another
    pretext task, ``tv:<arch>``/``timm:<name>`` with weights given in the mapping form), a mapping
    ``{name: ..., params: {...}}``, or ``{file: PATH}`` (see :mod:`albench.features`). ``hidden``: 0 for
    a linear head, else the width of one ReLU hidden layer. ``dropout``: p before the final linear
    layer (0: none). ``normalize``: L2-normalise each feature row first."""

    features: str | dict | None = None
    hidden: Annotated[int, Bounds(ge=0)] = 0
    dropout: Annotated[float, Bounds(ge=0, lt=1)] = 0.0
    normalize: bool = False


def check_params(params: dict, path: str = "model.params", train=None) -> None:
    """ConfigError naming ``path.features`` when the features source is missing or malformed, or a
    backbone's weights file is unusable (the checks that need no dataset)."""
    from albench.features.source import parse_source

    parse_source(params.get("features"), f"{path}.features", check_files=True)


def check_data(params: dict, path: str, dataset: Any, dataset_path: str) -> None:
    """The checks that need the dataset: a features file's row counts and pool fingerprint."""
    from albench.features.source import check_source_data, parse_source

    source = parse_source(params.get("features"), f"{path}.features")
    check_source_data(source, dataset, dataset_path, f"{path}.features")


@register_model("head", "linear (hidden: 0) or MLP head over frozen features, cached once per pool; params: "
                "features (simclr, a pretext task, tv:/timm: backbone with local weights, or {file: PATH}), hidden, "
                "dropout, normalize", params=HeadParams, check=check_params, inputs="features", stages=False,
                check_data=check_data)
def head(*, num_classes: int, in_features: int, features: str | dict | None = None, hidden: int = 0,
         dropout: float = 0.0, normalize: bool = False) -> nn.Module:
    if features is None:  # config load refuses it first; a direct caller gets the same message
        raise ConfigError("model.params.features", "is required for model 'head'",
                          "set model.params.features, e.g. simclr or {file: features.npz}")
    return Head(num_classes, in_features, hidden, dropout, normalize)
