"""UncertainGCN: the nodes nearest s_margin, the GCN's loss by hand, seeding, the memory bound. The
contract (determinism, global RNG, valid queries, resume, end to end) is checked by
tests/test_contract_suite.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from albench.errors import ConfigError
from albench.strategies.base import Inputs, Need, Outputs, PoolState
from albench.strategies.gcn import GCN, UncertainGCN, gcn_loss, normalized_adjacency, select_nearest_margin, train_gcn
from albench.strategies.registry import make_strategy


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny graphs: threads only add hand-offs


def test_nearest_margin_by_hand():
    # |s - 0.1| = .4, .02, .08, 0, .2, .01 -> positions 3, 5, 1
    s = torch.tensor([0.5, 0.12, 0.02, 0.1, 0.3, 0.09])
    assert select_nearest_margin(s, 3, 0.1).tolist() == [3, 5, 1]
    # s_margin 0.5 picks the most uncertain labeled-vs-unlabeled scores instead
    assert select_nearest_margin(s, 2, 0.5).tolist() == [0, 4]


def test_loss_by_hand():
    # logits 0 -> s = 0.5: -log .5 - 1.2 log(1 - .5) = 2.2 ln 2
    loss = gcn_loss(torch.zeros(2), torch.tensor([True, False]), 1.2)
    assert loss.item() == pytest.approx(2.2 * math.log(2))
    # saturated scores stay finite (the official log(sigmoid) form gives inf here)
    assert torch.isfinite(gcn_loss(torch.tensor([-200.0, 200.0]), torch.tensor([True, False]), 1.2))


def _synthetic(n_u=40, n_l=10, d=8, seed=0):
    """Two clusters: labeled images sit in the first, unlabeled ones are spread over both."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(2, d, generator=g) * 3
    lab = centers[0] + 0.5 * torch.randn(n_l, d, generator=g)
    unl = centers[torch.arange(n_u) % 2] + 0.5 * torch.randn(n_u, d, generator=g)
    cand_idx = np.arange(100, 100 + n_u)
    inputs = Inputs(candidates=Outputs(indices=cand_idx, embeddings=unl.relu()),
                    labeled=Outputs(indices=np.arange(n_l), embeddings=lab.relu()), device=torch.device("cpu"))
    pool = PoolState(images=torch.zeros(100 + n_u, 1, 2, 2, dtype=torch.uint8), labeled=np.arange(n_l),
                     labeled_targets=torch.zeros(n_l, dtype=torch.long), num_classes=2)
    return inputs, pool


def _retrained(inputs, rng, **kw):
    """The strategy's graph and GCN, rebuilt independently from the same generator state."""
    x = torch.nn.functional.normalize(torch.cat([inputs.candidates.embeddings, inputs.labeled.embeddings]), dim=1)
    n_u = inputs.candidates.embeddings.shape[0]
    adj = normalized_adjacency(x)
    labeled = torch.arange(x.shape[0]) >= n_u
    model = train_gcn(x, adj, labeled, seed=int(rng.integers(2**62)), **kw)
    with torch.no_grad():
        logits, hidden = model(x, adj)
    return torch.sigmoid(logits), hidden, n_u


def test_picks_the_unlabeled_nodes_nearest_s_margin():
    inputs, pool = _synthetic()
    s = make_strategy("uncertaingcn", {"steps": 30})
    picked = s.select(cycle=1, budget=5, pool=pool, inputs=inputs, rng=np.random.default_rng(4))
    scores, _, n_u = _retrained(inputs, np.random.default_rng(4), hidden=128, dropout=0.3, steps=30, lr=1e-3,
                                weight_decay=5e-4, lambda_=1.2)
    dist = (scores[:n_u] - 0.1).abs().numpy()
    expect = inputs.candidates.indices[np.argsort(dist, kind="stable")[:5]]
    assert picked.tolist() == expect.tolist()
    # and no unpicked unlabeled node is nearer s_margin than a picked one
    chosen = picked - 100
    assert dist[chosen].max() <= np.delete(dist, chosen).min()


def test_training_separates_labeled_from_unlabeled():
    inputs, _ = _synthetic()
    scores, _, n_u = _retrained(inputs, np.random.default_rng(0), hidden=32, dropout=0.3, steps=200, lr=1e-2,
                                weight_decay=5e-4, lambda_=1.2)
    assert scores[n_u:].mean() > scores[:n_u].mean() + 0.1


def test_gcn_initialisation_is_fixed_by_its_generator():
    """(Same rng, same query: the contract suite, tests/test_contract_suite.py.)"""
    a = GCN(4, 8, 0.3, torch.Generator().manual_seed(1)).gc1.weight
    b = GCN(4, 8, 0.3, torch.Generator().manual_seed(2)).gc1.weight
    assert not torch.equal(a, b)
    assert torch.equal(a, GCN(4, 8, 0.3, torch.Generator().manual_seed(1)).gc1.weight)


def test_select_refuses_before_building_an_oversized_adjacency(monkeypatch):
    inputs, pool = _synthetic()
    s = make_strategy("uncertaingcn", {"max_adjacency_gb": 1e-6, "subset": 40})  # 50 nodes need 1e-5 GB

    def boom(x):
        raise AssertionError("the adjacency was built")

    monkeypatch.setattr("albench.strategies.gcn.normalized_adjacency", boom)
    with pytest.raises(ConfigError) as err:
        s.select(cycle=1, budget=5, pool=pool, inputs=inputs, rng=np.random.default_rng(0))
    assert err.value.field == "params.subset"
    assert "lower params.subset to 5 or less" in err.value.fix  # isqrt(1e-6 GB / 4 B) = 15 nodes - 10 labeled


def test_cli_refuses_with_exit_code_2_before_queueing(tmp_path, capsys):
    from albench.cli import main

    code = main(["run", "--out", str(tmp_path), "--quiet", "--set", "strategies=uncertaingcn", "--set", "seeds=1",
                 "--set", "strategies.0.params.max_adjacency_gb=0.001"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "strategies[0].params.subset" in err[0] and "max_adjacency_gb" in err[0]
    assert not any(tmp_path.rglob("status.json"))


def test_params_and_quirk():
    assert UncertainGCN.needs == {Need.EMBEDDINGS, Need.LABELED}
    for bad in ({"s_margin": 1.5}, {"dropout": 1.0}, {"steps": 0}, {"max_adjacency_gb": 0}, {"lambda_": -1}):
        with pytest.raises(ConfigError) as err:
            make_strategy("uncertaingcn", bad)
        assert err.value.field == f"params.{next(iter(bad))}"
    q = UncertainGCN.quirk("train-20-epochs")
    assert q.train["epochs"] == 20 and q.train["schedule.name"] == "constant"
