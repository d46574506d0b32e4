"""The packaged CIFAR-10 CPU config runs a 2-cycle sweep on the real data in ../shared/data."""

from __future__ import annotations

import pytest

from albench.cli import main
from albench.reports.data import load_sweep_runs
from tests.conftest import REPO, SHARED_DATA


@pytest.mark.slow
def test_cifar10_two_cycle_sweep(tmp_path, capsys, monkeypatch):
    if not (SHARED_DATA / "cifar10.npz").exists():
        pytest.skip(f"no shared CIFAR-10 at {SHARED_DATA} (only present on the project's machines)")
    monkeypatch.chdir(REPO)  # the config's root, ../shared/data, is relative to the repository
    rc = main(["run", "bench/configs/cifar10-cpu.yaml", "--quiet", "--out", str(tmp_path),
               "--set", "train.epochs=1", "--set", "strategies=random,margin", "--set", "record.embeddings=100",
               "--set", "model.params.width=8"])
    assert rc == 0, capsys.readouterr().err
    df = load_sweep_runs(tmp_path / "cifar10-cpu").cycles()
    assert sorted(df["strategy"].unique()) == ["margin", "random"]
    assert df.groupby("strategy")["n_labeled"].apply(list).to_dict() == {"margin": [1000, 2000],
                                                                          "random": [1000, 2000]}
    assert (df["value"] > 0.1).all()  # better than chance after one epoch on 1k-2k labels
    assert (df["state"] == "complete").all()
