"""Every random draw of a run takes its generator from the run seed and a purpose name.

Deriving generators by (seed, purpose, cycle) rather than threading one RNG through the run makes
each draw independent of how many draws came before it: a resumed run, or a strategy that draws
more numbers, leaves every other stream unchanged.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit integer determined by ``seed`` and the ``keys`` (stable across Python runs)."""
    text = "/".join([str(int(seed))] + [str(k) for k in keys])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def numpy_rng(seed: int, *keys: object) -> np.random.Generator:
    """A NumPy generator for (seed, keys)."""
    return np.random.default_rng(derive_seed(seed, *keys))


def torch_generator(seed: int, *keys: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` for (seed, keys)."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *keys))
    return g


def seed_global(seed: int, *keys: object) -> None:
    """Seed torch's global RNG (module initialisation and dropout draw from it)."""
    torch.manual_seed(derive_seed(seed, *keys))


@contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Inside the block torch's global CPU generator is seeded with ``seed``; after it, the generator
    is back where it was. For networks a strategy builds for itself (their initialisation draws from
    the global generator) without moving the run's own random streams; CUDA generators are not
    touched (modules are initialised on the CPU)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        yield
