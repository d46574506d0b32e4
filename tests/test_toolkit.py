"""albench.toolkit: the seeding, batching, placement and best-epoch tools the engine and strategies share."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from albench.toolkit import (DEVICE_DATA_LIMIT, BestEpoch, autocast, cpu_state, data_device, derive_seed, epoch_batches,
                           eval_batches, fit_with_selection, seeded_init, torch_generator)

TOOLKIT = Path(__file__).resolve().parent.parent / "bench" / "toolkit"


def test_the_toolkit_imports_neither_the_engine_nor_strategies():
    for path in TOOLKIT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module or ''}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom)
                     else [])
            for name in names:
                assert not name.startswith(("albench.engine", "albench.strategies")), f"{path.name} imports {name}"


def test_derive_seed_is_stable_and_keyed():
    # a fixed value: the golden sweep and every cached pretext entry depend on it never changing
    assert derive_seed(0, "init", 1) == derive_seed(0, "init", 1)
    assert derive_seed(0, "init", 1) != derive_seed(0, "init", 2) != derive_seed(1, "init", 1)
    assert 0 <= derive_seed(7, "x") < 2 ** 63
    import hashlib

    want = int.from_bytes(hashlib.sha256(b"3/select/2").digest()[:8], "little") >> 1
    assert derive_seed(3, "select", 2) == want


def test_seeded_init_draws_from_the_seed_and_restores_the_global_generator():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with seeded_init(5):
        a = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(5)
    assert torch.equal(a, torch.rand(3))


def test_epoch_batches_drop_only_a_last_batch_of_one():
    batches = list(epoch_batches(7, 3, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [3, 3]  # the 7th image alone would be a BatchNorm batch of one
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat(batches), perm[:6])
    assert [len(b) for b in epoch_batches(8, 3, torch.Generator().manual_seed(0))] == [3, 3, 2]
    assert [len(b) for b in epoch_batches(3, 1, torch.Generator().manual_seed(0))] == [1, 1, 1]  # batch size 1


def test_epoch_batches_drop_last_drops_any_short_batch_but_keeps_a_small_set_whole():
    assert [len(b) for b in epoch_batches(8, 3, torch.Generator().manual_seed(0), drop_last=True)] == [3, 3]
    assert [len(b) for b in epoch_batches(2, 5, torch.Generator().manual_seed(0), drop_last=True)] == [2]


def test_eval_batches_keep_order_and_follow_indices():
    x = torch.arange(10).reshape(10, 1)
    got = list(eval_batches(x, np.array([9, 2, 4]), 2, torch.device("cpu")))
    assert [s for s, _ in got] == [slice(0, 2), slice(2, 4)]
    assert torch.cat([b for _, b in got]).flatten().tolist() == [9, 2, 4]
    assert torch.cat([b for _, b in eval_batches(x, None, 4, torch.device("cpu"))]).flatten().tolist() == list(range(10))


def test_cpu_state_is_a_detached_copy_and_none_for_none():
    m = nn.Linear(2, 1)
    state = cpu_state(m)
    with torch.no_grad():
        m.weight.add_(1.0)
    assert not torch.equal(state["weight"], m.weight)
    assert cpu_state(None) is None


def test_data_stays_on_the_cpu_without_cuda():
    assert data_device(torch.device("cpu"), torch.zeros(4, dtype=torch.uint8)) == torch.device("cpu")
    assert DEVICE_DATA_LIMIT == 4 << 30


def test_autocast_off_is_a_no_op():
    with autocast(torch.device("cpu"), False):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def _scored_fit(scores, start=0, keeper=None):
    net = nn.Linear(1, 1, bias=False)
    keeper = keeper or BestEpoch({"net": net, "none": None})
    seen = []

    def train(epoch):
        with torch.no_grad():
            net.weight.fill_(float(epoch))  # the weights record which epoch made them
        seen.append(epoch)

    it = iter(scores)
    res = fit_with_selection(train, epochs=len(scores), start=start, score=lambda: next(it), keeper=keeper)
    return net, keeper, res, seen


def test_fit_with_selection_keeps_the_best_epoch_and_the_earlier_one_on_a_tie():
    net, keeper, res, seen = _scored_fit([0.1, 0.5, 0.5, 0.2])
    assert seen == [0, 1, 2, 3]
    assert (res.epochs, res.selected_epoch, res.selected_score) == (4, 2, 0.5)
    assert net.weight.item() == 1.0  # epoch 2 (1-based) restored, not the tie at epoch 3
    assert keeper.best["none"] is None


def test_fit_with_selection_keeps_extras_and_continues_from_a_saved_best():
    net = nn.Linear(1, 1, bias=False)
    saved = {"score": 0.9, "epoch": 1, "net": {"weight": torch.full((1, 1), 42.0)}}
    keeper = BestEpoch({"net": net}, best=saved)
    it = iter([(0.3, {"loss": np.ones(2)})])
    res = fit_with_selection(lambda e: None, epochs=2, start=1, score=lambda: next(it), keeper=keeper)
    assert (res.epochs, res.selected_epoch) == (2, 1)  # the resumed best still wins
    assert net.weight.item() == 42.0
    it = iter([(0.95, {"loss": np.ones(2)})])
    res = fit_with_selection(lambda e: None, epochs=2, start=1, score=lambda: next(it), keeper=keeper)
    assert res.selected_epoch == 2 and keeper.best["loss"].tolist() == [1.0, 1.0]


def test_fit_without_a_score_keeps_the_final_weights():
    calls = []
    res = fit_with_selection(calls.append, epochs=3, on_epoch=lambda done: calls.append(-done))
    assert calls == [0, -1, 1, -2, 2, -3]
    assert (res.epochs, res.selected_epoch, res.selected_score) == (3, None, None)
    with pytest.raises(ValueError, match="keeper"):
        fit_with_selection(lambda e: None, epochs=1, score=lambda: 1.0)


def test_torch_generator_is_seeded_from_derive_seed():
    assert torch.equal(torch.rand(3, generator=torch_generator(1, "a")),
                       torch.rand(3, generator=torch.Generator().manual_seed(derive_seed(1, "a"))))
