"""Datasets held in memory as uint8 image tensors, and batched on-device augmentation."""

from albench.data.base import DatasetSpec, ImageDataset
from albench.data.registry import dataset_names, get_dataset, load_dataset, register_dataset

__all__ = ["DatasetSpec", "ImageDataset", "dataset_names", "get_dataset", "load_dataset", "register_dataset"]
