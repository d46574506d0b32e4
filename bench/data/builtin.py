"""Importing this module registers the built-in datasets."""

from bench.data import byo, cifar, digits  # noqa: F401
