"""train.batching: how an epoch is cut into batches (keep-last, the default; drop-last; even)."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from albench.config import build_config
from albench.engine.loop import execute_run
from albench.errors import ConfigError
from albench.plan import make_plan
from albench.toolkit import epoch_batches
from tests.conftest import TINY


def _sizes(n: int, bs: int, **kw) -> list[int]:
    return [len(b) for b in epoch_batches(n, bs, torch.Generator().manual_seed(0), **kw)]


def test_even_batches_split_the_pass_into_near_equal_batches():
    assert _sizes(100, 32, even=True) == [25, 25, 25, 25]  # keep-last gives 32, 32, 32, 4
    assert _sizes(100, 32) == [32, 32, 32, 4]
    assert _sizes(50, 32, even=True) == [25, 25]
    assert _sizes(200, 32, even=True) == [29, 29, 29, 29, 28, 28, 28]
    assert _sizes(64, 32, even=True) == [32, 32]  # a multiple of the batch size: unchanged
    assert _sizes(7, 32, even=True) == [7]
    assert _sizes(1, 32, even=True) == [1]


def test_even_batches_use_every_image_once_in_the_same_shuffled_order():
    got = torch.cat(list(epoch_batches(100, 32, torch.Generator().manual_seed(3), even=True)))
    assert torch.equal(got, torch.randperm(100, generator=torch.Generator().manual_seed(3)))


def test_batching_defaults_to_keep_last_and_rejects_unknown_modes(tmp_path):
    assert build_config(dict(copy.deepcopy(TINY), output=str(tmp_path))).train.batching == "keep-last"
    with pytest.raises(ConfigError) as err:
        build_config(dict(copy.deepcopy(TINY), output=str(tmp_path)), ["train.batching=balanced"])
    assert err.value.field == "train.batching"


@pytest.mark.usefixtures("one_torch_thread")
def test_batching_is_recorded_with_the_run_and_changes_the_training(tmp_path, trained_batches):
    """A run with even batching records it in config.yaml and trains on the batches it says."""
    raw = dict(copy.deepcopy(TINY), output=str(tmp_path / "results"))
    raw["train"] = dict(raw["train"], batch_size=16, batching="even")  # 20, 40, 60 labels: 10+10, 14+13+13, 15 x 4
    raw["al"] = {"initial": 20, "budget": 20, "cycles": 3}
    (rc,) = make_plan(build_config(raw))
    assert execute_run(rc).state == "complete"
    epochs = raw["train"]["epochs"]
    sizes = [size for _, size in trained_batches]
    assert sizes == [10, 10] * epochs + [14, 13, 13] * epochs + [15, 15, 15, 15] * epochs
    assert yaml.safe_load((rc.run_dir / "config.yaml").read_text())["train"]["batching"] == "even"
