"""Datasets held in memory as uint8 image tensors, and batched on-device augmentation."""

from bench.data.base import DatasetSpec, ImageDataset
from bench.data.registry import dataset_names, get_dataset, load_dataset, register_dataset

__all__ = ["DatasetSpec", "ImageDataset", "dataset_names", "get_dataset", "load_dataset", "register_dataset"]
