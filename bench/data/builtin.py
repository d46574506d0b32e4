"""Importing this module registers the built-in datasets."""

from bench.data import byo, cifar, digits, large, segmentation  # noqa: F401
