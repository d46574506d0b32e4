"""Frozen features: active learning on a cached backbone.

A model that reads features (``head``, :mod:`albench.models.head`) is trained each cycle on rows of a
feature matrix computed once per pool: by a representation the harness trains (``simclr``, the
PT4AL pretexts), by a registered backbone with local weights (``tv:``, ``timm:``), or read from a
user's npz file. :mod:`~albench.features.source` parses ``model.params.features``,
:mod:`~albench.features.frozen` computes or reads the features through the shared cache, and
:mod:`~albench.features.files` reads, checks and writes features files.
"""

from __future__ import annotations

import torch

from albench.features.files import dataset_fingerprints, save_features_file
from albench.features.frozen import FrozenFeatures, frozen_features
from albench.features.source import FeatureSource, parse_source


class FeatureTransform:
    """The engine's batch transform for feature rows: they are used as they are (no augmentation, no
    normalisation; the attributes mirror :class:`~albench.data.augment.BatchTransform`'s for the
    records)."""

    crop_padding = 0
    hflip = False
    normalize = False
    bgr = False

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return x

    def test(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def train_pair(self, x, y, generator, *, fill):  # pragma: no cover - a head is classification-only
        raise TypeError("frozen features have no target maps to transform (a head is classification-only)")


__all__ = ["FeatureSource", "FeatureTransform", "FrozenFeatures", "dataset_fingerprints", "frozen_features",
           "parse_source", "save_features_file"]
