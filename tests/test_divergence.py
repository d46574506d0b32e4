"""Divergence fails the run: a non-finite training loss, logits or strategy score names the phase,
the cycle and the value; nothing of that cycle is recorded; strategies never rank NaN scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from albench import divergence
from albench.cli import main
from albench.divergence import Diverged
from albench.records import read_cycles, read_status
from albench.strategies.base import top_k_highest, top_k_lowest
from albench.strategies.coreset import kcenter_greedy
from tests.conftest import write_yaml


def test_a_diverging_sweep_fails_every_run_naming_phase_cycle_and_value(tiny_raw, tmp_path, capsys,
                                                                        one_torch_thread):
    tiny_raw["strategies"] = ["random", "entropy", "coreset"]
    tiny_raw["al"]["cycles"] = 2
    tiny_raw["train"]["optimizer"]["lr"] = 1e6  # seeded: the same divergence every time
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == "no finished cycles yet"  # no 9.76% printed as a result
    for strategy in ("random", "entropy", "coreset"):
        run_dir = tmp_path / "results" / "tiny" / "digits" / strategy / "seed-0"
        st = read_status(run_dir)
        assert st["state"] == "failed"
        assert st["error"].startswith("Diverged: ") and "phase of cycle 0" in st["error"] and " is nan " in st["error"]
        assert "lower train.optimizer.lr" in st["error"]
        assert read_cycles(run_dir) == []
        assert f"run failed: digits/{strategy}/seed-0: Diverged" in err


def test_a_nan_training_loss_names_the_epoch_and_batch(tiny_raw, tmp_path, capsys, one_torch_thread):
    tiny_raw["train"].update(epochs=6, optimizer={"lr": 1e6})
    tiny_raw["al"]["cycles"] = 1
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--quiet"]) == 1
    error = read_status(tmp_path / "results" / "tiny" / "digits" / "random" / "seed-0")["error"]
    assert "the training loss is nan in the train phase of cycle 0 (epoch " in error, error


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("rank", [top_k_lowest, top_k_highest])
def test_ranking_helpers_never_rank_non_finite_scores(rank, bad):
    divergence.at_cycle(3)
    try:
        with pytest.raises(Diverged, match=rf"a strategy score is {bad} in the select phase of cycle 3 \(1 of 4"):
            rank(torch.tensor([0.2, bad, 0.1, 0.4]), 2)
        with pytest.raises(Diverged):
            rank(np.array([0.2, 0.3, bad]), 1)
    finally:
        divergence.at_cycle(None)
    assert list(rank(np.array([0.2, 0.1, 0.4]), 2)) == ([1, 0] if rank is top_k_lowest else [2, 0])


def test_coreset_refuses_nan_embeddings():
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    x[3, 1] = float("nan")
    with pytest.raises(Diverged, match="coreset"):
        kcenter_greedy(x, 2, centers=x[:2].clone())
    with pytest.raises(Diverged, match="coreset"):
        kcenter_greedy(x, 2, rng=np.random.default_rng(0))
