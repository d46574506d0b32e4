"""Shared fixtures: tiny configs that run in seconds on the CPU."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

TINY = {
    "name": "tiny",
    "dataset": {"name": "digits"},
    "model": {"name": "small-cnn", "params": {"width": 8}},
    "train": {"epochs": 2, "batch_size": 32, "optimizer": {"lr": 0.05},
              "schedule": {"name": "constant"}},
    "al": {"initial": 20, "budget": 20, "cycles": 3},
    "strategies": ["random"],
    "seeds": [0],
    "threads": 1,
    "record": {"embeddings": 64},
}


@pytest.fixture
def trained_batches(monkeypatch) -> list[tuple[int, int]]:
    """(images in the epoch's pass, images in the batch) of every training batch the engine's Trainer
    takes from here on: one entry per optimizer step."""
    import albench.engine.train as train_mod

    seen: list[tuple[int, int]] = []
    orig = train_mod.epoch_batches

    def spy(n, bs, gen, **kw):
        for idx in orig(n, bs, gen, **kw):
            seen.append((n, idx.numel()))
            yield idx

    monkeypatch.setattr(train_mod, "epoch_batches", spy)
    return seen


@pytest.fixture
def one_torch_thread():
    """One torch thread: tiny networks only lose time to thread hand-offs on a shared 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_raw(tmp_path) -> dict:
    """A raw config mapping for a ~1 s digits run, writing under tmp_path."""
    raw = copy.deepcopy(TINY)
    raw["output"] = str(tmp_path / "results")
    return raw


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
