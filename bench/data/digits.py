"""scikit-learn's bundled digits: the embedded default dataset (no download, 8x8 grayscale)."""

from __future__ import annotations

import numpy as np
import torch

from albench.data.base import DatasetSpec, ImageDataset, channel_stats
from albench.data.registry import register_dataset

SPLIT_SEED = 0  # fixed, so every run and seed sees the same pool and test set
TEST_SIZE = 297  # leaves a round 1,500-image pool


@register_dataset
class Digits(DatasetSpec):
    name = "digits"
    description = "scikit-learn's bundled 8x8 digits, 1,500 train / 297 test, embedded (no download)"
    needs_root = False

    def image_shape(self, cfg) -> tuple[int, int, int]:
        return 1, 8, 8

    def channels(self, cfg) -> int:
        return 1

    def train_size(self, cfg) -> int:
        return 1797 - TEST_SIZE

    def load(self, cfg) -> ImageDataset:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        # digits are 0..16 intensities; scale to the 0..255 range every other dataset uses
        images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
        labels = bunch.target.astype(np.int64)
        idx_train, idx_test = train_test_split(
            np.arange(len(labels)), test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=labels)
        x_train = torch.from_numpy(images[idx_train])
        mean, std = channel_stats(x_train)
        return ImageDataset(
            name=self.name,
            x_train=x_train,
            y_train=torch.from_numpy(labels[idx_train]),
            x_test=torch.from_numpy(images[idx_test]),
            y_test=torch.from_numpy(labels[idx_test]),
            classes=[str(i) for i in range(10)],
            mean=mean, std=std,
            crop_padding=1, hflip=False,  # a flipped digit is another symbol
        )
