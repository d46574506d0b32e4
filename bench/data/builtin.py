"""Importing this module registers the built-in datasets."""

from albench.data import byo, cifar, cifar100, digits, large, mnist, segmentation, stl10, svhn  # noqa: F401
